/**
 * Research-grade notebook events: visibility, active cell, structure, edits, clipboard, kernel,
 * scroll and active time, each a kind of the Recorder (turned off in the settings, or by the
 * server's allow-list).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import type { Cell } from '@jupyterlab/cells';
import { INotebookTracker, Notebook, NotebookPanel } from '@jupyterlab/notebook';
import { UUID } from '@lumino/coreutils';

import { Activity } from './activity';
import { EditTallies, IDeltaStep } from './edits';
import { Recorder } from './recorder';
import { ICellEntry, diffCells } from './structure';
import { Debouncer } from './timing';

/** Timings of the recorders, in milliseconds. */
export interface IResearchTimings {
  /** Input older than this no longer counts as active. */
  idleTimeout: number;
  /** How often each notebook's active time is summarised. */
  summaryInterval: number;
}

export const DEFAULT_TIMINGS: Readonly<IResearchTimings> = {
  idleTimeout: 60_000,
  summaryInterval: 60_000
};
/** A scroll is reported when it pauses this long, at most once per SCROLL_INTERVAL. */
export const SCROLL_QUIET = 500;
export const SCROLL_INTERVAL = 1500;
/** An active cell is reported once the user stays on it this long. */
export const ACTIVE_CELL_QUIET = 500;
/** The most cell ids one event lists. */
const MAX_IDS = 200;
const CELL_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const INPUT_EVENTS = ['keydown', 'pointerdown', 'wheel', 'scroll'];

/**
 * A random id per notebook view, linking its events without naming the notebook.
 */
export class NotebookSessions {
  /** The session id of a panel or of its notebook widget. */
  of(widget: NotebookPanel | Notebook): string {
    const key = widget instanceof NotebookPanel ? widget.content : widget;
    let id = this._ids.get(key);
    if (id === undefined) {
      id = UUID.uuid4();
      this._ids.set(key, id);
    }
    return id;
  }

  private readonly _ids = new WeakMap<object, string>();
}

/** A cell's nbformat id if it is a valid one (a bad id would make the whole event invalid). */
export function cellId(id: unknown): string | undefined {
  return typeof id === 'string' && CELL_ID.test(id) ? id : undefined;
}

function cellIds(ids: unknown[]): string[] {
  return ids
    .map(cellId)
    .filter((id): id is string => id !== undefined)
    .slice(0, MAX_IDS);
}

/**
 * Record the research kinds for every notebook the tracker adds. `timings` is read when used:
 * changing it later applies to notebooks opened (and summaries made) after the change.
 */
export function recordResearch(
  recorder: Recorder,
  tracker: INotebookTracker,
  shell: JupyterFrontEnd.IShell,
  sessions: NotebookSessions,
  timings: IResearchTimings = { ...DEFAULT_TIMINGS }
): void {
  const page = new PageActivity(recorder, shell, sessions, timings);
  tracker.widgetAdded.connect((_, panel) => {
    panel.context.ready.then(
      () => {
        if (!panel.isDisposed) {
          new NotebookWatch(recorder, panel, sessions.of(panel));
          page.add(panel);
        }
      },
      () => undefined // not loaded: nothing to watch
    );
  });
}

/**
 * Active time of every open notebook, and the page's visibility for notebook visible/hidden.
 */
class PageActivity {
  constructor(
    private readonly _recorder: Recorder,
    private readonly _shell: JupyterFrontEnd.IShell,
    private readonly _sessions: NotebookSessions,
    private readonly _timings: IResearchTimings
  ) {
    this._activity = new Activity(
      () => _timings.idleTimeout,
      panel => this._foreground(panel)
    );
    const refresh = () => this._activity.refresh(Date.now());
    INPUT_EVENTS.forEach(type =>
      document.addEventListener(type, () => this._activity.input(Date.now()), {
        capture: true,
        passive: true
      })
    );
    window.addEventListener('focus', refresh);
    window.addEventListener('blur', refresh);
    _shell.currentChanged?.connect(refresh);
    // Capture on window runs before the client's own listeners, which send the queue at once.
    window.addEventListener('visibilitychange', () => this._pageVisibility(), true);
    window.addEventListener('pagehide', () => this._summarise(true), true);
    this._tick();
  }

