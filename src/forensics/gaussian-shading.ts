/**
 * Gaussian Shading (Yang et al. 2024, arXiv 2404.04956), as Diffuse uses it: a keyed bit stream
 * chooses the sign of every value of x_T, whose magnitude is drawn from the half-Gaussian, so x_T
 * is exactly N(0, I) and the watermarked samples are distributed as unwatermarked ones.
 *
 * Embedding, per image of D values: a 32-bit payload m (which user or job made it) is repeated
 * over the D positions (position i carries bit i mod 32), XORed with the ChaCha20 keystream k of
 * the key and a per-image nonce, and the result is the sign: x_T[i] = (m_{i mod 32} XOR k_i ? +1 : -1) |z_i|.
 * The nonce is one of 1,024, drawn per image, so that images do not share one sign pattern (a
 * shared pattern would make every image of a key alike and let an attacker average it out).
 *
 * Detection, from an estimate of x_T (DDIM inversion of the image): the signs of an attacked
 * image's estimate are least reliable where its magnitude is small, so within each payload bit's
 * group only the RELIABLE_SHARE of positions with the largest |estimate| are counted (the choice
 * depends on the image alone, never on the key, so the test below stays exact). Measured ad hoc
 * on the emoji run, 100 + 100 images, 5 inversion steps: JPEG 25 AUC 0.909 -> 0.985, payload bit
 * accuracy with no attack 0.986 -> 0.999 (docs/WATERMARK.md). For each nonce, r_i = sign bit XOR
 * k_i; each payload bit is decoded by majority vote over its counted positions, and the
 * statistic is the number of counted positions that agree with their group's vote,
 * A = sum_j max(c_j, n_j - c_j). Under the null hypothesis "not made with this key" the sign
 * bits are independent fair coins whatever the key, so c_j ~ Binomial(n_j, 1/2) independently
 * and the null distribution of A is exact (a convolution, computed in log space). The best of
 * the 1,024 nonces is tested with the exact correction for taking a maximum of independent
 * statistics: P(max >= a) = 1 - (1 - P(A >= a))^1024.
 *
 * The statistic is an integer, so P(max >= observed) alone would be conservative (about half the
 * nominal false-positive rate, measured). The p-value is randomised within the atom of the
 * observed maximum m: p = P(max > m) + U P(max = m), which is exactly uniform under the null, so
 * that "p < alpha" flags unwatermarked images at exactly rate alpha. U is a hash of the recovered
 * sign bits, not a fresh draw: the same image always gets the same p-value.
 */
import { sha256 } from '@noble/hashes/sha2';
import type { NoiseGenerator } from '../diffusion/index.js';
import type { InitialNoiseSource } from '../pipelines/sampling-pipeline.js';
import { WatermarkKey, keystreamBits } from './key.js';

export const PAYLOAD_BITS = 32;
export const NONCES = 1024;
/**
 * The share of each payload bit's positions the test counts: those with the largest |x_T estimate|.
 * 0.6 maximises the test's power on weak signals (signs agreeing with x_T's at a rate that grows
 * with |estimate|; about 0.5-0.6 by the half-normal's moments) and measured best of 0.5, 0.6, 1.
 */
export const RELIABLE_SHARE = 0.6;
/** The largest payload: an unsigned 32-bit integer. */
export const MAX_PAYLOAD = 2 ** PAYLOAD_BITS - 1;

export function checkPayload(payload: number): void {
  if (!Number.isInteger(payload) || payload < 0 || payload > MAX_PAYLOAD) throw new Error(`the watermark payload must be an integer in 0..${MAX_PAYLOAD} (32 bits), got ${payload}`);
}

/** x_T of one image (D values) carrying `payload` under `key` and `nonce`; |z| gives the magnitudes. */
export function shadeNoise(key: WatermarkKey, payload: number, nonce: number, z: Float32Array): Float32Array {
  checkPayload(payload);
  const k = keystreamBits(key, nonce, z.length);
  const out = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) {
    const bit = ((payload >>> (i % PAYLOAD_BITS)) & 1) ^ k[i];
    out[i] = bit ? Math.abs(z[i]) : -Math.abs(z[i]);
  }
  return out;
}

/** The watermark as a pipeline's initial-noise source: `pipe.generate({ watermark: gaussianShading(key, payload) })`. */
export function gaussianShading(key: WatermarkKey, payload: number): InitialNoiseSource {
  checkPayload(payload);
  return { draw: (count, per, generator) => watermarkedNoise(key, payload, count, per, generator) };
}

