/**
 * The ITelemetry implementation: stamps events, drops unrecorded schemas and the events the
 * server's sampling drops, queues the rest.
 */
import { UUID } from '@lumino/coreutils';

import { IWireEvent } from './batches';
import { EventQueue } from './queue';
import { ISchemaSummary, RecordedSchemas } from './schemas';
import { ITelemetry, ITelemetryEvent } from './tokens';

/** Most events kept while the schema list is being read. */
const MAX_PENDING = 1000;

/**
 * Records events into an EventQueue once the server's schema list is known.
 */
export class Telemetry implements ITelemetry {
  /**
   * @param queue where accepted events go.
   * @param schemas the server's schema list (null if it could not be read).
   * @param makeId the client id of an event recorded without one.
   */
  constructor(
    private readonly _queue: EventQueue,
    schemas: Promise<ISchemaSummary[] | null>,
    private readonly _makeId: () => string = UUID.uuid4
  ) {
    this.ready = schemas.then(list => this._start(new RecordedSchemas(list)));
  }

  /** Resolves when the schema list was read and the events recorded before it were sorted. */
  readonly ready: Promise<void>;

  /** Whether events of this schema version are sent; undefined until `ready`. */
  accepts(schemaId: string, version: number | string): boolean | undefined {
    return this._recorded?.accepts(schemaId, version);
  }

  record(event: ITelemetryEvent): void {
    const data = snapshot(event.data);
    if (data === null) {
      console.warn('Telemetry: the data of an event of', event.schema_id, 'is not JSON; dropped');
      return;
    }
    const wire: IWireEvent = {
      schema_id: event.schema_id,
      version: event.version,
      data,
      id: event.id ?? this._makeId(),
      timestamp: new Date().toISOString()
    };
    if (this._recorded === null) {
      this._pending.push(wire);
      this._pending.splice(0, this._pending.length - MAX_PENDING);
    } else if (this._sends(this._recorded, wire)) {
      this._queue.push(wire);
    }
  }

  /**
   * Read the schema list again (after a consent decision): events recorded from then on are
   * sent by the new one. Kept as it was when the new one cannot be read.
   */
  async reload(schemas: Promise<ISchemaSummary[] | null>): Promise<void> {
    await this.ready;
    const list = await schemas;
    if (list !== null) {
      this._recorded = new RecordedSchemas(list);
    }
  }

  async flush(): Promise<void> {
    await this.ready;
    await this._queue.flush();
  }

  /** Send everything now with keepalive requests: the page is being hidden or closed. */
  flushKeepalive(): void {
    // Before the schema list arrives, let the server sort the pending events.
    this._pending.splice(0).forEach(event => this._queue.push(event));
    this._queue.flushKeepalive();
  }

  private _start(recorded: RecordedSchemas): void {
    this._recorded = recorded;
    for (const event of this._pending.splice(0)) {
      if (this._sends(recorded, event)) {
        this._queue.push(event);
      }
    }
  }

  /**
   * Whether the server would record the event: its schema, and its sampling by id. Without
   * ids on the wire the server samples at random, so the client leaves sampling to it.
   */
  private _sends(recorded: RecordedSchemas, event: IWireEvent): boolean {
    const refusal = recorded.refusal(event.schema_id, event.version);
    if (refusal !== undefined) {
      this._explain(event.schema_id, refusal);
      return false;
    }
    return !this._queue.sendsIds || recorded.keeps(event.schema_id, event.id);
  }

  /** Say once per schema, at debug level, why its events are dropped without a request. */
  private _explain(schemaId: string, refusal: string): void {
    if (!this._explained.has(schemaId)) {
      this._explained.add(schemaId);
      console.debug(`Telemetry: events of ${schemaId} are dropped, not sent: ${refusal}`);
    }
  }

  private _recorded: RecordedSchemas | null = null;
  private readonly _explained = new Set<string>();
  private readonly _pending: IWireEvent[] = [];
}

/**
 * A JSON copy of the data, so later changes by the caller do not reach the queued event;
 * null when it is not JSON (a cycle, a BigInt).
 */
function snapshot(data: Record<string, unknown>): Record<string, unknown> | null {
  try {
    return JSON.parse(JSON.stringify(data));
  } catch {
    return null;
  }
}
