/**
 * The checks on an image's pixels, from one decoding of its bytes (8-bit, as stored: no ICC
 * conversion, as the reference decoders cv2.imread and PIL read them): the Stable Diffusion
 * invisible mark, metadata hidden in the low bits, and NovelAI's signature over the pixels. Pure
 * work on bytes: the inspector runs it on worker threads (pixel-worker.ts) or in its own.
 */
import { MIN_PIXELS, readOpenWatermark } from '../forensics/invisible-watermark.js';
import { HiddenMetadata, readHiddenMetadata } from '../metadata/read.js';
import type { OpenWatermarkSignal } from './report.js';

/** What pixelSignals is given: the file's bytes and what the text-level reading found. */
export interface PixelRequest {
  bytes: Uint8Array;
  maxPixels: number;
  /** The text chunk's NovelAI record, for the signature check without a hidden copy. */
  textComment?: string;
  /** Whether the header declares an alpha channel (read once by the caller). */
  hasAlpha: boolean;
}

export interface PixelSignals {
  openWatermark: OpenWatermarkSignal;
  hidden?: HiddenMetadata;
}

export async function pixelSignals(r: PixelRequest): Promise<PixelSignals> {
  const { default: sharp } = await import('sharp');
  let raw: { data: Buffer; info: { width: number; height: number } };
  let channels: 3 | 4;
  try {
    // RGB, or RGBA where the file has alpha (the hidden copy may live there).
    const img = sharp(r.bytes, { limitInputPixels: r.maxPixels, ignoreIcc: true });
    channels = r.hasAlpha ? 4 : 3;
    raw = await (channels === 4 ? img.ensureAlpha() : img.removeAlpha()).toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    return { openWatermark: { status: 'skipped', reason: `the pixels could not be decoded (${(e as Error).message.split('\n')[0]})` } };
  }
  const { width, height } = raw.info;
  const px = new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength);
  const hidden = readHiddenMetadata(px, width, height, channels, r.textComment);
  if (width * height < MIN_PIXELS) return { hidden, openWatermark: { status: 'skipped', reason: `the image has fewer than 256x256 pixels, the smallest the mark's reference decoder reads` } };
  const w = readOpenWatermark(px, width, height, { channels });
  const openWatermark: OpenWatermarkSignal = w
    ? { status: 'checked', ...w.best, found: w.found, correctedP: w.correctedP, tested: w.tested, alpha: w.alpha }
    : { status: 'skipped', reason: 'the image is too small for the mark' };
  return { hidden, openWatermark };
}
