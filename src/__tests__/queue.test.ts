import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { IWireEvent } from '../batches';
import { EventQueue, IQueueSettings, ITransportResponse } from '../queue';
import { FakeTransport, event, events } from './fakes';

let transport: FakeTransport;

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
  transport = new FakeTransport();
  vi.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** A queue with client ids (to follow events), a backoff without randomness, else defaults. */
function makeQueue(settings: Partial<IQueueSettings> = {}): EventQueue {
  return new EventQueue(transport, { clientIds: true, ...settings }, () => 1);
}

function withoutId(e: IWireEvent): Omit<IWireEvent, 'id'> {
  const { id: _, ...rest } = e;
  return rest;
}

function pushAll(queue: EventQueue, from: number, to: number): void {
  events(from, to).forEach(e => queue.push(e));
}

describe('batching', () => {
  it('sends one batch when batchSize events are queued', async () => {
    const queue = makeQueue();
    pushAll(queue, 0, 9);
    await vi.advanceTimersByTimeAsync(0);
    expect(transport.posts).toHaveLength(0);

    queue.push(event(9));
    await vi.advanceTimersByTimeAsync(0);
    expect(transport.posts).toHaveLength(1);
    expect(transport.ids).toEqual(events(0, 10).map(e => e.id));
  });

  it('sends a partial batch flushInterval after the first event', async () => {
    const queue = makeQueue();
    pushAll(queue, 0, 2);
    await vi.advanceTimersByTimeAsync(3000);
    queue.push(event(2));
    await vi.advanceTimersByTimeAsync(1999);
    expect(transport.posts).toHaveLength(0);

    await vi.advanceTimersByTimeAsync(1);
    expect(transport.posts.map(p => p.at)).toEqual([5000]);
    expect(transport.ids).toEqual(['0', '1', '2']);
  });

  it('sends client ids and sent_at by default, not with clientIds false', async () => {
    vi.setSystemTime(Date.parse('2026-03-04T05:06:07.000Z'));
    const queue = new EventQueue(transport, { clientIds: false });
    queue.push(event(0));
    await queue.flush();
    queue.configure({ clientIds: true });
    queue.push(event(1));
    await queue.flush();
    const { at: _, ...body } = transport.posts[0];
    expect(body).toStrictEqual({ events: [withoutId(event(0))] });
    expect(transport.posts[1].sent_at).toBe('2026-03-04T05:06:07.000Z');
    expect(transport.posts[1].events[0].id).toBe('1');
    expect(new EventQueue(transport)['_settings'].clientIds).toBe(true);
  });

  it('follows new settings', async () => {
    const queue = makeQueue();
    queue.configure({ batchSize: 2, flushInterval: 100 });
    pushAll(queue, 0, 3);
    await vi.advanceTimersByTimeAsync(100);
    expect(transport.posts.map(p => p.events.length)).toEqual([2, 1]);
  });

  it('flush() sends what is queued at once, in batches of batchSize', async () => {
    const queue = makeQueue({ batchSize: 4 });
    queue.configure({ batchSize: 100 });
    pushAll(queue, 0, 3);
    queue.configure({ batchSize: 2 });
    await queue.flush();
    expect(transport.posts.map(p => p.events.length)).toEqual([2, 1]);
    expect(queue.size).toBe(0);
  });
});

