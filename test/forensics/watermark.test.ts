import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { TorchGenerator, WatermarkKey, generateKey, readKey } from '../../src/index.js';
import { EDGE_FACTORS, MAX_RANK_SCORE, NONCES, edgeClasses, RELIABLE_SHARE, bitErrorProbabilities, describePayload, logGamma, rankScores, rankWeights, readPayload, reliablePositions, detectInNoise, keystreamBits, nullLogSurvival, shadeNoise, watermarkedNoise } from '../../src/forensics/index.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-wm-'));
after(() => rmSync(root, { recursive: true, force: true }));
// A fixed key, so that every run of the test sees the same numbers.
const key = { format: 'diffuse-watermark-key-1' as const, scheme: 'gaussian-shading' as const, secret: Buffer.alloc(32, 7).toString('base64'), created: '2026-11-30' };
const other = { ...key, secret: Buffer.alloc(32, 8).toString('base64') };
const D = 784;

describe('Gaussian Shading in the initial noise', () => {
  it('keeps x_T standard normal, with a different sign pattern per image', () => {
    const x = watermarkedNoise(key, 0xdeadbeef, 400, D, new TorchGenerator(3));
    const n = x.length;
    const mean = x.reduce((a, v) => a + v, 0) / n;
    const variance = x.reduce((a, v) => a + (v - mean) ** 2, 0) / n;
    assert.ok(Math.abs(mean) < 4 / Math.sqrt(n), `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 4 * Math.sqrt(2 / n), `variance ${variance}`);
    // Kolmogorov-Smirnov distance to the normal CDF (erf by Abramowitz-Stegun 7.1.26, error < 1.5e-7).
    const erf = (z: number) => {
      const t = 1 / (1 + 0.3275911 * Math.abs(z));
      const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-z * z);
      return z >= 0 ? y : -y;
    };
    const sorted = Float64Array.from(x).sort();
    let ks = 0;
    sorted.forEach((v, i) => (ks = Math.max(ks, Math.abs(0.5 * (1 + erf(v / Math.SQRT2)) - (i + 0.5) / n))));
    assert.ok(ks < 1.63 / Math.sqrt(n), `KS distance ${ks} (1% critical value ${1.63 / Math.sqrt(n)})`);
    // Sign agreement between two images of the same key and payload: about half, not a shared pattern.
    let same = 0;
    for (let i = 0; i < D; i++) same += Math.sign(x[i]) === Math.sign(x[D + i]) ? 1 : 0;
    assert.ok(Math.abs(same / D - 0.5) < 0.1, `two images share ${same} of ${D} signs`);
  });

  it('finds the key and the payload in the noise, through sign errors, and not with another key', () => {
    const payload = 0xc0ffee42;
    const x = shadeNoise(key, payload, 77, new TorchGenerator(1).randn(D));
    const clean = detectInNoise(key, x);
    assert.equal(clean.payload, payload);
    assert.equal(clean.nonce, 77);
    assert.equal(clean.agreement, clean.maxAgreement, 'every weighted sign agrees');
    assert.equal(clean.positions, rankWeights(x).weights.filter((w) => w > 0).length);
    assert.ok(clean.positions > 0.8 * D && clean.positions < 0.95 * D, `${clean.positions} of ${D} positions weighted`);
    assert.ok(clean.log10P < -100, `log10 p ${clean.log10P}`);
    // 20% of the signs flipped, as a lossy inversion would.
    const u = new TorchGenerator(2).rand(D);
    const noisy = x.map((v, i) => (u[i] < 0.2 ? -v : v));
    const d = detectInNoise(key, noisy);
    assert.ok(d.pValue < 1e-10, `p ${d.pValue}`);
    let right = 0;
    for (let j = 0; j < 32; j++) right += ((d.payload >>> j) & 1) === ((payload >>> j) & 1) ? 1 : 0;
    assert.ok(right >= 31, `${right} of 32 payload bits`);
    assert.ok(detectInNoise(other, x).pValue > 0.01, 'another key does not find it');
  });

  it('counts, per payload bit, the positions of largest magnitude that the mask allows', () => {
    const x = new TorchGenerator(5).randn(D);
    const use = Uint8Array.from({ length: D }, (_, i) => (i % 7 === 0 ? 0 : 1));
    const kept = reliablePositions(x, use);
    for (let j = 0; j < 32; j++) {
      const group = Array.from({ length: D }, (_, i) => i).filter((i) => i % 32 === j && use[i]);
      const mine = Array.from(kept).filter((i) => i % 32 === j);
      assert.equal(mine.length, Math.round(group.length * RELIABLE_SHARE));
      // Every kept position's magnitude is at least every dropped one's.
      const dropped = group.filter((i) => !mine.includes(i));
      assert.ok(Math.min(...mine.map((i) => Math.abs(x[i]))) >= Math.max(...dropped.map((i) => Math.abs(x[i]))));
    }
    assert.ok(Array.from(kept).every((i) => use[i] === 1));
    // Groups of 2 (D = 64) keep both: one position's vote would always agree with itself.
    assert.equal(reliablePositions(new TorchGenerator(6).randn(64)).length, 64);
  });

  it('counts signs that agree with x_T more often than all signs do, and finds the mark, in a noisy estimate', () => {
    const x = shadeNoise(key, 123, 9, new TorchGenerator(7).randn(D));
    // An estimate of x_T with noise: its signs flip where |x| is small.
    const e = new TorchGenerator(8).randn(D);
    const estimate = x.map((v, i) => v + 1.6 * e[i]);
    const d = detectInNoise(key, estimate);
    const agreeAll = Array.from(estimate).filter((v, i) => Math.sign(v) === Math.sign(x[i])).length / D;
    const kept = reliablePositions(estimate);
    const agreeKept = Array.from(kept).filter((i) => Math.sign(estimate[i]) === Math.sign(x[i])).length / kept.length;
    assert.ok(agreeKept > agreeAll + 0.03, `kept positions agree ${agreeKept.toFixed(3)}, all ${agreeAll.toFixed(3)}`);
    assert.ok(d.pValue < 0.01, `p ${d.pValue}`);
  });

  it('weights each position by the half-normal quantile of its rank within its group', () => {
    // Closed form: round(3.2 q) with q the half-normal quantile, q(0.5) = 0.6744897501960817 (R's qnorm(0.75)),
    // q(0.95) = 1.959963984540054; n = 1 has rank (0.5), n = 10 rank 9 has u = 0.95.
    assert.deepEqual(Array.from(rankScores(1)), [Math.round(3.2 * 0.6744897501960817)]);
    assert.equal(rankScores(10)[9], Math.round(3.2 * 1.959963984540054));
    const s = rankScores(200);
    assert.ok(s.every((w, r) => r === 0 || w >= s[r - 1]), 'non-decreasing in rank');
    assert.equal(s[199], MAX_RANK_SCORE, 'capped');
    assert.equal(s[0], 0, 'the least reliable get no weight');
    const x = new TorchGenerator(5).randn(D);
    const { weights, sizes } = rankWeights(x);
    assert.deepEqual(sizes, Array.from({ length: 32 }, (_, j) => Math.floor(D / 32) + (j < D % 32 ? 1 : 0)));
    for (let j = 0; j < 32; j++) {
      const group = Array.from({ length: D }, (_, i) => i).filter((i) => i % 32 === j);
      const byMagnitude = [...group].sort((a, b) => Math.abs(x[a]) - Math.abs(x[b]));
      byMagnitude.forEach((i, r) => assert.equal(weights[i], rankScores(group.length)[r]));
    }
  });

  it('computes the null distribution of the weighted statistic exactly (enumeration, simulation, and the extreme tail in closed form)', () => {
    // D = 64 (groups of 2): A is a sum of 32 independent copies of max(c, W - c) for the scores
    // (w1, w2), each of the 4 sign patterns enumerated, convolved here in log space, against nullLogSurvival.
    const [w1, w2] = rankScores(2);
    const values = [0, w1, w2, w1 + w2].map((c) => Math.max(c, w1 + w2 - c));
    let logPmf = new Map<number, number>([[0, 0]]);
    const lse = (a: number, b: number) => Math.max(a, b) + Math.log1p(Math.exp(-Math.abs(a - b)));
    for (let g = 0; g < 32; g++) {
      const next = new Map<number, number>();
      for (const [a, lp] of logPmf) for (const v of values) next.set(a + v, next.has(a + v) ? lse(next.get(a + v) as number, lp - Math.log(4)) : lp - Math.log(4));
      logPmf = next;
    }
    const small = nullLogSurvival(64);
    assert.equal(small.max, 32 * (w1 + w2));
    for (let a = 0; a <= small.max + 1; a++) {
      let want = -Infinity;
      for (const [v, lp] of logPmf) if (v >= a) want = want === -Infinity ? lp : lse(want, lp);
      if (want === -Infinity) assert.equal(small.at(a), -Infinity);
      else assert.ok(Math.abs(small.at(a) - want) < 1e-9 * Math.max(1, Math.abs(want)), `P(A >= ${a}): ${small.at(a)} against ${want}`);
    }
    // D = 784: simulated with fair-coin signs, weighted by the ranks of random magnitudes.
    const logS = nullLogSurvival(D);
    const k = keystreamBits(key, 0, D);
    const g = new TorchGenerator(9);
    const trials = 20000;
    const As = new Int32Array(trials);
    const { weights } = rankWeights(new TorchGenerator(10).randn(D));
    const totals = new Int32Array(32);
    for (let i = 0; i < D; i++) totals[i % 32] += weights[i];
    for (let t = 0; t < trials; t++) {
      const u = g.rand(D);
      const c = new Int32Array(32);
      for (let i = 0; i < D; i++) c[i % 32] += ((u[i] < 0.5 ? 1 : 0) ^ k[i]) * weights[i];
      for (let j = 0; j < 32; j++) As[t] += Math.max(c[j], totals[j] - c[j]);
    }
    const sorted = Int32Array.from(As).sort();
    for (const q of [0.5, 0.9, 0.99, 0.999]) {
      const a = sorted[Math.floor(q * trials)];
      const exact = Math.exp(logS.at(a));
      const seen = As.filter((v) => v >= a).length / trials;
      const sd = Math.sqrt((exact * (1 - exact)) / trials);
      assert.ok(Math.abs(seen - exact) < 4 * sd + 1e-4, `P(A >= ${a}): simulated ${seen}, exact ${exact}`);
    }
    // The extreme tail: A = W when every weighted sign in each group agrees (or disagrees):
    // P = prod_j 2 / 2^(positive weights in group j).
    const positive = (n: number) => rankScores(n).filter((w) => w > 0).length;
    const top = 16 * (2 * Math.LN2 - (positive(24) + positive(25)) * Math.LN2); // 784 = 16 x 25 + 16 x 24
    assert.ok(Math.abs(logS.at(logS.max) - top) < 1e-9 * Math.abs(top), `log P(A = W) ${logS.at(logS.max)} against ${top}`);
    // SD's 4 x 64 x 64 latents: far beyond floating point, the tail is Chernoff's bound, which at A = W is the true value.
    const big = nullLogSurvival(16384);
    const bigTop = 32 * (Math.LN2 - rankScores(512).filter((w) => w > 0).length * Math.LN2);
    assert.ok(big.at(big.max) < -700 && big.at(big.max) >= bigTop - 1e-9 * Math.abs(bigTop) && big.at(big.max) < bigTop + 1, `log P(A = W) at D = 16384: ${big.at(big.max)}, true ${bigTop}`);
    assert.ok(Math.abs(big.at(0)) < 1e-9 && big.at(big.max + 1) === -Infinity);
    // Where the exact tail underflows the bound takes over: the survival function stays
    // non-increasing, with no jump at the seam (each step down is a few nats at most), D = 81 x 32.
    const mid = nullLogSurvival(81 * 32);
    let [seamless, exactUntil] = [true, 0];
    for (let a = 1; a <= mid.max; a++) {
      const step = mid.at(a) - mid.at(a - 1);
      if (step > 1e-9 || step < -30) seamless = false;
      if (mid.at(a) > -700) exactUntil = a;
    }
    assert.ok(seamless, 'non-increasing, no jump');
    assert.ok(exactUntil < 0.95 * mid.max, 'the bound is in use in this range');
  });

  it('flags unwatermarked noise at exactly the nominal rate (N(0, I), all 1,024 nonces searched; the p-value randomised within its atom)', () => {
    // D = 784 as MNIST, and D = 64, where the statistic is coarse (groups of 2 positions) and a
    // p-value that is not randomised would flag far fewer than alpha.
    for (const [dim, trials, seed] of [[D, 2000, 11], [64, 4000, 12]]) {
      const g = new TorchGenerator(seed);
      const ps = Array.from({ length: trials }, () => detectInNoise(key, g.randn(dim)).pValue);
      for (const alpha of [0.5, 0.1, 0.02]) {
        const rate = ps.filter((p) => p < alpha).length / trials;
        const sd = Math.sqrt((alpha * (1 - alpha)) / trials);
        assert.ok(Math.abs(rate - alpha) < 4 * sd, `D = ${dim}: flagged at ${alpha}: ${rate} (sd ${sd.toFixed(4)})`);
      }
    }
    // The same signs give the same p-value.
    const x = new TorchGenerator(5).randn(64);
    assert.equal(detectInNoise(key, x).pValue, detectInNoise(key, x.map((v) => 2 * v)).pValue);
    assert.equal(NONCES, 1024);
  });

  it('carries fewer payload bits when the key says so (format 2), with an exact test, and finds weak marks more often', () => {
    const key8 = { ...key, format: 'diffuse-watermark-key-2' as const, payloadBits: 8 };
    const key0 = { ...key, format: 'diffuse-watermark-key-2' as const, payloadBits: 0 };
    const x = shadeNoise(key8, 0xa5, 5, new TorchGenerator(21).randn(D));
    const d = detectInNoise(key8, x);
    assert.deepEqual([d.payload, d.payloadBits, d.nonce, d.votes.sizes.length, d.bitConfidence.length], [0xa5, 8, 5, 32, 8]);
    assert.ok(d.log10P < -100, `log10 p ${d.log10P}`);
    // Bit j of the payload sits at positions i mod 8 = j: the 32-bit reading of the same signs repeats it.
    assert.equal(detectInNoise(key, x).payload, 0xa5a5a5a5);
    assert.throws(() => shadeNoise(key8, 256, 0, new Float32Array(64)), /payload must be an integer in 0\.\.255 \(8 bits\), got 256/);
    assert.throws(() => shadeNoise(key0, 1, 0, new Float32Array(64)), /carries no payload, so the payload must be 0/);
    const none = detectInNoise(key0, shadeNoise(key0, 0, 9, new TorchGenerator(22).randn(D)));
    assert.deepEqual([none.payload, none.payloadBits, none.bitConfidence.length], [0, 0, 0]);
    assert.ok(none.log10P < -100);
    assert.equal(describePayload(readPayload(none)), 'no payload (the key carries none)');
    // Null distributions by simulation (fair-coin signs, weights from random magnitudes), for 8 bits and none.
    const { weights } = rankWeights(new TorchGenerator(23).randn(D));
    const k = keystreamBits(key, 0, D);
    for (const bits of [8, 0]) {
      const logS = nullLogSurvival(D, bits);
      const g = new TorchGenerator(24 + bits);
      const groups = Math.max(1, bits);
      const As = Array.from({ length: 10000 }, () => {
        const u = g.rand(D);
        const [c, w] = [new Float64Array(groups), new Float64Array(groups)];
        for (let i = 0; i < D; i++) [c[i % groups], w[i % groups]] = [c[i % groups] + (((u[i] < 0.5 ? 1 : 0) ^ k[i]) ? weights[i] : 0), w[i % groups] + weights[i]];
        return bits ? c.reduce((a, cj, j) => a + Math.max(cj, w[j] - cj), 0) : w[0] - c[0];
      });
      const sorted = [...As].sort((a, b) => a - b);
      for (const q of [0.5, 0.9, 0.99]) {
        const a = sorted[Math.floor(q * As.length)];
        const exact = Math.exp(logS.at(a));
        const seen = As.filter((v) => v >= a).length / As.length;
        assert.ok(Math.abs(seen - exact) < 4 * Math.sqrt((exact * (1 - exact)) / As.length) + 1e-4, `${bits} bits: P(A >= ${a}) simulated ${seen}, exact ${exact}`);
      }
      // And the whole test, nonces searched, flags N(0, I) noise at the nominal rate.
      const h = new TorchGenerator(30 + bits);
      const ps = Array.from({ length: 1000 }, () => detectInNoise(bits ? key8 : key0, h.randn(D)).pValue);
      for (const alpha of [0.2, 0.05]) {
        const rate = ps.filter((p) => p < alpha).length / ps.length;
        assert.ok(Math.abs(rate - alpha) < 4 * Math.sqrt((alpha * (1 - alpha)) / ps.length), `${bits} bits: flagged at ${alpha}: ${rate}`);
      }
    }
    // A weak mark: estimates of x_T with heavy noise; fewer bits find it more strongly (mean log10 p over 20 images).
    const g = new TorchGenerator(40);
    let [mean32, mean8, mean0] = [0, 0, 0];
    for (let t = 0; t < 20; t++) {
      const z = g.randn(D);
      const e = g.randn(D);
      const noisy = (kk: WatermarkKey, payload: number) => shadeNoise(kk, payload, t, z).map((v, i) => v + 2.5 * e[i]);
      mean32 += detectInNoise(key, noisy(key, 0x12345678)).log10P / 20;
      mean8 += detectInNoise(key8, noisy(key8, 0x78)).log10P / 20;
      mean0 += detectInNoise(key0, noisy(key0, 0)).log10P / 20;
    }
    assert.ok(mean8 < mean32 - 0.5 && mean0 < mean8, `mean log10 p: 32 bits ${mean32.toFixed(2)}, 8 bits ${mean8.toFixed(2)}, none ${mean0.toFixed(2)}`);
  });

  it('counts a latent grid\'s edge positions for less, with an exact test, and finds edge-weak marks more strongly', async () => {
    // Edge classes on a 1 x 6 x 6 grid: the outer ring 0, the next 1, the 2 x 2 centre 2.
    const ring = (y: number, x: number) => Math.min(2, y, x, 5 - y, 5 - x);
    assert.deepEqual(Array.from(edgeClasses([1, 6, 6])), Array.from({ length: 36 }, (_, i) => ring(Math.floor(i / 6), i % 6)));
    // A mask that leaves out column 0 of a 1 x 5 x 8 grid: column 1 becomes the edge, column 2 the next ring.
    const use = Uint8Array.from({ length: 40 }, (_, i) => (i % 8 === 0 ? 0 : 1));
    const masked = edgeClasses([1, 5, 8], use);
    assert.deepEqual([masked[2 * 8 + 1], masked[2 * 8 + 2], masked[2 * 8 + 3], masked[2 * 8 + 6]], [0, 1, 2, 1]);
    // Weights: rank score within the group's positions of one class, times the class's factor.
    const grid = [4, 16, 16] as const;
    const x = new TorchGenerator(50).randn(1024);
    const classes = edgeClasses(grid);
    const { weights, parts } = rankWeights(x, undefined, grid);
    for (let j = 0; j < 32; j++)
      for (let c = 0; c < 3; c++) {
        const part = Array.from({ length: 1024 }, (_, i) => i).filter((i) => i % 32 === j && classes[i] === c);
        [...part].sort((a, b) => Math.abs(x[a]) - Math.abs(x[b])).forEach((i, r) => assert.equal(weights[i], rankScores(part.length)[r] * EDGE_FACTORS[c]));
        if (part.length) assert.ok(parts[j].some((p) => p.size === part.length && p.factor === EDGE_FACTORS[c]));
      }
    // The null distribution, exactly: D = 64 on a 1 x 8 x 8 grid (groups of 2 positions), each
    // group's 4 sign patterns enumerated with its weights, convolved in log space.
    const small = [1, 8, 8] as const;
    const w64 = rankWeights(new TorchGenerator(51).randn(64), undefined, small).weights;
    const lse = (a: number, b: number) => Math.max(a, b) + Math.log1p(Math.exp(-Math.abs(a - b)));
    let logPmf = new Map<number, number>([[0, 0]]);
    for (let j = 0; j < 32; j++) {
      const [a, b] = [w64[j], w64[j + 32]];
      const values = [0, a, b, a + b].map((c) => Math.max(c, a + b - c));
      const next = new Map<number, number>();
      for (const [s0, lp] of logPmf) for (const v of values) next.set(s0 + v, next.has(s0 + v) ? lse(next.get(s0 + v) as number, lp - Math.log(4)) : lp - Math.log(4));
      logPmf = next;
    }
    const exact = nullLogSurvival(64, 32, small);
    for (let a = 0; a <= exact.max + 1; a++) {
      let want = -Infinity;
      for (const [v, lp] of logPmf) if (v >= a) want = want === -Infinity ? lp : lse(want, lp);
      if (want === -Infinity) assert.equal(exact.at(a), -Infinity);
      else assert.ok(Math.abs(exact.at(a) - want) < 1e-9 * Math.max(1, Math.abs(want)), `P(A >= ${a}): ${exact.at(a)} against ${want}`);
    }
    // The whole test, nonces searched, flags N(0, I) noise at the nominal rate, on the grid and
    // with a crop-like mask (its edge classes follow the mask), 8 payload bits.
    const key8 = { ...key, format: 'diffuse-watermark-key-2' as const, payloadBits: 8 };
    const inner = Uint8Array.from({ length: 1024 }, (_, i) => (i % 16 >= 3 && Math.floor(i / 16) % 16 < 13 ? 1 : 0));
    for (const mask of [undefined, inner]) {
      const h = new TorchGenerator(mask ? 53 : 52);
      const ps = Array.from({ length: 1000 }, () => detectInNoise(key8, h.randn(1024), mask, grid).pValue);
      for (const alpha of [0.2, 0.05]) {
        const rate = ps.filter((p) => p < alpha).length / ps.length;
        assert.ok(Math.abs(rate - alpha) < 4 * Math.sqrt((alpha * (1 - alpha)) / ps.length), `${mask ? 'masked' : 'whole grid'}: flagged at ${alpha}: ${rate}`);
      }
    }
    // A mark whose edge signs are less reliable (as after an autoencoder's round trip): with the
    // grid the test finds it more strongly than ranking every position alike (mean log10 p, 20 images).
    const g = new TorchGenerator(54);
    let [flat, edged] = [0, 0];
    for (let t = 0; t < 20; t++) {
      const z = shadeNoise(key8, t, t, g.randn(1024));
      const e = g.randn(1024);
      const estimate = z.map((v, i) => v + (classes[i] === 0 ? 4 : classes[i] === 1 ? 2.5 : 1.8) * e[i]);
      flat += detectInNoise(key8, estimate).log10P / 20;
      edged += detectInNoise(key8, estimate, undefined, grid).log10P / 20;
    }
    assert.ok(edged < flat - 0.5, `mean log10 p: ranked alike ${flat.toFixed(2)}, by edge class ${edged.toFixed(2)}`);
    assert.throws(() => detectInNoise(key8, x, undefined, [4, 16, 15]), /a grid of 4 x 16 x 15 for 1024 values/);
    // Two masks on a 1 x 8 x 8 grid whose parts, listed group after group, read the same, but fall
    // in different groups, so that 8 payload bits own different parts: each has its own null. A
    // fresh module computes the second mask's p-value alone; after the first mask's it must come
    // out the same (found by a random search over masks).
    const masks = ['1000100000111000100100011100100011001001100011010111101010100001', '1101010001010000010101001001000010011001110000110011100110100011'].map((m) => Uint8Array.from(m, Number));
    const y = new TorchGenerator(55).randn(64);
    const module = new URL('../../src/forensics/gaussian-shading.js', import.meta.url).href;
    const alone = (await import(`${module}?masks-alone`)) as typeof import('../../src/forensics/gaussian-shading.js');
    const after = (await import(`${module}?masks-after`)) as typeof import('../../src/forensics/gaussian-shading.js');
    after.detectInNoise(key8, y, masks[0], small);
    assert.equal(after.detectInNoise(key8, y, masks[1], small).pValue, alone.detectInNoise(key8, y, masks[1], small).pValue);
  });

  it('reads key files and names what is wrong with them', () => {
    const good = path.join(root, 'key.json');
    writeFileSync(good, JSON.stringify(generateKey()));
    assert.equal(readKey(good).scheme, 'gaussian-shading');
    const write = (name: string, text: string) => {
      const f = path.join(root, name);
      writeFileSync(f, text);
      return f;
    };
    assert.throws(() => readKey(path.join(root, 'none.json')), /none\.json: no such key file \(make one with 'diffuse keygen --out/);
    assert.throws(() => readKey(write('bad.json', '{oops')), /bad\.json: not a Diffuse watermark key \(not valid JSON\)/);
    assert.throws(() => readKey(write('other.json', '{"format": "something-else"}')), /other\.json: not a Diffuse watermark key/);
    assert.throws(() => readKey(write('ring.json', JSON.stringify({ ...key, scheme: 'tree-ring' }))), /ring\.json: a key for the "tree-ring" scheme/);
    assert.throws(() => readKey(write('short.json', JSON.stringify({ ...key, secret: 'AAAA' }))), /short\.json: the secret is not 32 bytes of base64/);
    assert.throws(() => shadeNoise(key, 2 ** 32, 0, new Float32Array(64)), /payload must be an integer in 0\.\.4294967295/);
    // Format 2: fewer payload bits, one of the divisors of 32 (or none).
    assert.equal(readKey(write('eight.json', JSON.stringify(generateKey('gaussian-shading', { payloadBits: 8 })))).payloadBits, 8);
    assert.equal(generateKey().format, 'diffuse-watermark-key-1', 'a 32-bit key stays readable by every version');
    assert.throws(() => generateKey('gaussian-shading', { payloadBits: 7 }), /carries 0, 1, 2, 4, 8, 16, 32 payload bits, not 7/);
    assert.throws(() => readKey(write('seven.json', JSON.stringify({ ...key, format: 'diffuse-watermark-key-2', payloadBits: 7 }))), /seven\.json: "payloadBits" must be one of 0, 1, 2, 4, 8, 16, 32, got 7/);
    assert.throws(() => readKey(write('nobits.json', JSON.stringify({ ...key, format: 'diffuse-watermark-key-2' }))), /nobits\.json: "payloadBits" must be one of .*, got missing/);
    assert.throws(() => readKey(write('mixed.json', JSON.stringify({ ...key, payloadBits: 8 }))), /mixed\.json: a format-1 key carries 32 payload bits and no "payloadBits"/);
  });

  it('log Gamma matches Python\'s math.lgamma', () => {
    // math.lgamma (CPython 3.11) of 0.1, 0.5, 3.7, 10 and 100.5.
    for (const [x, want] of [[0.1, 2.2527126517342055], [0.5, 0.5723649429247001], [3.7, 1.4280723266653883], [10, 12.801827480081469], [100.5, 361.4355404677776]]) {
      assert.ok(Math.abs(logGamma(x) - want) < 1e-12 * Math.max(1, Math.abs(want)), `logGamma(${x}) = ${logGamma(x)}, want ${want}`);
    }
  });

  it("estimates each payload bit's chance of being wrong no lower than it is, and bits it calls certain are (bits simulated with varying agreement rates)", () => {
    // Images of 32 bits x 19 counted positions (the latent emoji run's size); each bit's agreement
    // rate drawn from Beta around q, per image q from 0.6 to 0.85: the model the estimate assumes,
    // simulated, and its sum of error probabilities set against the errors made.
    const g = new TorchGenerator(11);
    const u = () => g.rand(1)[0];
    const gammaDraw = (k: number): number => {
      // Marsaglia-Tsang for k >= 1, boosted below 1.
      if (k < 1) return gammaDraw(k + 1) * u() ** (1 / k);
      const d = k - 1 / 3;
      const c = 1 / Math.sqrt(9 * d);
      for (;;) {
        const z = g.randn(1)[0];
        const v = (1 + c * z) ** 3;
        if (v > 0 && Math.log(u()) < 0.5 * z * z + d - d * v + d * Math.log(v)) return d * v;
      }
    };
    // 32 bits, a group each; then 8 bits of 4 groups each, each group with its own rate, their
    // agreement lower (q from 0.52) so that 8 bits of 76 votes still make errors to predict.
    for (const [bits, qLow, images] of [[32, 0.6, 300], [8, 0.52, 600]]) {
      let predicted = 0;
      let wrong = 0;
      let sureBits = 0;
      let sureWrong = 0;
      for (let image = 0; image < images; image++) {
        const q = qLow + 0.25 * u();
        const strength = 8; // a + b: over-dispersion 1 / 9
        const truth = Array.from({ length: bits }, () => (u() < 0.5 ? 1 : 0));
        const ones: number[] = [];
        const sizes: number[] = [];
        for (let j = 0; j < 32; j++) {
          const x = gammaDraw(q * strength);
          const rate = x / (x + gammaDraw((1 - q) * strength));
          const bit = truth[j % bits];
          let c = 0;
          for (let i = 0; i < 19; i++) c += (u() < rate ? bit : 1 - bit) === 1 ? 1 : 0;
          ones.push(c);
          sizes.push(19);
        }
        const e = bitErrorProbabilities(ones, sizes, bits);
        for (let b = 0; b < bits; b++) {
          const c = ones.reduce((t, o, j) => t + (j % bits === b ? o : 0), 0);
          const isWrong = (c > (19 * 32) / bits / 2 ? 1 : 0) !== truth[b] ? 1 : 0;
          predicted += e[b];
          wrong += isWrong;
          if (e[b] < 0.01) [sureBits, sureWrong] = [sureBits + 1, sureWrong + isWrong];
        }
      }
      if (process.env.DIFFUSE_VERBOSE) console.log({ bits, predicted, wrong, sureBits, sureWrong });
      assert.ok(wrong > 100, `${bits} bits: ${wrong} wrong bits: the simulation makes errors to predict`);
      // Conservative by design (averaged over the unknown rates), not overconfident, and not so cautious as to say nothing.
      assert.ok(predicted > 0.9 * wrong && predicted < 2 * wrong, `${bits} bits: predicted ${predicted.toFixed(1)} wrong bits, made ${wrong}`);
      // Under 1% in expectation; 1.5% leaves room for the sampling error of a few hundred bits.
      assert.ok(sureBits > 300 && sureWrong / sureBits < 0.015, `${bits} bits: ${sureWrong} of ${sureBits} bits estimated under 1% wrong were wrong`);
    }
  });

  it('reports the bits that may be wrong, and a tie as a coin flip', () => {
    const ones = Array.from({ length: 32 }, (_, j) => (j === 3 ? 10 : j === 7 ? 11 : 18));
    const e = bitErrorProbabilities(ones, new Array(32).fill(20));
    assert.equal(e[3], 0.5);
    assert.ok(e[7] > 0.01 && e[7] < 0.5, `bit 7 (11 of 20): ${e[7]}`);
    assert.ok(e[0] < 0.01, `bit 0 (18 of 20): ${e[0]}`);
    const reading = readPayload({ payload: 5, payloadBits: 32, votes: { ones, sizes: new Array(32).fill(20) } });
    assert.deepEqual(reading.uncertainBits, [3, 7]);
    assert.deepEqual(reading.bitError, e);
    assert.match(describePayload(reading), /^payload 5, uncertain: 2 bits may be wrong \(3, 7\); right with probability 0\.\d{3} by its votes$/);
  });
});
