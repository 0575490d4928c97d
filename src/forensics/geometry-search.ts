/**
 * Detection through rotation by any angle and crop-and-resize. An image turned, shifted or cropped
 * and scaled back inverts to noise that is close to its x_T moved the same way: the pixel-space
 * model treats moved content as it treats upright content. Measured on the emoji run with the true
 * map: 0.72-0.77 of x_T's signs come back after turns of 15, 30, 45 and 75 degrees and 0.85 after a
 * half turn, chance being 0.5; but only when the map's shift is right too. Resampling libraries
 * turn about slightly different centres and crop their canvas to whole pixels, so the same 75
 * degrees needs a shift of (1.5, 0.5) pixels, and a quarter pixel off costs 0.05-0.10 of the signs.
 *
 * So the search covers similarity maps q = c + s R(theta) (p - c) + t from a key position p to a
 * position q of the inverted noise (c the centre):
 *   - turns: theta any angle, s = 1, |t| <= MAX_TURN_SHIFT in each axis;
 *   - crops: theta = 0, 1 < s <= 1/sqrt(minArea), t within the offsets a crop of that size allows,
 *     |t| <= (s - 1) W / 2 (and H for y), plus a margin.
 * Every map tried lies on a fine lattice (0.5 degrees, 0.0125 of scale, 0.25 px); its size G is
 * counted exactly. Searching all of it with 1,024 nonces each is too slow, so a coarse sub-lattice
 * (2 degrees, 0.025, 0.5 px) is screened first on a subset of positions packed 32 to a word, the
 * best coarse maps are refined on the fine lattice with their nonce, and the full test
 * (detectInNoise) runs on the few refined maps.
 *
 * The p-value is a weighted Bonferroni bound over the lattice: p = min(1, 2 p_0, 2 G min_h p_h),
 * p_0 the unmoved test. Each p_h is uniform under "not made with this key" whatever the image
 * (the key is what is random), and the maps actually tested are a subset of the lattice, so
 * P(p <= a) <= a / 2 + G a / (2 G) = a however the maps were chosen. With no attack it costs at
 * most a factor 2; a found map is so strongly significant (z of 20-30 over 3,072 positions) that
 * the factor G (about 10^5.5) does not matter.
 */
import { NONCES, NoiseDetection, PAYLOAD_BITS, detectInNoise, keystreams } from './gaussian-shading.js';
import type { WatermarkKey } from './key.js';
import { OptionError } from '../engine/errors.js';

/** A similarity map from key positions to positions of the inverted noise (see the file's comment). */
export interface NoiseMap {
  /** Turn in degrees; positive: the image looks turned clockwise. */
  degrees: number;
  /** Scale: above 1, the image was cropped and enlarged. */
  scale: number;
  dx: number;
  dy: number;
}

export interface GeometryDetection extends NoiseDetection {
  /** The map at which the key was found best; the identity when the unmoved test won. */
  map: NoiseMap;
  /** G, the number of maps the p-value pays for. */
  mapsSearched: number;
}

export interface GeometrySearchOptions {
  /** Smallest share of the area a crop may keep (default 0.6; 0.3..1). */
  minArea?: number;
}

/** The smallest share of the area a searched crop keeps, unless told (GeometrySearchOptions.minArea). */
export const DEFAULT_MIN_AREA = 0.6;

/** The options' smallest crop area share, or the default; throws (naming the value) outside 0.3..1. */
export function minAreaOf(o: GeometrySearchOptions): number {
  const minArea = o.minArea ?? DEFAULT_MIN_AREA;
  if (!(minArea >= 0.3 && minArea <= 1)) throw new OptionError(`the crop search takes a smallest area share in 0.3..1, got ${o.minArea}`);
  return minArea;
}

export const IDENTITY_MAP: NoiseMap = { degrees: 0, scale: 1, dx: 0, dy: 0 };
/** Largest shift searched with a turn, in pixels per axis: resampling libraries' centres differ by about this much. */
export const MAX_TURN_SHIFT = 1.5;
const FINE = { degrees: 0.5, scale: 0.0125, shift: 0.25 };
const COARSE = { degrees: 2, scale: 0.025, shift: 0.5 };
/** Margin beyond a crop's offsets, in pixels: crops are whole pixels, so the scale is not exact. */
const CROP_MARGIN = 0.5;
/** log10 p below which the unmoved test is taken as is, without the search. */
const SURE = -12;
/** Coarse maps carried into refinement. */
const KEEP = 6;

