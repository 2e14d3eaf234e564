/**
 * The events the client records itself, with the schemas the server ships (`schemas/`):
 * notebooks opened, saved and closed, cells executed, commands executed. The server's
 * allow-list decides which of them are sent.
 */
import { INotebookTracker, Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { CommandRegistry } from '@lumino/commands';

import { Invocations } from './invocation';
import { ITelemetry } from './tokens';

const BASE = 'https://events.jupyter.org/jupyter_telemetry_ext';
export const NOTEBOOK_SCHEMA = `${BASE}/notebook`;
export const CELL_SCHEMA = `${BASE}/cell`;
export const COMMAND_SCHEMA = `${BASE}/command`;
const VERSION = 1;

/** Command arguments longer than this (as JSON) are left out of the event. */
const MAX_ARGS_LENGTH = 2048;

/**
 * Record each notebook's opened, saved and closed events.
 */
export function recordNotebooks(telemetry: ITelemetry, tracker: INotebookTracker): void {
  const record = (data: Record<string, unknown>) =>
    telemetry.record({ schema_id: NOTEBOOK_SCHEMA, version: VERSION, data });
  tracker.widgetAdded.connect((_, panel) => {
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
 * Record each code cell's execution: outcome, duration and, for the admin to allow or not,
 * its source and notebook path.
 */
export function recordCells(telemetry: ITelemetry, tracker: INotebookTracker | null): void {
  const started = new WeakMap<object, number>();
  NotebookActions.executionScheduled.connect((_, { cell }) => {
    started.set(cell, performance.now());
  });
  NotebookActions.executed.connect((_, { notebook, cell, success, error }) => {
    if (cell.model.type !== 'code') {
      return;
    }
    const start = started.get(cell);
    const data: Record<string, unknown> = {
      action: 'executed',
      status: success ? 'ok' : error?.errorName ? 'error' : 'aborted',
      execution_count: (cell.model as { executionCount?: number | null }).executionCount ?? null,
      source: cell.model.sharedModel.getSource(),
      ...(start !== undefined && { duration_ms: Math.round(performance.now() - start) }),
      ...describeLanguage(notebook),
      ...(error?.errorName && {
        error_name: error.errorName.slice(0, 128),
        error_value: error.errorValue
      })
    };
    const panel = tracker?.find(p => p.content === notebook);
    if (panel) {
      data.notebook_path = panel.context.path;
    }
    telemetry.record({ schema_id: CELL_SCHEMA, version: VERSION, data });
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
export function recordCommands(telemetry: ITelemetry, commands: CommandRegistry): void {
  const invocations = new Invocations();
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
    void result.then(
      () => true,
      () => false
    ).then(success => {
      telemetry.record({ schema_id: COMMAND_SCHEMA, version: VERSION, data: { ...data, success } });
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
