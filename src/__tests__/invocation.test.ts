import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { Invocations } from '../invocation';

/** A DOM element that knows which selectors its ancestors match. */
class FakeElement {
  constructor(readonly inside: string[] = []) {}
  closest(selector: string): FakeElement | null {
    return this.inside.includes(selector) ? this : null;
  }
}

/** A document that keeps its listeners so the test can call them. */
class FakeDocument {
  listeners = new Map<string, (event: unknown) => void>();
  addEventListener(type: string, listener: (event: unknown) => void): void {
    this.listeners.set(type, listener);
  }
}

let doc: FakeDocument;
let invocations: Invocations;

beforeEach(() => {
  vi.stubGlobal('Element', FakeElement);
  vi.stubGlobal('window', { event: undefined });
  doc = new FakeDocument();
  invocations = new Invocations(doc as unknown as Document);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

function during(type: string, target: FakeElement | null, isTrusted = true): void {
  (globalThis as unknown as { window: { event: unknown } }).window.event = {
    type,
    target,
    isTrusted
  };
}

describe('Invocations', () => {
  it('a key binding marks its arguments: keyboard', () => {
    expect(
      invocations.invokedFrom({ _luminoEvent: { type: 'keybinding', keys: ['Shift Enter'] } })
    ).toBe('keyboard');
  });

  it('code runs a command outside any user event, or inside an untrusted one', () => {
    expect(invocations.invokedFrom({})).toBeNull();
    during('click', new FakeElement(['.jp-Toolbar']), false);
    expect(invocations.invokedFrom({})).toBeNull();
    during('load', new FakeElement());
    expect(invocations.invokedFrom({})).toBeNull();
  });

  it.each([
    ['.lm-CommandPalette', 'palette'],
    ['.jp-Toolbar', 'toolbar'],
    ['.jp-LauncherCard', 'launcher']
  ])('a click inside %s: %s', (selector, expected) => {
    during('click', new FakeElement([selector]));
    expect(invocations.invokedFrom({})).toBe(expected);
  });

  it('a menu item: menu, unless the menu was opened with a right click', () => {
    const item = new FakeElement(['.lm-Menu']);
    during('mouseup', item);
    expect(invocations.invokedFrom({})).toBe('menu');
    doc.listeners.get('contextmenu')?.({});
    expect(invocations.invokedFrom({})).toBe('context-menu');
    doc.listeners.get('mousedown')?.({ target: new FakeElement(['.lm-MenuBar']) });
    expect(invocations.invokedFrom({})).toBe('menu');
  });

  it('a key press elsewhere is keyboard; any other user event is other', () => {
    during('keydown', new FakeElement());
    expect(invocations.invokedFrom({})).toBe('keyboard');
    during('click', null);
    expect(invocations.invokedFrom({})).toBe('other');
  });
});
