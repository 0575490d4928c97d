/**
 * Gaussian Shading (Yang et al. 2024, arXiv 2404.04956), as Diffuse uses it: a keyed bit stream
 * chooses the sign of every value of x_T, whose magnitude is drawn from the half-Gaussian, so x_T
 * is exactly N(0, I) and the watermarked samples are distributed as unwatermarked ones.
 *
 * Embedding, per image of D values: a payload m of B bits (which user or job made it; B is the
 * key's, 32 unless it says fewer) is repeated over the D positions (position i carries bit
 * i mod B), XORed with the ChaCha20 keystream k of the key and a per-image nonce, and the result
 * is the sign: x_T[i] = (m_{i mod B} XOR k_i ? +1 : -1) |z_i|.
 * The nonce is one of 1,024, drawn per image, so that images do not share one sign pattern (a
 * shared pattern would make every image of a key alike and let an attacker average it out).
 *
 * Detection, from an estimate y of x_T (DDIM inversion of the image): the signs of an attacked
 * image's estimate are least reliable where |y| is small, so each position's vote is weighted by
 * the rank of |y| within its group of positions i mod 32 (rankScores: the half-normal quantile of
 * the rank, 0..8; a signed-rank test, as Wilcoxon's and van der Waerden's are). The weights depend on
 * the image alone, never on the key, and their multiset on the group's size alone, so the null
 * distribution below is exact and the same for every image. For each nonce, r_i = sign bit XOR
 * k_i; payload bit j's weighted count of ones is c_j = sum w_i r_i over its positions, of total
 * W_j, and the statistic is A = sum_j max(c_j, W_j - c_j) (each bit's value unknown, so each bit
 * counts for its majority side); a key without payload counts the weight that reads 0, one-sided. Under the null hypothesis "not made with this key" the sign bits
 * are independent fair coins whatever the key, so the c_j are independent weighted sums of fair
 * coins and the null distribution of A is exact (a convolution). The best of the 1,024 nonces is
 * tested with the exact correction for taking a maximum of independent statistics:
 * P(max >= a) = 1 - (1 - P(A >= a))^1024.
 *
 * Measured on runs/emoji-latent (300 + 300 images, 50 inversion steps; docs/WATERMARK.md), the
 * rank weights raised the AUC over counting the 60% largest |y| with weight 1 (the statistic
 * before): no attack 0.982 -> 0.991, JPEG 25 0.886 -> 0.904, noise 0.876 -> 0.923, blur 0.945 ->
 * 0.970. The payload is still decoded from those 60% (reliablePositions), by majority.
 *
 * Given the estimate's grid (C x H x W), positions at the edge count for less: a convolutional
 * autoencoder and U-Net see padding there, and on runs/emoji-latent's 16 x 16 latents the signs of
 * the outermost ring came back 58% of the time after the autoencoder's round trip against 70%
 * inside (600 images, ad hoc). Each group is split by edge class (edgeClasses: the outermost
 * ring of the grid or of the positions `use` allows, the next ring, the rest), ranked within
 * each part, and each rank score multiplied by EDGE_FACTORS (1, 2, 3). The parts' sizes depend on
 * the grid and `use` alone, so the null distribution stays exact.
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
import { WatermarkKey, keystreamBits, payloadBitsOf } from './key.js';

/**
 * The most payload bits a key carries, and the number of groups (positions i mod 32) whose
 * positions are ranked together. A key with B < 32 bits (a divisor of 32) puts bit i mod B at
 * position i, so each of its bits owns 32 / B whole groups.
 */
export const PAYLOAD_BITS = 32;
export const NONCES = 1024;
/**
 * The share of each group's positions the payload is decoded from: those with the largest
 * |x_T estimate| (the test itself weighs every position by rank). 0.6 measured best of 0.5, 0.6
 * and 1 when it was the test's choice too.
 */
export const RELIABLE_SHARE = 0.6;
/** The largest payload: an unsigned 32-bit integer. */
export const MAX_PAYLOAD = 2 ** PAYLOAD_BITS - 1;