/** x_T for `count` images of `per` values each: magnitudes and nonces drawn from `generator`. */
export function watermarkedNoise(key: WatermarkKey, payload: number, count: number, per: number, generator: NoiseGenerator): Float32Array {
  const out = new Float32Array(count * per);
  for (let k = 0; k < count; k++) {
    const z = generator.randn(per);
    const nonce = Math.min(NONCES - 1, Math.floor(generator.rand(1)[0] * NONCES));
    out.set(shadeNoise(key, payload, nonce, z), k * per);
  }
  return out;
}

export interface NoiseDetection {
  /** p-value under "no watermark with this key" (may underflow to 0; see log10P). */
  pValue: number;
  /** log10 of the p-value, finite where pValue underflows. */
  log10P: number;
  /** The decoded payload and, per bit, the share of its positions that agreed with the vote. */
  payload: number;
  bitConfidence: number[];
  /**
   * Each payload bit's votes: of its counted positions, how many read 1 (after the keystream),
   * and how many were counted. readPayload turns them into how sure the payload is (computed
   * there, for the detections a report gives, not for every candidate of a search).
   */
  votes: { ones: number[]; sizes: number[] };
  /** The statistic A, of D positions, and the nonce it was found with. */
  agreement: number;
  positions: number;
  nonce: number;
}

/** Group sizes n_j: how many of D positions carry payload bit j. */
const groupSizes = (D: number) => Array.from({ length: PAYLOAD_BITS }, (_, j) => Math.floor(D / PAYLOAD_BITS) + (j < D % PAYLOAD_BITS ? 1 : 0));

const keystreamCache = new Map<string, Uint8Array[]>();
/** The keystream bits of every nonce for D positions (cached per key and D). */
export function keystreams(key: WatermarkKey, D: number): Uint8Array[] {
  const id = `${key.secret}:${D}`;
  let ks = keystreamCache.get(id);
  if (!ks) {
    ks = Array.from({ length: NONCES }, (_, n) => keystreamBits(key, n, D));
    if (keystreamCache.size > 8) keystreamCache.clear();
    keystreamCache.set(id, ks);
  }
  return ks;
}

/**
 * Tests one image's x_T estimate (D values) for the key's watermark. `use`, if given, marks the
 * positions to count (1) and to leave out (0), for noise moved back from an attacked image whose
 * edges hold nothing of x_T; it must not depend on the key (then the test stays exact).
 */
export function detectInNoise(key: WatermarkKey, noise: Float32Array, use?: Uint8Array): NoiseDetection {
  const D = noise.length;
  if (D < PAYLOAD_BITS) throw new Error(`watermark detection needs at least ${PAYLOAD_BITS} values, got ${D}`);
  if (use && use.length !== D) throw new Error(`detectInNoise: a mask of ${use.length} positions for ${D} values`);
  const signs = new Uint8Array(D);
  for (let i = 0; i < D; i++) signs[i] = noise[i] > 0 ? 1 : 0;
  const used = reliablePositions(noise, use);
  const sizes = new Array<number>(PAYLOAD_BITS).fill(0);
  for (const i of used) sizes[i % PAYLOAD_BITS]++;
  const counts = new Int32Array(PAYLOAD_BITS);
  let best = { agreement: -1, nonce: 0, counts: new Int32Array(PAYLOAD_BITS) };
  for (const [nonce, k] of keystreams(key, D).entries()) {
    counts.fill(0);
    for (const i of used) counts[i % PAYLOAD_BITS] += signs[i] ^ k[i];
    let a = 0;
    for (let j = 0; j < PAYLOAD_BITS; j++) a += Math.max(counts[j], sizes[j] - counts[j]);
    if (a > best.agreement) best = { agreement: a, nonce, counts: counts.slice() };
  }
  let payload = 0;
  const bitConfidence: number[] = [];
  for (let j = 0; j < PAYLOAD_BITS; j++) {
    const one = best.counts[j] > sizes[j] / 2;
    if (one) payload += 2 ** j;
    bitConfidence.push(sizes[j] ? Math.max(best.counts[j], sizes[j] - best.counts[j]) / sizes[j] : 0.5);
  }
  const survival = nullLogSurvivalOfGroups(sizes);
  const atLeast = logMaxOfIndependent(survival[best.agreement], NONCES); // log P(max >= m)
  const above = best.agreement + 1 < survival.length ? logMaxOfIndependent(survival[best.agreement + 1], NONCES) : -Infinity; // log P(max > m)
  // log(P(max > m) + U (P(max >= m) - P(max > m))), with U in (0, 1) from the signs.
  const logAtom = above === -Infinity ? atLeast : atLeast + Math.log1p(-Math.exp(above - atLeast));
  const logP = logSumExp(above, Math.log(signHash(signs)) + logAtom);
  return { pValue: Math.exp(logP), log10P: logP / Math.LN10, payload, bitConfidence, votes: { ones: Array.from(best.counts), sizes: [...sizes] }, agreement: best.agreement, positions: used.length, nonce: best.nonce };
}

