/**
 * The event queue: batching, retries with backoff, a bounded memory, and the keepalive flush.
 *
 * It knows nothing of JupyterLab: requests go through an `ITransport`.
 */
import { backoffDelay, parseRetryAfter } from './backoff';
import { IWireEvent, batchBody, splitBySize } from './batches';

/**
 * What the server answered to a batch.
 */
export interface ITransportResponse {
  status: number;
  /** The `Retry-After` header, or null. */
  retryAfter: string | null;
  /** The parsed JSON body, or null. */
  body: unknown;
}

/**
 * How batches reach the server.
 */
export interface ITransport {
  /** POST a batch body; rejects on a network error. */
  post(body: string): Promise<ITransportResponse>;
  /** POST a batch body with `fetch(..., {keepalive: true})`, which outlives the page. */
  postKeepalive(body: string): void;
}

/**
 * Batching and retry settings; times in milliseconds.
 */
export interface IQueueSettings {
  /** Send when this many events are queued (default 10). */
  batchSize: number;
  /** Send this long after the first event was queued (default 5000). */
  flushInterval: number;
  /** Most events kept while the server is unreachable; the oldest are dropped (default 1000). */
  maxQueueSize: number;
  /** The first retry's delay (default 1000); each later one doubles, up to `backoffMax`. */
  backoffBase: number;
  /** The longest delay between retries (default 60000). */
  backoffMax: number;
  /** Largest keepalive body in bytes (default 64000): browsers cap keepalive bodies at 64 KiB. */
  keepaliveMaxBytes: number;
  /**
   * Send each event's client `id` and each batch's `sent_at` (default true): the server drops
   * retried duplicates by id and corrects the client clock's skew. When true, the keepalive
   * flush also resends the batch in flight, which may have been cut off. False: for servers
   * older than jupyter_telemetry_ext 0.1, which refuse both fields.
   */
  clientIds: boolean;
}

export const DEFAULT_SETTINGS: IQueueSettings = {
  batchSize: 10,
  flushInterval: 5000,
  maxQueueSize: 1000,
  backoffBase: 1000,
  backoffMax: 60000,
  keepaliveMaxBytes: 64000,
  clientIds: true
};

/**
 * How many events were lost, and why.
 */
export interface IQueueCounts {
  /** Dropped, oldest first, because the queue was full. */
  dropped: number;
  /** Refused by the server (a 4xx, or "rejected" in the reply), or too large for keepalive. */
  rejected: number;
}

type Timer = ReturnType<typeof setTimeout>;

/**
 * Queues events and posts them in batches, one request at a time.
 */
export class EventQueue {
  readonly counts: IQueueCounts = { dropped: 0, rejected: 0 };

  constructor(
    private readonly _transport: ITransport,
    settings: Partial<IQueueSettings> = {},
    private readonly _random: () => number = Math.random
  ) {
    this._settings = { ...DEFAULT_SETTINGS, ...settings };
  }

  /** How many events wait to be sent, the batch being sent included. */
  get size(): number {
    return this._events.length + (this._inflight?.length ?? 0);
  }

  /** Whether posted events carry their client `id` (the `clientIds` setting). */
  get sendsIds(): boolean {
    return this._settings.clientIds;
  }

  /** Change batching and retry settings; they apply from the next event or send. */
  configure(settings: Partial<IQueueSettings>): void {
    this._settings = { ...this._settings, ...settings };
    this._trim();
  }

  /** Queue an event; send when a batch is full, else within the flush interval. */
  push(event: IWireEvent): void {
    this._events.push(event);
    this._trim();
    if (this._retryTimer !== null) {
      return; // the retry sends it
    }
    if (this._events.length >= this._settings.batchSize) {
      void this.flush();
    } else if (this._flushTimer === null) {
      this._flushTimer = setTimeout(() => void this.flush(), this._settings.flushInterval);
    }
  }

  /** Send every queued event; resolves when sent or when a failure scheduled a retry. */
  flush(): Promise<void> {
    if (this._sending === null) {
      this._sending = this._drain().finally(() => {
        this._sending = null;
      });
    }
    return this._sending;
  }

