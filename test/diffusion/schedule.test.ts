import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FastGenerator, NoiseSchedule } from '../../src/index.js';
import { lossWeight, makeBetas, qSample, qStep, trainingTarget } from '../../src/diffusion/index.js';

describe('noise schedules (float64)', () => {
  it('linear betas run from betaStart to betaEnd in equal steps', () => {
    const b = makeBetas({ numTrainTimesteps: 5, betaStart: 0.1, betaEnd: 0.5 });
    assert.deepEqual(Array.from(b, (v) => +v.toFixed(12)), [0.1, 0.2, 0.3, 0.4, 0.5]);
  });

  it('cosine schedule reproduces alphaBar(t) = f(t)/f(0) of Nichol & Dhariwal until the 0.999 cap', () => {
    const T = 1000;
    const s = new NoiseSchedule({ betaSchedule: 'squaredcos_cap_v2', numTrainTimesteps: T });
    const fcos = (t: number) => Math.cos(((t / T + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (const t of [0, 10, 500, 900, 990]) {
      const want = fcos(t + 1) / fcos(0);
      assert.ok(Math.abs(s.alphasCumprod[t] - want) < 1e-12 * Math.max(1, want), `t=${t}: ${s.alphasCumprod[t]} vs ${want}`);
    }
    assert.equal(s.betas[T - 1], 0.999);
  });

  it('scaled_linear is linear in sqrt(beta); sigmoid rises monotonically between its ends', () => {
    const s = makeBetas({ betaSchedule: 'scaled_linear', numTrainTimesteps: 3, betaStart: 0.01, betaEnd: 0.09 });
    assert.deepEqual(Array.from(s, (v) => +Math.sqrt(v).toFixed(12)), [0.1, 0.2, 0.3]);
    const g = makeBetas({ betaSchedule: 'sigmoid', numTrainTimesteps: 100 });
    for (let i = 1; i < g.length; i++) assert.ok(g[i] > g[i - 1]);
    assert.ok(g[0] > 0.0001 && g[99] < 0.02);
  });

  it('zero-terminal-SNR rescaling keeps the first alphaBar and zeroes the last', () => {
    const plain = new NoiseSchedule({ betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012 });
    const zsnr = new NoiseSchedule({ betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012, rescaleBetasZeroSnr: true });
    assert.ok(Math.abs(zsnr.alphasCumprod[0] - plain.alphasCumprod[0]) < 1e-15);
    assert.equal(zsnr.alphasCumprod[999], 0);
    assert.equal(zsnr.snr(999), 0);
    assert.ok(plain.snr(999) > 0);
  });

  it('rejects unknown schedules and impossible betas', () => {
    assert.throws(() => makeBetas({ betaSchedule: 'cosine' as never }), /unknown beta schedule 'cosine' \(known: linear, scaled_linear, squaredcos_cap_v2, sigmoid\)/);
    assert.throws(() => makeBetas({ trainedBetas: [0.1, 1.5], numTrainTimesteps: 2 }), /beta\[1\] = 1.5 is outside \(0, 1\]/);
  });
});

describe('the forward process', () => {
  const s = new NoiseSchedule({ numTrainTimesteps: 50, betaStart: 0.001, betaEnd: 0.2 });

  it('step by step q(x_t|x_{t-1}) and closed form q(x_t|x_0) agree in distribution', () => {
    const n = 40_000;
    const x0 = new Float32Array(n).fill(0.8);
    const g = new FastGenerator(3);
    const t = 30;
    let x: Float32Array = x0;
    for (let k = 0; k <= t; k++) x = qStep(s, x, g.randn(n), k);
    const closed = qSample(s, x0, g.randn(n), Array(n).fill(t));
    const stats = (v: Float32Array) => {
      let m = 0;
      for (const a of v) m += a;
      m /= v.length;
      let q = 0;
      for (const a of v) q += (a - m) ** 2;
      return [m, q / v.length];
    };
    const [m1, v1] = stats(x);
    const [m2, v2] = stats(closed);
    const mean = Math.sqrt(s.alphasCumprod[t]) * 0.8;
    const variance = 1 - s.alphasCumprod[t];
    // standard errors with n = 40k: mean ~0.005, variance ~0.007
    for (const [m, v] of [[m1, v1], [m2, v2]]) {
      assert.ok(Math.abs(m - mean) < 0.02, `mean ${m} vs ${mean}`);
      assert.ok(Math.abs(v - variance) < 0.03, `variance ${v} vs ${variance}`);
    }
  });

  it('v-prediction target recovers x_0 and eps: x0 = sqrt(ab) x_t - sqrt(1-ab) v', () => {
    const g = new FastGenerator(5);
    const x0 = g.randn(8);
    const eps = g.randn(8);
    const t = [7, 41];
    const xt = qSample(s, x0, eps, t);
    const v = trainingTarget('v_prediction', s, x0, eps, t);
    t.forEach((ti, k) => {
      const a = Math.sqrt(s.alphasCumprod[ti]);
      const b = Math.sqrt(1 - s.alphasCumprod[ti]);
      for (let i = k * 4; i < k * 4 + 4; i++) {
        assert.ok(Math.abs(a * xt[i] - b * v[i] - x0[i]) < 1e-5);
        assert.ok(Math.abs(b * xt[i] + a * v[i] - eps[i]) < 1e-5);
      }
    });
  });

  it('min-SNR-gamma weights follow Hang et al. for each parametrisation', () => {
    const low = 45; // SNR < 5
    const high = 0; // SNR > 5
    assert.ok(s.snr(low) < 5 && s.snr(high) > 5);
    assert.equal(lossWeight('min_snr', 'epsilon', s, low), 1);
    assert.ok(Math.abs(lossWeight('min_snr', 'epsilon', s, high) - 5 / s.snr(high)) < 1e-12);
    assert.ok(Math.abs(lossWeight('min_snr', 'v_prediction', s, high) - 5 / (s.snr(high) + 1)) < 1e-12);
    assert.equal(lossWeight('min_snr', 'sample', s, high), 5);
    assert.equal(lossWeight('mse', 'epsilon', s, high), 1);
  });
});