/**
 * The weight multipliers of the three edge classes (outermost ring, next ring, the rest). Chosen
 * ad hoc on 600 watermarked samples of runs/emoji-latent (seeds apart from bench:watermark's): of
 * (1, 1, 2), (1, 2, 2), (1, 2, 3), (1, 3, 4), (2, 3, 4), (2, 3, 3), (1, 2, 3) found most after
 * JPEG 25 and noise, and none lost anything without an attack. Small integers keep the exact null
 * distribution cheap: on Stable Diffusion's 4 x 64 x 64 latents it takes about 2 s once per
 * process and key size, against 0.35 s ranked alike.
 */
export const EDGE_FACTORS = [1, 2, 3] as const;

/** An estimate's layout, channels x height x width, for the edge classes. */
export type NoiseGrid = readonly [number, number, number];

/**
 * Each position's edge class (0 for the outermost ring, 1 for the next, 2 inside): how many steps
 * (8-neighbour) it lies from the nearest position outside the grid or outside `use`, less one,
 * capped at 2. Positions `use` leaves out get class 0 (they are not counted anyway). A function
 * of the grid and the mask alone, never of the estimate or the key.
 */
export function edgeClasses(grid: NoiseGrid, use?: Uint8Array): Uint8Array {
  const [C, H, W] = grid;
  const out = new Uint8Array(C * H * W);
  const inside = (c: number, y: number, x: number) => y >= 0 && y < H && x >= 0 && x < W && (!use || use[(c * H + y) * W + x] === 1);
  for (let c = 0; c < C; c++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        if (!inside(c, y, x)) continue;
        // The class is the largest ring r (<= 2) whose square of radius r holds only allowed positions, less one.
        let cls = 0;
        for (let r = 1; r <= 2; r++) {
          let whole = true;
          for (let dy = -r; dy <= r && whole; dy++) for (let dx = -r; dx <= r && whole; dx++) whole = inside(c, y + dy, x + dx);
          if (!whole) break;
          cls = r;
        }
        out[(c * H + y) * W + x] = cls;
      }
  return out;
}

/** Checks a payload against the bits a key carries (default 32). */
export function checkPayload(payload: number, bits = PAYLOAD_BITS): void {
  const max = 2 ** bits - 1;
  if (!Number.isInteger(payload) || payload < 0 || payload > max) {
    throw new Error(bits === 0 ? `this watermark key carries no payload, so the payload must be 0, got ${payload}` : `the watermark payload must be an integer in 0..${max} (${bits} bits), got ${payload}`);
  }
}

/** Payload bit b of position i (i mod b), 0 where the key carries none. */
const bitAt = (payload: number, bits: number, i: number) => (bits ? (payload >>> (i % bits)) & 1 : 0);

/** x_T of one image (D values) carrying `payload` under `key` and `nonce`; |z| gives the magnitudes. */
export function shadeNoise(key: WatermarkKey, payload: number, nonce: number, z: Float32Array): Float32Array {
  const bits = payloadBitsOf(key);
  checkPayload(payload, bits);
  const k = keystreamBits(key, nonce, z.length);
  const out = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) {
    const bit = bitAt(payload, bits, i) ^ k[i];
    out[i] = bit ? Math.abs(z[i]) : -Math.abs(z[i]);
  }
  return out;
}

/** The watermark as a pipeline's initial-noise source: `pipe.generate({ watermark: gaussianShading(key, payload) })`. */
export function gaussianShading(key: WatermarkKey, payload: number): InitialNoiseSource {
  checkPayload(payload, payloadBitsOf(key));
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
   * The votes, per group of 32 (positions i mod 32; payload bit b owns the groups j = b mod B): of
   * each group's counted positions, how many read 1 (after the keystream), and how many were
   * counted. readPayload turns them into how sure the payload is (computed there, for the
   * detections a report gives, not for every candidate of a search).
   */
  votes: { ones: number[]; sizes: number[] };
  /** Payload bits of the key (0..32): payload, bitConfidence and votes have that many. */
  payloadBits: number;
  /** The statistic A (the weighted agreement), its largest possible value, how many positions carry weight, and the nonce it was found with. */
  agreement: number;
  maxAgreement: number;
  positions: number;
  nonce: number;
}

