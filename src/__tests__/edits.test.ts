import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { EDIT_MAX_WAIT, EDIT_QUIET, EditTallies, IEditTally, countDelta } from '../edits';

let reports: [string, IEditTally, number][];
let tallies: EditTallies;

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
  reports = [];
  tallies = new EditTallies((id, tally) => reports.push([id, tally, Date.now()]));
});

afterEach(() => {
  vi.useRealTimers();
});

describe('countDelta', () => {
  it('counts inserted and deleted characters, ignoring retains', () => {
    expect(countDelta([{ retain: 5 }, { insert: 'abc' }, { delete: 2 }, { insert: 'd' }])).toEqual({
      inserted: 4,
      deleted: 2
    });
    expect(countDelta([])).toEqual({ inserted: 0, deleted: 0 });
  });
});

describe('EditTallies', () => {
  it('sums a burst of typing in one cell into one report after a pause', () => {
    for (let i = 0; i < 30; i++) {
      tallies.add('c1', [{ retain: i }, { insert: 'x' }]);
      vi.advanceTimersByTime(150);
    }
    tallies.add('c1', [{ retain: 3 }, { delete: 4 }]);
    expect(reports).toEqual([]);
    vi.advanceTimersByTime(EDIT_QUIET);
    expect(reports).toEqual([
      ['c1', { inserted: 30, deleted: 4, changes: 31, duration_ms: 4500 }, 6500]
    ]);
  });

  it('keeps cells apart', () => {
    tallies.add('a', [{ insert: 'aa' }]);
    vi.advanceTimersByTime(1000);
    tallies.add('b', [{ insert: 'b' }]);
    vi.advanceTimersByTime(EDIT_QUIET);
    expect(reports.map(([id, t]) => [id, t.inserted])).toEqual([
      ['a', 2],
      ['b', 1]
    ]);
  });

  it('reports continuous typing at least every EDIT_MAX_WAIT', () => {
    for (let t = 0; t < 65_000; t += 200) {
      tallies.add('c', [{ insert: 'x' }]);
      vi.advanceTimersByTime(200);
    }
    expect(reports.map(([, , at]) => at)).toEqual([EDIT_MAX_WAIT, 2 * EDIT_MAX_WAIT]);
    vi.advanceTimersByTime(EDIT_QUIET);
    const total = reports.reduce((n, [, t]) => n + t.inserted, 0);
    expect(total).toBe(325);
  });

  it('flushes a cell (removed) or all (the notebook closes) at once; empty deltas are no change', () => {
    tallies.add('a', [{ retain: 3 }]);
    tallies.add('a', [{ insert: 'x' }]);
    tallies.add('b', [{ delete: 1 }]);
    tallies.flush('a');
    expect(reports.map(([id]) => id)).toEqual(['a']);
    tallies.flush();
    expect(reports.map(([id, t]) => [id, t.changes])).toEqual([
      ['a', 1],
      ['b', 1]
    ]);
    vi.advanceTimersByTime(EDIT_MAX_WAIT);
    expect(reports).toHaveLength(2);
  });
});
