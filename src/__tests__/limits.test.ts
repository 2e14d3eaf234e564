import { describe, expect, it } from 'vitest';

import { MAX_EVENT_BYTES, SizeLimit, safeSlice } from '../limits';

const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).length;

describe('SizeLimit', () => {
  it('passes small events unchanged', () => {
    const limit = new SizeLimit();
    const data = { action: 'edited', source: 'x = 1' };
    expect(limit.fit(data, 'source')).toBe(data);
    expect(limit.counts).toEqual({ cut: 0, refused: 0 });
  });

  it('cuts the content to the longest prefix that fits, marks it, counts it', () => {
    const limit = new SizeLimit();
    // Multi-byte and escaped characters: the limit is on UTF-8 JSON bytes.
    const source = 'é"\n'.repeat(20_000);
    const fitted = limit.fit({ action: 'edited', source_length: source.length, source }, 'source');
    expect(fitted).not.toBeNull();
    expect(fitted?.truncated).toBe(true);
    expect(source.startsWith(fitted?.source as string)).toBe(true);
    expect(bytes(fitted)).toBeLessThanOrEqual(limit.maxBytes);
    expect(bytes(fitted)).toBeGreaterThan(limit.maxBytes - 8);
    expect(limit.maxBytes).toBeLessThan(MAX_EVENT_BYTES);
    expect(limit.counts).toEqual({ cut: 1, refused: 0 });
  });

  it('refuses, and counts, an event without content that does not fit', () => {
    const limit = new SizeLimit(1000);
    expect(limit.fit({ cell_ids: Array(200).fill('x'.repeat(64)) })).toBeNull();
    expect(limit.fit({ source: 'x'.repeat(2000), other: 'y'.repeat(2000) }, 'source')).toBeNull();
    expect(limit.counts).toEqual({ cut: 0, refused: 2 });
  });

  it('never splits a surrogate pair', () => {
    expect(safeSlice('a😀b', 2)).toBe('a');
    expect(safeSlice('a😀b', 3)).toBe('a😀');
  });
});
