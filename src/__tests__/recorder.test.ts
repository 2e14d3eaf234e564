import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { KINDS } from '../kinds';
import { SizeLimit } from '../limits';
import { EventQueue } from '../queue';
import { Recorder } from '../recorder';
import { share } from '../sampling';
import { ISchemaSummary } from '../schemas';
import { Telemetry } from '../telemetry';
import { FakeTransport } from './fakes';

const ALL: ISchemaSummary[] = Object.values(KINDS).map(k => ({
  id: k.schemaId,
  version: k.version,
  frontend: true,
  allowed: true
}));

let transport: FakeTransport;

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
  transport = new FakeTransport();
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

async function makeRecorder(
  schemas: ISchemaSummary[] | null,
  makeId?: () => string
): Promise<[Recorder, Telemetry]> {
  const telemetry = new Telemetry(
    new EventQueue(transport, { clientIds: true }),
    Promise.resolve(schemas),
    makeId
  );
  await telemetry.ready;
  return [new Recorder(telemetry), telemetry];
}

async function sent(telemetry: Telemetry): Promise<Record<string, unknown>[]> {
  await telemetry.flush();
  return transport.posts.flatMap(p =>
    p.events.map(e => ({ schema_id: e.schema_id, version: e.version, ...e.data }))
  );
}

describe('Recorder', () => {
  it('holds events until the settings are known, then drops the kinds turned off', async () => {
    const [recorder, telemetry] = await makeRecorder(ALL);
    recorder.record('scroll', { action: 'scrolled' });
    recorder.record('kernel', { action: 'restarted' });
    expect(await sent(telemetry)).toEqual([]);
    recorder.configure({ scroll: false });
    expect(recorder.enabled('scroll')).toBe(false);
    expect(recorder.enabled('kernel')).toBe(true);
    expect(await sent(telemetry)).toEqual([
      { schema_id: KINDS.kernel.schemaId, version: 1, action: 'restarted' }
    ]);
  });

  it('is off for a kind whose schema the server does not record', async () => {
    const [recorder, telemetry] = await makeRecorder(
      ALL.filter(s => s.id !== KINDS.cellEdit.schemaId)
    );
    recorder.configure({});
    expect(recorder.enabled('cellEdit')).toBe(false);
    recorder.record('cellEdit', { action: 'edited' });
    expect(await sent(telemetry)).toEqual([]);
  });

  it("honours the server's sampling rate of a high-volume kind", async () => {
    const rate = 0.25;
    const schemas = ALL.map(s => (s.id === KINDS.scroll.schemaId ? { ...s, sampling: rate } : s));
    let n = 0;
    const [recorder, telemetry] = await makeRecorder(schemas, () => `id-${n++}`);
    recorder.configure({});
    for (let i = 0; i < 400; i++) {
      recorder.record('scroll', { action: 'scrolled' });
    }
    await sent(telemetry);
    const kept = transport.ids;
    const expected = Array.from({ length: 400 }, (_, i) => `id-${i}`).filter(
      id => share(KINDS.scroll.schemaId, id) < rate
    );
    expect(kept).toEqual(expected);
    expect(kept.length).toBeGreaterThan(60);
    expect(kept.length).toBeLessThan(140);
  });

  it('cuts content over the size limit and refuses what cannot fit, counting both', async () => {
    const [recorder, telemetry] = await makeRecorder(ALL);
    recorder.configure({});
    recorder.record('clipboard', {
      action: 'paste',
      what: 'text',
      length: 100_000,
      text: 'x'.repeat(100_000)
    });
    recorder.record('scroll', { action: 'scrolled', padding: 'y'.repeat(100_000) });
    const events = await sent(telemetry);
    expect(events).toHaveLength(1);
    expect(events[0].truncated).toBe(true);
    expect(JSON.stringify(transport.posts[0].events[0]).length).toBeLessThanOrEqual(32 * 1024);
    expect(recorder.limit.counts).toEqual({ cut: 1, refused: 1 });
  });

  it('uses its own size limit when given one', async () => {
    const telemetry = new Telemetry(new EventQueue(transport), Promise.resolve(ALL));
    const recorder = new Recorder(telemetry, new SizeLimit(100));
    recorder.configure({});
    recorder.record('cellEdit', { action: 'edited', source: 'z'.repeat(500) });
    const events = await sent(telemetry);
    expect((events[0].source as string).length).toBeLessThan(100);
  });
});
