/**
 * The latent crop search's parts (src/forensics/crop-search.ts): the lattice the p-value pays for
 * against a count by enumeration, the screen and the neighbours inside it, the mask of latent
 * cells, the map reported, and the put-back against the crop it undoes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { CROP_STEP, cropLatticeSize, cropMap, cropMask, cropPaster, neighbouringCrops, putCropBack, screenedCropCount, screenedCrops } from '../../src/forensics/crop-search.js';
import { detectInNoise, imageBytes, imageFromBytes, turnAngles } from '../../src/forensics/index.js';
import { detectTurned } from '../../src/forensics/turn-search.js';
import { FastGenerator, WatermarkKey, gaussianShading } from '../../src/index.js';
import type { ImageBatch } from '../../src/index.js';

/**
 * A stand-in for a latent model whose inversion is exact: each x_T value is a 4 x 4 cell of the
 * image (tanh(x / 2), so that the 8-bit file keeps its sign and size), and inverting averages the
 * cells back. What the search does to an image (crop put back, mask) is what it does with a real
 * model; only the model is this simple.
 */
const CELL = 4;
function cellImage(xT: Float32Array, count: number, [C, h, w]: readonly [number, number, number]): ImageBatch {
  const [H, W] = [h * CELL, w * CELL];
  const data = new Float32Array(count * C * H * W);
  for (let k = 0; k < count; k++)
    for (let c = 0; c < C; c++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) data[((k * C + c) * H + y) * W + x] = Math.tanh(xT[((k * C + c) * h + Math.floor(y / CELL)) * w + Math.floor(x / CELL)] / 2);
  return { data, count, shape: [C, H, W] };
}
async function invertCells(batch: ImageBatch): Promise<Float32Array[]> {
  const [C, H, W] = batch.shape;
  const [h, w] = [H / CELL, W / CELL];
  return Array.from({ length: batch.count }, (_, k) => {
    const out = new Float32Array(C * h * w);
    for (let c = 0; c < C; c++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const v = Math.max(-0.999, Math.min(0.999, batch.data[((k * C + c) * H + y) * W + x]));
          out[(c * h + Math.floor(y / CELL)) * w + Math.floor(x / CELL)] += (2 * Math.atanh(v)) / (CELL * CELL);
        }
    return out;
  });
}
/** Each image cropped to `crop` and enlarged back to its size (sharp, cubic), as bench:watermark's crop75. */
async function cropped(batch: ImageBatch, crop: { width: number; height: number; left: number; top: number }): Promise<ImageBatch> {
  const [C, H, W] = batch.shape;
  const out = new Float32Array(batch.data.length);
  for (let k = 0; k < batch.count; k++) {
    const png = await sharp(imageBytes(batch, k), { raw: { width: W, height: H, channels: C as 3 } }).extract(crop).png().toBuffer();
    out.set(imageFromBytes(await sharp(png).resize(W, H, { kernel: 'cubic' }).raw().toBuffer(), C, [C, H, W]), k * C * H * W);
  }
  return { ...batch, data: out };
}

/** Every crop by enumeration: width w with height round(w H / W), area share at least minArea (of the width's share squared), smaller than the image. */
function enumerate(W: number, H: number, minArea: number) {
  const out: string[] = [];
  for (let w = 1; w < W; w++) {
    if (w < Math.sqrt(minArea) * W) continue;
    const h = Math.round((w * H) / W);
    for (let top = 0; top + h <= H; top++) for (let left = 0; left + w <= W; left++) out.push(`${w},${h},${left},${top}`);
  }
  return new Set(out);
}

