/**
 * Where a user invoked a command from, for the command schema's `invoked_from`.
 */
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

export type InvokedFrom =
  'menu' | 'context-menu' | 'palette' | 'keyboard' | 'toolbar' | 'launcher' | 'other';

/** The DOM events a user makes; a command run while another event is handled is run by code. */
const USER_EVENTS = new Set([
  'click',
  'contextmenu',
  'dblclick',
  'keydown',
  'keyup',
  'mousedown',
  'mouseup',
  'pointerdown',
  'pointerup',
  'touchend'
]);

/** The containers a click can come from, most specific first. */
const CONTAINERS: [string, InvokedFrom][] = [
  ['.lm-CommandPalette', 'palette'],
  ['.jp-Toolbar', 'toolbar'],
  ['.jp-LauncherCard', 'launcher']
];

/**
 * Tells user-invoked commands from those that code runs, and where the user invoked them.
 */
export class Invocations {
  constructor(doc: Document = document) {
    // A menu opened by a right click is a context menu; one opened from the menu bar is not.
    doc.addEventListener('contextmenu', () => (this._contextMenu = true), true);
    doc.addEventListener(
      'mousedown',
      event => {
        if (event.target instanceof Element && event.target.closest('.lm-MenuBar')) {
          this._contextMenu = false;
        }
      },
      true
    );
  }

  /**
   * Where the command being executed now was invoked from; null when code ran it. Call it
   * while the command starts: a key binding marks its arguments, and a click or a key press
   * is `window.event` while its handlers run the command.
   */
  invokedFrom(args: ReadonlyPartialJSONObject): InvokedFrom | null {
    const lumino = args._luminoEvent as { type?: unknown } | undefined;
    if (lumino?.type === 'keybinding') {
      return 'keyboard';
    }
    const event = window.event;
    if (!event?.isTrusted || !USER_EVENTS.has(event.type)) {
      return null;
    }
    const target = event.target instanceof Element ? event.target : null;
    const found = CONTAINERS.find(([selector]) => target?.closest(selector));
    if (found) {
      return found[1];
    }
    if (target?.closest('.lm-Menu')) {
      return this._contextMenu ? 'context-menu' : 'menu';
    }
    return event.type === 'keydown' ? 'keyboard' : 'other';
  }

  private _contextMenu = false;
}
