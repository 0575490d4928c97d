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
 * file is read in the three conventions of those code bases (8-bit BGR, float BGR, float RGB)
 * and the best reading reported, with a p-value that pays for all nine (message, convention)
 * pairs tried.
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
export type Convention = 'u8-bgr' | 'f32-bgr' | 'f32-rgb';
/** The conventions of the code bases that mark their output (an 8-bit RGB caller is known of none). */
export const CONVENTIONS: readonly Convention[] = ['u8-bgr', 'f32-bgr', 'f32-rgb'];
const CONVENTION_WORDS: Record<Convention, string> = {
  'u8-bgr': '8-bit image, BGR order: the SD 1.x/2.x scripts',
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
export function blockBits(rgb: Uint8Array, width: number, height: number, convention: Convention, o: BlockBitsOptions = {}): Uint8Array {
  return allBlockBits(rgb, width, height, 3, o)[convention];
}

export interface BlockBitsOptions {
  /**
   * How close (in coefficient units) the float images' block maximum, estimated in float64, may be
   * to a decision boundary before the block is computed again exactly in float32 (default 0.01;
   * 0 never, Infinity always: the tests compare the two).
   */
  margin?: number;
  /** Counts the blocks computed again exactly. */
  stats?: { rechecked: number };
}

/**
 * The block bits of the three conventions, block by block, as pywt.dwt2(..., 'haar') and the
 * reference decoder compute them: each LL coefficient is (a h + c h) h + (b h + d h) h with
 * h = 1/sqrt(2) for the 2x2 pixels a b / c d of U, and a block's bit is (|c| mod 36) > 18 for the
 * largest |c| of its 15 coefficients after the first. `channels`: 3 (RGB) or 4 (RGBA, the alpha
 * not read).
 *
 * The 8-bit convention is exact as written (integer U, float64 wavelet, as pywt computes it). The
 * float conventions round every step to float32, which costs more than all the rest (Math.fround
 * each time); so they are estimated in float64, which differs from the float32 result by less than
 * 1e-4 here (values below 512, a few roundings of 2^-24 each), and only a block whose maximum lies
 * within `margin` of a decision boundary (a multiple of 18) is computed again with every float32
 * rounding. The bits are those of the exact computation (tested against it), about 1.6x faster.
 */
export function allBlockBits(rgb: Uint8Array, width: number, height: number, channels: 3 | 4 = 3, o: BlockBitsOptions = {}): Record<Convention, Uint8Array> {
  const margin = o.margin ?? 0.01;
  // The decoder reads the LL band (half size) in whole 4x4 blocks: 8x8 pixels each.
  const br = Math.floor(height / 2 / BLOCK);
  const bc = Math.floor(width / 2 / BLOCK);
  const u8bgr = new Uint8Array(br * bc);
  const f32bgr = new Uint8Array(br * bc);
  const f32rgb = new Uint8Array(br * bc);
  const h = Math.SQRT1_2;
  const row = width * channels;
  let rechecked = 0;
  for (let bi = 0; bi < br; bi++) {
    for (let bj = 0; bj < bc; bj++) {
      let m8 = -1;
      let mBgr = -1;
      let mRgb = -1;
      for (let k = 1; k < BLOCK * BLOCK; k++) {
        // The coefficient's 2x2 pixels: top-left at p, the row below at p + row.
        const p = (bi * 8 + (k >> 2) * 2) * row + (bj * 8 + (k & 3) * 2) * channels;
        let c8 = 0;
        let cBgr = 0;
        let cRgb = 0;
        for (let q = p; q < p + 2 * channels; q += channels) {
          // One column of the 2x2: the top pixel and the one below.
          const r0 = rgb[q];
          const g0 = rgb[q + 1];
          const b0 = rgb[q + 2];
          const r1 = rgb[q + row];
          const g1 = rgb[q + row + 1];
          const b1 = rgb[q + row + 2];
          c8 += (u8U(b0, g0, r0) * h + u8U(b1, g1, r1) * h) * h;
          cBgr += approxU(b0, g0, r0) + approxU(b1, g1, r1);
          cRgb += approxU(r0, g0, b0) + approxU(r1, g1, b1);
        }
        m8 = Math.max(m8, Math.abs(c8));
        mBgr = Math.max(mBgr, Math.abs(cBgr * 0.5));
        mRgb = Math.max(mRgb, Math.abs(cRgb * 0.5));
      }
      if (nearBoundary(mBgr, margin)) {
        mBgr = exactBlockMax(rgb, row, channels, bi, bj, false);
        rechecked++;
      }
      if (nearBoundary(mRgb, margin)) {
        mRgb = exactBlockMax(rgb, row, channels, bi, bj, true);
        rechecked++;
      }
      const k = bi * bc + bj;
      u8bgr[k] = bitOf(m8);
      f32bgr[k] = bitOf(mBgr);
      f32rgb[k] = bitOf(mRgb);
    }
  }
  if (o.stats) o.stats.rechecked += rechecked;
  return { 'u8-bgr': u8bgr, 'f32-bgr': f32bgr, 'f32-rgb': f32rgb };
}

/** The reference decoder's bit of a block from its largest coefficient magnitude. */
function bitOf(max: number): 0 | 1 {
  return max % SCALE > 0.5 * SCALE ? 1 : 0;
}

/** Whether a float64 estimate lies within `margin` of a value where the bit changes (multiples of 18). */
function nearBoundary(max: number, margin: number): boolean {
  const m = max % (0.5 * SCALE);
  return m < margin || 0.5 * SCALE - m < margin;
}

/**
 * A block's largest coefficient magnitude for the float image with every float32 rounding of
 * OpenCV's conversion and pywt's float32 wavelet: U = f32(f32(x - Y) 0.492) + 0.5 stored in
 * float32, then each product and sum of the Haar step rounded to float32.
 */
function exactBlockMax(rgb: Uint8Array, row: number, channels: number, bi: number, bj: number, rgbOrder: boolean): number {
  const h = H32;
  let max = -1;
  for (let k = 1; k < BLOCK * BLOCK; k++) {
    const p = (bi * 8 + (k >> 2) * 2) * row + (bj * 8 + (k & 3) * 2) * channels;
    const u = (q: number) => (rgbOrder ? exactU(rgb[q], rgb[q + 1], rgb[q + 2]) : exactU(rgb[q + 2], rgb[q + 1], rgb[q]));
    const a = u(p);
    const b = u(p + channels);
    const c = u(p + row);
    const d = u(p + row + channels);
    const ll = F(F(F(F(a * h) + F(c * h)) * h) + F(F(F(b * h) + F(d * h)) * h));
    max = Math.max(max, Math.abs(ll));
  }
  return max;
}

/*
 * OpenCV's BGR2YUV for U, as cv::cvtColor computes it, given the channel read as blue (b), green
 * and the one read as red (r). 8-bit: fixed point with 14 fractional bits,
 * Y = (B*1868 + G*9617 + R*4899 + 2^13) >> 14, U = ((B - Y)*8061 + (128 << 14) + 2^13) >> 14,
 * saturated. Float: Y = 0.114B + 0.587G + 0.299R, U = (B - Y)*0.492 + 0.5 (the float "half"), in
 * float32. The per-channel products are tabulated (the same values).
 */
const F = Math.fround;
const H32 = F(Math.SQRT1_2);
const B2Y = F(0.114);
const G2Y = F(0.587);
const R2Y = F(0.299);
const B2U = F(0.492);
const FB = new Float32Array(256).map((_, v) => F(v * B2Y));
const FG = new Float32Array(256).map((_, v) => F(v * G2Y));
const FR = new Float32Array(256).map((_, v) => F(v * R2Y));
/** The 8-bit products, with the rounding term of Y folded into G's. */
const YB = new Int32Array(256).map((_, v) => v * 1868);
const YG = new Int32Array(256).map((_, v) => v * 9617 + 8192);
const YR = new Int32Array(256).map((_, v) => v * 4899);
/** (128 << 14) + 2^13: U's offset and rounding term. */
const U_OFFSET = (128 << 14) + 8192;

/**
 * OpenCV's 8-bit U of a pixel, given the channel read as blue (b), green and the one read as red.
 * It never saturates: |B - Y| <= 255 keeps it within [2.5, 253.5].
 */
function u8U(b: number, g: number, r: number): number {
  return ((b - ((YB[b] + YG[g] + YR[r]) >> 14)) * 8061 + U_OFFSET) >> 14;
}

/** OpenCV's float U, as float32: the channel read as blue is x, as red y. */
function exactU(x: number, g: number, y: number): number {
  return F(F(F(x - F(F(FB[x] + FG[g]) + FR[y])) * B2U) + 0.5);
}

/** The same in float64 (no rounding to float32): within 1e-4 of exactU. */
function approxU(x: number, g: number, y: number): number {
  return (x - (FB[x] + FG[g] + FR[y])) * B2U + 0.5;
}

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
 * Reads the dwtDct mark of the Stable Diffusion code bases from 8-bit RGB pixels (H x W x 3, or
 * x 4 with `channels: 4`: the fourth, alpha, is not read, as OpenCV's IMREAD_COLOR drops it).
 * Undefined when the image is smaller than the reference accepts (256 x 256 pixels).
 */
export function readOpenWatermark(rgb: Uint8Array, width: number, height: number, o: { alpha?: number; channels?: 3 | 4 } = {}): OpenWatermarkResult | undefined {
  if (width * height < MIN_PIXELS || width < 8 || height < 8) return undefined;
  const alpha = o.alpha ?? 1e-3;
  let best: OpenMarkReading | undefined;
  let tested = 0;
  const all = allBlockBits(rgb, width, height, o.channels ?? 3);
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
