import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// The decisions the server makes, checked by tests/test_sampling.py on the Python side.
import vectors from '../../tests/sampling_vectors.json';
import { EventQueue } from '../queue';
import { crc32, keeps, share } from '../sampling';
import { ISchemaSummary } from '../schemas';
import { Telemetry } from '../telemetry';
import { FakeTransport } from './fakes';

const SAMPLED = vectors.schema_id;
const OTHER = 'https://example.org/other';
const IDS = vectors.kept.map(([id]) => id as string);
const KEPT = vectors.kept.filter(([, kept]) => kept).map(([id]) => id as string);

function summaries(rate: unknown): ISchemaSummary[] {
  return [
    { id: SAMPLED, version: 1, frontend: true, allowed: true, sampling: rate as number },
    { id: OTHER, version: 1, frontend: true, allowed: true, sampling: 1 }
  ];
}

let transport: FakeTransport;

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
  transport = new FakeTransport();
});

afterEach(() => {
  vi.useRealTimers();
});

function makeTelemetry(schemas: Promise<ISchemaSummary[] | null>, clientIds = true): Telemetry {
  const queue = new EventQueue(transport, { clientIds, batchSize: 500 });
  return new Telemetry(queue, schemas);
}

function recordAll(telemetry: Telemetry, schemaId: string = SAMPLED): void {
  for (const id of IDS) {
    telemetry.record({ schema_id: schemaId, version: 1, data: { action: 'open' }, id });
  }
}

describe('the sampling decision', () => {
  it('is zlib’s CRC-32', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array())).toBe(0);
  });

  it('hashes the UTF-8 of schema id, NUL, id exactly as the server does', () => {
    for (const [schemaId, id, crc] of vectors.crc32) {
      expect(share(schemaId as string, id as string) * 2 ** 32).toBe(crc);
    }
  });

  it('keeps what the server keeps', () => {
    expect(IDS.map(id => [id, keeps(vectors.rate, SAMPLED, id)])).toEqual(vectors.kept);
    expect(IDS.every(id => keeps(1, SAMPLED, id))).toBe(true);
  });
});

describe('Telemetry with a sampled schema', () => {
  it('sends exactly the events the server would keep', async () => {
    const telemetry = makeTelemetry(Promise.resolve(summaries(vectors.rate)));
    await telemetry.ready;
    recordAll(telemetry);
    recordAll(telemetry, OTHER);
    await telemetry.flush();
    const sent = transport.posts.flatMap(p => p.events);
    expect(sent.filter(e => e.schema_id === SAMPLED).map(e => e.id)).toEqual(KEPT);
    expect(sent.filter(e => e.schema_id === OTHER).map(e => e.id)).toEqual(IDS);
  });

  it('sorts the events recorded before the schema list the same way', async () => {
    let answer: (list: ISchemaSummary[]) => void = () => undefined;
    const telemetry = makeTelemetry(new Promise(resolve => (answer = resolve)));
    recordAll(telemetry);
    answer(summaries(vectors.rate));
    await telemetry.flush();
    expect(transport.ids).toEqual(KEPT);
  });

  it('leaves sampling to the server when the ids are not sent', async () => {
    const telemetry = makeTelemetry(Promise.resolve(summaries(vectors.rate)), false);
    await telemetry.ready;
    recordAll(telemetry);
    await telemetry.flush();
    expect(transport.posts.flatMap(p => p.events)).toHaveLength(IDS.length);
  });

  it.each([1, undefined, 0, -1, 2, '0.5', null])('sends every event at rate %s', async rate => {
    const telemetry = makeTelemetry(Promise.resolve(summaries(rate)));
    await telemetry.ready;
    recordAll(telemetry);
    await telemetry.flush();
    expect(transport.ids).toEqual(IDS);
  });
});