  // The interval is read at each tick: the settings may arrive after the first.
  private _tick(): void {
    setTimeout(() => {
      this._summarise(false);
      this._tick();
    }, this._timings.summaryInterval);
  }

  add(panel: NotebookPanel): void {
    this._panels.add(panel);
    this._activity.add(panel, Date.now());
    panel.disposed.connect(() => {
      const last = this._activity.remove(panel, Date.now());
      this._panels.delete(panel);
      if (last) {
        this._report(panel, last, true);
      }
    });
  }

  private _foreground(panel: NotebookPanel): boolean {
    return (
      document.visibilityState === 'visible' &&
      document.hasFocus() &&
      panel.isVisible &&
      this._shell.currentWidget === panel
    );
  }

  private _pageVisibility(): void {
    const visible = document.visibilityState === 'visible';
    this._activity.refresh(Date.now());
    for (const panel of this._panels) {
      if (panel.isVisible) {
        this._recorder.record('notebook', {
          action: visible ? 'visible' : 'hidden',
          cause: 'page',
          notebook_session: this._sessions.of(panel),
          path: panel.context.path
        });
      }
    }
    if (!visible) {
      this._summarise(true);
    }
  }

  private _summarise(final: boolean): void {
    for (const [panel, summary] of this._activity.take(Date.now())) {
      this._report(panel, summary, final);
    }
  }

  private _report(
    panel: NotebookPanel,
    summary: { active: number; period: number },
    final: boolean
  ): void {
    if (summary.active <= 0) {
      return; // nothing to say: keeps idle notebooks silent
    }
    this._recorder.record('activeTime', {
      action: 'summary',
      notebook_session: this._sessions.of(panel),
      active_s: Math.round(summary.active) / 1000,
      period_s: Math.round(summary.period) / 1000,
      idle_timeout_s: this._timings.idleTimeout / 1000,
      final,
      path: panel.context.path
    });
  }

  private readonly _activity: Activity<NotebookPanel>;
  private readonly _panels = new Set<NotebookPanel>();
}

/**
 * The per-notebook recorders of one notebook view.
 */
class NotebookWatch {
  constructor(
    private readonly _recorder: Recorder,
    private readonly _panel: NotebookPanel,
    private readonly _session: string
  ) {
    const notebook = _panel.content;
    this._snapshot = this._cells();
    this._cellsConnected();
    notebook.model?.cells.changed.connect(this._onCellsChanged, this);
    notebook.activeCellChanged.connect(() => this._activeDebouncer.trigger());
    this._activeId = cellId(notebook.activeCell?.model.id);
    this._watchVisibility();
    this._watchClipboard();
    this._watchKernel();
    notebook.node.addEventListener('scroll', event => this._onScroll(event), {
      capture: true,
      passive: true
    });
    _panel.disposed.connect(() => this._dispose());
  }

  private get _notebook(): Notebook {
    return this._panel.content;
  }

  private _base(): Record<string, unknown> {
    return { notebook_session: this._session };
  }

  // Visible and hidden: Lumino marks a hidden tab's node with lm-mod-hidden.
  private _watchVisibility(): void {
    let visible = this._panel.isVisible;
    this._observer = new MutationObserver(() => {
      if (this._panel.isVisible !== visible) {
        visible = this._panel.isVisible;
        const action = visible ? 'visible' : 'hidden';
        this._recorder.record('notebook', {
          action,
          cause: 'tab',
          ...this._base(),
          path: this._panel.context.path
        });
      }
    });
    this._observer.observe(this._panel.node, { attributes: true, attributeFilter: ['class'] });
  }

  private _reportActiveCell(): void {
    const cell = this._notebook.activeCell;
    const id = cellId(cell?.model.id);
    if (!cell || id === undefined || id === this._activeId) {
      return;
    }
    const previous = this._activeId;
    this._activeId = id;
    this._recorder.record('activeCell', {
      action: 'changed',
      ...this._base(),
      cell_id: id,
      cell_type: cell.model.type,
      index: this._notebook.activeCellIndex,
      ...(previous !== undefined && this._has(previous) && { previous_cell_id: previous })
    });
  }

