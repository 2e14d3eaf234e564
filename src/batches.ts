/**
 * What goes on the wire: an event as posted, a batch's body, and splitting by size.
 */

/**
 * One event as posted in a batch.
 */
export interface IWireEvent {
  schema_id: string;
  version: number | string;
  data: Record<string, unknown>;
  id: string;
  timestamp: string;
}

/**
 * A batch's request body. With `sentAt`, the body carries each event's client `id` (the server
 * drops duplicates by it) and the batch's `sent_at` (it corrects the client clock's skew);
 * without, neither, for servers that do not take them yet.
 */
export function batchBody(events: IWireEvent[], sentAt: string | null): string {
  if (sentAt === null) {
    return JSON.stringify({ events: events.map(({ id: _, ...event }) => event) });
  }
  return JSON.stringify({ events, sent_at: sentAt });
}

/**
 * Events split into batches whose bodies are at most `maxBytes` (UTF-8) and `maxEvents` long.
 */
export interface ISplit {
  batches: IWireEvent[][];
  /** Events whose body alone would be over `maxBytes`. */
  tooLarge: IWireEvent[];
}

const encoder = new TextEncoder();

function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/**
 * Split events, in order, into batches that each fit `maxBytes` and `maxEvents`.
 */
export function splitBySize(
  events: IWireEvent[],
  maxBytes: number,
  maxEvents: number,
  sentAt: string | null
): ISplit {
  const overhead = byteLength(batchBody([], sentAt));
  const split: ISplit = { batches: [], tooLarge: [] };
  let batch: IWireEvent[] = [];
  let size = overhead;
  for (const event of events) {
    const eventSize = byteLength(JSON.stringify(event)) + 1; // + the separating comma
    if (overhead + eventSize > maxBytes) {
      split.tooLarge.push(event);
      continue;
    }
    if (batch.length === maxEvents || size + eventSize > maxBytes) {
      split.batches.push(batch);
      batch = [];
      size = overhead;
    }
    batch.push(event);
    size += eventSize;
  }
  if (batch.length > 0) {
    split.batches.push(batch);
  }
  return split;
}
