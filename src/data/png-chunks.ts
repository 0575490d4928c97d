/**
 * The chunks of a PNG file (PNG specification sec. 5.3: length, type, data, CRC), walked without
 * decoding anything: what the header reader, the text-chunk reader and the manifest-store finder
 * share.
 */

export interface PngChunk {
  type: string;
  /** The chunk's data (a view of the file's bytes); shorter than declared when the file is cut. */
  data: Uint8Array;
  /** The file ends inside this chunk. */
  truncated: boolean;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function isPng(b: Uint8Array): boolean {
  return b.length >= 8 && SIGNATURE.every((v, i) => b[i] === v);
}

/**
 * The chunks in file order, up to IEND, the first cut-off chunk, or `max` chunks (a real PNG
 * has a few dozen; thousands of IDATs are possible, hence the generous default). Nothing for
 * files that are not PNG.
 */
export function* pngChunks(b: Uint8Array, max = 200_000): Generator<PngChunk> {
  if (!isPng(b)) return;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let pos = 8, n = 0; n < max && pos + 8 <= b.length; n++) {
    const length = v.getUint32(pos);
    const type = String.fromCharCode(b[pos + 4], b[pos + 5], b[pos + 6], b[pos + 7]);
    const end = pos + 8 + length;
    const truncated = end > b.length;
    yield { type, data: b.subarray(pos + 8, Math.min(end, b.length)), truncated };
    if (truncated || type === 'IEND') return;
    pos = end + 4; // skip the CRC
  }
}