  // Pasted cells get new ids: those not in the snapshot (it is updated after the paste).
  private _newIds(): string[] {
    const known = new Set(this._snapshot.map(entry => entry.id));
    return this._cells()
      .map(entry => entry.id)
      .filter(id => !known.has(id));
  }

  private _has(id: string): boolean {
    return this._snapshot.some(entry => entry.id === id);
  }

  private _cells(): ICellEntry[] {
    const cells = this._notebook.model?.cells;
    const entries: ICellEntry[] = [];
    for (let i = 0; cells && i < cells.length; i++) {
      const model = cells.get(i);
      entries.push({ id: model.id, type: model.type, model });
    }
    return entries;
  }

  // A transaction emits several list changes: diff once after them.
  private _onCellsChanged(): void {
    if (this._diffQueued) {
      return;
    }
    this._diffQueued = true;
    queueMicrotask(() => {
      this._diffQueued = false;
      this._diff();
    });
  }

  private _diff(): void {
    const after = this._cells();
    const changes = diffCells(this._snapshot, after);
    this._snapshot = after;
    this._cellsConnected();
    for (const change of changes) {
      if (change.action === 'removed') {
        this._edits.flush(change.cell_id);
      }
      if (cellId(change.cell_id) !== undefined) {
        this._recorder.record('cellStructure', {
          ...change,
          ...this._base(),
          cell_count: after.length
        });
      }
    }
  }

  // Edits: every cell model's source changes, tallied per cell id.
  private _cellsConnected(): void {
    for (const { id, model } of this._snapshot) {
      if (this._connected.has(model)) {
        continue;
      }
      this._connected.add(model);
      const shared = (model as Cell['model']).sharedModel;
      shared.changed.connect((_, change) => {
        const delta = (change as { sourceChange?: IDeltaStep[] }).sourceChange;
        if (delta && cellId(id) !== undefined && this._recorder.enabled('cellEdit')) {
          this._edits.add(id, delta);
        }
      });
    }
  }

  private _reportEdit(
    id: string,
    tally: { inserted: number; deleted: number; changes: number; duration_ms: number }
  ): void {
    const entry = this._snapshot.find(e => e.id === id);
    const source = entry ? (entry.model as Cell['model']).sharedModel.getSource() : undefined;
    this._recorder.record('cellEdit', {
      action: 'edited',
      ...this._base(),
      cell_id: id,
      ...(entry && { cell_type: entry.type }),
      ...tally,
      ...(source !== undefined && { source_length: source.length, source })
    });
  }

  // Clipboard: text through the DOM's events, cells through the notebook's cell clipboard.
  private _watchClipboard(): void {
    const node = this._notebook.node;
    for (const action of ['copy', 'cut', 'paste'] as const) {
      node.addEventListener(
        action,
        event => this._onClipboardText(action, event as ClipboardEvent),
        true
      );
    }
    const notebook = this._notebook as unknown as {
      recordCellClipboardInteraction?: (
        interaction: 'copy' | 'cut' | 'paste' | null,
        cells: { id?: unknown }[]
      ) => void;
    };
    const original = notebook.recordCellClipboardInteraction;
    if (typeof original !== 'function') {
      return; // an older JupyterLab: cell copies go unrecorded
    }
    notebook.recordCellClipboardInteraction = (interaction, cells) => {
      if (interaction !== null) {
        this._recorder.record('clipboard', {
          action: interaction,
          what: 'cells',
          ...this._base(),
          cell_ids: cellIds(interaction === 'paste' ? this._newIds() : cells.map(c => c.id)),
          cell_count: cells.length
        });
      }
      original.call(notebook, interaction, cells as never);
    };
  }

  private _onClipboardText(action: 'copy' | 'cut' | 'paste', event: ClipboardEvent): void {
    if (!this._recorder.enabled('clipboard')) {
      return;
    }
    const target = event.target instanceof Node ? event.target : null;
    const cell = this._notebook.widgets.find(w => target !== null && w.node.contains(target));
    const text =
      action === 'paste'
        ? (event.clipboardData?.getData('text/plain') ?? '')
        : selectedText(cell, target);
    const id = cellId(cell?.model.id);
    this._recorder.record('clipboard', {
      action,
      what: 'text',
      ...this._base(),
      ...(id !== undefined && { cell_id: id }),
      length: text.length,
      text
    });
  }

