/**
 * Which schemas the server records, from `GET api/telemetry/schemas`.
 */

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
}

/**
 * The schema versions that frontends may post and the admin's allow-list records.
 */
export class RecordedSchemas {
  /**
   * @param summaries the server's list; null when it could not be read, and then every
   * event is sent and the server decides.
   */
  constructor(summaries: ISchemaSummary[] | null) {
    this._all = summaries === null;
    for (const s of summaries ?? []) {
      if (s.frontend && s.allowed) {
        this._keys.add(key(s.id, s.version));
      }
    }
  }

  /** Whether an event of this schema version is worth a request. */
  accepts(schemaId: string, version: number | string): boolean {
    return this._all || this._keys.has(key(schemaId, version));
  }

  private readonly _all: boolean;
  private readonly _keys = new Set<string>();
}

function key(schemaId: string, version: number | string): string {
  return `${schemaId}\n${String(version)}`; // 1 and "1" are the same version
}