/**
 * Where `pixels` (indices y W + x of an H x W grid) read from under `map`: the four bilinear
 * corners of each source and their weights, written at 4 u .. 4 u + 3 for the u-th pixel; corner
 * -1 when the source lies outside the image. One resampler for warpNoise and the screening.
 */
function bilinearSources(shape: readonly [number, number, number], map: NoiseMap, pixels: ArrayLike<number>, corner: Int32Array, weight: Float64Array): void {
  const H = shape[1];
  const W = shape[2];
  const r = (map.degrees * Math.PI) / 180;
  const cos = map.scale * Math.cos(r);
  const sin = map.scale * Math.sin(r);
  const cx = (W - 1) / 2;
  const cy = (H - 1) / 2;
  for (let u = 0; u < pixels.length; u++) {
    const p = pixels[u];
    const x = (p % W) - cx;
    const y = (p - (p % W)) / W - cy;
    const sx = cos * x - sin * y + cx + map.dx;
    const sy = sin * x + cos * y + cy + map.dy;
    const k = 4 * u;
    if (!(sx > -1e-9 && sy > -1e-9 && sx < W - 1 + 1e-9 && sy < H - 1 + 1e-9)) {
      corner[k] = -1;
      continue;
    }
    const x0 = Math.min(W - 1, Math.max(0, Math.floor(sx)));
    const y0 = Math.min(H - 1, Math.max(0, Math.floor(sy)));
    const x1 = Math.min(W - 1, x0 + 1);
    const y1 = Math.min(H - 1, y0 + 1);
    const fx = Math.max(0, sx - x0);
    const fy = Math.max(0, sy - y0);
    corner[k] = y0 * W + x0;
    corner[k + 1] = y0 * W + x1;
    corner[k + 2] = y1 * W + x0;
    corner[k + 3] = y1 * W + x1;
    weight[k] = (1 - fx) * (1 - fy);
    weight[k + 1] = fx * (1 - fy);
    weight[k + 2] = (1 - fx) * fy;
    weight[k + 3] = fx * fy;
  }
}

/** The value the u-th pixel (grid index p) of the channel starting at `base` reads: bilinear, or its own value when its source is outside. */
function sampleAt(noise: Float32Array, base: number, p: number, u: number, corner: Int32Array, weight: Float64Array): number {
  const k = 4 * u;
  if (corner[k] < 0) return noise[base + p];
  return weight[k] * noise[base + corner[k]] + weight[k + 1] * noise[base + corner[k + 1]] + weight[k + 2] * noise[base + corner[k + 2]] + weight[k + 3] * noise[base + corner[k + 3]];
}

/**
 * The noise moved back by `map`: out(p) = in(c + s R (p - c) + t), bilinear, and which values
 * read from inside the image. Positions whose source lies outside keep their own value, in(p):
 * filling them with a constant would give them the same sign bit in every image, and a fixed key
 * would then meet a fixed pattern there, which biases the test for that key.
 */
function moveNoise(noise: Float32Array, shape: readonly [number, number, number], map: NoiseMap): { moved: Float32Array; inside: Uint8Array } {
  const [C, H, W] = shape;
  if (noise.length !== C * H * W) throw new Error(`warpNoise: ${noise.length} values do not make a ${C}x${H}x${W} image`);
  const all = Int32Array.from({ length: H * W }, (_, p) => p);
  const [corner, weight] = [new Int32Array(4 * H * W), new Float64Array(4 * H * W)];
  bilinearSources(shape, map, all, corner, weight);
  const moved = new Float32Array(noise.length);
  const inside = new Uint8Array(noise.length);
  for (let c = 0; c < C; c++)
    for (let p = 0; p < H * W; p++) {
      moved[c * H * W + p] = sampleAt(noise, c * H * W, p, p, corner, weight);
      inside[c * H * W + p] = corner[4 * p] < 0 ? 0 : 1;
    }
  return { moved, inside };
}

