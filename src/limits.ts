/**
 * The size limit of one event: content fields are cut to fit, and an event that cannot fit is
 * refused; both are counted by reason.
 */

/** The largest event, as JSON on the wire (UTF-8), in bytes. */
export const MAX_EVENT_BYTES = 32 * 1024;
/** Room left for the envelope (schema id, version, id, timestamp) around the data. */
const ENVELOPE_BYTES = 512;

const encoder = new TextEncoder();

function bytes(value: unknown): number {
  return encoder.encode(JSON.stringify(value)).length;
}

/** Why an event was changed or dropped for its size. */
export type SizeReason = 'cut' | 'refused';

/**
 * Fits events' data under MAX_EVENT_BYTES and counts what it had to do.
 */
export class SizeLimit {
  constructor(readonly maxBytes = MAX_EVENT_BYTES - ENVELOPE_BYTES) {}

  /** How many events were cut or refused, by reason. */
  readonly counts: Record<SizeReason, number> = { cut: 0, refused: 0 };

  /**
   * The data, or a copy with `content` (a string property) cut and `truncated: true`, that
   * fits; null (refused) when even the cut data does not.
   */
  fit(data: Record<string, unknown>, content?: string): Record<string, unknown> | null {
    if (bytes(data) <= this.maxBytes) {
      return data;
    }
    const text = content === undefined ? undefined : data[content];
    if (typeof text === 'string' && content !== undefined) {
      const cut = this._cut(data, content, text);
      if (cut) {
        this.counts.cut += 1;
        return cut;
      }
    }
    this.counts.refused += 1;
    return null;
  }

  /** The longest prefix of the content that fits, by bisection; null if none does. */
  private _cut(
    data: Record<string, unknown>,
    key: string,
    text: string
  ): Record<string, unknown> | null {
    const withText = (n: number) => ({ ...data, [key]: safeSlice(text, n), truncated: true });
    if (bytes(withText(0)) > this.maxBytes) {
      return null;
    }
    let low = 0;
    let high = text.length;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (bytes(withText(middle)) <= this.maxBytes) {
        low = middle;
      } else {
        high = middle - 1;
      }
    }
    return withText(low);
  }
}

/** The first n UTF-16 units of a string, without splitting a surrogate pair. */
export function safeSlice(text: string, n: number): string {
  const code = text.charCodeAt(n - 1);
  return code >= 0xd800 && code <= 0xdbff ? text.slice(0, n - 1) : text.slice(0, n);
}
