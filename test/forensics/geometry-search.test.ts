import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TorchGenerator } from '../../src/index.js';
import { IDENTITY_MAP, NoiseMap, describeMap, SearchThreads, detectInMovedNoise, detectInMovedNoises, detectInNoise, rotateNoise, shadeNoise, warpNoise } from '../../src/forensics/index.js';

const key = { format: 'diffuse-watermark-key-1' as const, scheme: 'gaussian-shading' as const, secret: Buffer.alloc(32, 9).toString('base64'), created: '2026-12-01' };
const shape: [number, number, number] = [3, 32, 32];
const D = 3 * 32 * 32;

/** The inverse similarity: noise moved by it, then moved back by `m`, is the noise again (up to resampling). */
const inverse = (m: NoiseMap): NoiseMap => {
  const r = (-m.degrees * Math.PI) / 180;
  const [cos, sin] = [Math.cos(r) / m.scale, Math.sin(r) / m.scale];
  return { degrees: -m.degrees, scale: 1 / m.scale, dx: -(cos * m.dx - sin * m.dy), dy: -(sin * m.dx + cos * m.dy) };
};

/** The noise of an attacked image: x read through `m` (bilinear, float64), positions whose source is outside get fresh noise. */
function attacked(x: Float32Array, m: NoiseMap, fresh: Float32Array): Float32Array {
  const [C, H, W] = shape;
  const r = (m.degrees * Math.PI) / 180;
  const [cx, cy] = [(W - 1) / 2, (H - 1) / 2];
  const out = new Float32Array(x.length);
  for (let py = 0; py < H; py++)
    for (let px = 0; px < W; px++) {
      const sx = cx + m.scale * (Math.cos(r) * (px - cx) - Math.sin(r) * (py - cy)) + m.dx;
      const sy = cy + m.scale * (Math.sin(r) * (px - cx) + Math.cos(r) * (py - cy)) + m.dy;
      const [x0, y0] = [Math.floor(sx), Math.floor(sy)];
      for (let c = 0; c < C; c++) {
        const at = (xx: number, yy: number) => x[c * H * W + yy * W + xx];
        const i = c * H * W + py * W + px;
        if (x0 < 0 || y0 < 0 || x0 + 1 > W - 1 || y0 + 1 > H - 1) out[i] = fresh[i];
        else {
          const [fx, fy] = [sx - x0, sy - y0];
          out[i] = (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) + fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
        }
      }
    }
  return out;
}