  private _watchKernel(): void {
    const context = this._panel.sessionContext;
    let last = context.kernelDisplayStatus;
    context.statusChanged.connect((_, status) => {
      if (status === 'restarting' && last !== 'restarting') {
        this._recordKernel('restarted');
      }
      last = status;
    });
    context.kernelChanged.connect((_, { oldValue, newValue }) => {
      if (oldValue && newValue && oldValue.id !== newValue.id) {
        this._recordKernel('changed', { previous_kernel_name: oldValue.name.slice(0, 128) });
      }
    });
    // An interrupt is a REST call that no signal reports: the kernel's interrupt is wrapped.
    this._kernelInterrupts(context.session?.kernel ?? null);
    context.kernelChanged.connect((_, { newValue }) => this._kernelInterrupts(newValue));
  }

  private _kernelInterrupts(kernel: { interrupt(): Promise<void> } | null): void {
    if (!kernel || this._wrapped.has(kernel)) {
      return;
    }
    this._wrapped.add(kernel);
    const original = kernel.interrupt;
    kernel.interrupt = () => {
      this._recordKernel('interrupted');
      return original.call(kernel);
    };
  }

  private _recordKernel(
    action: 'restarted' | 'interrupted' | 'changed',
    extra: Record<string, unknown> = {}
  ): void {
    const name = this._panel.sessionContext.session?.kernel?.name;
    this._recorder.record('kernel', {
      action,
      ...this._base(),
      ...(typeof name === 'string' && { kernel_name: name.slice(0, 128) }),
      ...extra
    });
  }

  private _onScroll(event: Event): void {
    if (event.target instanceof Element && this._recorder.enabled('scroll')) {
      this._scroller = event.target;
      this._scrollDebouncer.trigger();
    }
  }

  private _reportScroll(): void {
    const view = this._scroller?.getBoundingClientRect();
    if (!view) {
      return;
    }
    const inView: { index: number; id: unknown }[] = [];
    this._notebook.widgets.forEach((cell, index) => {
      if (!cell.node.isConnected) {
        return; // windowed out: not rendered, not in view
      }
      const box = cell.node.getBoundingClientRect();
      if (box.height > 0 && box.bottom > view.top && box.top < view.bottom) {
        inView.push({ index, id: cell.model.id });
      }
    });
    if (inView.length === 0) {
      return;
    }
    this._recorder.record('scroll', {
      action: 'scrolled',
      ...this._base(),
      first_index: inView[0].index,
      last_index: inView[inView.length - 1].index,
      cell_ids: cellIds(inView.map(c => c.id)),
      cell_count: this._notebook.widgets.length
    });
  }

  private _dispose(): void {
    this._edits.flush();
    this._scrollDebouncer.dispose();
    this._activeDebouncer.dispose();
    this._observer?.disconnect();
  }

  private _snapshot: ICellEntry[];
  private _diffQueued = false;
  private _activeId: string | undefined;
  private _scroller: Element | null = null;
  private _observer: MutationObserver | null = null;
  private readonly _connected = new WeakSet<object>();
  private readonly _wrapped = new WeakSet<object>();
  private readonly _edits = new EditTallies((id, tally) => this._reportEdit(id, tally));
  private readonly _activeDebouncer = new Debouncer(() => this._reportActiveCell(), {
    quiet: ACTIVE_CELL_QUIET
  });
  private readonly _scrollDebouncer = new Debouncer(() => this._reportScroll(), {
    quiet: SCROLL_QUIET,
    minInterval: SCROLL_INTERVAL
  });
}

/** The text a copy or cut takes from a cell: its editor's selection, or the line it is on. */
function selectedText(cell: Cell | undefined, target: Node | null): string {
  const editor = cell?.editor;
  if (editor && target !== null && editor.host.contains(target)) {
    const source = cell.model.sharedModel.getSource();
    const range = editor.getSelection();
    const [start, end] = [editor.getOffsetAt(range.start), editor.getOffsetAt(range.end)].sort(
      (a, b) => a - b
    );
    // CodeMirror copies the whole line when nothing is selected.
    return start === end ? `${editor.getLine(range.start.line) ?? ''}\n` : source.slice(start, end);
  }
  return window.getSelection()?.toString() ?? '';
}
