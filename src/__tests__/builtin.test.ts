import { Signal } from '@lumino/signaling';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { recordCells, recordCommands, recordNotebooks } from '../builtin';
import { KINDS } from '../kinds';
import { Recorder } from '../recorder';
import { NotebookSessions } from '../research';
import { ITelemetry, ITelemetryEvent } from '../tokens';

// JupyterLab's notebook package needs a browser to load: its two signals and its panel class.
const actions = vi.hoisted(() => ({}) as Record<string, unknown>);
vi.mock('@jupyterlab/notebook', async () => {
  const { Signal } = await import('@lumino/signaling');
  actions.executionScheduled = new Signal<object, unknown>({});
  actions.executed = new Signal<object, unknown>({});
  return { NotebookActions: actions, NotebookPanel: class {} };
});

type Emitter = Signal<object, unknown>;

class FakeTelemetry implements ITelemetry {
  events: ITelemetryEvent[] = [];
  record(event: ITelemetryEvent): void {
    this.events.push(event);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}

function codeCell(id: string, source: string, executionCount = 3) {
  return { model: { type: 'code', id, executionCount, sharedModel: { getSource: () => source } } };
}

function notebookWidget() {
  return {
    model: {
      getMetadata: (key: string) => (key === 'language_info' ? { name: 'python' } : undefined)
    }
  };
}

let telemetry: FakeTelemetry;
let recorder: Recorder;
let sessions: NotebookSessions;

beforeEach(() => {
  telemetry = new FakeTelemetry();
  recorder = new Recorder(telemetry);
  recorder.configure({});
  sessions = new NotebookSessions();
});

afterEach(() => {
  Signal.disconnectAll(actions.executed as Emitter);
  Signal.disconnectAll(actions.executionScheduled as Emitter);
});

describe('recordCells', () => {
  it('records a code cell execution (v2): id, session, status, timing, source and its length', () => {
    const notebook = notebookWidget();
    const panel = { content: notebook, context: { path: 'work/a.ipynb' } };
    recordCells(
      recorder,
      { find: (f: (p: unknown) => boolean) => (f(panel) ? panel : undefined) } as never,
      sessions
    );
    const cell = codeCell('cell-1', 'print(1)');
    (actions.executionScheduled as Emitter).emit({ notebook, cell });
    (actions.executed as Emitter).emit({ notebook, cell, success: true });
    expect(telemetry.events).toHaveLength(1);
    const { schema_id, version, data } = telemetry.events[0];
    expect([schema_id, version]).toEqual([KINDS.cellExecuted.schemaId, 2]);
    expect(data).toMatchObject({
      action: 'executed',
      status: 'ok',
      cell_id: 'cell-1',
      notebook_session: sessions.of(notebook as never),
      execution_count: 3,
      source: 'print(1)',
      source_length: 8,
      language: 'python',
      notebook_path: 'work/a.ipynb'
    });
    expect(typeof data.duration_ms).toBe('number');
  });

  it('errors: name and value (cut to the schema limit); aborted without a name; markdown skipped', () => {
    recordCells(recorder, null, sessions);
    const notebook = notebookWidget();
    const error = { errorName: 'ValueError', errorValue: 'v'.repeat(10_000) };
    (actions.executed as Emitter).emit({
      notebook,
      cell: codeCell('c', 'x'),
      success: false,
      error
    });
    (actions.executed as Emitter).emit({ notebook, cell: codeCell('c', 'x'), success: false });
    (actions.executed as Emitter).emit({
      notebook,
      cell: { model: { type: 'markdown' } },
      success: true
    });
    const [failed, aborted] = telemetry.events.map(e => e.data);
    expect(telemetry.events).toHaveLength(2);
    expect(failed.status).toBe('error');
    expect(failed.error_name).toBe('ValueError');
    expect((failed.error_value as string).length).toBe(8192);
    expect(aborted.status).toBe('aborted');
    expect(aborted.notebook_path).toBeUndefined();
  });

  it('a cell id that is not an nbformat id is left out rather than failing the event', () => {
    recordCells(recorder, null, sessions);
    (actions.executed as Emitter).emit({
      notebook: notebookWidget(),
      cell: codeCell('bad id!', 'x'),
      success: true
    });
    expect(telemetry.events[0].data.cell_id).toBeUndefined();
  });
});

describe('recordNotebooks', () => {
  it('opened, saved and closed (v2), with one session id per notebook view', async () => {
    const widgetAdded = new Signal<object, unknown>({});
    const saveState = new Signal<object, string>({});
    const disposed = new Signal<object, void>({});
    const model = {
      cells: { length: 4 },
      getMetadata: () => ({ name: 'python3' })
    };
    const panel = {
      content: {},
      context: { path: 'a.ipynb', model, ready: Promise.resolve(), saveState },
      disposed
    };
    recordNotebooks(recorder, { widgetAdded } as never, sessions);
    widgetAdded.emit(panel);
    await panel.context.ready;
    saveState.emit('started');
    saveState.emit('completed');
    disposed.emit();
    const data = telemetry.events.map(e => e.data);
    expect(
      telemetry.events.every(e => e.schema_id === KINDS.notebook.schemaId && e.version === 2)
    ).toBe(true);
    expect(data.map(d => d.action)).toEqual(['opened', 'saved', 'closed']);
    expect(data[0]).toMatchObject({ path: 'a.ipynb', cell_count: 4, kernel_name: 'python3' });
    expect(new Set(data.map(d => d.notebook_session)).size).toBe(1);
  });
});

describe('recordCommands', () => {
  it('records user-invoked commands with where from, success and small arguments', async () => {
    vi.stubGlobal('window', { event: undefined });
    try {
      const commandExecuted = new Signal<object, unknown>({});
      const doc = { addEventListener: () => undefined } as unknown as Document;
      recordCommands(recorder, { commandExecuted } as never, doc);
      const keybinding = { type: 'keybinding' };
      commandExecuted.emit({
        id: 'notebook:run-cell',
        args: { _luminoEvent: keybinding },
        result: Promise.resolve()
      });
      commandExecuted.emit({ id: 'by:code', args: {}, result: Promise.resolve() });
      const big = { text: 'x'.repeat(5000), _luminoEvent: keybinding };
      commandExecuted.emit({ id: 'a:b', args: big, result: Promise.reject(new Error('no')) });
      commandExecuted.emit({
        id: 'c:d',
        args: { path: 'x', _luminoEvent: keybinding },
        result: Promise.resolve()
      });
      await vi.waitFor(() => expect(telemetry.events).toHaveLength(3));
      expect(telemetry.events.map(e => e.data)).toEqual([
        {
          action: 'executed',
          command_id: 'notebook:run-cell',
          invoked_from: 'keyboard',
          success: true
        },
        { action: 'executed', command_id: 'a:b', invoked_from: 'keyboard', success: false },
        {
          action: 'executed',
          command_id: 'c:d',
          invoked_from: 'keyboard',
          args: { path: 'x' },
          success: true
        }
      ]);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('records nothing when the command kind is turned off', async () => {
    recorder.configure({ command: false });
    const commandExecuted = new Signal<object, unknown>({});
    recordCommands(
      recorder,
      { commandExecuted } as never,
      { addEventListener: () => undefined } as never
    );
    commandExecuted.emit({
      id: 'x:y',
      args: { _luminoEvent: { type: 'keybinding' } },
      result: Promise.resolve()
    });
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(telemetry.events).toEqual([]);
  });
});
