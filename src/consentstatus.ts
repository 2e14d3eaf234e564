/**
 * The status bar item: whether the user's events are recorded, and a popup listing the
 * studies with their decisions and buttons to change each.
 */
import { showPopup } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import {
  Ask,
  ConsentModel,
  DecisionWord,
  IStudy,
  RecordingState,
  choiceLabel,
  choices,
  decisionText,
  recordingState
} from './consent';

const STATE_TEXT: Record<RecordingState, string> = {
  on: 'Telemetry: recording',
  off: 'Telemetry: not recording',
  partial: 'Telemetry: partly recording'
};

const MODE_TEXT: Record<IStudy['mode'], string> = {
  'opt-in': 'recorded only if you accept',
  'opt-out': 'recorded unless you decline',
  notice: 'always recorded; you are told'
};

/**
 * The status bar item; hidden while the server has no study for the user.
 */
export class ConsentStatus extends Widget {
  /**
   * @param _model the user's studies.
   * @param _ask shows a study's text and asks (accepting or reading needs the text first).
   */
  constructor(
    private readonly _model: ConsentModel,
    private readonly _ask: Ask
  ) {
    super({ node: document.createElement('button') });
    this.addClass('jp-TelemetryConsent-status');
    this.node.addEventListener('click', () => this._open());
    _model.onChange(() => this.update());
    this.update();
  }

  /** Show the state, or hide the item when there is no study. */
  update(): void {
    const state = recordingState(this._model.studies);
    this.setHidden(state === null);
    this.node.textContent = state === null ? '' : STATE_TEXT[state];
    this.node.dataset.state = state ?? 'none';
    // This extension ships no translations: its few words are English, as its docs are.
    // eslint-disable-next-line jupyter/no-untranslated-string
    this.node.title = 'Telemetry studies: what is recorded of your use, and your decisions';
  }

  private _open(): void {
    this._list?.dispose();
    const list = new StudyList(this._model, (study, word) => void this._decide(study, word));
    this._list = list;
    showPopup({ body: list, anchor: this, align: 'right', hasDynamicSize: true });
  }

  private async _decide(study: IStudy, word: DecisionWord): Promise<void> {
    this._list?.parent?.dispose(); // the popup
    const chosen = word === 'declined' ? word : await this._ask(study);
    if (chosen !== null && (await this._model.decide(study, chosen)) === 'stale') {
      const current = this._model.studies.find(s => s.study === study.study);
      if (current !== undefined && word !== 'declined') {
        await this._decide(current, word); // show the new text
      } else if (current !== undefined) {
        await this._model.decide(current, word);
      }
    }
  }

  private _list: StudyList | null = null;
}

/**
 * The popup's content: each study, the user's decision and the buttons to change it.
 */
class StudyList extends Widget {
  constructor(
    private readonly _model: ConsentModel,
    private readonly _decide: (study: IStudy, word: DecisionWord) => void
  ) {
    super();
    this.addClass('jp-TelemetryConsent-list');
    this._disconnect = _model.onChange(() => this._render());
    this._render();
  }

  dispose(): void {
    this._disconnect();
    super.dispose();
  }

  private _render(): void {
    const heading = document.createElement('h2');
    // eslint-disable-next-line jupyter/no-untranslated-string
    heading.textContent = 'Telemetry studies';
    const items = document.createElement('ul');
    items.append(...this._model.studies.map(study => this._item(study)));
    this.node.replaceChildren(heading, items);
    if (this._model.unknown) {
      this.node.append(paragraph('The server did not answer: this list may be out of date.'));
    }
  }

  private _item(study: IStudy): HTMLLIElement {
    const item = document.createElement('li');
    item.dataset.study = study.study;
    const title = document.createElement('strong');
    title.textContent = study.title;
    const when = study.decided_at ? ` on ${new Date(study.decided_at).toLocaleString()}` : '';
    const state = paragraph(
      `Version ${study.version}, ${MODE_TEXT[study.mode]}. Your decision: ` +
        `${decisionText(study)}${when}. ${study.recording ? 'Recording.' : 'Not recording.'}`
    );
    state.className = 'jp-TelemetryConsent-state';
    const buttons = document.createElement('div');
    buttons.className = 'jp-TelemetryConsent-buttons';
    for (const word of choices(study)) {
      const button = document.createElement('button');
      button.className = 'jp-Button jp-mod-styled jp-mod-reject';
      button.textContent = choiceLabel(study, word);
      button.dataset.decision = word;
      button.addEventListener('click', () => this._decide(study, word));
      buttons.append(button);
    }
    item.append(title, state, buttons);
    return item;
  }

  private readonly _disconnect: () => void;
}

function paragraph(text: string): HTMLParagraphElement {
  const p = document.createElement('p');
  p.textContent = text;
  return p;
}