/** The noise moved back by `map` (see moveNoise). */
export function warpNoise(noise: Float32Array, shape: readonly [number, number, number], map: NoiseMap): Float32Array {
  return moveNoise(noise, shape, map).moved;
}

/** Steps of `step` from -limit to limit (limit rounded down to the step), symmetric about 0. */
const symmetric = (limit: number, step: number) => {
  const n = Math.floor(limit / step + 1e-9);
  return Array.from({ length: 2 * n + 1 }, (_, i) => (i - n) * step);
};

interface Domain {
  H: number;
  W: number;
  maxScale: number;
}

const cropLimit = (d: Domain, scale: number, side: number) => ((scale - 1) * side) / 2 + CROP_MARGIN;
const onTurnLattice = (m: NoiseMap) => m.scale === 1 && Math.abs(m.dx) <= MAX_TURN_SHIFT + FINE.shift + 1e-9 && Math.abs(m.dy) <= MAX_TURN_SHIFT + FINE.shift + 1e-9;
const onCropLattice = (d: Domain, m: NoiseMap) =>
  m.degrees === 0 && m.scale > 1 + 1e-9 && m.scale <= d.maxScale + FINE.scale + 1e-9 && Math.abs(m.dx) <= cropLimit(d, m.scale, d.W) + FINE.shift + 1e-9 && Math.abs(m.dy) <= cropLimit(d, m.scale, d.H) + FINE.shift + 1e-9;

/** The scales of the crop family on a lattice of `step`: (1, maxScale (+ one fine step on the fine lattice)]. */
const cropScales = (d: Domain, step: number, extra: number) => {
  const out: number[] = [];
  for (let k = 1; 1 + k * step <= d.maxScale + extra + 1e-9; k++) out.push(Math.round((1 + k * step) * 1e6) / 1e6);
  return out;
};

/** G: every map of the fine lattice that refinement may reach. */
function fineLatticeSize(d: Domain): number {
  const turnShifts = symmetric(MAX_TURN_SHIFT + FINE.shift, FINE.shift).length;
  let g = (360 / FINE.degrees) * turnShifts * turnShifts;
  for (const s of cropScales(d, FINE.scale, FINE.scale)) g += symmetric(cropLimit(d, s, d.W) + FINE.shift, FINE.shift).length * symmetric(cropLimit(d, s, d.H) + FINE.shift, FINE.shift).length;
  return g;
}

/** The coarse maps screened, a sub-lattice of the fine one. */
function coarseMaps(d: Domain): NoiseMap[] {
  const maps: NoiseMap[] = [];
  const turnShifts = symmetric(MAX_TURN_SHIFT, COARSE.shift);
  for (let deg = -180; deg < 180; deg += COARSE.degrees) for (const dy of turnShifts) for (const dx of turnShifts) maps.push({ degrees: deg, scale: 1, dx, dy });
  for (const s of cropScales(d, COARSE.scale, 0)) for (const dy of symmetric(cropLimit(d, s, d.H), COARSE.shift)) for (const dx of symmetric(cropLimit(d, s, d.W), COARSE.shift)) maps.push({ degrees: 0, scale: s, dx, dy });
  return maps;
}

/**
 * The screening positions: per payload group, up to 32 of its positions nearest the centre (they
 * stay inside the image under turns and crops), packed into one 32-bit word per group. The
 * statistic's null moments and the first stage's bar are fixed by the group sizes, so they are
 * computed once here.
 */
interface Screen {
  /** The distinct pixels (y W + x) the packed positions sit on. */
  pixels: Int32Array;
  /** Per packed bit, group after group (`start` marks where group j begins): where its value sits in the sampled values, c P + u for channel c of the u-th pixel of P. */
  read: Int32Array;
  start: Int32Array;
  sizes: Int32Array;
  /** Per nonce and group: the keystream bits at the packed positions. */
  keyWords: Uint32Array;
  /** A nonce whose first FIRST_GROUPS groups score below this is dropped (see screenMap). */
  bar: number;
  /** Null mean and standard deviation of the statistic over all groups. */
  mean: number;
  sd: number;
}

