/**
 * The events every deployment wants, with the schemas the server ships (`schemas/`): notebooks
 * opened, saved and closed, cells executed, commands executed. The server's allow-list decides
 * which of them are sent.
 */
import { INotebookTracker, Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { CommandRegistry } from '@lumino/commands';

import { Invocations } from './invocation';
import { KINDS } from './kinds';
import { Recorder } from './recorder';
import { NotebookSessions, cellId } from './research';

export const NOTEBOOK_SCHEMA = KINDS.notebook.schemaId;
export const CELL_SCHEMA = KINDS.cellExecuted.schemaId;
export const COMMAND_SCHEMA = KINDS.command.schemaId;

/** Command arguments longer than this (as JSON) are left out of the event. */
const MAX_ARGS_LENGTH = 2048;
/** The cell schema's limit on an error message. */
const MAX_ERROR_VALUE = 8192;

/**
 * Record each notebook's opened, saved and closed events.
 */
export function recordNotebooks(
  recorder: Recorder,
  tracker: INotebookTracker,
  sessions: NotebookSessions
): void {
  tracker.widgetAdded.connect((_, panel) => {
    const record = (data: Record<string, unknown>) =>
      recorder.record('notebook', { ...data, notebook_session: sessions.of(panel) });
    panel.context.ready.then(
      () => record({ action: 'opened', ...describeNotebook(panel) }),
      () => undefined // not loaded: not opened
    );
    panel.context.saveState.connect((_, state) => {
      if (state === 'completed') {
        record({ action: 'saved', ...describeNotebook(panel) });
      }
    });
    // The model may be gone with the panel: the path only.
    panel.disposed.connect(() => record({ action: 'closed', path: panel.context.path }));
  });
}

function describeNotebook(panel: NotebookPanel): Record<string, unknown> {
  const model = panel.context.model;
  const kernelspec = model.getMetadata('kernelspec') as { name?: unknown } | undefined;
  return {
    path: panel.context.path,
    cell_count: model.cells.length,
    ...(typeof kernelspec?.name === 'string' && { kernel_name: kernelspec.name.slice(0, 128) })
  };
}

/**
 * Record each code cell's execution: outcome, duration, cell id and, for the admin to allow or
 * not, its source and notebook path.
 */
export function recordCells(
  recorder: Recorder,
  tracker: INotebookTracker | null,
  sessions: NotebookSessions
): void {
  const started = new WeakMap<object, number>();
  NotebookActions.executionScheduled.connect((_, { cell }) => {
    started.set(cell, performance.now());
  });
  NotebookActions.executed.connect((_, { notebook, cell, success, error }) => {
    if (cell.model.type !== 'code') {
      return;
    }
    const start = started.get(cell);
    const source = cell.model.sharedModel.getSource();
    const id = cellId(cell.model.id);
    const data: Record<string, unknown> = {
      action: 'executed',
      status: success ? 'ok' : error?.errorName ? 'error' : 'aborted',
      notebook_session: sessions.of(notebook),
      ...(id !== undefined && { cell_id: id }),
      execution_count: (cell.model as { executionCount?: number | null }).executionCount ?? null,
      source,
      source_length: source.length,
      ...(start !== undefined && { duration_ms: Math.round(performance.now() - start) }),
      ...describeLanguage(notebook),
      ...(error?.errorName && {
        error_name: error.errorName.slice(0, 128),
        error_value: error.errorValue.slice(0, MAX_ERROR_VALUE)
      })
    };
    const panel = tracker?.find(p => p.content === notebook);
    if (panel) {
      data.notebook_path = panel.context.path;
    }
    recorder.record('cellExecuted', data);
  });
}

function describeLanguage(notebook: Notebook): Record<string, unknown> {
  const info = notebook.model?.getMetadata('language_info') as { name?: unknown } | undefined;
  return typeof info?.name === 'string' && info.name ? { language: info.name.slice(0, 64) } : {};
}

/**
 * Record each command a user invoked (not those code runs, like `notebook:get-kernel`), where
 * from, whether it succeeded, and its arguments when small.
 */
export function recordCommands(
  recorder: Recorder,
  commands: CommandRegistry,
  doc: Document = document
): void {
  const invocations = new Invocations(doc);
  commands.commandExecuted.connect((_, { id, args, result }) => {
    const invokedFrom = invocations.invokedFrom(args);
    if (invokedFrom === null) {
      return;
    }
    const data: Record<string, unknown> = {
      action: 'executed',
      command_id: id.slice(0, 256),
      invoked_from: invokedFrom
    };
    const { _luminoEvent: _event, ...userArgs } = args;
    if (isSmall(userArgs)) {
      data.args = userArgs;
    }
    void result
      .then(
        () => true,
        () => false
      )
      .then(success => {
        recorder.record('command', { ...data, success });
      });
  });
}

function isSmall(args: object): boolean {
  try {
    const json = JSON.stringify(args);
    return json !== '{}' && json.length <= MAX_ARGS_LENGTH;
  } catch {
    return false; // not JSON (a cycle, a BigInt): left out
  }
}
