import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ACTIVE_CELL_QUIET, SCROLL_INTERVAL, SCROLL_QUIET } from '../research';
import { Debouncer } from '../timing';

vi.mock('@jupyterlab/notebook', () => ({ NotebookPanel: class {} }));

let fired: number[];

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
  fired = [];
});

afterEach(() => {
  vi.useRealTimers();
});

function debouncer(options: ConstructorParameters<typeof Debouncer>[1]): Debouncer {
  return new Debouncer(() => fired.push(Date.now()), options);
}

describe('Debouncer', () => {
  it('calls once, after the quiet time that follows the last trigger', () => {
    const d = debouncer({ quiet: 500 });
    for (let t = 0; t < 2000; t += 100) {
      d.trigger();
      vi.advanceTimersByTime(100);
    }
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(400);
    expect(fired).toEqual([2400]);
    expect(d.pending).toBe(false);
  });

  it('calls no later than maxWait after the first trigger of a burst', () => {
    const d = debouncer({ quiet: 2000, maxWait: 5000 });
    for (let t = 0; t < 12_000; t += 500) {
      d.trigger();
      vi.advanceTimersByTime(500);
    }
    vi.advanceTimersByTime(5000);
    expect(fired).toEqual([5000, 10_000, 13_500]);
  });

  it('leaves at least minInterval between two calls', () => {
    const d = debouncer({ quiet: 100, minInterval: 1500 });
    d.trigger();
    vi.advanceTimersByTime(200);
    d.trigger();
    vi.advanceTimersByTime(200);
    expect(fired).toEqual([100]);
    vi.advanceTimersByTime(2000);
    expect(fired).toEqual([100, 1600]);
  });

  it('flush calls at once when pending and not otherwise; dispose cancels', () => {
    const d = debouncer({ quiet: 1000 });
    d.flush();
    expect(fired).toEqual([]);
    d.trigger();
    d.flush();
    expect(fired).toEqual([0]);
    d.trigger();
    d.dispose();
    vi.advanceTimersByTime(5000);
    expect(fired).toEqual([0]);
  });
});

describe('the recorders timings', () => {
  it('scroll: continuous scrolling for 10 s gives at most one event per 1.5 s', () => {
    const d = debouncer({ quiet: SCROLL_QUIET, minInterval: SCROLL_INTERVAL });
    // A scroll event every 16 ms, with a 600 ms pause every 2 s.
    for (let t = 0; t < 10_000; t += 16) {
      if (t % 2000 < 1400) {
        d.trigger();
      }
      vi.advanceTimersByTime(16);
    }
    vi.advanceTimersByTime(3000);
    expect(fired.length).toBeGreaterThan(2);
    fired
      .slice(1)
      .forEach((at, i) => expect(at - fired[i]).toBeGreaterThanOrEqual(SCROLL_INTERVAL));
  });

  it('active cell: moving through cells quickly reports only where the user stays', () => {
    const d = debouncer({ quiet: ACTIVE_CELL_QUIET });
    for (let i = 0; i < 20; i++) {
      d.trigger();
      vi.advanceTimersByTime(100);
    }
    vi.advanceTimersByTime(ACTIVE_CELL_QUIET);
    expect(fired).toHaveLength(1);
  });
});