/**
 * The probability that each payload bit's majority vote is wrong. A bit's n counted positions
 * agree with its value (after the keystream) at a rate that varies from bit to bit (neighbouring
 * latent positions are not independent, and some survive an edit better than others): the count
 * c of positions reading 1 is beta-binomial, BB(n, a, b) if the bit is 1 and BB(n, b, a) if it is
 * 0, with mean agreement q = a / (a + b) and over-dispersion rho = 1 / (a + b + 1). With even
 * prior odds the vote is wrong with probability 1 / (1 + BB(c) / BB(n - c)) for the winning
 * side. q and rho are unknown: the estimate is averaged over a grid of them (q in 0.505..0.995,
 * rho in 0.001..0.6), each weighted by the likelihood of the image's bit counts, each bit's value
 * unknown (a two-sided mixture). A tie is a coin flip (0.5). Averaging makes the estimate
 * conservative: on runs/emoji-latent it expected more bit errors than were made, and bits it put
 * under 1% were wrong 0.0-0.3% of the time (`npm run bench:watermark`'s payload table,
 * docs/WATERMARK.md).
 */
export function bitErrorProbabilities(ones: ArrayLike<number>, sizes: ArrayLike<number>): number[] {
  const bits = Array.from({ length: sizes.length }, (_, j) => ({ c: ones[j], n: sizes[j] }));
  // log BB(c; n, a, b) without the binomial coefficient, which both sides share: logB(c + a, n - c + b) - logB(a, b).
  const logBeta = (x: number, y: number) => logGamma(x) + logGamma(y) - logGamma(x + y);
  const fits: { l: number; errors: number[] }[] = [];
  for (let i = 1; i < 100; i++) {
    const q = 0.5 + i / 200;
    for (const rho of [0.001, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6]) {
      const [a, b] = [q * (1 / rho - 1), (1 - q) * (1 / rho - 1)];
      const norm = logBeta(a, b);
      let l = 0;
      const errors = bits.map(({ c, n }) => {
        const [one, zero] = [logBeta(c + a, n - c + b), logBeta(n - c + a, c + b)];
        l += Math.max(one, zero) + Math.log1p(Math.exp(-Math.abs(one - zero))) - norm;
        return 1 / (1 + Math.exp(Math.min(700, Math.abs(one - zero))));
      });
      fits.push({ l, errors });
    }
  }
  // Averaged over (q, rho) by their likelihood (a flat prior on the grid), not at the best fit alone:
  // 32 bits pin the two down loosely, and the best fit alone is overconfident.
  const top = Math.max(...fits.map((f) => f.l));
  let total = 0;
  const out = new Array<number>(bits.length).fill(0);
  for (const f of fits) {
    const w = Math.exp(f.l - top);
    total += w;
    for (let j = 0; j < bits.length; j++) out[j] += w * f.errors[j];
  }
  return out.map((e) => e / total);
}

/** A bit whose vote is wrong with at least this estimated probability is reported as uncertain. */
export const UNCERTAIN_BIT = 0.01;

/** What a report says of a decoded payload: its value, the bits that may be wrong, and the chance that none is. */
export interface PayloadReading {
  payload: number;
  /** The estimated probability that the whole payload is right. */
  reliability: number;
  /** Bits (0 = least significant) whose vote is wrong with estimated probability >= UNCERTAIN_BIT. */
  uncertainBits: number[];
  /** Per bit, the estimated probability that its vote is wrong (bitErrorProbabilities). */
  bitError: number[];
}

/** How sure a detection's payload is, from its bits' votes. */
export function readPayload(d: Pick<NoiseDetection, 'payload' | 'votes'>): PayloadReading {
  const bitError = bitErrorProbabilities(d.votes.ones, d.votes.sizes);
  return { payload: d.payload, reliability: bitError.reduce((r, e) => r * (1 - e), 1), uncertainBits: bitError.flatMap((e, j) => (e >= UNCERTAIN_BIT ? [j] : [])), bitError };
}

/** "payload 5 (right with probability 0.998 by its votes)", or with the bits that may be wrong. */
export function describePayload(r: Omit<PayloadReading, 'bitError'>): string {
  const p = r.reliability > 0.999 ? '> 0.999' : r.reliability.toFixed(3);
  if (!r.uncertainBits.length) return `payload ${r.payload} (right with probability ${p} by its votes)`;
  const n = r.uncertainBits.length;
  // Up to 8 bits are named; past that the payload is a guess, and the list (in JSON) would drown the line.
  const which = n === 1 ? `bit ${r.uncertainBits[0]} may be wrong` : `${n} bits may be wrong${n <= 8 ? ` (${r.uncertainBits.join(', ')})` : ''}`;
  return `payload ${r.payload}, uncertain: ${which}; right with probability ${p} by its votes`;
}

