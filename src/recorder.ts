/**
 * The built-in recorders' way to ITelemetry: a kind is recorded only when its setting is on and
 * the server records its schema; content is cut to the size limit.
 */
import { IKind, KINDS, Kind } from './kinds';
import { SizeLimit } from './limits';
import { ITelemetry } from './tokens';

/** Most events held until the settings are known. */
const MAX_HELD = 200;

/** Which kinds the user's settings turn on; a kind missing here is on. */
export type KindSettings = Partial<Record<Kind, boolean>>;

/**
 * Records events of the built-in kinds.
 */
export class Recorder {
  constructor(
    private readonly _telemetry: ITelemetry,
    readonly limit = new SizeLimit()
  ) {}

  /**
   * Apply the `events` setting. Until the first call, events are held (the newest
   * MAX_HELD): a kind the user turned off is never sent, even at start-up.
   */
  configure(kinds: KindSettings): void {
    this._kinds = { ...kinds };
    const held = this._held.splice(0);
    this._configured = true;
    held.forEach(([kind, data]) => this.record(kind, data));
  }

  /**
   * Whether events of a kind are recorded now: its setting is on and the server records its
   * schema (or has not said yet). Recorders skip costly work when not.
   */
  enabled(kind: Kind): boolean {
    const { schemaId, version } = KINDS[kind] as IKind;
    return this._kinds[kind] !== false && this._telemetry.accepts?.(schemaId, version) !== false;
  }

  /** Record an event of a kind, if enabled; its content cut to fit, or refused if it cannot. */
  record(kind: Kind, data: Record<string, unknown>): void {
    if (!this._configured) {
      this._held.push([kind, data]);
      this._held.splice(0, this._held.length - MAX_HELD);
      return;
    }
    if (!this.enabled(kind)) {
      return;
    }
    const { schemaId, version, content } = KINDS[kind] as IKind;
    const fitted = this.limit.fit(data, content);
    if (fitted === null) {
      console.warn('Telemetry: an event of', schemaId, 'is over the size limit; refused');
      return;
    }
    this._telemetry.record({ schema_id: schemaId, version, data: fitted });
  }

  private _kinds: KindSettings = {};
  private _configured = false;
  private readonly _held: [Kind, Record<string, unknown>][] = [];
}