/** Groups scored first; a nonce goes on to the other groups only if these look promising. */
const FIRST_GROUPS = 8;

const screenCache = new Map<string, Screen>();
function screen(key: WatermarkKey, shape: readonly [number, number, number]): Screen {
  const [C, H, W] = shape;
  const id = `${key.secret}:${C}x${H}x${W}`;
  const cached = screenCache.get(id);
  if (cached) return cached;
  const D = C * H * W;
  const [cx, cy] = [(W - 1) / 2, (H - 1) / 2];
  const dist = (i: number) => {
    const p = i % (H * W);
    return (Math.floor(p / W) - cy) ** 2 + ((p % W) - cx) ** 2;
  };
  const groups: number[][] = Array.from({ length: PAYLOAD_BITS }, () => []);
  const byDistance = Array.from({ length: D }, (_, i) => i).sort((a, b) => dist(a) - dist(b) || a - b);
  for (const i of byDistance) if (groups[i % PAYLOAD_BITS].length < 32) groups[i % PAYLOAD_BITS].push(i);
  const pixels = [...new Set(groups.flat().map((i) => i % (H * W)))].sort((a, b) => a - b);
  const slotOf = new Map(pixels.map((p, u) => [p, u]));
  const ks = keystreams(key, D);
  const keyWords = new Uint32Array(NONCES * PAYLOAD_BITS);
  for (let n = 0; n < NONCES; n++)
    for (let j = 0; j < PAYLOAD_BITS; j++) {
      let w = 0;
      groups[j].forEach((i, b) => (w |= ks[n][i] << b));
      keyWords[n * PAYLOAD_BITS + j] = w >>> 0;
    }
  // Under the null each |2c - n| has mean ~ sqrt(2n/pi) and variance ~ n (1 - 2/pi); a nonce
  // continues if its first groups beat their mean by 1.5 of their spread (about 7% of null nonces
  // do; the true one, at the 0.65-0.75 agreement measured, nearly always).
  const sizes = Int32Array.from(groups, (g) => g.length);
  const moments = (js: number[]) => ({ mean: js.reduce((a, j) => a + Math.sqrt((2 * sizes[j]) / Math.PI), 0), sd: Math.sqrt(js.reduce((a, j) => a + sizes[j] * (1 - 2 / Math.PI), 0)) });
  const first = moments(Array.from({ length: FIRST_GROUPS }, (_, j) => j));
  const all = moments(Array.from({ length: PAYLOAD_BITS }, (_, j) => j));
  const s: Screen = {
    pixels: Int32Array.from(pixels),
    read: Int32Array.from(groups.flat(), (i) => Math.floor(i / (H * W)) * pixels.length + (slotOf.get(i % (H * W)) as number)),
    start: Int32Array.from({ length: PAYLOAD_BITS + 1 }, (_, j) => groups.slice(0, j).reduce((a, g) => a + g.length, 0)),
    sizes,
    keyWords,
    bar: first.mean + 1.5 * first.sd,
    mean: all.mean,
    sd: all.sd,
  };
  if (screenCache.size > 8) screenCache.clear();
  screenCache.set(id, s);
  return s;
}

/** Set bits of every 16-bit number: two lookups count a word faster than shifts and masks do in V8. */
const BITS16 = new Uint8Array(65536);
for (let i = 1; i < 65536; i++) BITS16[i] = BITS16[i >> 1] + (i & 1);
const popcount = (x: number) => BITS16[x & 0xffff] + BITS16[x >>> 16];

/** Per screening pixel: the four bilinear corners and weights of its source (corner -1 when outside); the values it samples, channel after channel; the packed sign words. */
interface Scratch {
  corner: Int32Array;
  weight: Float64Array;
  values: Float32Array;
  words: Int32Array;
}
const scratchFor = (s: Screen, channels: number): Scratch => ({
  corner: new Int32Array(4 * s.pixels.length),
  weight: new Float64Array(4 * s.pixels.length),
  values: new Float32Array(channels * s.pixels.length),
  words: new Int32Array(PAYLOAD_BITS),
});

/**
 * Best nonce of one map on the screening positions: the statistic sum_j |2 popcount(w_j xor k_j) - n_j|
 * (the full test's A, restricted), as a z-score against its null moments. The bilinear source of
 * each pixel is computed once and shared by the channels.
 */
