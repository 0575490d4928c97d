import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DPMSolverMultistepScheduler, FastGenerator } from '../../src/index.js';
import { dynamicThreshold } from '../../src/samplers/index.js';

/** torch.quantile's linear interpolation, in float64, written out directly. */
function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = q * (s.length - 1);
  const i = Math.floor(pos);
  return i + 1 < s.length ? s[i] + (pos - i) * (s[i + 1] - s[i]) : s[i];
}

describe('dynamic thresholding', () => {
  it('clips each image at its own |x_0| quantile (clamped to [1, max]) and rescales, as diffusers does', () => {
    const g = new FastGenerator(3);
    const per = 50;
    const x = g.randn(3 * per).map((v, i) => v * [0.5, 2, 4][Math.floor(i / per)]);
    const want = Array.from(x);
    for (let k = 0; k < 3; k++) {
      const img = want.slice(k * per, (k + 1) * per);
      const s = Math.min(2.5, Math.max(1, quantile(img.map(Math.abs), 0.9)));
      for (let i = 0; i < per; i++) want[k * per + i] = Math.min(s, Math.max(-s, img[i])) / s;
    }
    const got = x.slice();
    dynamicThreshold(got, 3, 0.9, 2.5);
    got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `value ${i}: ${v} vs ${want[i]}`));
    // Image 0 is mostly inside [-1, 1]: its quantile is below 1, so s = 1 and it is only clipped.
    assert.ok(got.slice(0, per).every((v, i) => v === Math.max(-1, Math.min(1, x[i]))));
  });

  it('DPM-Solver++ with thresholding steps from the thresholded x_0', () => {
    const g = new FastGenerator(5);
    const sample = g.randn(2 * 16);
    const eps = g.randn(2 * 16).map((v) => 3 * v);
    const plain = new DPMSolverMultistepScheduler({ numTrainTimesteps: 100 });
    const thresholded = new DPMSolverMultistepScheduler({ numTrainTimesteps: 100, thresholding: true, dynamicThresholdingRatio: 0.8, sampleMaxValue: 1.5 });
    for (const s of [plain, thresholded]) s.setTimesteps(10);
    const a = plain.step(eps, plain.timesteps[0], sample, { batch: 2 });
    const b = thresholded.step(eps, thresholded.timesteps[0], sample, { batch: 2 });
    const expected = a.predOriginalSample.slice();
    dynamicThreshold(expected, 2, 0.8, 1.5);
    assert.deepEqual(b.predOriginalSample, expected);
    assert.ok(b.predOriginalSample.every((v) => Math.abs(v) <= 1));
    // First order: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) x_0, linear in x_0.
    const diff = b.prevSample.map((v, i) => v - a.prevSample[i]);
    const dx0 = b.predOriginalSample.map((v, i) => v - a.predOriginalSample[i]);
    const ratios = diff.map((d, i) => (Math.abs(dx0[i]) > 1e-3 ? d / dx0[i] : NaN)).filter(Number.isFinite);
    assert.ok(ratios.length > 0 && ratios.every((r) => Math.abs(r - ratios[0]) < 1e-3), 'the step is the same linear map of x_0');
  });
});
