import { describe, expect, it } from 'vitest';

import { backoffDelay, parseRetryAfter } from '../backoff';

describe('backoffDelay', () => {
  it('doubles from the base and stops at the cap', () => {
    const delays = [1, 2, 3, 4, 8, 30].map(n => backoffDelay(n, 1000, 30000, () => 1));
    expect(delays).toEqual([1000, 2000, 4000, 8000, 30000, 30000]);
  });

  it('takes a random part of the delay, never less than half', () => {
    expect(backoffDelay(3, 1000, 30000, () => 0)).toBe(2000);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it.each([
    ['7', 7000],
    [' 0 ', 0],
    ['Thu, 01 Jan 2026 00:00:30 GMT', 30000],
    ['Wed, 31 Dec 2025 23:59:00 GMT', 0]
  ])('reads %j as %i ms', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });

  it.each([null, '', 'soon', '-3'])('ignores %j', value => {
    expect(parseRetryAfter(value, now)).toBeNull();
  });
});