function screenMap(noise: Float32Array, shape: readonly [number, number, number], s: Screen, map: NoiseMap, t: Scratch): { z: number; nonce: number } {
  const { corner, weight, values, words } = t;
  const pixels = s.pixels;
  const P = pixels.length;
  const HW = shape[1] * shape[2];
  bilinearSources(shape, map, pixels, corner, weight);
  for (let c = 0; c < shape[0]; c++) for (let u = 0; u < P; u++) values[c * P + u] = sampleAt(noise, c * HW, pixels[u], u, corner, weight);
  const { read, start } = s;
  for (let j = 0; j < PAYLOAD_BITS; j++) {
    let w = 0;
    for (let k = start[j], b = 0; k < start[j + 1]; k++, b++) if (values[read[k]] > 0) w |= 1 << b;
    words[j] = w;
  }
  // The first stage written out for FIRST_GROUPS = 8: the loop form made the whole search about
  // 15% slower (0.78 against 0.67 s per 3x32x32 noise, measured ad hoc on 2 cores).
  const { keyWords: k, sizes, bar } = s;
  const [w0, w1, w2, w3, w4, w5, w6, w7] = [words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7]];
  const [n0, n1, n2, n3, n4, n5, n6, n7] = [sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7]];
  let [bestStat, bestNonce] = [-1, 0];
  for (let n = 0; n < NONCES; n++) {
    const o = n * PAYLOAD_BITS;
    let a =
      Math.abs(2 * popcount(w0 ^ k[o]) - n0) +
      Math.abs(2 * popcount(w1 ^ k[o + 1]) - n1) +
      Math.abs(2 * popcount(w2 ^ k[o + 2]) - n2) +
      Math.abs(2 * popcount(w3 ^ k[o + 3]) - n3) +
      Math.abs(2 * popcount(w4 ^ k[o + 4]) - n4) +
      Math.abs(2 * popcount(w5 ^ k[o + 5]) - n5) +
      Math.abs(2 * popcount(w6 ^ k[o + 6]) - n6) +
      Math.abs(2 * popcount(w7 ^ k[o + 7]) - n7);
    if (a < bar) continue;
    for (let j = FIRST_GROUPS; j < PAYLOAD_BITS; j++) a += Math.abs(2 * popcount(words[j] ^ k[o + j]) - sizes[j]);
    if (a > bestStat) [bestStat, bestNonce] = [a, n];
  }
  return { z: bestStat < 0 ? -Infinity : (bestStat - s.mean) / s.sd, nonce: bestNonce };
}

/**
 * The full statistic A of one nonce on the positions the map reads from inside the image, as a
 * z-score (maps keep different numbers of positions): each group adds max(c, n - c), of null mean
 * n/2 + sqrt(n / 2 pi) and variance (n / 4)(1 - 2 / pi).
 */
function agreementZ(noise: Float32Array, shape: readonly [number, number, number], map: NoiseMap, nonceKey: Uint8Array): number {
  const { moved, inside: use } = moveNoise(noise, shape, map);
  const counts = new Int32Array(PAYLOAD_BITS);
  const sizes = new Int32Array(PAYLOAD_BITS);
  for (let i = 0; i < moved.length; i++) {
    if (!use[i]) continue;
    counts[i % PAYLOAD_BITS] += (moved[i] > 0 ? 1 : 0) ^ nonceKey[i];
    sizes[i % PAYLOAD_BITS]++;
  }
  let [a, mean, variance] = [0, 0, 0];
  for (let j = 0; j < PAYLOAD_BITS; j++) {
    a += Math.max(counts[j], sizes[j] - counts[j]);
    mean += sizes[j] / 2 + Math.sqrt(sizes[j] / (2 * Math.PI));
    variance += (sizes[j] / 4) * (1 - 2 / Math.PI);
  }
  return (a - mean) / Math.sqrt(Math.max(variance, 1e-9));
}

