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
export function blockBits(rgb: Uint8Array, width: number, height: number, convention: Convention): Uint8Array {
  return allBlockBits(rgb, width, height)[convention];
}

/**
 * The block bits of the three conventions: one pass over the pixels makes the three U planes, then
 * each plane's LL band is computed as pywt.dwt2(..., 'haar') does (along rows, then columns, each
 * tap 1/sqrt(2); in float64 for the 8-bit image, float32 for the float one). `channels`: 3 (RGB)
 * or 4 (RGBA, the alpha not read).
 */
export function allBlockBits(rgb: Uint8Array, width: number, height: number, channels: 3 | 4 = 3): Record<Convention, Uint8Array> {
  const rows = Math.floor(height / 4) * 4;
  const cols = Math.floor(width / 4) * 4;
  // U planes of the region the decoder reads, per convention (8-bit values exactly; float32 ones exactly).
  const n = rows * cols;
  const { u8bgr, f32bgr, f32rgb } = scratch.planes(n);
  // Written out (not calls of small functions): this loop is most of the mark's cost.
  for (let y = 0, k = 0; y < rows; y++) {
    for (let x = 0, p = y * width * channels; x < cols; x++, k++, p += channels) {
      const r = rgb[p];
      const g = rgb[p + 1];
      const b = rgb[p + 2];
      // BGR order: the channel OpenCV reads as blue is B; RGB order: it is R (and red is B).
      // 8-bit U never saturates: |B - Y| <= 255 keeps it within [2.5, 253.5].
      const y1 = (YB[b] + YG[g] + YR[r]) >> 14;
      u8bgr[k] = ((b - y1) * 8061 + U_OFFSET) >> 14;
      // Float: a Float32Array store rounds to float32, as OpenCV's last step does.
      const z1 = F(F(FB[b] + FG[g]) + FR[r]);
      f32bgr[k] = F(F(b - z1) * B2U) + 0.5;
      const z2 = F(F(FB[r] + FG[g]) + FR[b]);
      f32rgb[k] = F(F(r - z2) * B2U) + 0.5;
    }
  }
  return {
    'u8-bgr': blocksOf(haar64(u8bgr, rows, cols), rows / 2, cols / 2),
    'f32-bgr': blocksOf(haar32(f32bgr, rows, cols), rows / 2, cols / 2),
    'f32-rgb': blocksOf(haar32(f32rgb, rows, cols), rows / 2, cols / 2),
  };
}

/**
 * Working arrays kept between calls (tens of megabytes for a large image): allocating and zeroing
 * them anew for every image cost more than the arithmetic. Each thread has its own; the results
 * (block bits) are fresh arrays.
 */
const scratch = (() => {
  let size = 0;
  let planes = { u8bgr: new Uint8Array(0), f32bgr: new Float32Array(0), f32rgb: new Float32Array(0) };
  let l64 = new Float64Array(0);
  let l32 = new Float32Array(0);
  return {
    planes(n: number) {
      if (n > size) {
        size = n;
        planes = { u8bgr: new Uint8Array(n), f32bgr: new Float32Array(n), f32rgb: new Float32Array(n) };
      }
      return { u8bgr: planes.u8bgr.subarray(0, n), f32bgr: planes.f32bgr.subarray(0, n), f32rgb: planes.f32rgb.subarray(0, n) };
    },
    ll64(n: number) {
      if (n > l64.length) l64 = new Float64Array(n);
      return l64.subarray(0, n);
    },
    ll32(n: number) {
      if (n > l32.length) l32 = new Float32Array(n);
      return l32.subarray(0, n);
    },
  };
})();

/** The LL band of pywt.dwt2(u, 'haar') for a float64 input: along rows, then columns, each tap 1/sqrt(2). */
function haar64(u: Uint8Array, rows: number, cols: number): Float64Array {
  const h = Math.SQRT1_2;
  const lr = rows >> 1;
  const lc = cols >> 1;
  const ll = scratch.ll64(lr * lc);
  for (let i = 0; i < lr; i++) {
    const top = 2 * i * cols;
    const bottom = top + cols;
    for (let j = 0; j < lc; j++) {
      const a = u[top + 2 * j];
      const b = u[top + 2 * j + 1];
      const c = u[bottom + 2 * j];
      const d = u[bottom + 2 * j + 1];
      ll[i * lc + j] = (a * h + c * h) * h + (b * h + d * h) * h;
    }
  }
  return ll;
}

/** The same for a float32 input, which pywt keeps in float32 (every step rounded to float32). */
function haar32(u: Float32Array, rows: number, cols: number): Float32Array {
  const h = H32;
  const lr = rows >> 1;
  const lc = cols >> 1;
  const ll = scratch.ll32(lr * lc);
  for (let i = 0; i < lr; i++) {
    const top = 2 * i * cols;
    const bottom = top + cols;
    for (let j = 0; j < lc; j++) {
      const a = u[top + 2 * j];
      const b = u[top + 2 * j + 1];
      const c = u[bottom + 2 * j];
      const d = u[bottom + 2 * j + 1];
      ll[i * lc + j] = F(F(F(F(a * h) + F(c * h)) * h) + F(F(F(b * h) + F(d * h)) * h));
    }
  }
  return ll;
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