/**
 * The parts of one group (positions i mod 32) that are ranked apart: the positions of one edge
 * class, and the factor their rank scores are multiplied by. Without a grid a group is one part
 * of factor 1.
 */
export interface GroupPart {
  size: number;
  factor: number;
}

/** The parts of each of the 32 groups of D positions, with the grid's edge classes or without. */
function groupParts(D: number, grid?: NoiseGrid): GroupPart[][] {
  if (!grid) return Array.from({ length: PAYLOAD_BITS }, (_, j) => [{ size: Math.floor(D / PAYLOAD_BITS) + (j < D % PAYLOAD_BITS ? 1 : 0), factor: 1 }]);
  return partsOf(splitByEdge(rankedGroups(new Float32Array(D)), edgeClasses(grid)));
}

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
 * edges hold nothing of x_T; it must not depend on the key (then the test stays exact). `grid`,
 * the estimate's layout (C x H x W, D values), lets the test count edge positions for less
 * (EDGE_FACTORS); without it every position is ranked alike.
 */
export function detectInNoise(key: WatermarkKey, noise: Float32Array, use?: Uint8Array, grid?: NoiseGrid): NoiseDetection {
  const D = noise.length;
  if (D < PAYLOAD_BITS) throw new Error(`watermark detection needs at least ${PAYLOAD_BITS} values, got ${D}`);
  if (use && use.length !== D) throw new Error(`detectInNoise: a mask of ${use.length} positions for ${D} values`);
  checkGrid(grid, D);
  const signs = new Uint8Array(D);
  for (let i = 0; i < D; i++) signs[i] = noise[i] > 0 ? 1 : 0;
  const ranked = rankedGroups(noise, use);
  const parted = splitByEdge(ranked, grid && edgeClasses(grid, use));
  const weights = weightsOf(parted, D);
  const parts = partsOf(parted);
  const ks = keystreams(key, D);
  // B payload bits: bit j's positions are i mod B = j. No payload (B = 0): one group, one-sided.
  const bits = payloadBitsOf(key);
  const groups = Math.max(1, bits);
  // The weighted positions as flat lists: the nonce loop below is the search's inner loop.
  const at: number[] = [];
  for (let i = 0; i < D; i++) if (weights[i]) at.push(i);
  const index = Int32Array.from(at);
  const weight = Int32Array.from(at, (i) => weights[i]);
  const totals = new Int32Array(groups);
  for (let k = 0; k < index.length; k++) totals[index[k] % groups] += weight[k];
  const group = Int32Array.from(index, (i) => i % groups);
  const sign = Uint8Array.from(index, (i) => signs[i]);
  const c = new Int32Array(groups);
  let best = { agreement: -1, nonce: 0 };
  for (const [nonce, k] of ks.entries()) {
    c.fill(0);
    // Branch-free: a sign that reads 1 adds its weight (about 15% faster than an if, ad hoc).
    for (let m = 0; m < index.length; m++) c[group[m]] += weight[m] * (sign[m] ^ k[index[m]]);
    let a = 0;
    if (bits === 0) a = totals[0] - c[0]; // signs that read bit 0, the only value
    else for (let j = 0; j < groups; j++) a += Math.max(c[j], totals[j] - c[j]);
    if (a > best.agreement) best = { agreement: a, nonce };
  }
  // The payload: each bit's majority over its most reliable positions, at the best nonce.
  const k = ks[best.nonce];
  // Votes are kept per group of 32 (i mod 32): bit b owns the groups j = b mod B.
  const counted = new Array<number>(PAYLOAD_BITS).fill(0);
  const ones = new Array<number>(PAYLOAD_BITS).fill(0);
  for (const i of reliableOf(ranked)) {
    counted[i % PAYLOAD_BITS]++;
    ones[i % PAYLOAD_BITS] += signs[i] ^ k[i];
  }
  const { ones: bitOnes, sizes: bitSizes } = votesOfBits({ ones, sizes: counted }, bits);
  let payload = 0;
  const bitConfidence: number[] = [];
  for (let j = 0; j < bits; j++) {
    if (bitOnes[j] > bitSizes[j] / 2) payload += 2 ** j;
    bitConfidence.push(bitSizes[j] ? Math.max(bitOnes[j], bitSizes[j] - bitOnes[j]) / bitSizes[j] : 0.5);
  }
  const survival = nullLogSurvivalOfGroups(parts, bits);
  const atLeast = logMaxOfIndependent(survival.at(best.agreement), NONCES); // log P(max >= m)
  const above = logMaxOfIndependent(survival.at(best.agreement + 1), NONCES); // log P(max > m)
  // log(P(max > m) + U (P(max >= m) - P(max > m))), with U in (0, 1) from the signs.
  const logAtom = above === -Infinity ? atLeast : atLeast + Math.log1p(-Math.min(1, Math.exp(above - atLeast)));
  const logP = logAtom === -Infinity ? atLeast : logSumExp(above, Math.log(signHash(signs)) + logAtom);
  return { pValue: Math.exp(logP), log10P: logP / Math.LN10, payload, bitConfidence, votes: { ones, sizes: counted }, payloadBits: bits, agreement: best.agreement, maxAgreement: totals.reduce((t, w) => t + w, 0), positions: index.length, nonce: best.nonce };
}

