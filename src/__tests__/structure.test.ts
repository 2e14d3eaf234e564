import { describe, expect, it } from 'vitest';

import { ICellEntry, diffCells } from '../structure';

function cell(id: string, type = 'code'): ICellEntry {
  return { id, type, model: {} };
}

describe('diffCells', () => {
  const a = cell('a');
  const b = cell('b', 'markdown');
  const c = cell('c');

  it('no change: nothing', () => {
    expect(diffCells([a, b, c], [a, b, c])).toEqual([]);
  });

  it('added and removed, with their positions', () => {
    const d = cell('d');
    expect(diffCells([a, b, c], [a, d, c])).toEqual([
      { action: 'removed', cell_id: 'b', cell_type: 'markdown', index: 1 },
      { action: 'added', cell_id: 'd', cell_type: 'code', index: 1 }
    ]);
  });

  it('a move is the same id with a new model (JupyterLab reinserts it)', () => {
    const moved = { ...a, model: {} };
    expect(diffCells([a, b, c], [b, c, moved])).toEqual([
      { action: 'moved', cell_id: 'a', cell_type: 'code', index: 2, previous_index: 0 }
    ]);
  });

  it('a type change is the same id with another type', () => {
    const changed = { id: 'c', type: 'markdown', model: {} };
    expect(diffCells([a, b, c], [a, b, changed])).toEqual([
      {
        action: 'type-changed',
        cell_id: 'c',
        cell_type: 'markdown',
        index: 2,
        previous_type: 'code'
      }
    ]);
  });
});
