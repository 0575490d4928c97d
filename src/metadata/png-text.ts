/**
 * PNG text chunks (tEXt, zTXt, iTXt; PNG specification sec. 11.3.4), read by hand.
 *
 * Written here rather than taken from ExifReader because generator metadata lives in compressed
 * chunks too (ComfyUI's workflow, NovelAI's iTXt) and a compressed chunk is a decompression bomb
 * waiting to happen: each one is inflated with a hard output limit, and the walk stops at a chunk
 * count limit. ExifReader still reads EXIF, XMP and IPTC (src/metadata/read.ts).
 */
import { inflateSync } from 'node:zlib';

/** One text chunk: keyword and text (Latin-1 for tEXt and zTXt, UTF-8 for iTXt). */
export interface PngText {
  keyword: string;
  text: string;
  chunk: 'tEXt' | 'zTXt' | 'iTXt';
  /** Set when the text could not be read in full (over the limit, or a broken stream). */
  problem?: string;
}

/** The most text one compressed chunk may expand to. */
export const MAX_TEXT_BYTES = 8 * 1024 * 1024;
/** The most chunks walked (a real PNG has a few dozen; thousands of IDATs are possible, so generous). */
const MAX_CHUNKS = 200_000;

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function isPng(b: Uint8Array): boolean {
  return b.length >= 8 && SIGNATURE.every((v, i) => b[i] === v);
}

/** The width and height from the IHDR chunk, without decoding anything. */
export function pngSize(b: Uint8Array): { width: number; height: number } | undefined {
  if (!isPng(b) || b.length < 24) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { width: v.getUint32(16), height: v.getUint32(20) };
}

/** Every text chunk of a PNG, in file order; an empty list for other files. Never throws. */
export function readPngText(b: Uint8Array, maxTextBytes = MAX_TEXT_BYTES): PngText[] {
  if (!isPng(b)) return [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: PngText[] = [];
  let pos = 8;
  for (let n = 0; n < MAX_CHUNKS && pos + 8 <= b.length; n++) {
    const length = v.getUint32(pos);
    const type = String.fromCharCode(b[pos + 4], b[pos + 5], b[pos + 6], b[pos + 7]);
    const start = pos + 8;
    const end = start + length;
    if (end > b.length) break; // truncated file: keep what was read
    if (type === 'tEXt' || type === 'zTXt' || type === 'iTXt') {
      const t = parseTextChunk(type, b.subarray(start, end), maxTextBytes);
      if (t) out.push(t);
    }
    if (type === 'IEND') break;
    pos = end + 4; // skip the CRC
  }
  return out;
}

function parseTextChunk(type: PngText['chunk'], data: Uint8Array, maxTextBytes: number): PngText | undefined {
  const nul = data.indexOf(0);
  if (nul <= 0 || nul > 79) return undefined; // keywords are 1-79 bytes
  const keyword = latin1(data.subarray(0, nul));
  const inflate = (bytes: Uint8Array): { text?: Uint8Array; problem?: string } => {
    try {
      return { text: inflateSync(bytes, { maxOutputLength: maxTextBytes }) };
    } catch (e) {
      const over = (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError;
      return { problem: over ? `compressed text expands beyond ${maxTextBytes} bytes; not expanded` : 'broken compressed text' };
    }
  };
  if (type === 'tEXt') return { keyword, text: latin1(data.subarray(nul + 1)), chunk: type };
  if (type === 'zTXt') {
    const r = inflate(data.subarray(nul + 2));
    return { keyword, text: r.text ? latin1(r.text) : '', chunk: type, ...(r.problem ? { problem: r.problem } : {}) };
  }
  // iTXt: keyword, compression flag, method, language tag, translated keyword, text.
  const compressed = data[nul + 1] === 1;
  let p = nul + 3;
  const lang = data.indexOf(0, p);
  if (lang < 0) return undefined;
  const translated = data.indexOf(0, lang + 1);
  if (translated < 0) return undefined;
  p = translated + 1;
  const body = data.subarray(p);
  if (!compressed) return { keyword, text: utf8(body), chunk: type };
  const r = inflate(body);
  return { keyword, text: r.text ? utf8(r.text) : '', chunk: type, ...(r.problem ? { problem: r.problem } : {}) };
}

const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
const utf8 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