/** Each payload bit's votes, its groups' summed (bit b owns the groups j = b mod B of 32). */
function votesOfBits(votes: { ones: ArrayLike<number>; sizes: ArrayLike<number> }, bits: number): { ones: number[]; sizes: number[] } {
  const [ones, sizes] = [new Array<number>(bits).fill(0), new Array<number>(bits).fill(0)];
  for (let j = 0; j < votes.sizes.length && bits; j++) [ones[j % bits], sizes[j % bits]] = [ones[j % bits] + votes.ones[j], sizes[j % bits] + votes.sizes[j]];
  return { ones, sizes };
}

/**
 * The probability that each payload bit's majority vote is wrong, from the votes of the 32 groups
 * (`ones` of `sizes` reading 1; bit b owns the groups j = b mod payloadBits). Each group's counted
 * positions agree with its bit's value (after the keystream) at a rate that varies from group to
 * group (neighbouring latent positions are not independent, and some survive an edit better than
 * others): a group's count c of positions reading 1 is beta-binomial, BB(n, a, b) if the bit is 1
 * and BB(n, b, a) if it is 0, with mean agreement q = a / (a + b) and over-dispersion
 * rho = 1 / (a + b + 1). With even prior odds the decoded value (the majority of the bit's summed
 * votes) is wrong with the posterior probability of the other value, from the product over the
 * bit's groups. q and rho are unknown: the estimate is averaged over a grid of them (q in
 * 0.505..0.995, rho in 0.001..0.6), each weighted by the likelihood of all 32 groups' counts,
 * each bit's value unknown (a two-sided mixture). A tie is a coin flip (0.5). Averaging makes the
 * estimate conservative: on runs/emoji-latent it expected more bit errors than were made, and
 * bits it put under 1% were wrong 0.0-0.3% of the time (`npm run bench:watermark`'s payload
 * table, docs/LATENT-TRAINING.md).
 */
