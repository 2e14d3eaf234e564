/**
 * Active time: how long a user worked in a notebook, from focus, visibility and input with an
 * idle timeout.
 */

/**
 * One notebook's active milliseconds: those spent in the foreground with the user's last
 * input less than `idleTimeout` ago.
 */
export class ActiveTime {
  constructor(
    readonly idleTimeout: number,
    now: number
  ) {
    this._mark = now;
    this._periodStart = now;
  }

  /** Account the time up to `now` under the old state, then take the new one. */
  update(now: number, foreground: boolean, lastInput: number | null): void {
    this._accrue(now);
    this._foreground = foreground;
    this._lastInput = lastInput;
  }

  /** The active and total milliseconds since the previous take (or the start); restarts both. */
  take(now: number): { active: number; period: number } {
    this._accrue(now);
    const taken = { active: this._active, period: now - this._periodStart };
    this._active = 0;
    this._periodStart = now;
    return taken;
  }

  private _accrue(now: number): void {
    if (this._foreground && this._lastInput !== null) {
      const end = Math.min(now, this._lastInput + this.idleTimeout);
      this._active += Math.max(0, end - this._mark);
    }
    this._mark = Math.max(this._mark, now);
  }

  private _foreground = false;
  private _lastInput: number | null = null;
  private _mark: number;
  private _periodStart: number;
  private _active = 0;
}

/**
 * The active time of every open notebook, fed with the page's input and foreground state.
 */
export class Activity<K> {
  /**
   * @param idleTimeout milliseconds after the last input that still count as active, read
   * when a notebook is added.
   * @param foreground whether a notebook is in front (its tab current, the page visible and
   * focused) right now.
   */
  constructor(
    private readonly _idleTimeout: () => number,
    private readonly _foreground: (key: K) => boolean
  ) {}

  /** Start measuring a notebook. */
  add(key: K, now: number): void {
    const time = new ActiveTime(this._idleTimeout(), now);
    time.update(now, this._foreground(key), this._lastInput);
    this._times.set(key, time);
  }

  /** Stop measuring a notebook; return its last summary. */
  remove(key: K, now: number): { active: number; period: number } | null {
    const time = this._times.get(key);
    this._times.delete(key);
    return time ? time.take(now) : null;
  }

  /** The user did something (a key, a click, a scroll). */
  input(now: number): void {
    this._refresh(now, now);
  }

  /** The foreground may have changed (a tab switch, focus, visibility). */
  refresh(now: number): void {
    this._refresh(now, this._lastInput);
  }

  /** Every notebook's summary since its previous one. */
  take(now: number): Map<K, { active: number; period: number }> {
    this.refresh(now);
    return new Map([...this._times].map(([key, time]) => [key, time.take(now)]));
  }

  private _refresh(now: number, lastInput: number | null): void {
    this._lastInput = lastInput;
    for (const [key, time] of this._times) {
      time.update(now, this._foreground(key), lastInput);
    }
  }

  private _lastInput: number | null = null;
  private readonly _times = new Map<K, ActiveTime>();
}
