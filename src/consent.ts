/**
 * The user's studies and decisions, from `GET api/telemetry/consent`, and taking a decision
 * with `PUT api/telemetry/consent/<study>`. No user interface here: the dialog and the status
 * bar item show this model.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

const CONSENT = 'api/telemetry/consent';

/** How a study asks: opt-in (nothing until granted), opt-out, or notice (always recorded). */
export type StudyMode = 'opt-in' | 'opt-out' | 'notice';

/** A decision a user can take; `shown` is the only one of a notice study. */
export type DecisionWord = 'granted' | 'declined' | 'shown';

/**
 * One study of `GET api/telemetry/consent`, with the user's decision on its current version.
 */
export interface IStudy {
  study: string;
  title: string;
  /** Markdown: render it sanitized, never as raw HTML. */
  text: string;
  version: number;
  mode: StudyMode;
  decision: DecisionWord | null;
  decided_at: string | null;
  /** Whether the study lets the user's events be recorded now. */
  recording: boolean;
}

/** The outcome of a PUT: taken, stale (the study has a new version: ask again), or failed. */
export type DecideResult = 'taken' | 'stale' | 'failed';

/**
 * The consent routes of the server, as the model uses them.
 */
export interface IConsentApi {
  /** The user's studies; null when they cannot be read now. */
  list(): Promise<IStudy[] | null>;
  /** Take a decision on the version the user was shown. */
  decide(study: string, decision: DecisionWord, version: number): Promise<DecideResult>;
}

/**
 * The consent routes through ServerConnection (auth and XSRF as in any request).
 */
export class ServerConsentApi implements IConsentApi {
  constructor(private readonly _settings: ServerConnection.ISettings) {}

  async list(): Promise<IStudy[] | null> {
    try {
      const response = await this._request(CONSENT, {});
      if (response.status === 404) {
        return []; // a server without consent routes has no studies
      }
      if (!response.ok) {
        console.warn('Telemetry: GET', CONSENT, 'answered', response.status);
        return null;
      }
      const body = (await response.json()) as { studies?: unknown };
      return Array.isArray(body.studies) ? body.studies.filter(isStudy) : null;
    } catch (reason) {
      console.warn('Telemetry: GET', CONSENT, 'failed', reason);
      return null;
    }
  }

  async decide(study: string, decision: DecisionWord, version: number): Promise<DecideResult> {
    const path = URLExt.join(CONSENT, encodeURIComponent(study));
    const body = JSON.stringify({ decision, version });
    try {
      const response = await this._request(path, { method: 'PUT', body });
      if (response.status === 409) {
        return 'stale';
      }
      if (!response.ok) {
        const reply = await response.json().catch(() => null);
        console.warn('Telemetry: PUT', path, 'answered', response.status, reply);
        return 'failed';
      }
      return 'taken';
    } catch (reason) {
      console.warn('Telemetry: PUT', path, 'failed', reason);
      return 'failed';
    }
  }

  private _request(path: string, init: RequestInit): Promise<Response> {
    const url = URLExt.join(this._settings.baseUrl, path);
    return ServerConnection.makeRequest(url, init, this._settings);
  }
}

/**
 * The user's studies as last read, kept up to date after each decision.
 */
export class ConsentModel {
  /**
   * @param _api the server's consent routes.
   * @param _decided called after each decision taken, e.g. to read the schema listing again.
   */
  constructor(
    private readonly _api: IConsentApi,
    private readonly _decided: () => Promise<void> | void = () => undefined
  ) {}

  /** The studies as last read (empty until `refresh`, or when the server has none). */
  get studies(): readonly IStudy[] {
    return this._studies;
  }

  /** Whether the last read failed (the studies shown may be out of date). */
  get unknown(): boolean {
    return this._unknown;
  }

  /** Call `listener` after each change of the studies; returns a function that disconnects. */
  onChange(listener: () => void): () => void {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Read the studies again. */
  async refresh(): Promise<void> {
    const studies = await this._api.list();
    this._unknown = studies === null;
    if (studies !== null) {
      this._studies = studies;
    }
    this._listeners.forEach(listener => listener());
  }

  /**
   * Take a decision on the version of `study` the user was shown, then read the studies
   * again (after a 409 as well: the new version must be shown and asked again).
   */
  async decide(study: IStudy, decision: DecisionWord): Promise<DecideResult> {
    const result = await this._api.decide(study.study, decision, study.version);
    if (result !== 'failed') {
      await this.refresh();
    }
    if (result === 'taken') {
      await this._decided();
    }
    return result;
  }

  private _studies: IStudy[] = [];
  private _unknown = false;
  private readonly _listeners = new Set<() => void>();
}

/** Shows a study's text and returns the decision taken, or null when closed without one. */
export type Ask = (study: IStudy) => Promise<DecisionWord | null>;

/**
 * Ask for each study awaiting a decision, one after another (never two dialogs at once). A
 * study closed without a decision, or whose decision failed, is not asked again until the
 * page is loaded again; a stale version (409) is asked again with its new text.
 */
export async function askInTurn(model: ConsentModel, ask: Ask): Promise<void> {
  const passed = new Set<string>();
  const key = (study: IStudy) => `${study.study}\n${study.version}`;
  for (;;) {
    const study = model.studies.find(s => s.decision === null && !passed.has(key(s)));
    if (study === undefined) {
      return;
    }
    const decision = await ask(study);
    if (decision === null || (await model.decide(study, decision)) === 'failed') {
      passed.add(key(study));
    }
  }
}

/** Whether the user's events are recorded: by every study, none of them, or some. */
export type RecordingState = 'on' | 'off' | 'partial';

/** The recording state over the studies; null when there is no study (nothing to show). */
export function recordingState(studies: readonly IStudy[]): RecordingState | null {
  if (studies.length === 0) {
    return null;
  }
  const on = studies.filter(study => study.recording).length;
  return on === studies.length ? 'on' : on === 0 ? 'off' : 'partial';
}

/** The decisions a user can take on a study now, besides the one already taken. */
export function choices(study: IStudy): DecisionWord[] {
  if (study.mode === 'notice') {
    return study.decision === 'shown' ? [] : ['shown'];
  }
  const words: DecisionWord[] = ['granted', 'declined'];
  return words.filter(word => word !== study.decision);
}

/** The label of a decision's button: withdrawing is declining what was granted. */
export function choiceLabel(study: IStudy, word: DecisionWord): string {
  if (word === 'shown') {
    return 'I have read this';
  }
  if (word === 'declined') {
    return study.decision === 'granted' ? 'Withdraw' : 'Decline';
  }
  return 'Accept';
}

/** The user's decision in words, for the list of studies. */
export function decisionText(study: IStudy): string {
  switch (study.decision) {
    case 'granted':
      return 'accepted';
    case 'declined':
      return 'declined';
    case 'shown':
      return 'read';
    default:
      return 'no decision yet';
  }
}

function isStudy(value: unknown): value is IStudy {
  const study = value as IStudy;
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof study.study === 'string' &&
    typeof study.version === 'number' &&
    typeof study.recording === 'boolean'
  );
}
