/**
 * Watermark test statistics compared on the same inverted noises: `npm run bench:watermark --
 * --dump FILE` writes every row's x_T estimates, the key and the payloads; this script scores them
 * again with
 *   - detectInNoise: the statistic Diffuse uses (rank-weighted votes, exact randomised p-value),
 *     on a latent run's dump both ways: every position ranked alike, and by edge class of the
 *     latent grid (EDGE_FACTORS; what detectWatermark uses on latent models);
 *   - the previous statistic: the 60% of each payload bit's positions with the largest |estimate|,
 *     counted with weight 1;
 *   - the rank-weighted statistic with fewer payload bits (16, 8, or none: a known payload), a
 *     simulation of such a scheme: the true payload is removed from the signs first, so that any
 *     grouping of the positions behaves as a scheme of that many bits carrying payload 0.
 * The comparisons' p-values are exact but not randomised within their atom (slightly
 * conservative), so their false-positive rates sit a little under the nominal rate. The score is
 * -log10 p; AUC between the watermarked and clean images of each row, and TPR and FPR at p < 1%.
 *
 *   npm run bench:watermark-statistics -- --dump FILE [--attacks none,jpeg25,...] [--skip-simulated]
 *
 * --skip-simulated scores with detectInNoise alone (the simulated schemes recompute their null
 * distribution for every estimate: minutes per hundred estimates).
 */
import { readFileSync } from 'node:fs';
import { rocAuc } from '../src/eval/index.js';
import { WatermarkKey, detectInNoise, keystreams, logMaxOfIndependent, rankWeights, reliablePositions } from '../src/forensics/index.js';
import { flag, has, log } from './args.js';

const file = flag('dump');
if (!file) {
  console.error('usage: npm run bench:watermark-statistics -- --dump FILE [--attacks none,jpeg25,...]  (FILE from bench:watermark --dump)');
  process.exit(1);
}
interface Dump {
  run: string;
  key: WatermarkKey;
  payloads: number[];
  noisePer: number;
  /** The estimates' grid and whether it is a latent one (dumps from before these were written lack them). */
  noiseShape?: [number, number, number];
  latent?: boolean;
  inversionSteps: number;
  attacks: Record<string, { marked: string[]; clean: string[] }>;
}
const dump = JSON.parse(readFileSync(file, 'utf8')) as Dump;
const D = dump.noisePer;
const ks = keystreams(dump.key, D);
const decode = (b: string) => new Float32Array(Uint8Array.from(Buffer.from(b, 'base64')).buffer);
const only = flag('attacks')?.split(',');

/** The distribution of a sum of fair +-w terms (integer weights), as probabilities indexed from -total. */
function signedPmf(weights: number[]): { offset: number; p: Float64Array } {
  const total = weights.reduce((a, b) => a + b, 0);
  let p = new Float64Array(2 * total + 1);
  p[total] = 1;
  let [lo, hi] = [total, total];
  for (const w of weights) {
    if (!w) continue;
    const q = new Float64Array(p.length);
    for (let s = lo; s <= hi; s++) if (p[s]) [q[s + w], q[s - w]] = [q[s + w] + p[s] / 2, q[s - w] + p[s] / 2];
    [lo, hi, p] = [lo - w, hi + w, q];
  }
  return { offset: total, p };
}
function convolve(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length - 1);
  for (let i = 0; i < a.length; i++) if (a[i]) for (let j = 0; j < b.length; j++) out[i + j] += a[i] * b[j];
  return out;
}
/** log P(T >= t) for t = 0.. (floored at 1e-300: beyond it the score is capped, which only ties the strongest marks). */
function logSurvival(p: Float64Array): Float64Array {
  const s = new Float64Array(p.length + 1);
  for (let a = p.length - 1; a >= 0; a--) s[a] = s[a + 1] + p[a];
  return s.map((v) => Math.log(Math.max(v, 1e-300)));
}

