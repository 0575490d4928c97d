/**
 * Image dimensions from the first bytes of a PNG or JPEG, without a decoder: what sharp's
 * metadata() reports for them (width, height, whether there is an alpha channel), at a fraction of
 * its cost, for readers of many files. Other formats, and anything odd, return undefined: the
 * caller asks sharp.
 */
import { isPng, pngChunks } from './png-chunks.js';

export interface ImageHeader {
  width: number;
  height: number;
  hasAlpha: boolean;
}

export function quickHeader(b: Uint8Array): ImageHeader | undefined {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (at: number, n: number) => String.fromCharCode(...b.subarray(at, at + n));
  if (b.length >= 33 && isPng(b) && ascii(12, 4) === 'IHDR') {
    const colourType = b[25];
    // Alpha: grey+alpha or RGBA, or a tRNS chunk before the image data.
    let hasAlpha = colourType === 4 || colourType === 6;
    for (const c of pngChunks(b, 10_000)) {
      if (hasAlpha || c.type === 'IDAT') break;
      if (c.type === 'tRNS') hasAlpha = true;
    }
    return { width: v.getUint32(16), height: v.getUint32(20), hasAlpha };
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    for (let pos = 2; pos + 9 <= b.length; ) {
      if (b[pos] !== 0xff) return undefined;
      const marker = b[pos + 1];
      if (marker === 0xff) {
        pos++;
        continue;
      }
      if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
        pos += 2;
        continue;
      }
      // Start of frame (baseline, progressive, lossless, arithmetic): not DHT (C4), JPG (C8) or DAC (CC).
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { height: v.getUint16(pos + 5), width: v.getUint16(pos + 7), hasAlpha: false };
      }
      if (marker === 0xda || marker === 0xd9) return undefined;
      pos += 2 + v.getUint16(pos + 2);
    }
  }
  return undefined;
}
