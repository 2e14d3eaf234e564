/**
 * Sampling: the server's decision for an event with a client id, made here first so that the
 * client skips what the server would drop (jupyter_telemetry_ext/core/sampling.py is the same).
 */

const TABLE = crcTable();
const encoder = new TextEncoder();

/**
 * CRC-32 (IEEE 802.3, as zlib's crc32) of bytes, as an unsigned 32-bit integer.
 */
export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc = TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * The event's place in [0, 1): CRC-32 of the UTF-8 of `schemaId + "\0" + id`, over 2^32.
 */
export function share(schemaId: string, id: string): number {
  return crc32(encoder.encode(`${schemaId}\u0000${id}`)) / 2 ** 32;
}

/**
 * Whether an event of a schema sampled at `rate` is kept.
 */
export function keeps(rate: number, schemaId: string, id: string): boolean {
  return rate >= 1 || share(schemaId, id) < rate;
}

function crcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    table[n] = c >>> 0;
  }
  return table;
}