interface Variant {
  name: string;
  /** Payload bits: positions i mod bits share one (0: no payload, a one-sided test). */
  bits: number;
  /** Each counted position's weight, from the estimate. */
  weights: (y: Float32Array) => Int32Array;
}
/** The previous statistic: weight 1 on the RELIABLE_SHARE of each group with the largest |estimate|. */
const previous = (y: Float32Array) => {
  const w = new Int32Array(y.length);
  for (const i of reliablePositions(y)) w[i] = 1;
  return w;
};
/** Rank scores within groups of positions i mod 32, as detectInNoise weighs them. */
const ranked = (y: Float32Array) => Int32Array.from(rankWeights(y).weights);

/** -log10 p of one estimate under a variant, the true payload removed (see the file's comment). */
function score(y: Float32Array, payload: number, v: Variant): number {
  const w = v.weights(y);
  const groups = Math.max(1, v.bits);
  const agreeing = new Uint8Array(D); // 1 where the sign says "1" after the payload is removed
  for (let i = 0; i < D; i++) agreeing[i] = (y[i] > 0 ? 1 : 0) ^ ((payload >>> (i % 32)) & 1);
  let survival: Float64Array;
  let offset = 0;
  if (v.bits === 0) {
    const s = signedPmf(Array.from(w));
    [survival, offset] = [logSurvival(s.p), s.offset];
  } else {
    let acc: Float64Array = Float64Array.of(1);
    for (let g = 0; g < groups; g++) {
      const s = signedPmf(Array.from(w).filter((_, i) => i % groups === g));
      const abs = new Float64Array(s.offset + 1);
      s.p.forEach((p, k) => (abs[Math.abs(k - s.offset)] += p));
      acc = convolve(acc, abs);
    }
    survival = logSurvival(acc);
  }
  const sums = new Int32Array(groups);
  let best = -Infinity;
  for (const k of ks) {
    sums.fill(0);
    for (let i = 0; i < D; i++) if (w[i]) sums[i % groups] += agreeing[i] ^ k[i] ? -w[i] : w[i];
    const t = v.bits === 0 ? sums[0] : sums.reduce((a, s) => a + Math.abs(s), 0);
    best = Math.max(best, t);
  }
  return -logMaxOfIndependent(survival[Math.min(survival.length - 1, Math.max(0, best + offset))], ks.length) / Math.LN10;
}

const variants: Variant[] = [
  { name: 'previous: top 60%, weight 1, 32 bits', bits: 32, weights: previous },
  { name: 'rank-weighted, 16 payload bits (simulated)', bits: 16, weights: ranked },
  { name: 'rank-weighted, 8 payload bits (simulated)', bits: 8, weights: ranked },
  { name: 'rank-weighted, no payload (simulated)', bits: 0, weights: ranked },
];
console.log(`\n## ${dump.run}: test statistics on the same inverted noises (${dump.inversionSteps} inversion steps, ${D} values each)\n`);
console.log('| attack | statistic | AUC | TPR at p < 1% | FPR at p < 1% |');
console.log('|---|---|---|---|---|');
for (const [attack, row] of Object.entries(dump.attacks)) {
  if (only && !only.includes(attack)) continue;
  const [marked, clean] = [row.marked.map(decode), row.clean.map(decode)];
  const print = (name: string, sm: number[], sc: number[]) =>
    console.log(`| ${attack} | ${name} | ${rocAuc(sm, sc).toFixed(4)} | ${(sm.filter((s) => s > 2).length / sm.length).toFixed(3)} | ${(sc.filter((s) => s > 2).length / sc.length).toFixed(3)} |`);
  const bits = dump.key.payloadBits ?? 32;
  const current = (y: Float32Array) => -detectInNoise(dump.key, y).log10P;
  print(`detectInNoise: rank-weighted, ${bits} bits, positions ranked alike`, marked.map(current), clean.map(current));
  if (dump.latent && dump.noiseShape) {
    const grid = dump.noiseShape;
    const edged = (y: Float32Array) => -detectInNoise(dump.key, y, undefined, grid).log10P;
    print(`detectInNoise: rank-weighted, ${bits} bits, by edge class of the ${grid.join('x')} grid`, marked.map(edged), clean.map(edged));
  }
  if (!has('skip-simulated')) for (const v of variants) print(v.name, marked.map((y, k) => score(y, dump.payloads[k], v)), clean.map((y, k) => score(y, dump.payloads[k], v)));
  log(`${attack} done`);
}
