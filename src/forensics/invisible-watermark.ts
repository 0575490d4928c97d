/**
 * The open invisible watermark of the Stable Diffusion code bases: the `invisible-watermark`
 * library's dwtDct method (ShieldMnt/invisible-watermark, `imwatermark/maxDct.py`), read as its
 * reference decoder reads it.
 *
 * The encoder converts the image to YUV (OpenCV's BGR2YUV), takes a one-level Haar wavelet
 * transform of the U channel, cuts its LL band into 4x4 blocks and, in block k (row-major), moves
 * the largest non-DC coefficient's magnitude to 1/4 or 3/4 of a 36-wide step to write bit
 * k mod N of the message. Despite the name no DCT is involved. The decoder reads each block's bit
 * as (|c| mod 36) > 18 and averages the blocks of each message bit.
 *
 * Who writes which message (test/fixtures/make_invisible_watermark_fixtures.py reproduces each):
 * - SD 1.x (CompVis scripts): the bytes "StableDiffusionV1", 136 bits, on the 8-bit image in BGR order;
 * - SD 2.x (Stability's scripts): "SDV2", 32 bits, the same way;
 * - SDXL: the 48-bit message 0xB3EC907BB19E on the float32 image, in RGB order by diffusers and
 *   in BGR order by Stability's generative-models.
 * OpenCV's colour conversion of a float image centres U on 0.5, of an 8-bit image on 128; the
 * wavelet coefficients then differ by a constant that changes every |c| mod 36. So each saved
 * file is read in the four conventions (8-bit or float, BGR or RGB order) and the best reading
 * reported, with a p-value that pays for all twelve (message, convention) pairs tried.
 */

/** The step of the quantiser on channel U (imwatermark's default scales [0, 36, 36]: only U is used). */
const SCALE = 36;
const BLOCK = 4;
/** imwatermark refuses images with fewer pixels than this. */
export const MIN_PIXELS = 256 * 256;

/** The messages the Stable Diffusion code bases write. */
export const OPEN_MARKS = [
  { id: 'sd1', name: 'Stable Diffusion 1.x ("StableDiffusionV1")', bits: bytesToBits('StableDiffusionV1') },
  { id: 'sd2', name: 'Stable Diffusion 2.x ("SDV2")', bits: bytesToBits('SDV2') },
  { id: 'sdxl', name: 'SDXL (48-bit 0xB3EC907BB19E)', bits: hexToBits('b3ec907bb19e') },
] as const;

/** How the encoder was called: on the 8-bit or the float image, in BGR order (OpenCV's) or RGB. */
export type Convention = 'u8-bgr' | 'u8-rgb' | 'f32-bgr' | 'f32-rgb';
export const CONVENTIONS: readonly Convention[] = ['u8-bgr', 'u8-rgb', 'f32-bgr', 'f32-rgb'];
const CONVENTION_WORDS: Record<Convention, string> = {
  'u8-bgr': '8-bit image, BGR order: the SD 1.x/2.x scripts',
  'u8-rgb': '8-bit image, RGB order',
  'f32-bgr': "float image, BGR order: Stability's generative-models",
  'f32-rgb': 'float image, RGB order: diffusers',
};

function bytesToBits(s: string): number[] {
  return [...Buffer.from(s, 'latin1')].flatMap((b) => Array.from({ length: 8 }, (_, i) => (b >> (7 - i)) & 1));
}
function hexToBits(h: string): number[] {
  return bytesToBits(Buffer.from(h, 'hex').toString('latin1'));
}

/**
 * Each 4x4 block's bit (0 or 1) of the U channel's LL band, in the reference decoder's block order,
 * for one convention. `rgb` is H x W x 3 interleaved RGB (8-bit).
 */
export function blockBits(rgb: Uint8Array, width: number, height: number, convention: Convention): Uint8Array {
  return allBlockBits(rgb, width, height)[convention];
}

/**
 * The block bits of all four conventions from one pass over the pixels: each 2x2 group of pixels
 * gives one LL coefficient per convention, computed as pywt.dwt2(..., 'haar') does (along rows,
 * then columns, each tap 1/sqrt(2); in float64 for the 8-bit image, float32 for the float one).
 */