  /**
   * Hand every queued event to keepalive requests: the page is going away. With `clientIds`,
   * the batch in flight too: the server drops it by event id if the first request arrived.
   */
  flushKeepalive(now: Date = new Date()): void {
    const { keepaliveMaxBytes, batchSize, clientIds } = this._settings;
    let events = this._events;
    if (clientIds && this._inflight !== null) {
      events = [...this._inflight, ...events];
      this._inflight = null;
    }
    this._events = [];
    this._clearTimers();
    const sentAt = this._sentAt(now);
    const split = splitBySize(events, keepaliveMaxBytes, this._batchLimit(batchSize), sentAt);
    this.counts.rejected += split.tooLarge.length;
    for (const batch of split.batches) {
      this._transport.postKeepalive(batchBody(batch, sentAt));
    }
  }

  /** Stop the timers; queued events stay queued. */
  dispose(): void {
    this._clearTimers();
  }

  private async _drain(): Promise<void> {
    this._clearFlushTimer();
    while (this._events.length > 0 && this._retryTimer === null) {
      const batch = this._events.splice(0, this._batchLimit(this._settings.batchSize));
      this._inflight = batch;
      const response = await this._post(batch);
      if (this._inflight !== batch) {
        continue; // flushKeepalive took it
      }
      this._inflight = null;
      this._settle(batch, response);
    }
  }

  private async _post(batch: IWireEvent[]): Promise<ITransportResponse | null> {
    try {
      return await this._transport.post(batchBody(batch, this._sentAt(new Date())));
    } catch {
      return null; // a network error: retried
    }
  }

  private _settle(batch: IWireEvent[], response: ITransportResponse | null): void {
    if (response === null || (response.status >= 500 && response.status !== 503)) {
      this._retry(batch, null);
    } else if (response.status === 429 || response.status === 503) {
      this._retry(batch, response.retryAfter);
    } else if (response.status === 413 && batch.length > 1) {
      this._maxBatch = Math.max(1, Math.floor(batch.length / 2));
      this._events.unshift(...batch);
    } else if (response.status >= 400) {
      this._reject(batch.length, response);
    } else {
      this._accept(batch, response);
    }
  }

  private _accept(batch: IWireEvent[], response: ITransportResponse): void {
    this._attempt = 0;
    const results = resultsOf(response.body);
    const refused = batch.filter((_, i) => results[i]?.status === 'rejected');
    if (refused.length === 0) {
      return;
    }
    if (response.retryAfter !== null) {
      // A 200 with Retry-After: the server's queue was full for these; they may pass later.
      this._retry(refused, response.retryAfter);
    } else {
      this._reject(refused.length, response);
    }
  }

  private _reject(count: number, response: ITransportResponse): void {
    this.counts.rejected += count;
    console.warn(`Telemetry: the server refused ${count} event(s)`, response.status, response.body);
  }

  private _retry(events: IWireEvent[], retryAfter: string | null): void {
    this._events.unshift(...events);
    this._trim();
    this._attempt += 1;
    const { backoffBase, backoffMax } = this._settings;
    const delay =
      parseRetryAfter(retryAfter) ??
      backoffDelay(this._attempt, backoffBase, backoffMax, this._random);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      void this.flush();
    }, delay);
  }

  private _sentAt(now: Date): string | null {
    return this._settings.clientIds ? now.toISOString() : null;
  }

  private _batchLimit(batchSize: number): number {
    return Math.max(1, Math.min(batchSize, this._maxBatch));
  }

  private _trim(): void {
    const excess = this._events.length - this._settings.maxQueueSize;
    if (excess > 0) {
      this._events.splice(0, excess);
      this.counts.dropped += excess;
    }
  }

  private _clearFlushTimer(): void {
    if (this._flushTimer !== null) {
      clearTimeout(this._flushTimer);
      this._flushTimer = null;
    }
  }

  private _clearTimers(): void {
    this._clearFlushTimer();
    if (this._retryTimer !== null) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }

  private _settings: IQueueSettings;
  private _events: IWireEvent[] = [];
  private _inflight: IWireEvent[] | null = null;
  private _sending: Promise<void> | null = null;
  private _flushTimer: Timer | null = null;
  private _retryTimer: Timer | null = null;
  private _attempt = 0;
  private _maxBatch = Infinity;
}

/**
 * The per-event results of a batch reply, or an empty list.
 */
function resultsOf(body: unknown): { status?: unknown }[] {
  const results = (body as { results?: unknown } | null)?.results;
  return Array.isArray(results) ? results : [];
}
