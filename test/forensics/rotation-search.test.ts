import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TorchGenerator } from '../../src/index.js';
import { detectInNoise, detectInRotatedNoise, rotateNoise, shadeNoise } from '../../src/forensics/index.js';

const key = { format: 'diffuse-watermark-key-1' as const, scheme: 'gaussian-shading' as const, secret: Buffer.alloc(32, 7).toString('base64'), created: '2026-12-01' };
const shape: [number, number, number] = [1, 28, 28];
const D = 784;

describe('watermark detection through small rotations', () => {
  it('turns noise about its centre: a linear ramp lands where the rotation puts it (float64 reference)', () => {
    const [C, H, W] = [2, 7, 9];
    const ramp = (c: number, x: number, y: number) => 0.3 * x - 0.7 * y + c; // bilinear interpolation reproduces it exactly
    const x = Float32Array.from({ length: C * H * W }, (_, i) => ramp(Math.floor(i / (H * W)), i % W, Math.floor(i / W) % H));
    const deg = 17;
    const out = rotateNoise(x, [C, H, W], deg);
    const [cos, sin, cx, cy] = [Math.cos((deg * Math.PI) / 180), Math.sin((deg * Math.PI) / 180), (W - 1) / 2, (H - 1) / 2];
    let inside = 0;
    for (let c = 0; c < C; c++)
      for (let py = 0; py < H; py++)
        for (let px = 0; px < W; px++) {
          const [sx, sy] = [cos * (px - cx) - sin * (py - cy) + cx, sin * (px - cx) + cos * (py - cy) + cy];
          const got = out[c * H * W + py * W + px];
          if (sx < 0 || sy < 0 || sx > W - 1 || sy > H - 1) assert.equal(got, x[c * H * W + py * W + px], `outside at ${px},${py}: kept`);
          else {
            inside++;
            assert.ok(Math.abs(got - ramp(c, sx, sy)) < 1e-5, `at ${px},${py}: ${got} vs ${ramp(c, sx, sy)}`);
          }
        }
    assert.ok(inside > C * H * W * 0.6, `${inside} positions inside`);
    // A quarter turn of a square image moves values exactly, edges included.
    const sq = Float32Array.from({ length: 25 }, (_, i) => i);
    const q = rotateNoise(sq, [1, 5, 5], 90);
    for (let py = 0; py < 5; py++) for (let px = 0; px < 5; px++) assert.ok(Math.abs(q[py * 5 + px] - sq[px * 5 + (4 - py)]) < 1e-5, `quarter turn at ${px},${py}`);
  });

  it('finds the mark and its payload in noise turned by 12 degrees, which the unturned test misses', () => {
    const payload = 0x5eed1234;
    const x = shadeNoise(key, payload, 321, new TorchGenerator(4).randn(D));
    const turned = rotateNoise(x, shape, -12); // as the noise of an image turned clockwise by 12 degrees
    assert.ok(detectInNoise(key, turned).pValue > 1e-3, 'the unturned test does not see it');
    const d = detectInRotatedNoise(key, turned, shape, 20);
    assert.ok(d.log10P < -10, `log10 p ${d.log10P}`);
    assert.ok(Math.abs(d.rotation - 12) <= 1, `found at ${d.rotation} degrees`);
    assert.equal(d.nonce, 321);
    assert.equal(d.payload, payload);
    // Unturned noise: found unturned, and the search costs it a factor of 2 at most.
    const straight = detectInRotatedNoise(key, x, shape, 20);
    assert.equal(straight.rotation, 0);
    assert.ok(Math.abs(straight.log10P - (detectInNoise(key, x).log10P + Math.log10(2))) < 1e-9);
  });

  it('flags noise without the mark at no more than the nominal rate, search included', () => {
    // 100 N(0, I) noises, search over +-10 degrees: the bound says at most alpha of them fall below
    // alpha; without the search's correction (min over 21 correlated turns) far more would.
    const g = new TorchGenerator(9);
    const ps = Array.from({ length: 100 }, () => detectInRotatedNoise(key, g.randn(D), shape, 10).pValue);
    for (const alpha of [0.5, 0.2]) {
      const flagged = ps.filter((p) => p < alpha).length;
      const sd = Math.sqrt(100 * alpha * (1 - alpha));
      assert.ok(flagged <= 100 * alpha + 3 * sd, `${flagged} of 100 flagged at alpha ${alpha}`);
    }
    assert.throws(() => detectInRotatedNoise(key, g.randn(D), shape, 0), /whole degrees in 1\.\.45, got 0/);
    assert.throws(() => rotateNoise(g.randn(10), shape, 3), /10 values do not make a 1x28x28 image/);
  });
});
