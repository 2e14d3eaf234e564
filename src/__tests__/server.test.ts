import { ServerConnection } from '@jupyterlab/services';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { ServerTransport, fetchSchemas } from '../server';

interface ICall {
  url: string;
  method: string;
  body: string | null;
  keepalive: boolean;
}

/** ServerConnection settings whose fetch answers from a script and records the requests. */
function settings(
  reply: () => Response | Promise<Response>
): [ServerConnection.ISettings, ICall[]] {
  const calls: ICall[] = [];
  const fetch = async (input: RequestInfo, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    calls.push({
      url: request.url.split('?')[0], // ServerConnection adds a cache-busting query
      method: request.method,
      body: request.method === 'POST' ? await request.clone().text() : null,
      keepalive: request.keepalive || init?.keepalive === true
    });
    return reply();
  };
  const made = ServerConnection.makeSettings({
    baseUrl: 'http://127.0.0.1:8888/base/',
    fetch: fetch as typeof globalThis.fetch,
    token: 'secret'
  });
  return [made, calls];
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers }
  });

afterEach(() => {
  vi.restoreAllMocks();
});

describe('fetchSchemas', () => {
  it('reads the schema list from api/telemetry/schemas under the base URL', async () => {
    const schemas = [{ id: 'x', version: 1, frontend: true, allowed: true }];
    const [made, calls] = settings(() => json(200, { schemas }));
    expect(await fetchSchemas(made)).toEqual(schemas);
    expect(calls.map(c => [c.method, c.url])).toEqual([
      ['GET', 'http://127.0.0.1:8888/base/api/telemetry/schemas']
    ]);
  });

  it('404 (no server extension): empty, nothing will be sent', async () => {
    const [made] = settings(() => json(404, {}));
    expect(await fetchSchemas(made)).toEqual([]);
  });

  it('an error, a network failure or a malformed body: null, the server decides', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    expect(await fetchSchemas(settings(() => json(500, {}))[0])).toBeNull();
    expect(await fetchSchemas(settings(() => Promise.reject(new TypeError('down')))[0])).toBeNull();
    expect(await fetchSchemas(settings(() => json(200, { schemas: 'no' }))[0])).toBeNull();
  });
});

describe('ServerTransport', () => {
  it('posts a body and reports status, Retry-After and the parsed reply', async () => {
    const [made, calls] = settings(() =>
      json(429, { message: 'slow down' }, { 'Retry-After': '7' })
    );
    const response = await new ServerTransport(made).post('{"events":[]}');
    expect(response).toEqual({ status: 429, retryAfter: '7', body: { message: 'slow down' } });
    expect(calls).toEqual([
      {
        url: 'http://127.0.0.1:8888/base/api/telemetry/events',
        method: 'POST',
        body: '{"events":[]}',
        keepalive: false
      }
    ]);
  });

  it('a reply that is not JSON: body null', async () => {
    const [made] = settings(() => new Response('<html>', { status: 502 }));
    expect(await new ServerTransport(made).post('{}')).toEqual({
      status: 502,
      retryAfter: null,
      body: null
    });
  });

  it('postKeepalive starts the request at once, with keepalive, and never throws', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const [made, calls] = settings(() => Promise.reject(new TypeError('gone')));
    new ServerTransport(made).postKeepalive('{"events":[1]}');
    await vi.waitFor(() => expect(calls).toHaveLength(1));
    expect(calls[0].keepalive).toBe(true);
    await vi.waitFor(() => expect(console.warn).toHaveBeenCalled());
  });
});