describe('retries', () => {
  it('backs off exponentially on network errors and 5xx', async () => {
    transport.replies = [new TypeError('Failed to fetch'), { status: 500 }, { status: 502 }];
    const queue = makeQueue();
    pushAll(queue, 0, 10);
    await vi.advanceTimersByTimeAsync(60000);
    expect(transport.posts.map(p => p.at)).toEqual([0, 1000, 3000, 7000]);
    expect(transport.posts.every(p => p.events.length === 10)).toBe(true);
    expect(queue.size).toBe(0);
  });

  it('starts the backoff over after a success', async () => {
    transport.replies = [{ status: 500 }, {}, { status: 500 }];
    const queue = makeQueue();
    pushAll(queue, 0, 10);
    await vi.advanceTimersByTimeAsync(1000);
    pushAll(queue, 10, 20);
    await vi.advanceTimersByTimeAsync(60000);
    expect(transport.posts.map(p => p.at)).toEqual([0, 1000, 1000, 2000]);
  });

  it.each([429, 503])('waits for Retry-After on %i', async status => {
    transport.replies = [{ status, retryAfter: '7' }];
    const queue = makeQueue();
    pushAll(queue, 0, 10);
    await vi.advanceTimersByTimeAsync(6999);
    expect(transport.posts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(transport.posts.map(p => p.at)).toEqual([0, 7000]);
  });

  it('sends nothing while it waits, then everything queued', async () => {
    transport.replies = [{ status: 503, retryAfter: '7' }];
    const queue = makeQueue();
    pushAll(queue, 0, 25);
    await vi.advanceTimersByTimeAsync(6999);
    expect(transport.posts).toHaveLength(1);
    await queue.flush();
    expect(transport.posts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(transport.posts.map(p => p.events.length)).toEqual([10, 10, 10, 5]);
    expect(new Set(transport.ids).size).toBe(25);
  });

  it('retries the events a busy server rejected in a 200 with Retry-After', async () => {
    const results = [{ status: 'recorded' }, { status: 'rejected', error: 'queue is full' }];
    transport.replies = [{ retryAfter: '1', body: { results } }];
    const queue = makeQueue();
    pushAll(queue, 0, 2);
    await queue.flush();
    await vi.advanceTimersByTimeAsync(1000);
    expect(transport.posts.map(p => p.events.map(e => e.id))).toEqual([['0', '1'], ['1']]);
  });

  it('drops, and counts, events the server refuses', async () => {
    const results = [{ status: 'rejected', error: 'data.x: bad' }, { status: 'filtered' }];
    transport.replies = [{ status: 403 }, { body: { results } }];
    const queue = makeQueue({ batchSize: 1 });
    pushAll(queue, 0, 1);
    pushAll(queue, 1, 3);
    queue.configure({ batchSize: 2 });
    await vi.advanceTimersByTimeAsync(60000);
    expect(transport.posts).toHaveLength(2);
    expect(queue.counts).toEqual({ dropped: 0, rejected: 2 });
  });

  it('halves its batches after a 413', async () => {
    transport.replies = [{ status: 413 }, { status: 413 }];
    const queue = makeQueue();
    pushAll(queue, 0, 10);
    await vi.advanceTimersByTimeAsync(0);
    expect(transport.posts.map(p => p.events.length)).toEqual([10, 5, 2, 2, 2, 2, 2]);
    expect(new Set(transport.ids).size).toBe(10);
  });
});

describe('bounded queue', () => {
  it('drops the oldest events, and counts them, while the server is down', async () => {
    transport.replies = Array(20).fill(new TypeError('Failed to fetch'));
    const queue = makeQueue({ maxQueueSize: 15 });
    pushAll(queue, 0, 40);
    expect(queue.size).toBe(25); // 15 queued, 10 in flight
    await vi.advanceTimersByTimeAsync(0);
    expect(queue.size).toBe(15);
    expect(queue.counts.dropped).toBe(25);

    transport.replies = [];
    await vi.advanceTimersByTimeAsync(3600_000);
    expect(transport.posts[transport.posts.length - 1].events.map(e => e.id)).toEqual([
      '35',
      '36',
      '37',
      '38',
      '39'
    ]);
    expect(queue.size).toBe(0);
  });
});

describe('keepalive', () => {
  it('sends everything queued, the batch in flight too, in bodies under 64 KB', async () => {
    transport.post = () => new Promise(() => undefined); // never answers
    const queue = makeQueue({ batchSize: 100, clientIds: true });
    const big = Array.from({ length: 40 }, (_, i) => event(i, 3000)); // ~6 KB each
    big.forEach(e => queue.push(e));
    void queue.flush();
    queue.push(event('late'));
    queue.flushKeepalive(new Date('2026-01-01T00:00:00.000Z'));

    const sizes = transport.keepalives.map(b => new TextEncoder().encode(b).length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(64000);
    expect(sizes.length).toBeGreaterThan(1);
    expect(transport.keepaliveIds).toEqual([...big.map(e => e.id), 'late']);
    expect(JSON.parse(transport.keepalives[0]).sent_at).toBe('2026-01-01T00:00:00.000Z');
    expect(queue.size).toBe(0);
  });

  it('leaves the batch in flight to its request without client ids', async () => {
    transport.post = () => new Promise(() => undefined); // never answers
    const queue = makeQueue({ clientIds: false });
    pushAll(queue, 0, 12);
    queue.flushKeepalive();
    expect(JSON.parse(transport.keepalives[0])).toStrictEqual({
      events: [event(10), event(11)].map(withoutId)
    });
  });

  it('keeps at most batchSize events a body', () => {
    const queue = makeQueue({ batchSize: 100 });
    pushAll(queue, 0, 25);
    queue.configure({ batchSize: 10 });
    queue.flushKeepalive();
    expect(transport.keepalives.map(b => JSON.parse(b).events.length)).toEqual([10, 10, 5]);
  });

  it('counts an event too large for any keepalive body as rejected', () => {
    const queue = makeQueue({ clientIds: true });
    queue.push(event('huge', 40000)); // ~80 KB in UTF-8
    queue.push(event('small'));
    queue.flushKeepalive();
    expect(transport.keepaliveIds).toEqual(['small']);
    expect(queue.counts.rejected).toBe(1);
  });

  it('does not send again a batch it handed to keepalive, nor wait for a retry', async () => {
    let answer: (value: ITransportResponse) => void = () => undefined;
    transport.replies = [{ status: 503, retryAfter: '60' }];
    const queue = makeQueue({ clientIds: true });
    pushAll(queue, 0, 10);
    await vi.advanceTimersByTimeAsync(0);
    queue.push(event(10));
    queue.flushKeepalive();
    expect(transport.keepaliveIds).toEqual(events(0, 11).map(e => e.id));

    transport.post = body => {
      transport.posts.push({ ...JSON.parse(body), at: Date.now() });
      return new Promise(resolve => (answer = resolve));
    };
    queue.push(event(11));
    void queue.flush();
    queue.flushKeepalive();
    answer({ status: 500, retryAfter: null, body: null });
    await vi.advanceTimersByTimeAsync(60000);
    expect(transport.posts.map(p => p.events.map(e => e.id))).toEqual([
      events(0, 10).map(e => e.id),
      ['11']
    ]);
    expect(transport.keepaliveIds).toEqual([...events(0, 11).map(e => e.id), '11']);
  });
});
