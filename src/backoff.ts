/**
 * When to try again: exponential backoff and the `Retry-After` header.
 */

/**
 * The delay before retry number `attempt` (1, 2, ...): `base * 2^(attempt - 1)`, capped at
 * `max`, scaled by a random factor in [0.5, 1] so that many clients do not retry in step.
 */
export function backoffDelay(
  attempt: number,
  base: number,
  max: number,
  random: () => number = Math.random
): number {
  const delay = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.round(delay * (0.5 + random() / 2));
}

/**
 * The delay a `Retry-After` header asks for, in milliseconds: delta-seconds or an HTTP date.
 * Returns `null` when the header is missing or unreadable.
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null || value.trim() === '') {
    return null;
  }
  const text = value.trim();
  if (/^\d+$/.test(text)) {
    return Number(text) * 1000;
  }
  const date = /[a-z]/i.test(text) ? Date.parse(text) : NaN; // an HTTP date names its month
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}
