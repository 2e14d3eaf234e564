/**
 * Debouncing: one call after a burst of triggers, with a floor between calls and a ceiling on
 * how long a burst may delay it.
 */

export interface IDebounceOptions {
  /** Milliseconds without a trigger before the call. */
  quiet: number;
  /** Fewest milliseconds between two calls; 0 for no floor. */
  minInterval?: number;
  /** Most milliseconds from a burst's first trigger to its call; 0 for no ceiling. */
  maxWait?: number;
}

/**
 * Calls `fire` once per burst of `trigger()` calls.
 */
export class Debouncer {
  constructor(
    private readonly _fire: () => void,
    private readonly _options: IDebounceOptions
  ) {}

  /** Whether a call is scheduled. */
  get pending(): boolean {
    return this._first !== null;
  }

  /** Note a trigger: (re)schedule the call. */
  trigger(): void {
    const now = Date.now();
    this._first ??= now;
    const { quiet, minInterval = 0, maxWait = 0 } = this._options;
    let due = now + quiet;
    if (maxWait > 0) {
      due = Math.min(due, this._first + maxWait);
    }
    if (minInterval > 0 && this._last !== null) {
      due = Math.max(due, this._last + minInterval);
    }
    this._schedule(due - now);
  }

  /** Call now if a call is scheduled. */
  flush(): void {
    if (this._first === null) {
      return;
    }
    this._cancel();
    this._first = null;
    this._last = Date.now();
    this._fire();
  }

  /** Drop the scheduled call. */
  dispose(): void {
    this._cancel();
    this._first = null;
  }

  private _schedule(delay: number): void {
    this._cancel();
    this._timer = setTimeout(() => this.flush(), Math.max(0, delay));
  }

  private _cancel(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _first: number | null = null;
  private _last: number | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
}
