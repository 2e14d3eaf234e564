import { Token } from '@lumino/coreutils';

/**
 * One event for the server's `POST api/telemetry/events`.
 */
export interface ITelemetryEvent {
  /** The schema's `$id`, as `GET api/telemetry/schemas` lists it. */
  schema_id: string;
  /** The schema version; `1` and `"1"` are the same version. */
  version: number | string;
  /** The event's data, valid against the schema. */
  data: Record<string, unknown>;
  /**
   * A client id the server uses to drop duplicates, made (a UUID) if omitted: an opaque token of
   * 1 to 64 letters, digits, `-` or `_`; the server refuses any other.
   */
  id?: string;
}

/**
 * The telemetry client: records events, batches them and posts them to the server.
 */
export interface ITelemetry {
  /**
   * Queue an event. Events of schemas the server does not record are dropped here; nothing
   * else is checked client-side. Returns at once: sending happens in the background.
   */
  record(event: ITelemetryEvent): void;

  /**
   * Send the queued events now. Resolves when they were sent, or when a failure scheduled
   * a retry; never rejects.
   */
  flush(): Promise<void>;

  /**
   * Whether the server records events of this schema version; undefined while its schema list
   * is being read. Optional: recorders that have it skip work the server would not record.
   */
  accepts?(schemaId: string, version: number | string): boolean | undefined;
}

/**
 * The token of the telemetry client, shared by every extension that requires it.
 */
export const ITelemetry = new Token<ITelemetry>(
  'jupyter-telemetry-ext:ITelemetry',
  'Records telemetry events and posts them, batched, to the jupyter_telemetry_ext server extension.'
);