describe('watermark detection through turns by any angle and crops', () => {
  it('moves noise by a similarity map: a linear ramp lands where the map puts it (float64 reference)', () => {
    const [C, H, W] = [2, 9, 11];
    const ramp = (c: number, x: number, y: number) => 0.4 * x - 0.9 * y + 2 * c; // bilinear interpolation reproduces it exactly
    const x = Float32Array.from({ length: C * H * W }, (_, i) => ramp(Math.floor(i / (H * W)), i % W, Math.floor(i / W) % H));
    const m: NoiseMap = { degrees: -33, scale: 1.2, dx: 0.75, dy: -1.25 };
    const out = warpNoise(x, [C, H, W], m);
    const r = (m.degrees * Math.PI) / 180;
    const [cx, cy] = [(W - 1) / 2, (H - 1) / 2];
    let inside = 0;
    for (let c = 0; c < C; c++)
      for (let py = 0; py < H; py++)
        for (let px = 0; px < W; px++) {
          const sx = cx + m.scale * (Math.cos(r) * (px - cx) - Math.sin(r) * (py - cy)) + m.dx;
          const sy = cy + m.scale * (Math.sin(r) * (px - cx) + Math.cos(r) * (py - cy)) + m.dy;
          const got = out[c * H * W + py * W + px];
          if (sx < 0 || sy < 0 || sx > W - 1 || sy > H - 1) assert.equal(got, x[c * H * W + py * W + px], `outside at ${px},${py}: kept`);
          else {
            inside++;
            assert.ok(Math.abs(got - ramp(c, sx, sy)) < 1e-4, `at ${px},${py}: ${got} vs ${ramp(c, sx, sy)}`);
          }
        }
    assert.ok(inside > C * H * W * 0.4, `${inside} positions inside`);
    const g = new TorchGenerator(1);
    const z = g.randn(D);
    assert.deepEqual(warpNoise(z, shape, IDENTITY_MAP), z);
    assert.deepEqual(warpNoise(z, shape, { degrees: 21, scale: 1, dx: 0, dy: 0 }), rotateNoise(z, shape, 21));
    assert.throws(() => warpNoise(g.randn(10), shape, IDENTITY_MAP), /10 values do not make a 3x32x32 image/);
  });

  for (const [what, m] of [
    ['turned by 75 degrees about an off-centre point', { degrees: 75, scale: 1, dx: 1, dy: -0.5 }],
    ['cropped to 75% of the area and enlarged back', { degrees: 0, scale: 1.15, dx: 2, dy: -1.5 }],
  ] as [string, NoiseMap][]) {
    it(`finds the mark and its payload in noise ${what}, which the unmoved test misses`, async () => {
      const payload = 0xc0ffee01;
      const x = shadeNoise(key, payload, 777, new TorchGenerator(5).randn(D));
      const moved = attacked(x, inverse(m), new TorchGenerator(8).randn(D));
      assert.ok(detectInNoise(key, moved).pValue > 1e-3, 'the unmoved test does not see it');
      const d = detectInMovedNoise(key, moved, shape);
      assert.ok(d.log10P < -20, `log10 p ${d.log10P}`);
      assert.equal(d.nonce, 777);
      // Payload bit j rides on the positions i with i mod 32 = j, on a 32-px image one column: a crop
      // loses the edge columns' bits (confidence 0.5, decoded as 0); every other bit is right.
      const lost = d.bitConfidence.flatMap((c, j) => (c === 0.5 ? [j] : []));
      assert.ok(m.scale === 1 ? lost.length === 0 : lost.length <= 5, `bits lost: ${lost.join(', ')}`);
      for (let j = 0; j < 32; j++) if (!lost.includes(j)) assert.equal((d.payload >>> j) & 1, (payload >>> j) & 1, `payload bit ${j}`);
      assert.ok(Math.abs(d.map.degrees - m.degrees) <= 1 && Math.abs(d.map.scale - m.scale) <= 0.02, `found ${describeMap(d.map)}`);
      assert.ok(Math.abs(d.map.dx - m.dx) <= 0.5 && Math.abs(d.map.dy - m.dy) <= 0.5, `found ${describeMap(d.map)}`);
      // The same result on worker threads (the second image goes to the second thread).
      assert.deepEqual(await detectInMovedNoises(key, [x, moved], shape, {}, 2), [detectInMovedNoise(key, x, shape), d]);
    });
  }

  it('costs unmoved noise a factor of 2 at most, and counts the maps it pays for', () => {
    const x = shadeNoise(key, 5, 3, new TorchGenerator(6).randn(D));
    const d = detectInMovedNoise(key, x, shape);
    assert.deepEqual(d.map, IDENTITY_MAP);
    assert.ok(Math.abs(d.log10P - (detectInNoise(key, x).log10P + Math.log10(2))) < 1e-9);
    // G by brute force over a box: turns every 0.5 degrees with shifts of up to 1.75 px (0.25 steps),
    // crops of scale 1.0125..1/sqrt(0.6)+0.0125 (0.0125 steps) with |shift| <= (s - 1) 16 + 0.75.
    let G = 720 * 15 * 15;
    for (let k = 1; 1 + k * 0.0125 <= 1 / Math.sqrt(0.6) + 0.0125 + 1e-9; k++) {
      const lim = ((k * 0.0125) * 32) / 2 + 0.75;
      let n = 0;
      for (let t = -20; t <= 20; t += 0.25) if (Math.abs(t) <= lim + 1e-9) n++;
      G += n * n;
    }
    assert.equal(d.mapsSearched, G);
  });

  it('flags noise without the mark at no more than the nominal rate, search included, on any number of threads', async () => {
    // 40 N(0, I) noises: the bound says at most alpha of them fall below alpha. Without the
    // factor G the best of the refined maps would fall below 0.2 for nearly every noise.
    const g = new TorchGenerator(11);
    const noises = Array.from({ length: 40 }, () => g.randn(D));
    const ds = await detectInMovedNoises(key, noises, shape, {}, 2);
    for (const alpha of [0.5, 0.2]) {
      const flagged = ds.filter((d) => d.pValue < alpha).length;
      const sd = Math.sqrt(40 * alpha * (1 - alpha));
      assert.ok(flagged <= 40 * alpha + 3 * sd, `${flagged} of 40 flagged at alpha ${alpha}`);
    }
    assert.deepEqual(ds.slice(0, 3), noises.slice(0, 3).map((x) => detectInMovedNoise(key, x, shape)), 'two threads give what one gives');
    assert.throws(() => detectInMovedNoise(key, g.randn(D), shape, { minArea: 0.1 }), /smallest area share in 0\.3\.\.1, got 0\.1/);
    await assert.rejects(detectInMovedNoises(key, noises.slice(0, 2), shape, { minArea: 0.1 }, 2), /smallest area share in 0\.3\.\.1, got 0\.1/, 'a thread passes its error on');
    await assert.rejects(detectInMovedNoises(key, noises, shape, {}, 0), /whole number of threads >= 1, got 0/);

    // A pool kept across calls (the inspector's): more requests than threads wait their turn, an
    // error leaves the pool usable, and a closed pool refuses work.
    const pool = new SearchThreads(2);
    try {
      assert.deepEqual(await Promise.all(noises.slice(0, 5).map((x) => pool.search(key, x, shape))), ds.slice(0, 5));
      await assert.rejects(pool.search(key, noises[0], shape, { minArea: 0.1 }), /smallest area share in 0\.3\.\.1, got 0\.1/);
      assert.deepEqual(await detectInMovedNoises(key, noises.slice(5, 7), shape, {}, pool), ds.slice(5, 7));
    } finally {
      await pool.close();
    }
    await assert.rejects(pool.search(key, noises[0], shape), /threads are closed/);
    assert.throws(() => new SearchThreads(0), /whole number of threads >= 1, got 0/);
  });
});
