/**
 * PNG text chunks (tEXt, zTXt, iTXt; PNG specification sec. 11.3.4), read by hand.
 *
 * Written here rather than taken from ExifReader because generator metadata lives in compressed
 * chunks too (ComfyUI's workflow, NovelAI's iTXt) and a compressed chunk is a decompression bomb
 * waiting to happen: each one is inflated with a hard output limit, and the walk stops at a chunk
 * count limit. ExifReader still reads EXIF, XMP and IPTC (src/metadata/read.ts).
 */
import { inflateSync } from 'node:zlib';
import { pngChunks } from '../data/png-chunks.js';

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

/** Every text chunk of a PNG, in file order; an empty list for other files. Never throws. */
export function readPngText(b: Uint8Array, maxTextBytes = MAX_TEXT_BYTES): PngText[] {
  const out: PngText[] = [];
  for (const c of pngChunks(b)) {
    // A text chunk cut off by the end of the file is not read (keep what was read before it).
    if (c.truncated) break;
    if (c.type === 'tEXt' || c.type === 'zTXt' || c.type === 'iTXt') {
      const t = parseTextChunk(c.type, c.data, maxTextBytes);
      if (t) out.push(t);
    }
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
