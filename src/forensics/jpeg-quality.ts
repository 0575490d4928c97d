/**
 * The quality a JPEG file was saved at, estimated from its luminance quantisation table: the IJG
 * scaling (libjpeg's jpeg_quality_scaling) maps a quality q to a factor s = 5000/q (q < 50) or
 * 200 - 2q, and each table entry to floor((base * s + 50) / 100) clamped to [1, 255]. The estimate
 * is the q whose scaled standard table is closest to the file's. Files from encoders with other
 * tables get the nearest IJG quality, which is still a fair measure of how coarse they are.
 */

/** The standard luminance table (ITU T.81 Annex K.1), in natural (row-major) order. */
const STD_LUMA = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
  104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/** Zigzag position k -> natural index (DQT tables are stored in zigzag order). */
const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
  58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/** The IJG table for quality q (1-100), natural order. */
export function ijgLumaTable(q: number): number[] {
  const s = q < 50 ? Math.floor(5000 / q) : 200 - 2 * q;
  return STD_LUMA.map((b) => Math.min(255, Math.max(1, Math.floor((b * s + 50) / 100))));
}

/** Table 0 (luminance) of a JPEG file, natural order; undefined if the file has none or is not a JPEG. */
export function jpegLumaTable(bytes: Uint8Array): number[] | undefined {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let i = 2;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) return undefined;
    const marker = bytes[i + 1];
    if (marker === 0xd9 || marker === 0xda) return undefined; // end of image or start of scan: no table before it
    const len = (bytes[i + 2] << 8) | bytes[i + 3];
    if (marker === 0xdb) {
      let j = i + 4;
      while (j < i + 2 + len) {
        const precision = bytes[j] >> 4;
        const id = bytes[j] & 15;
        const size = precision ? 128 : 64;
        if (id === 0) {
          const table = new Array<number>(64);
          for (let k = 0; k < 64; k++) table[ZIGZAG[k]] = precision ? (bytes[j + 1 + 2 * k] << 8) | bytes[j + 2 + 2 * k] : bytes[j + 1 + k];
          return table;
        }
        j += 1 + size;
      }
    }
    i += 2 + len;
  }
  return undefined;
}

/** The estimated IJG quality (1-100) of a JPEG file, or undefined when it is not a JPEG with tables. */
export function estimateJpegQuality(bytes: Uint8Array): number | undefined {
  const table = jpegLumaTable(bytes);
  if (!table) return undefined;
  let best = 0;
  let bestErr = Infinity;
  for (let q = 1; q <= 100; q++) {
    const t = ijgLumaTable(q);
    let err = 0;
    for (let k = 0; k < 64; k++) err += Math.abs(Math.log(t[k]) - Math.log(table[k]));
    if (err < bestErr) [best, bestErr] = [q, err];
  }
  return best;
}