export function allBlockBits(rgb: Uint8Array, width: number, height: number): Record<Convention, Uint8Array> {
  const rows = Math.floor(height / 4) * 4;
  const cols = Math.floor(width / 4) * 4;
  const llRows = rows / 2;
  const llCols = cols / 2;
  const u8bgr = new Float64Array(llRows * llCols);
  const u8rgb = new Float64Array(llRows * llCols);
  const f32bgr = new Float32Array(llRows * llCols);
  const f32rgb = new Float32Array(llRows * llCols);
  const h = Math.SQRT1_2;
  const h32 = Math.fround(h);
  const f = Math.fround;
  const { uByteOf, uFloatOf } = tables();
  const row = width * 3;
  for (let i = 0; i < llRows; i++) {
    for (let j = 0; j < llCols; j++) {
      // The four pixels of the group: a, b on the top row, c, d below.
      const pa = 2 * i * row + 6 * j;
      const pb = pa + 3;
      const pc = pa + row;
      const pd = pc + 3;
      const k = i * llCols + j;
      // BGR order: the channel OpenCV reads as blue is B; RGB order: it is R (and red is B).
      const ua = uByteOf(rgb[pa + 2], rgb[pa + 1], rgb[pa]);
      const ub = uByteOf(rgb[pb + 2], rgb[pb + 1], rgb[pb]);
      const uc = uByteOf(rgb[pc + 2], rgb[pc + 1], rgb[pc]);
      const ud = uByteOf(rgb[pd + 2], rgb[pd + 1], rgb[pd]);
      u8bgr[k] = (ua * h + uc * h) * h + (ub * h + ud * h) * h;
      const va = uByteOf(rgb[pa], rgb[pa + 1], rgb[pa + 2]);
      const vb = uByteOf(rgb[pb], rgb[pb + 1], rgb[pb + 2]);
      const vc = uByteOf(rgb[pc], rgb[pc + 1], rgb[pc + 2]);
      const vd = uByteOf(rgb[pd], rgb[pd + 1], rgb[pd + 2]);
      u8rgb[k] = (va * h + vc * h) * h + (vb * h + vd * h) * h;
      const fa = uFloatOf(rgb[pa + 2], rgb[pa + 1], rgb[pa]);
      const fb = uFloatOf(rgb[pb + 2], rgb[pb + 1], rgb[pb]);
      const fc = uFloatOf(rgb[pc + 2], rgb[pc + 1], rgb[pc]);
      const fd = uFloatOf(rgb[pd + 2], rgb[pd + 1], rgb[pd]);
      f32bgr[k] = f(f(f(f(fa * h32) + f(fc * h32)) * h32) + f(f(f(fb * h32) + f(fd * h32)) * h32));
      const ga = uFloatOf(rgb[pa], rgb[pa + 1], rgb[pa + 2]);
      const gb = uFloatOf(rgb[pb], rgb[pb + 1], rgb[pb + 2]);
      const gc = uFloatOf(rgb[pc], rgb[pc + 1], rgb[pc + 2]);
      const gd = uFloatOf(rgb[pd], rgb[pd + 1], rgb[pd + 2]);
      f32rgb[k] = f(f(f(f(ga * h32) + f(gc * h32)) * h32) + f(f(f(gb * h32) + f(gd * h32)) * h32));
    }
  }
  return { 'u8-bgr': blocksOf(u8bgr, llRows, llCols), 'u8-rgb': blocksOf(u8rgb, llRows, llCols), 'f32-bgr': blocksOf(f32bgr, llRows, llCols), 'f32-rgb': blocksOf(f32rgb, llRows, llCols) };
}

let cachedTables: { uByteOf: (b: number, g: number, r: number) => number; uFloatOf: (b: number, g: number, r: number) => number } | undefined;

/**
 * U of one pixel given the channel read as blue (b), green and the one read as red (r), 8-bit and
 * float, with the per-channel products tabulated (the same float32 values the formulas give).
 */
function tables(): NonNullable<typeof cachedTables> {
  if (cachedTables) return cachedTables;
  const yb = new Int32Array(256);
  const yg = new Int32Array(256);
  const yr = new Int32Array(256);
  const fb = new Float64Array(256);
  const fg = new Float64Array(256);
  const fr = new Float64Array(256);
  for (let v = 0; v < 256; v++) {
    yb[v] = v * 1868;
    yg[v] = v * 9617 + 8192;
    yr[v] = v * 4899;
    fb[v] = F(v * B2Y);
    fg[v] = F(v * G2Y);
    fr[v] = F(v * R2Y);
  }
  const uByteOf = (b: number, g: number, r: number): number => {
    const y = (yb[b] + yg[g] + yr[r]) >> 14;
    const u = ((b - y) * 8061 + (128 << 14) + 8192) >> 14;
    return u < 0 ? 0 : u > 255 ? 255 : u;
  };
  const uFloatOf = (b: number, g: number, r: number): number => {
    const y = F(F(fb[b] + fg[g]) + fr[r]);
    return F(F(F(b - y) * B2U) + 0.5);
  };
  cachedTables = { uByteOf, uFloatOf };
  return cachedTables;
}