/** Hill-climbs one coarse map on the fine lattice with its nonce; stays on the lattice. */
function refine(noise: Float32Array, shape: readonly [number, number, number], d: Domain, nonceKey: Uint8Array, start: NoiseMap): NoiseMap {
  let best = start;
  let bestA = agreementZ(noise, shape, start, nonceKey);
  for (let round = 0; round < 8; round++) {
    let moved = false;
    const steps: NoiseMap[] = [];
    for (const dd of [-1, 0, 1])
      for (const ds of [-1, 0, 1])
        for (const ex of [-1, 0, 1])
          for (const ey of [-1, 0, 1]) {
            const m = {
              degrees: wrapDegrees(best.degrees + dd * FINE.degrees),
              scale: Math.round((best.scale + ds * FINE.scale) * 1e6) / 1e6,
              dx: best.dx + ex * FINE.shift,
              dy: best.dy + ey * FINE.shift,
            };
            if (onTurnLattice(m) || onCropLattice(d, m)) steps.push(m);
          }
    for (const m of steps) {
      const a = agreementZ(noise, shape, m, nonceKey);
      if (a > bestA) [best, bestA, moved] = [m, a, true];
    }
    if (!moved) break;
  }
  return best;
}

const wrapDegrees = (deg: number) => (deg >= 180 ? deg - 360 : deg < -180 ? deg + 360 : deg);

/** Tests the noise unmoved and through the search over turns and crops; see the file's comment for the p-value. */
export function detectInMovedNoise(key: WatermarkKey, noise: Float32Array, shape: readonly [number, number, number], o: GeometrySearchOptions = {}): GeometryDetection {
  const minArea = minAreaOf(o);
  const [C, H, W] = shape;
  if (noise.length !== C * H * W) throw new Error(`detectInMovedNoise: ${noise.length} values do not make a ${C}x${H}x${W} image`);
  const d: Domain = { H, W, maxScale: 1 / Math.sqrt(minArea) };
  const G = fineLatticeSize(d);
  const unmoved = detectInNoise(key, noise);
  let best: GeometryDetection = { ...unmoved, map: IDENTITY_MAP, mapsSearched: G, log10P: Math.min(0, unmoved.log10P + Math.log10(2)) };
  // Found unmoved beyond doubt: the search could only lower an already negligible p-value, and
  // leaving it out keeps the bound (the p-value reported is at least the bound's minimum).
  if (best.log10P < SURE) return { ...best, pValue: 10 ** best.log10P };

  const s = screen(key, shape);
  const scratch = scratchFor(s, C);
  const top: { z: number; nonce: number; map: NoiseMap }[] = [];
  for (const map of coarseMaps(d)) {
    const r = screenMap(noise, shape, s, map, scratch);
    if (top.length < KEEP || r.z > top[top.length - 1].z) {
      top.push({ ...r, map });
      top.sort((a, b) => b.z - a.z);
      if (top.length > KEEP) top.pop();
    }
  }
  const ks = keystreams(key, noise.length);
  for (const t of top) {
    if (t.z === -Infinity) continue;
    const map = refine(noise, shape, d, ks[t.nonce], t.map);
    // Positions read from outside hold nothing of x_T; leaving them out keeps their payload bits from being guessed.
    const { moved, inside } = moveNoise(noise, shape, map);
    const r = detectInNoise(key, moved, inside);
    const log10P = Math.min(0, r.log10P + Math.log10(2 * G));
    if (log10P < best.log10P) best = { ...r, map, mapsSearched: G, log10P };
  }
  return { ...best, pValue: 10 ** best.log10P };
}

/** Whether the map moves anything (not the identity). */
export const isMoved = (map: NoiseMap): boolean => map.degrees !== 0 || map.scale !== 1 || map.dx !== 0 || map.dy !== 0;

/** The map in words, for a report line: "turned by 75 degrees", "cropped and enlarged 1.14x", with any shift. */
export function describeMap(map: NoiseMap): string {
  const parts: string[] = [];
  if (map.degrees !== 0) parts.push(`turned by ${map.degrees} degrees`);
  if (map.scale !== 1) parts.push(`cropped and enlarged ${map.scale.toFixed(3)}x`);
  if (map.dx !== 0 || map.dy !== 0) parts.push(`shifted (${map.dx}, ${map.dy}) px`);
  return parts.length ? parts.join(', ') : 'unmoved';
}