/** log Gamma(x) for x > 0 (Lanczos, g = 7, nine terms: about 15 digits). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const g = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  const z = x - 1;
  let sum = g[0];
  for (let i = 1; i < 9; i++) sum += g[i] / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/**
 * The positions the test counts: of each payload bit's positions (i mod 32 = j) that `use`
 * allows, the RELIABLE_SHARE (rounded; at least 3, or all of a smaller group) with the largest
 * |noise|, ties to the lower index. In increasing order. A function of the image's estimate
 * alone, never of the key.
 */
export function reliablePositions(noise: Float32Array, use?: Uint8Array): Int32Array {
  const D = noise.length;
  const picked: number[] = [];
  for (let j = 0; j < PAYLOAD_BITS; j++) {
    const group: number[] = [];
    for (let i = j; i < D; i += PAYLOAD_BITS) if (!use || use[i]) group.push(i);
    if (!group.length) continue;
    group.sort((a, b) => Math.abs(noise[b]) - Math.abs(noise[a]) || a - b);
    // At least 3 (or all): with one position a group's vote always agrees with itself and says nothing.
    picked.push(...group.slice(0, Math.max(Math.min(group.length, 3), Math.round(group.length * RELIABLE_SHARE))));
  }
  return Int32Array.from(picked).sort();
}

/** A number in (0, 1) from the sign bits (SHA-256): the randomisation of the p-value, the same for the same signs. */
function signHash(signs: Uint8Array): number {
  const prefix = new TextEncoder().encode('diffuse-watermark-p');
  const message = new Uint8Array(prefix.length + signs.length);
  message.set(prefix);
  message.set(signs, prefix.length);
  const h = sha256(message);
  return (new DataView(h.buffer, h.byteOffset, 4).getUint32(0, false) + 0.5) / 2 ** 32;
}

/** log P(max of n independent statistics >= a) from log P(one >= a): log(1 - (1 - p)^n). */
export function logMaxOfIndependent(logP1: number, n: number): number {
  const p1 = Math.exp(logP1);
  if (p1 > 1e-12) return Math.log(-Math.expm1(n * Math.log1p(-Math.min(p1, 1 - 1e-16))));
  return logP1 + Math.log(n); // 1 - (1 - p)^n = n p (1 + O(n p)) for tiny p
}

const logSumExp = (a: number, b: number) => (a === -Infinity ? b : b === -Infinity ? a : Math.max(a, b) + Math.log1p(Math.exp(-Math.abs(a - b))));

/** log C(n, k) by lgamma-free summation of logs (n is at most a few thousand). */
function logBinomialRow(n: number): Float64Array {
  const row = new Float64Array(n + 1);
  for (let k = 1; k <= n; k++) row[k] = row[k - 1] + Math.log(n - k + 1) - Math.log(k);
  return row;
}

/**
 * log P(A >= a) for a = 0..D under the null: A = sum_j max(c_j, n_j - c_j), c_j ~ Binomial(n_j, 1/2)
 * independent. Exact, by convolving the groups' distributions in log space.
 */
export function nullLogSurvival(D: number): Float64Array {
  return nullLogSurvivalOfGroups(groupSizes(D));
}

const survivalCache = new Map<string, Float64Array>();
/** nullLogSurvival for groups of the given sizes (a masked test's). */
function nullLogSurvivalOfGroups(sizes: readonly number[]): Float64Array {
  const id = sizes.join(',');
  let s = survivalCache.get(id);
  if (s) return s;
  let pmf = Float64Array.of(0); // log P(A = 0) = 0 before any group
  for (const n of sizes) {
    const lc = logBinomialRow(n);
    const g = new Float64Array(n + 1).fill(-Infinity); // log P(max(c, n - c) = x)
    for (let c = 0; c <= n; c++) {
      const x = Math.max(c, n - c);
      g[x] = logSumExp(g[x], lc[c] - n * Math.LN2);
    }
    const next = new Float64Array(pmf.length + n).fill(-Infinity);
    for (let a = 0; a < pmf.length; a++) {
      if (pmf[a] === -Infinity) continue;
      for (let x = 0; x <= n; x++) if (g[x] !== -Infinity) next[a + x] = logSumExp(next[a + x], pmf[a] + g[x]);
    }
    pmf = next;
  }
  s = new Float64Array(pmf.length + 1).fill(-Infinity);
  for (let a = pmf.length - 1; a >= 0; a--) s[a] = logSumExp(s[a + 1], pmf[a]);
  if (survivalCache.size > 256) survivalCache.clear();
  survivalCache.set(id, s);
  return s;
}
