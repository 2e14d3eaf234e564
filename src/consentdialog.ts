/**
 * The dialog that shows a study's text (markdown, sanitized) and asks for a decision.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

import { Ask, DecisionWord, IStudy, choiceLabel } from './consent';

const TEXT_CLASS = 'jp-TelemetryConsent-text';

/** Renders a study's markdown text into a widget. */
export type RenderText = (text: string) => Promise<Widget>;

/**
 * Render markdown with JupyterLab's markdown renderer: the model is untrusted, so the
 * registry's sanitizer cleans the HTML (no script, no event handler). Without a registry,
 * the text is shown as it is written, never as HTML.
 */
export function markdownRenderer(rendermime: IRenderMimeRegistry | null): RenderText {
  return async (text: string) => {
    if (rendermime === null) {
      const widget = new Widget();
      widget.node.textContent = text;
      widget.node.style.whiteSpace = 'pre-wrap';
      return widget;
    }
    const renderer = rendermime.createRenderer('text/markdown');
    await renderer.renderModel(new MimeModel({ data: { 'text/markdown': text }, trusted: false }));
    return renderer;
  };
}

/**
 * Ask with a JupyterLab dialog: the study's text and its buttons (Decline / Accept, or
 * "I have read this" for a notice). Closing it (Escape, the close button) decides nothing;
 * Enter decides nothing either until a button has the focus.
 */
export function dialogAsk(render: RenderText, offered?: DecisionWord[]): Ask {
  return async (study: IStudy) => {
    const words: DecisionWord[] =
      offered ?? (study.mode === 'notice' ? ['shown'] : ['declined', 'granted']);
    const text = await render(study.text);
    text.addClass(TEXT_CLASS);
    text.node.tabIndex = -1; // focused first, so that Enter does not press a button
    const body = new Panel(); // the dialog looks for the node to focus inside its body
    body.addWidget(text);
    const result = await showDialog({
      title: `${study.title} (version ${study.version})`,
      body,
      buttons: words.map(word => button(study, word)),
      hasClose: true,
      focusNodeSelector: `.${TEXT_CLASS}`
    });
    const word = result.button.actions.find(action => words.includes(action as DecisionWord));
    return (word as DecisionWord | undefined) ?? null;
  };
}

function button(study: IStudy, word: DecisionWord): Dialog.IButton {
  const label = choiceLabel(study, word);
  const options = { label, actions: [word], ariaLabel: `${label}: ${study.title}` };
  return word === 'declined' ? Dialog.cancelButton(options) : Dialog.okButton(options);
}
