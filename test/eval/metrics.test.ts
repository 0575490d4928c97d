import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FastGenerator } from '../../src/index.js';
import { clipToImageRange, confidence, frechetDistance, overlays, precisionRecall } from '../../src/eval/index.js';

/** n samples of a diagonal Gaussian with the given means and standard deviations. */
function gaussian(n: number, mean: number[], std: number[], seed: number): Float32Array {
  const d = mean.length;
  const z = new FastGenerator(seed).randn(n * d);
  return z.map((v, i) => mean[i % d] + std[i % d] * v);
}

describe('Fréchet distance', () => {
  it('is zero for a set against itself', () => {
    const a = gaussian(500, [0, 1, 2], [1, 2, 0.5], 1);
    assert.ok(Math.abs(frechetDistance(a, 500, a, 500, 3)) < 1e-9);
  });

  it('matches the closed form for diagonal Gaussians: |mu_a - mu_b|^2 + sum (s_a - s_b)^2', () => {
    const n = 40_000;
    const a = gaussian(n, [0, 1, 2, 0], [1, 2, 0.5, 1], 2);
    const b = gaussian(n, [1, 1, 0, 0.5], [2, 1, 0.5, 3], 3);
    const want = 1 + 0 + 4 + 0.25 + (1 + 1 + 0 + 4);
    const got = frechetDistance(a, n, b, n, 4);
    // sampling noise of the estimate is about 0.1 at this n; a wrong formula is off by units
    assert.ok(Math.abs(got - want) < 0.35, `${got} vs ${want}`);
  });
});

describe('precision and recall (k-NN manifolds)', () => {
  it('are high for samples from the same distribution and near zero for disjoint ones', () => {
    const real = gaussian(300, [0, 0], [1, 1], 4);
    const same = gaussian(300, [0, 0], [1, 1], 5);
    const far = gaussian(300, [50, 50], [1, 1], 6);
    const s = precisionRecall(real, 300, same, 300, 2);
    assert.ok(s.precision > 0.9 && s.recall > 0.9, JSON.stringify(s));
    const f = precisionRecall(real, 300, far, 300, 2);
    assert.equal(f.precision, 0);
    assert.equal(f.recall, 0);
  });

  it('separate fidelity from coverage: a collapsed generator has precision but no recall', () => {
    const real = gaussian(300, [0, 0], [1, 1], 7);
    const collapsed = gaussian(300, [0, 0], [0.05, 0.05], 8);
    const s = precisionRecall(real, 300, collapsed, 300, 2);
    assert.ok(s.precision > 0.9 && s.recall < 0.2, JSON.stringify(s));
  });
});

describe('classifier confidence', () => {
  it('counts top probabilities at or above the threshold and histograms the argmax', () => {
    const probs = Float32Array.of(0.95, 0.05, 0.5, 0.5, 0.08, 0.92);
    const c = confidence(probs, 3, 2);
    assert.ok(Math.abs(c.confident - 2 / 3) < 1e-9);
    assert.deepEqual(c.histogram, [2, 1]);
  });
});

describe("the evaluator's overlay check", () => {
  it('overlays two images of different classes: pixel-wise maximum on dark backgrounds, minimum on light ones', () => {
    // image i of class c = i % 5: +1 at pixel c, -1 elsewhere; an overlay of different classes has two +1 pixels
    const count = 23;
    const images = new Float32Array(count * 5).fill(-1);
    const labels = Int32Array.from({ length: count }, (_, i) => i % 5);
    for (let i = 0; i < count; i++) images[i * 5 + labels[i]] = 1;
    const n = 40;
    const out = overlays({ name: 'toy', images, count, channels: 1, height: 1, width: 5, labels, classNames: ['a', 'b', 'c', 'd', 'e'] }, n);
    assert.equal(out.length, n * 5);
    for (let k = 0; k < n; k++) {
      const px = Array.from(out.subarray(k * 5, k * 5 + 5));
      assert.equal(px.filter((v) => v === 1).length, 2, `overlay ${k}: ${px}`);
      assert.equal(px.filter((v) => v === -1).length, 3);
    }
    // The same pictures drawn dark on a light background overlay by the minimum.
    const light = overlays({ name: 'toy', images: images.map((v) => -v), count, channels: 1, height: 1, width: 5, labels, classNames: ['a', 'b', 'c', 'd', 'e'] }, n);
    for (let k = 0; k < n; k++) assert.equal(Array.from(light.subarray(k * 5, k * 5 + 5)).filter((v) => v === -1).length, 2);
  });
});

describe('samples are scored as images hold them', () => {
  it('clips to [-1, 1] and counts the values of a diverged sampler (beyond +-2, or not finite)', () => {
    const x = Float32Array.of(0.5, -1.5, 1.9, 2.5, -3e4, NaN, Infinity, -1, 1, 0);
    assert.equal(clipToImageRange(x), 4 / 10);
    assert.deepEqual([...x], [0.5, -1, 1, 1, -1, 0, 1, -1, 1, 0]);
    assert.equal(clipToImageRange(new Float32Array(0)), 0);
  });
});
