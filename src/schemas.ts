/**
 * Which schemas the server records, from `GET api/telemetry/schemas`.
 */
import { keeps } from './sampling';

/**
 * One entry of `GET api/telemetry/schemas`.
 */
export interface ISchemaSummary {
  id: string;
  version: number | string;
  title?: string;
  description?: string;
  frontend: boolean;
  allowed: boolean;
  /** The share of the schema's events the server keeps; 1 (or absent) when not sampled. */
  sampling?: number;
  /** Set when a study keeps this user's events out: not sent until the user decides. */
  consent?: 'needed' | 'declined';
}

/**
 * The schema versions that frontends may post and the admin's allow-list records, and the
 * sampling rates of their schemas.
 */
export class RecordedSchemas {
  /**
   * @param summaries the server's list; null when it could not be read, and then every
   * event is sent and the server decides.
   */
  constructor(summaries: ISchemaSummary[] | null) {
    this._all = summaries === null;
    for (const s of summaries ?? []) {
      this._listed.set(key(s.id, s.version), s);
      if (s.frontend && s.allowed && !s.consent) {
        this._keys.add(key(s.id, s.version));
      }
      if (typeof s.sampling === 'number' && s.sampling > 0 && s.sampling < 1) {
        this._rates.set(s.id, s.sampling); // anything else: sent, and the server decides
      }
    }
  }

  /** Whether an event of this schema version is worth a request. */
  accepts(schemaId: string, version: number | string): boolean {
    return this._all || this._keys.has(key(schemaId, version));
  }

  /** Why the server does not record events of this schema version; undefined when it does. */
  refusal(schemaId: string, version: number | string): string | undefined {
    if (this.accepts(schemaId, version)) {
      return undefined;
    }
    const listed = this._listed.get(key(schemaId, version));
    if (listed === undefined) {
      return `version ${version} is not in the server's schema list (GET api/telemetry/schemas)`;
    }
    if (!listed.frontend) {
      return 'the schema does not have "frontend": true, so the server refuses it from a browser';
    }
    if (listed.consent) {
      return `a study this user has not allowed covers it (consent: ${listed.consent})`;
    }
    return "the schema is not in the admin's allow-list (c.EventLog.allowed_schemas)";
  }

  /** Whether the server's sampling keeps an event of this schema with this client id. */
  keeps(schemaId: string, id: string): boolean {
    const rate = this._rates.get(schemaId);
    return rate === undefined || keeps(rate, schemaId, id);
  }

  private readonly _all: boolean;
  private readonly _keys = new Set<string>();
  private readonly _listed = new Map<string, ISchemaSummary>();
  private readonly _rates = new Map<string, number>();
}

function key(schemaId: string, version: number | string): string {
  return `${schemaId}\n${String(version)}`; // 1 and "1" are the same version
}
