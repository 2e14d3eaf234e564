/**
 * Cell edits: characters inserted and deleted, summed per cell between two edit events.
 */
import { Debouncer } from './timing';

/** One step of a text delta (Yjs), as a cell's `sourceChange` carries it. */
export interface IDeltaStep {
  insert?: unknown;
  delete?: number;
  retain?: number;
}

/** What a burst of changes to one cell added up to. */
export interface IEditTally {
  inserted: number;
  deleted: number;
  changes: number;
  duration_ms: number;
}

/**
 * The characters a delta inserts and deletes.
 */
export function countDelta(delta: readonly IDeltaStep[]): { inserted: number; deleted: number } {
  let inserted = 0;
  let deleted = 0;
  for (const step of delta) {
    if (typeof step.insert === 'string') {
      inserted += step.insert.length;
    } else if (Array.isArray(step.insert)) {
      inserted += step.insert.length;
    }
    deleted += step.delete ?? 0;
  }
  return { inserted, deleted };
}

/** When a cell's edits are reported: after a pause in typing, at most this long after the first. */
export const EDIT_QUIET = 2000;
export const EDIT_MAX_WAIT = 30000;

/**
 * Sums each cell's changes and reports them once per burst, by cell id.
 */
export class EditTallies {
  /**
   * @param report called with a cell id and its tally after each burst.
   */
  constructor(
    private readonly _report: (cellId: string, tally: IEditTally) => void,
    private readonly _timing = { quiet: EDIT_QUIET, maxWait: EDIT_MAX_WAIT }
  ) {}

  /** Note one change to a cell. */
  add(cellId: string, delta: readonly IDeltaStep[]): void {
    const { inserted, deleted } = countDelta(delta);
    if (inserted === 0 && deleted === 0) {
      return;
    }
    let entry = this._entries.get(cellId);
    if (!entry) {
      const fresh = { tally: { inserted: 0, deleted: 0, changes: 0, duration_ms: 0 }, start: 0 };
      const debouncer = new Debouncer(() => this._fire(cellId), this._timing);
      entry = { ...fresh, debouncer };
      this._entries.set(cellId, entry);
    }
    const now = Date.now();
    if (entry.tally.changes === 0) {
      entry.start = now;
    }
    entry.tally.inserted += inserted;
    entry.tally.deleted += deleted;
    entry.tally.changes += 1;
    entry.tally.duration_ms = now - entry.start;
    entry.debouncer.trigger();
  }

  /** Report a cell's pending edits now (it is being removed), or every cell's. */
  flush(cellId?: string): void {
    const ids = cellId === undefined ? [...this._entries.keys()] : [cellId];
    ids.forEach(id => this._entries.get(id)?.debouncer.flush());
  }

  private _fire(cellId: string): void {
    const entry = this._entries.get(cellId);
    if (entry) {
      this._entries.delete(cellId);
      this._report(cellId, entry.tally);
    }
  }

  private readonly _entries = new Map<
    string,
    { tally: IEditTally; start: number; debouncer: Debouncer }
  >();
}
