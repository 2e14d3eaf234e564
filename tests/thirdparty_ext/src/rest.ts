import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ACTIVATED } from './plugin';

/**
 * Posts one event to the server's REST API, without the client: no batching, no retries.
 */
async function postEvent(
  settings: ServerConnection.ISettings,
  event: { schema_id: string; version: number; data: Record<string, unknown> }
): Promise<string> {
  const url = URLExt.join(settings.baseUrl, 'api/telemetry/events');
  const init = { method: 'POST', body: JSON.stringify(event) };
  const response = await ServerConnection.makeRequest(url, init, settings);
  const reply = await response.json();
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, reply.message);
  }
  return reply.status; // "recorded", or why not: "filtered", "sampled_out", ...
}

/**
 * Posts one event through the REST API when it is activated.
 */
export const restPlugin: JupyterFrontEndPlugin<void> = {
  id: 'telemetry-thirdparty-example:rest',
  description: 'Records through the REST API, without ITelemetry.',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    const settings = app.serviceManager.serverSettings;
    postEvent(settings, { schema_id: ACTIVATED, version: 1, data: { action: 'rest' } }).catch(
      reason => console.warn('telemetry-thirdparty-example: event not recorded', reason)
    );
  }
};