export function bitErrorProbabilities(ones: ArrayLike<number>, sizes: ArrayLike<number>, payloadBits = sizes.length): number[] {
  // Bit b's groups (j = b mod B), each with its own agreement rate: with fewer bits than groups the
  // groups still show how much rates vary, which B bits alone would pin down loosely.
  const bits = Array.from({ length: payloadBits }, (_, b) => {
    const groups = Array.from({ length: sizes.length }, (_, j) => j).filter((j) => j % payloadBits === b);
    const [c, n] = [groups.reduce((t, j) => t + ones[j], 0), groups.reduce((t, j) => t + sizes[j], 0)];
    return { groups: groups.map((j) => ({ c: ones[j], n: sizes[j] })), decoded: c > n / 2 ? 1 : c < n / 2 ? 0 : -1 };
  });
  // log BB(c; n, a, b) without the binomial coefficient, which both sides share: logB(c + a, n - c + b) - logB(a, b).
  const logBeta = (x: number, y: number) => logGamma(x) + logGamma(y) - logGamma(x + y);
  const fits: { l: number; errors: number[] }[] = [];
  for (let i = 1; i < 100; i++) {
    const q = 0.5 + i / 200;
    for (const rho of [0.001, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6]) {
      const [a, b] = [q * (1 / rho - 1), (1 - q) * (1 / rho - 1)];
      const norm = logBeta(a, b);
      let l = 0;
      const errors = bits.map(({ groups, decoded }) => {
        let [one, zero] = [0, 0];
        for (const { c, n } of groups) [one, zero] = [one + logBeta(c + a, n - c + b) - norm, zero + logBeta(n - c + a, c + b) - norm];
        l += Math.max(one, zero) + Math.log1p(Math.exp(-Math.abs(one - zero)));
        // The chance that the decoded value (the majority of the summed votes) is the wrong one; a tie is a coin flip.
        return decoded === -1 ? 0.5 : 1 / (1 + Math.exp(Math.max(-700, Math.min(700, decoded === 1 ? one - zero : zero - one))));
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
  /** The key's payload bits (0: the key carries no payload, and there is nothing to read). */
  payloadBits: number;
  /** The estimated probability that the whole payload is right. */
  reliability: number;
  /** Bits (0 = least significant) whose vote is wrong with estimated probability >= UNCERTAIN_BIT. */
  uncertainBits: number[];
  /** Per bit, the estimated probability that its vote is wrong (bitErrorProbabilities). */
  bitError: number[];
}

/** How sure a detection's payload is, from its bits' votes. */
export function readPayload(d: Pick<NoiseDetection, 'payload' | 'votes' | 'payloadBits'>): PayloadReading {
  const bitError = bitErrorProbabilities(d.votes.ones, d.votes.sizes, d.payloadBits);
  return { payload: d.payload, payloadBits: d.payloadBits, reliability: bitError.reduce((r, e) => r * (1 - e), 1), uncertainBits: bitError.flatMap((e, j) => (e >= UNCERTAIN_BIT ? [j] : [])), bitError };
}

/** "payload 5 (right with probability 0.998 by its votes)", or with the bits that may be wrong. */
export function describePayload(r: Omit<PayloadReading, 'bitError'>): string {
  if (r.payloadBits === 0) return 'no payload (the key carries none)';
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
  return reliableOf(rankedGroups(noise, use));
}

/**
 * The 32 groups (positions i mod 32 that `use` allows), each sorted by |noise| from the least
 * reliable up, ties to the lower index (which ranks higher): the one sort that rankWeights and
 * reliablePositions both read.
 */
function rankedGroups(noise: Float32Array, use?: Uint8Array): number[][] {
  return Array.from({ length: PAYLOAD_BITS }, (_, j) => {
    const group: number[] = [];
    for (let i = j; i < noise.length; i += PAYLOAD_BITS) if (!use || use[i]) group.push(i);
    return group.sort((a, b) => Math.abs(noise[a]) - Math.abs(noise[b]) || b - a);
  });
}

/** reliablePositions from ranked groups: each group's top RELIABLE_SHARE, in increasing order. */
function reliableOf(groups: readonly number[][]): Int32Array {
  // At least 3 (or all): with one position a group's vote always agrees with itself and says nothing.
  const kept = (n: number) => Math.max(Math.min(n, 3), Math.round(n * RELIABLE_SHARE));
  return Int32Array.from(groups.flatMap((g) => g.slice(g.length - kept(g.length)))).sort();
}

/** The largest rank score: groups of a few dozen positions reach it, larger ones are capped at it. */
export const MAX_RANK_SCORE = 8;

const scoreCache = new Map<number, Uint8Array>();
/**
 * The weights of a group of n positions by rank of |estimate|, smallest first:
 * min(8, round(3.2 q((r + 1/2) / n))) with q the half-normal quantile, P(|Z| <= q(u)) = u. Under a
 * weak mark a sign agrees with x_T's with a log-odds about proportional to |x_T|, whose expected
 * value at that rank this is; integers keep the null distribution exact. The lowest ranks (about
 * 12%) get 0.
 */
export function rankScores(n: number): Uint8Array {
  let s = scoreCache.get(n);
  if (!s) {
    s = Uint8Array.from({ length: n }, (_, r) => Math.min(MAX_RANK_SCORE, Math.round(3.2 * halfNormalQuantile((r + 0.5) / n))));
    if (scoreCache.size > 4096) scoreCache.clear();
    scoreCache.set(n, s);
  }
  return s;
}

/** q with erf(q / sqrt 2) = u, by bisection (u in (0, 1); the scores round it, so 1e-9 is plenty). */
function halfNormalQuantile(u: number): number {
  let [lo, hi] = [0, 10];
  while (hi - lo > 1e-9) {
    const mid = (lo + hi) / 2;
    if (erf(mid / Math.SQRT2) < u) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** erf by its Taylor series below 3 and its continued fraction above (both to about 1e-15). */
function erf(x: number): number {
  if (x < 3) {
    let [term, sum] = [x, x];
    for (let k = 1; k < 100 && Math.abs(term) > 1e-17 * Math.abs(sum); k++) {
      term *= (-x * x) / k;
      sum += term / (2 * k + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x^2) / sqrt(pi) * 1 / (x + 1/2 / (x + 1 / (x + 3/2 / (x + ...)))), evaluated from the tail.
  let f = x;
  for (let k = 60; k >= 1; k--) f = x + k / 2 / f;
  return 1 - Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/**
 * Each position's weight (0 where `use` leaves it out): its rank score within its payload bit's
 * group (i mod 32) of allowed positions, by |noise|, ties to the lower index; with a grid, within
 * the group's positions of its edge class, times that class's factor (EDGE_FACTORS). Also each
 * group's size and its parts. A function of the image's estimate alone, never of the key.
 */
export function rankWeights(noise: Float32Array, use?: Uint8Array, grid?: NoiseGrid): { weights: Uint8Array; sizes: number[]; parts: GroupPart[][] } {
  checkGrid(grid, noise.length);
  const parted = splitByEdge(rankedGroups(noise, use), grid && edgeClasses(grid, use));
  return { weights: weightsOf(parted, noise.length), sizes: parted.map((g) => g.reduce((n, p) => n + p.positions.length, 0)), parts: partsOf(parted) };
}

/** A grid, if given, must hold the estimate's D values. */
function checkGrid(grid: NoiseGrid | undefined, D: number): void {
  if (grid && (grid.length !== 3 || !grid.every((n) => Number.isInteger(n) && n > 0) || grid[0] * grid[1] * grid[2] !== D)) {
    throw new Error(`watermark detection: a grid of ${grid.join(' x ')} for ${D} values`);
  }
}

/** A group's positions of one edge class, sorted by |noise| from the least reliable up, and their factor. */
interface RankedPart {
  positions: number[];
  factor: number;
}

/**
 * Ranked groups (rankedGroups) split by edge class (one part without classes), each part keeping
 * its group's order. Parts are listed by class, empty ones left out, so that their sizes depend
 * on the grid and the mask alone.
 */
function splitByEdge(ranked: readonly number[][], classes?: Uint8Array): RankedPart[][] {
  return ranked.map((group) => {
    if (!classes) return [{ positions: group, factor: 1 }];
    return EDGE_FACTORS.map((factor, c) => ({ positions: group.filter((i) => classes[i] === c), factor })).filter((p) => p.positions.length > 0);
  });
}

/** The sizes and factors of ranked parts. */
const partsOf = (parted: readonly RankedPart[][]): GroupPart[][] => parted.map((g) => g.map((p) => ({ size: p.positions.length, factor: p.factor })));

/** Each position's weight from ranked parts: its rank score within its part, times the part's factor. */
function weightsOf(parted: readonly RankedPart[][], D: number): Uint8Array {
  const weights = new Uint8Array(D);
  for (const group of parted)
    for (const { positions, factor } of group) {
      const scores = rankScores(positions.length);
      positions.forEach((i, r) => (weights[i] = scores[r] * factor));
    }
  return weights;
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

/**
 * log P(A >= a) for a = 0..W under the null (W the total weight, then -Infinity): for unmasked
 * noise of D values and a key of `bits` payload bits (default 32), ranked with the grid's edge
 * classes if one is given. See nullLogSurvivalOfGroups.
 */
export function nullLogSurvival(D: number, bits = PAYLOAD_BITS, grid?: NoiseGrid): NullSurvival {
  checkGrid(grid, D);
  return nullLogSurvivalOfGroups(groupParts(D, grid), bits);
}

/**
 * The null survival function of A for groups of the given parts, each weighted by rankScores times its factor. Exact
 * wherever P(A >= a) is above 1e-280 of the mode's probability (the distributions are
 * convolved in floating point, rescaled as they go, all terms positive, so that every entry keeps
 * its relative precision); further out, where the exact value underflows, it is Chernoff's bound,
 * P(A >= a) <= min over t > 0 of exp(-t a) prod_j E exp(t X_j), from the groups' exact
 * distributions (within a polynomial factor of the truth, and equal to it at A's largest value),
 * so that a p-value stays an upper bound however strong the mark.
 */
export interface NullSurvival {
  /** log P(A >= a); 0 for a <= the smallest value, -Infinity above the largest. */
  at(a: number): number;
  /** The largest value of A: the groups' total weight. */
  max: number;
}

const survivalCache = new Map<string, NullSurvival>();
function nullLogSurvivalOfGroups(parts: readonly GroupPart[][], bits: number): NullSurvival {
  // Groups apart ('|'): which bit owns a part depends on its group, so the flat list alone is ambiguous.
  const id = `${bits}:${parts.map(partsId).join('|')}`;
  let s = survivalCache.get(id);
  if (s) return s;
  // Payload bit j owns the ranked groups r = j mod B; without a payload one group holds them all.
  const owned = bits ? Array.from({ length: bits }, (_, j) => parts.filter((_, r) => r % bits === j).flat()) : [parts.flat()];
  const groups = owned.map((of) => groupPmf(of, bits > 0));
  // Convolve the bits' distributions, each rescaled to its largest entry.
  let pmf = Float64Array.of(1);
  let logScale = 0;
  for (const g of groups) {
    const next = new Float64Array(pmf.length + g.p.length - 1);
    // A two-sided term is at least half its total: the loop starts at its first possible value.
    const first = Math.max(0, g.p.findIndex((v) => v > 0));
    for (let a = 0; a < pmf.length; a++) {
      const pa = pmf[a];
      if (pa === 0) continue;
      for (let x = first; x < g.p.length; x++) next[a + x] += pa * g.p[x];
    }
    const top = next.reduce((m, v) => Math.max(m, v), 0);
    logScale += g.logScale + Math.log(top);
    pmf = next.map((v) => v / top);
  }
  const tail = new Float64Array(pmf.length + 1);
  for (let a = pmf.length - 1; a >= 0; a--) tail[a] = tail[a + 1] + pmf[a];
  const max = pmf.length - 1;
  // Exact down to 1e-280 of the mode (above the subnormals, whose precision falls away); past that
  // seam the bound, never above the seam's exact value, which also bounds every larger a.
  let seam = 0;
  while (seam + 1 <= max && tail[seam + 1] > 1e-280) seam++;
  const exact = (a: number) => Math.min(0, Math.log(tail[a]) + logScale);
  s = {
    max,
    at: (a: number) => (a <= 0 ? 0 : a > max ? -Infinity : a <= seam ? exact(a) : Math.min(exact(seam), chernoffBound(groups, a))),
  };
  if (survivalCache.size > 256) survivalCache.clear();
  survivalCache.set(id, s);
  return s;
}

/** log of Chernoff's bound on P(sum of the groups' terms >= a): the exponent minimised over t in (0, 60] by golden-section search (it is convex in t). */
function chernoffBound(groups: readonly GroupPmf[], a: number): number {
  const exponent = (t: number) => {
    let e = -t * a;
    for (const g of groups) {
      // log E exp(t X) = logScale + log sum_x p[x] exp(t x), summed from the top down, shifted by its largest term.
      let top = -Infinity;
      for (let x = 0; x < g.p.length; x++) if (g.p[x] > 0) top = Math.max(top, Math.log(g.p[x]) + t * x);
      let sum = 0;
      for (let x = 0; x < g.p.length; x++) if (g.p[x] > 0) sum += Math.exp(Math.log(g.p[x]) + t * x - top);
      e += g.logScale + top + Math.log(sum);
    }
    return e;
  };
  let [lo, hi] = [0, 60];
  const phi = (Math.sqrt(5) - 1) / 2;
  let x1 = hi - phi * (hi - lo);
  let x2 = lo + phi * (hi - lo);
  let [f1, f2] = [exponent(x1), exponent(x2)];
  for (let k = 0; k < 80; k++) {
    if (f1 < f2) {
      // The minimum is in [lo, x2]: x1 becomes the upper probe.
      hi = x2;
      [x2, f2] = [x1, f1];
      x1 = hi - phi * (hi - lo);
      f1 = exponent(x1);
    } else {
      lo = x1;
      [x1, f1] = [x2, f2];
      x2 = lo + phi * (hi - lo);
      f2 = exponent(x2);
    }
  }
  return Math.min(0, f1, f2);
}

interface GroupPmf {
  p: Float64Array;
  logScale: number;
  total: number;
}

const groupCache = new Map<string, GroupPmf>();
/** A cache key for a list of parts. */
const partsId = (parts: readonly GroupPart[]) => parts.map((p) => (p.factor === 1 ? `${p.size}` : `${p.size}x${p.factor}`)).join(',');

/**
 * One payload bit's positions, the ranked parts of the given sizes and factors: the distribution
 * of its term of A, as p[x] exp(logScale), and its total weight W. With c the sum of the
 * positions' weights each counted with probability 1/2, the term is max(c, W - c) (the bit's
 * value unknown), or c itself for a key without payload (c and W - c have one distribution).
 */
function groupPmf(parts: readonly GroupPart[], twoSided: boolean): GroupPmf {
  const id = `${twoSided ? 'max' : 'one'}:${partsId(parts)}`;
  const cached = groupCache.get(id);
  if (cached) return cached;
  const scores = parts.flatMap(({ size, factor }) => Array.from(rankScores(size), (w) => w * factor)).filter((w) => w > 0);
  const total = scores.reduce((t, w) => t + w, 0);
  // Subset sums of the scores (counts, each subset having probability 2^-n), rescaled every 500
  // scores: counts at most double per score, so they stay below 2^500 between rescalings.
  let c = new Float64Array(total + 1);
  c[0] = 1;
  let logScale = -scores.length * Math.LN2;
  let reach = 0;
  scores.forEach((w, m) => {
    for (let x = reach; x >= 0; x--) if (c[x]) c[x + w] += c[x];
    reach += w;
    if (m % 500 === 499) {
      const top = c.reduce((t, v) => Math.max(t, v), 0);
      c = c.map((v) => v / top);
      logScale += Math.log(top);
    }
  });
  const p = new Float64Array(total + 1);
  for (let x = 0; x <= total; x++) p[twoSided ? Math.max(x, total - x) : x] += c[x];
  const top = p.reduce((t, v) => Math.max(t, v), 0);
  for (let x = 0; x <= total; x++) p[x] /= top;
  logScale += Math.log(top);
  const g = { p, logScale, total };
  if (groupCache.size > 4096) groupCache.clear();
  groupCache.set(id, g);
  return g;
}
