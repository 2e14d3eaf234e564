/**
 * Notebook structure: which cells were added, removed, moved or changed type between two
 * snapshots of a notebook's cell list.
 */

/** A cell in a snapshot: its id, its type and its model (a new model means a reinsertion). */
export interface ICellEntry {
  id: string;
  type: string;
  model: object;
}

/** One structural change. */
export interface IStructureChange {
  action: 'added' | 'removed' | 'moved' | 'type-changed';
  cell_id: string;
  cell_type: string;
  index: number;
  previous_index?: number;
  previous_type?: string;
}

/**
 * The changes from `before` to `after`. JupyterLab moves a cell and changes its type by
 * deleting it and inserting a new model with the same id: same id, new model.
 */
export function diffCells(
  before: readonly ICellEntry[],
  after: readonly ICellEntry[]
): IStructureChange[] {
  const old = new Map(before.map((cell, index) => [cell.id, { cell, index }]));
  const now = new Set(after.map(cell => cell.id));
  const changes: IStructureChange[] = [];
  before.forEach((cell, index) => {
    if (!now.has(cell.id)) {
      changes.push({ action: 'removed', cell_id: cell.id, cell_type: cell.type, index });
    }
  });
  after.forEach((cell, index) => {
    const was = old.get(cell.id);
    const base = { cell_id: cell.id, cell_type: cell.type, index };
    if (!was) {
      changes.push({ action: 'added', ...base });
    } else if (was.cell.type !== cell.type) {
      changes.push({ action: 'type-changed', ...base, previous_type: was.cell.type });
    } else if (was.cell.model !== cell.model) {
      changes.push({ action: 'moved', ...base, previous_index: was.index });
    }
  });
  return changes;
}
