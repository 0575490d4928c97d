/**
 * "Stealth pnginfo": generation metadata hidden in the least significant bits of the pixels,
 * written by NovelAI (alpha channel, gzip) and by an AUTOMATIC1111 extension (alpha or RGB,
 * plain or gzip). It survives tools that strip PNG text chunks but not any change of the pixels.
 *
 * Layout (NovelAI's nai_meta.py / nai_meta_writer.py): the bits are read column by column (x
 * outer, y inner), 8 to a byte, most significant first: a 15-byte magic ("stealth_pngcomp",
 * "stealth_pnginfo", or "stealth_rgbcomp"/"stealth_rgbinfo" for the RGB form, where each pixel
 * gives its R, G and B bits in turn), a 32-bit big-endian length in bits, then the payload.
 */
import { gunzipSync } from 'node:zlib';

/** What was found hidden in the pixels. */
export interface StealthText {
  /** alpha (one bit per pixel) or rgb (three). */
  channel: 'alpha' | 'rgb';
  compressed: boolean;
  /** The payload as text (UTF-8). */
  text: string;
}

/** The most a payload may expand to. */
const MAX_PAYLOAD = 8 * 1024 * 1024;
const MAGICS: Record<string, { channel: 'alpha' | 'rgb'; compressed: boolean }> = {
  stealth_pnginfo: { channel: 'alpha', compressed: false },
  stealth_pngcomp: { channel: 'alpha', compressed: true },
  stealth_rgbinfo: { channel: 'rgb', compressed: false },
  stealth_rgbcomp: { channel: 'rgb', compressed: true },
};

/** A reader of LSBs in the column-major order the writers use. */
function bitReader(px: Uint8Array, width: number, height: number, stride: number, channel: 'alpha' | 'rgb'): { byte(): number | undefined; bytes(n: number): Uint8Array | undefined } {
  const perPixel = channel === 'alpha' ? 1 : 3;
  const total = width * height * perPixel;
  let pos = 0;
  const bit = (): number => {
    const pixel = Math.floor(pos / perPixel);
    const x = Math.floor(pixel / height);
    const y = pixel % height;
    const c = channel === 'alpha' ? 3 : pos % perPixel;
    pos++;
    return px[(y * width + x) * stride + c] & 1;
  };
  const byte = (): number | undefined => {
    if (pos + 8 > total) return undefined;
    let v = 0;
    for (let i = 0; i < 8; i++) v = (v << 1) | bit();
    return v;
  };
  return {
    byte,
    bytes(n) {
      if (pos + 8 * n > total) return undefined;
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = byte() as number;
      return out;
    },
  };
}

/**
 * Reads stealth metadata from 8-bit pixels (H x W x channels: RGBA, or RGB without an alpha
 * channel); undefined when there is none. `problem` is set when a magic was found but the
 * payload could not be read.
 */
export function readStealthText(px: Uint8Array, width: number, height: number, channels: 3 | 4): (StealthText & { problem?: string }) | undefined {
  for (const channel of channels === 4 ? (['alpha', 'rgb'] as const) : (['rgb'] as const)) {
    const r = bitReader(px, width, height, channels, channel);
    const magic = r.bytes(15);
    if (!magic) continue;
    const kind = MAGICS[Buffer.from(magic).toString('latin1')];
    if (!kind || kind.channel !== channel) continue;
    const lenBytes = r.bytes(4);
    if (!lenBytes) return { ...kind, text: '', problem: 'the hidden length is cut off' };
    const bits = Buffer.from(lenBytes).readUInt32BE(0);
    const payload = r.bytes(Math.floor(bits / 8));
    if (!payload) return { ...kind, text: '', problem: `the hidden payload (${bits} bits) is longer than the image holds` };
    try {
      const raw = kind.compressed ? gunzipSync(payload, { maxOutputLength: MAX_PAYLOAD }) : Buffer.from(payload);
      return { ...kind, text: raw.toString('utf8') };
    } catch (e) {
      return { ...kind, text: '', problem: `the hidden payload does not decompress (${(e as Error).message.split('\n')[0]})` };
    }
  }
  return undefined;
}
