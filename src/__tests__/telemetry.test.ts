import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { EventQueue } from '../queue';
import { ISchemaSummary } from '../schemas';
import { Telemetry } from '../telemetry';
import { FakeTransport } from './fakes';

const ALLOWED = 'https://example.org/allowed';
const DENIED = 'https://example.org/denied';
const BACKEND = 'https://example.org/backend-only';

const SCHEMAS: ISchemaSummary[] = [
  { id: ALLOWED, version: 1, frontend: true, allowed: true },
  { id: DENIED, version: 1, frontend: true, allowed: false },
  { id: BACKEND, version: '1', frontend: false, allowed: true }
];

let transport: FakeTransport;
let ids: number;

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
  transport = new FakeTransport();
  ids = 0;
  vi.spyOn(console, 'debug').mockImplementation(() => undefined); // the drops' explanations
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

function makeTelemetry(schemas: Promise<ISchemaSummary[] | null>): Telemetry {
  const queue = new EventQueue(transport, { clientIds: true });
  return new Telemetry(queue, schemas, () => `id-${ids++}`);
}

describe('Telemetry', () => {
  it('sends only the schemas the server records; 1 and "1" are one version', async () => {
    const telemetry = makeTelemetry(Promise.resolve(SCHEMAS));
    await telemetry.ready;
    for (const schema_id of [ALLOWED, DENIED, BACKEND, 'https://example.org/unknown']) {
      telemetry.record({ schema_id, version: '1', data: { n: 1 } });
    }
    telemetry.record({ schema_id: ALLOWED, version: 2, data: {} });
    await telemetry.flush();
    expect(transport.posts.flatMap(p => p.events)).toEqual([
      {
        schema_id: ALLOWED,
        version: '1',
        data: { n: 1 },
        id: 'id-0',
        timestamp: '2026-01-01T00:00:00.000Z'
      }
    ]);
  });

  it('says once per schema, at debug level, why its events are dropped', async () => {
    const debug = vi.spyOn(console, 'debug').mockImplementation(() => undefined);
    let answer: (list: ISchemaSummary[]) => void = () => undefined;
    const telemetry = makeTelemetry(new Promise(resolve => (answer = resolve)));
    telemetry.record({ schema_id: DENIED, version: 1, data: {} }); // pending: sorted later
    expect(debug).not.toHaveBeenCalled();
    answer(SCHEMAS);
    await telemetry.ready;
    for (let i = 0; i < 3; i++) {
      telemetry.record({ schema_id: DENIED, version: 1, data: {} });
      telemetry.record({ schema_id: BACKEND, version: 1, data: {} });
      telemetry.record({ schema_id: 'https://example.org/unknown', version: 1, data: {} });
      telemetry.record({ schema_id: ALLOWED, version: 1, data: {} });
    }
    telemetry.record({ schema_id: ALLOWED, version: 3, data: {} });
    await telemetry.flush();
    expect(debug.mock.calls.map(call => call.join(' '))).toEqual([
      `Telemetry: events of ${DENIED} are dropped, not sent: the schema is not in the admin's allow-list (c.EventLog.allowed_schemas)`,
      `Telemetry: events of ${BACKEND} are dropped, not sent: the schema does not have "frontend": true, so the server refuses it from a browser`,
      "Telemetry: events of https://example.org/unknown are dropped, not sent: version 1 is not in the server's schema list (GET api/telemetry/schemas)",
      `Telemetry: events of ${ALLOWED} are dropped, not sent: version 3 is not in the server's schema list (GET api/telemetry/schemas)`
    ]);
    expect(transport.posts.flatMap(p => p.events)).toHaveLength(3); // no request for the rest
  });

  it('says nothing when the schema list cannot be read: the server decides', async () => {
    const debug = vi.spyOn(console, 'debug').mockImplementation(() => undefined);
    const telemetry = makeTelemetry(Promise.resolve(null));
    await telemetry.ready;
    telemetry.record({ schema_id: DENIED, version: 1, data: {} });
    await telemetry.flush();
    expect(debug).not.toHaveBeenCalled();
    expect(transport.posts.flatMap(p => p.events)).toHaveLength(1);
  });

  it('holds events recorded before the schema list, then sorts them', async () => {
    let answer: (list: ISchemaSummary[]) => void = () => undefined;
    const telemetry = makeTelemetry(new Promise(resolve => (answer = resolve)));
    telemetry.record({ schema_id: DENIED, version: 1, data: {} });
    telemetry.record({ schema_id: ALLOWED, version: 1, data: {}, id: 'mine' });
    expect(telemetry.accepts(ALLOWED, 1)).toBeUndefined();

    answer(SCHEMAS);
    await telemetry.flush();
    expect(transport.ids).toEqual(['mine']);
    expect(telemetry.accepts(ALLOWED, 1)).toBe(true);
  });

  it('sends everything when the schema list cannot be read', async () => {
    const telemetry = makeTelemetry(Promise.resolve(null));
    telemetry.record({ schema_id: DENIED, version: 1, data: {} });
    await telemetry.flush();
    expect(transport.ids).toEqual(['id-0']);
  });

  it('keeps a copy of the data, and drops data that is not JSON', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const telemetry = makeTelemetry(Promise.resolve(SCHEMAS));
    const data: Record<string, unknown> = { n: 1 };
    telemetry.record({ schema_id: ALLOWED, version: 1, data });
    data.n = 2;
    data.self = data;
    telemetry.record({ schema_id: ALLOWED, version: 1, data });
    await telemetry.flush();
    expect(transport.posts.flatMap(p => p.events.map(e => e.data))).toEqual([{ n: 1 }]);
  });

  it('hands pending events to keepalive when the page goes before the schema list', () => {
    const telemetry = makeTelemetry(new Promise(() => undefined));
    telemetry.record({ schema_id: DENIED, version: 1, data: {} });
    telemetry.flushKeepalive();
    expect(transport.keepaliveIds).toEqual(['id-0']);
  });
});