describe('the latent crop search', () => {
  it('counts the lattice it pays for, and screens and refines inside it', () => {
    for (const [W, H, minArea] of [
      [64, 64, 0.6],
      [64, 48, 0.6],
      [32, 32, 0.3],
      [40, 40, 0.9],
    ] as const) {
      const lattice = enumerate(W, H, minArea);
      assert.equal(cropLatticeSize(W, H, minArea), lattice.size, `${W}x${H} at ${minArea}`);
      const screen = screenedCrops(W, H, minArea);
      assert.equal(screenedCropCount(W, H, minArea), screen.length, `the screen's count, ${W}x${H} at ${minArea}`);
      const key = (c: { width: number; height: number; left: number; top: number }) => `${c.width},${c.height},${c.left},${c.top}`;
      for (const c of screen) assert.ok(lattice.has(key(c)), `screened ${key(c)} is in the lattice`);
      // The widest crop is screened, at every corner.
      const widest = Math.max(...screen.map((c) => c.width));
      assert.equal(widest, W - 1);
      const h = Math.round((widest * H) / W);
      for (const [left, top] of [[0, 0], [W - widest, 0], [0, H - h], [W - widest, H - h]]) assert.ok(screen.some((c) => c.width === widest && c.left === left && c.top === top), `corner ${left},${top}`);
      // Every crop of the lattice is within one step of a screened one, and its neighbours are in the lattice.
      for (const k of lattice) {
        const [w, , left, top] = k.split(',').map(Number);
        assert.ok(screen.some((c) => Math.abs(c.width - w) <= CROP_STEP - 1 && Math.abs(c.left - left) <= CROP_STEP - 1 && Math.abs(c.top - top) <= CROP_STEP - 1), `${k} is near the screen`);
      }
      for (const c of screen.slice(0, 50)) {
        const next = neighbouringCrops(c, W, H, minArea);
        for (const n of next) assert.ok(lattice.has(key(n)), `neighbour ${key(n)}`);
        assert.ok(!next.some((n) => key(n) === key(c)), 'the crop itself is left out');
        assert.ok(next.length <= 26);
      }
    }
  });

  it('tests the latent cells wholly inside the crop, and reports it as a scale and shift', () => {
    const crop = { width: 48, height: 48, left: 6, top: 8 };
    const use = cropMask(crop, [3, 64, 64], [4, 16, 16]);
    // 4 px cells: x from 8 to 52 (cells 2..12), y from 8 to 56 (cells 2..13).
    let n = 0;
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) if (use[y * 16 + x]) n++;
    assert.equal(n, 11 * 12);
    for (let c = 1; c < 4; c++) assert.deepEqual(use.subarray(c * 256, (c + 1) * 256), use.subarray(0, 256));
    assert.ok(use[2 * 16 + 2] && !use[1 * 16 + 2] && !use[2 * 16 + 1] && use[13 * 16 + 12] && !use[14 * 16 + 12] && !use[13 * 16 + 13]);
    // A centred crop is a pure enlargement; one at the top-left corner moves content by +(s - 1) W / 2.
    assert.deepEqual(cropMap({ width: 48, height: 48, left: 8, top: 8 }, [3, 64, 64]), { degrees: 0, scale: 1.3333, dx: 0, dy: 0 });
    assert.deepEqual(cropMap({ width: 48, height: 48, left: 0, top: 16 }, [3, 64, 64]), { degrees: 0, scale: 1.3333, dx: 10.75, dy: -10.75 });
  });

  it('puts a crop back where it came from, close to the original there', async () => {
    const [W, H] = [64, 64];
    // A smooth picture, so that shrinking and enlarging lose little.
    const data = new Float32Array(3 * H * W);
    for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[(c * H + y) * W + x] = Math.sin((x + 2 * c) / 9) * Math.cos(y / 11);
    const image = { data, count: 1, shape: [3, H, W] as [number, number, number] };
    const crop = { width: 56, height: 56, left: 5, top: 3 };
    const png = await sharp(imageBytes(image, 0), { raw: { width: W, height: H, channels: 3 } }).extract({ left: crop.left, top: crop.top, width: crop.width, height: crop.height }).png().toBuffer();
    const attacked = { ...image, data: imageFromBytes(await sharp(png).resize(W, H, { kernel: 'cubic' }).raw().toBuffer(), 3, [3, H, W]) };
    const back = await putCropBack(attacked, 0, crop);
    let inside = 0;
    let n = 0;
    for (let c = 0; c < 3; c++)
      for (let y = crop.top + 1; y < crop.top + crop.height - 1; y++)
        for (let x = crop.left + 1; x < crop.left + crop.width - 1; x++) {
          inside += Math.abs(back[(c * H + y) * W + x] - data[(c * H + y) * W + x]);
          n++;
        }
    assert.ok(inside / n < 0.035, `mean error inside the crop ${inside / n}`);
    // Two pixels off, it is much farther from the original (measured 0.098 against 0.028).
    const off = await putCropBack(attacked, 0, { ...crop, left: crop.left + 2 });
    let moved = 0;
    for (let c = 0; c < 3; c++)
      for (let y = crop.top + 1; y < crop.top + crop.height - 1; y++)
        for (let x = crop.left + 3; x < crop.left + crop.width - 1; x++) moved += Math.abs(off[(c * H + y) * W + x] - data[(c * H + y) * W + x]);
    assert.ok(moved / n > 3 * (inside / n), `${moved / n} against ${inside / n}`);
    // The search's paster, which shrinks once per crop size, gives putCropBack's pixels for each crop.
    const paste = cropPaster(attacked, 0);
    for (const c of [crop, { ...crop, left: crop.left + 2 }, { width: 50, height: 50, left: 0, top: 14 }, crop]) {
      assert.deepEqual(Array.from(await paste(c)), Array.from(await putCropBack(attacked, 0, c)), JSON.stringify(c));
    }
  });

  it('finds a watermark through a crop, where the crop was, and pays for the whole lattice; clean crops stay unflagged', async () => {
    const key: WatermarkKey = { format: 'diffuse-watermark-key-2', scheme: 'gaussian-shading', secret: Buffer.alloc(32, 5).toString('base64'), created: '2026-12-07T00:00:00.000Z', payloadBits: 8 };
    const latent = [3, 16, 16] as const;
    const per = 3 * 16 * 16;
    const g = new FastGenerator(4);
    const marked = cellImage(gaussianShading(key, 173).draw(2, per, g), 2, latent);
    const clean = cellImage(g.randn(2 * per), 2, latent);
    const crop = { width: 54, height: 54, left: 7, top: 2 };
    const crops = { minArea: 0.6, latentShape: latent };
    const invert = (b: ImageBatch) => invertCells(b);
    const found = await detectTurned(await cropped(marked, crop), key, invert, { crops, grid: latent });
    const G = turnAngles().length + cropLatticeSize(64, 64, 0.6);
    for (const [k, d] of found.entries()) {
      assert.ok(d.pValue < 1e-6, `marked ${k}: p = ${d.pValue}`);
      assert.equal(d.turnsSearched, G);
      assert.equal(d.payload, 173);
      assert.ok(d.crop, `marked ${k} found through a crop`);
      const c = d.crop as NonNullable<typeof d.crop>;
      assert.ok(Math.abs(c.width - crop.width) <= 1 && Math.abs(c.left - crop.left) <= 1 && Math.abs(c.top - crop.top) <= 1, `found ${JSON.stringify(c)}`);
      // The p-value is the crop's own test paid for 2 G candidates.
      const own = (await invertCells({ data: await putCropBack(await cropped(marked, crop), k, c), count: 1, shape: [3, 64, 64] }))[0];
      assert.ok(Math.abs(d.log10P - (detectInNoise(key, own, cropMask(c, [3, 64, 64], latent), latent).log10P + Math.log10(2 * G))) < 1e-9);
    }
    const unsearched = await detectTurned(await cropped(marked, crop), key, invert, { grid: latent });
    for (const d of unsearched) assert.ok(d.pValue > 1e-3, `turns alone: p = ${d.pValue}`);
    for (const d of await detectTurned(await cropped(clean, crop), key, invert, { crops, grid: latent })) assert.ok(d.pValue > 0.01, `clean: p = ${d.pValue}`);
  });
});