/** Each 4x4 block's bit: (|c| mod 36) > 18 for the largest |c| after the first (row-major; first on a tie, as np.argmax). */
function blocksOf(ll: Float64Array | Float32Array, llRows: number, llCols: number): Uint8Array {
  const br = Math.floor(llRows / BLOCK);
  const bc = Math.floor(llCols / BLOCK);
  const out = new Uint8Array(br * bc);
  for (let i = 0; i < br; i++) {
    for (let j = 0; j < bc; j++) {
      let best = -1;
      for (let k = 1; k < BLOCK * BLOCK; k++) {
        const v = Math.abs(ll[(i * BLOCK + (k >> 2)) * llCols + j * BLOCK + (k & 3)]);
        if (v > best) best = v;
      }
      out[i * bc + j] = best % SCALE > 0.5 * SCALE ? 1 : 0;
    }
  }
  return out;
}

/*
 * OpenCV's BGR2YUV for U, as cv::cvtColor computes it. 8-bit: fixed point with 14 fractional bits,
 * Y = (B*1868 + G*9617 + R*4899 + 2^13) >> 14, U = ((B - Y)*8061 + (128 << 14) + 2^13) >> 14,
 * saturated. Float: Y = 0.114B + 0.587G + 0.299R, U = (B - Y)*0.492 + 0.5 (the float "half"), in
 * float32.
 */
const F = Math.fround;
const B2Y = F(0.114);
const G2Y = F(0.587);
const R2Y = F(0.299);
const B2U = F(0.492);

/** The reference decoder's per-bit mean scores for a message of `length` bits. */
export function meanScores(blocks: Uint8Array, length: number): Float64Array {
  const sum = new Float64Array(length);
  const count = new Float64Array(length);
  for (let k = 0; k < blocks.length; k++) {
    sum[k % length] += blocks[k];
    count[k % length]++;
  }
  return sum.map((s, i) => (count[i] ? s / count[i] : NaN));
}

/** One reading of the image against one message. */
export interface OpenMarkReading {
  /** sd1 | sd2 | sdxl. */
  mark: (typeof OPEN_MARKS)[number]['id'];
  /** The message in words. */
  name: string;
  convention: Convention;
  conventionWords: string;
  /** Bits read equal to the message's, out of `bits`. */
  matched: number;
  bits: number;
  /** P(at least `matched` of `bits` by chance), one-sided binomial with p = 1/2. */
  pValue: number;
}

export interface OpenWatermarkResult {
  /** The best reading (smallest p-value). */
  best: OpenMarkReading;
  /** Readings tried (messages x conventions): the Bonferroni factor. */
  tested: number;
  /** min(1, best.pValue x tested): the chance that any reading matches so well in an unmarked image. */
  correctedP: number;
  /** correctedP below the decision level. */
  found: boolean;
  /** The decision level (default 1e-3). */
  alpha: number;
}

/**
 * Reads the dwtDct mark of the Stable Diffusion code bases from 8-bit RGB pixels (H x W x 3).
 * Undefined when the image is smaller than the reference accepts (256 x 256 pixels).
 */
export function readOpenWatermark(rgb: Uint8Array, width: number, height: number, o: { alpha?: number } = {}): OpenWatermarkResult | undefined {
  if (width * height < MIN_PIXELS || width < 8 || height < 8) return undefined;
  const alpha = o.alpha ?? 1e-3;
  let best: OpenMarkReading | undefined;
  let tested = 0;
  const all = allBlockBits(rgb, width, height);
  for (const convention of CONVENTIONS) {
    const blocks = all[convention];
    for (const m of OPEN_MARKS) {
      tested++;
      const scores = meanScores(blocks, m.bits.length);
      let matched = 0;
      // The reference's bit: mean * 255 > 127.
      for (let i = 0; i < m.bits.length; i++) if ((scores[i] * 255 > 127 ? 1 : 0) === m.bits[i]) matched++;
      const pValue = binomialTail(matched, m.bits.length);
      if (!best || pValue < best.pValue) best = { mark: m.id, name: m.name, convention, conventionWords: CONVENTION_WORDS[convention], matched, bits: m.bits.length, pValue };
    }
  }
  const b = best as OpenMarkReading;
  const correctedP = Math.min(1, b.pValue * tested);
  return { best: b, tested, correctedP, found: correctedP < alpha, alpha };
}

/** P(X >= k) for X ~ Binomial(n, 1/2), exactly (n <= 1000). */
export function binomialTail(k: number, n: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  // Sum C(n, j) / 2^n for j = k..n in log space, largest term first for accuracy.
  const logC = (j: number) => lgammaInt(n + 1) - lgammaInt(j + 1) - lgammaInt(n - j + 1);
  let sum = 0;
  for (let j = k; j <= n; j++) sum += Math.exp(logC(j) - n * Math.LN2);
  return Math.min(1, sum);
}

const LOG_FACT: number[] = [0];
/** log((m - 1)!) for integer m >= 1. */
function lgammaInt(m: number): number {
  for (let i = LOG_FACT.length; i < m; i++) LOG_FACT[i] = LOG_FACT[i - 1] + Math.log(i);
  return LOG_FACT[m - 1];
}
