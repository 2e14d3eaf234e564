/**
 * The kinds of event the client records itself, their schemas (shipped in `schemas/`) and the
 * setting that turns each off.
 */

const BASE = 'https://events.jupyter.org/jupyter_telemetry_ext';

/** A kind's schema id, the version the client writes, and its content field (cut to fit). */
export interface IKind {
  schemaId: string;
  version: number;
  content?: string;
}

export const KINDS = {
  notebook: { schemaId: `${BASE}/notebook`, version: 2 },
  cellExecuted: { schemaId: `${BASE}/cell`, version: 2, content: 'source' },
  command: { schemaId: `${BASE}/command`, version: 1 },
  activeCell: { schemaId: `${BASE}/active-cell`, version: 1 },
  cellStructure: { schemaId: `${BASE}/cell-structure`, version: 1 },
  cellEdit: { schemaId: `${BASE}/cell-edit`, version: 1, content: 'source' },
  clipboard: { schemaId: `${BASE}/clipboard`, version: 1, content: 'text' },
  kernel: { schemaId: `${BASE}/kernel`, version: 1 },
  scroll: { schemaId: `${BASE}/scroll`, version: 1 },
  activeTime: { schemaId: `${BASE}/active-time`, version: 1 }
} satisfies Record<string, IKind>;

/** The name of a kind, as the `events` setting spells it. */
export type Kind = keyof typeof KINDS;
