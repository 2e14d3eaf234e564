/**
 * The server's telemetry REST API, through ServerConnection (auth and XSRF as in any request).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ITransport, ITransportResponse } from './queue';
import { ISchemaSummary } from './schemas';

const EVENTS = 'api/telemetry/events';
const SCHEMAS = 'api/telemetry/schemas';

/**
 * Read the server's schema list: empty without the server extension, null when it cannot be
 * read now (every event is then sent, and the server decides).
 */
export async function fetchSchemas(
  settings: ServerConnection.ISettings
): Promise<ISchemaSummary[] | null> {
  try {
    const response = await ServerConnection.makeRequest(
      URLExt.join(settings.baseUrl, SCHEMAS),
      {},
      settings
    );
    if (response.status === 404) {
      return []; // no telemetry server extension: nothing would be recorded
    }
    if (!response.ok) {
      console.warn('Telemetry: GET', SCHEMAS, 'answered', response.status);
      return null;
    }
    const body = (await response.json()) as { schemas?: ISchemaSummary[] };
    return Array.isArray(body.schemas) ? body.schemas : null;
  } catch (reason) {
    console.warn('Telemetry: GET', SCHEMAS, 'failed', reason);
    return null;
  }
}

/**
 * Posts batches to `api/telemetry/events`.
 */
export class ServerTransport implements ITransport {
  constructor(private readonly _settings: ServerConnection.ISettings) {}

  async post(body: string): Promise<ITransportResponse> {
    const response = await this._request(body, false);
    return {
      status: response.status,
      retryAfter: response.headers.get('Retry-After'),
      body: await response.json().catch(() => null)
    };
  }

  postKeepalive(body: string): void {
    // makeRequest calls fetch synchronously, so the request starts before the page goes.
    this._request(body, true).catch(reason => {
      console.warn('Telemetry: keepalive POST failed', reason);
    });
  }

  private _request(body: string, keepalive: boolean): Promise<Response> {
    const url = URLExt.join(this._settings.baseUrl, EVENTS);
    return ServerConnection.makeRequest(url, { method: 'POST', body, keepalive }, this._settings);
  }
}
