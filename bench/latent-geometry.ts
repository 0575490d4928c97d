/**
 * The watermark of a latent run under turns and crops, and the searches for it: the figures of
 * docs/LATENT-TRAINING.md ("Turns and crops, searched"). A fixed key and fixed seeds, so every figure comes
 * back the same on a rerun:
 *
 *   npm run bench:latent-geometry -- --run runs/emoji-latent [--sections probes,grid,turns]
 *
 * - probes: 24 watermarked images turned by 75 degrees (sharp, the border colour, centre crop, as
 *   bench:watermark's rotate75) and turned back by hand at the true angle and 2 degrees off; and
 *   75% crops (random offsets, enlarged back) put back by hand at the true offset and 1 and 2
 *   pixels off. Counted: images found at p < 0.01 (no search, 20 inversion steps; edge classes of
 *   the latent grid, as detectWatermark tests a latent model).
 * - grid: the pixel-space geometric search applied to the latent x_T (detectInMovedNoises on the
 *   latent grid), 40 + 40 through rotate75 and crop75: the AUC.
 * - turns: the latent search (detectWatermark's geometric on a latent run: turns and, since
 *   crop-search.ts, crops), 60 + 60 through rotate75, 20 inversion steps: AUC, TPR and FPR at
 *   p < 1% and 0.1%, seconds per image.
 */
import sharp from 'sharp';
import { DiffusionPipeline, FastGenerator, ImageBatch, detectWatermark, gaussianShading } from '../src/index.js';
import { detectInMovedNoises, detectInNoise, imageBytes, imageFromBytes } from '../src/forensics/index.js';
import { rocAuc } from '../src/eval/index.js';
import { flag, log, runFlag } from './args.js';

const runDir = runFlag('npm run bench:latent-geometry -- --run DIR [--sections probes,grid,turns]');
const sections = new Set((flag('sections', 'probes,grid,turns') as string).split(','));
const pipe = await DiffusionPipeline.fromRun(runDir);
if (!pipe.codec) throw new Error(`${runDir} is not a latent run`);
const [C, H, W] = pipe.imageShape;
const per = C * H * W;
const lper = pipe.latentShape.reduce((a, b) => a * b, 1);
const steps = 20;

/** n watermarked (key byte `k`, payload = index, noise seed `seed`) and n clean samples (seed `cleanSeed`), DDIM 50, eta 0. */
async function samples(n: number, k: number, seed: number, cleanSeed: number) {
  const key = { format: 'diffuse-watermark-key-1', scheme: 'gaussian-shading', secret: Buffer.alloc(32, k).toString('base64'), created: '' } as const;
  const g = new FastGenerator(seed);
  const noise = new Float32Array(n * lper);
  for (let i = 0; i < n; i++) noise.set(gaussianShading(key, i).draw(1, lper, g), i * lper);
  const marked = await pipe.generate({ count: n, steps: 50, eta: 0, initialNoise: noise });
  const clean = await pipe.generate({ count: n, steps: 50, eta: 0, seed: cleanSeed });
  return { key, marked, clean };
}

const raw = (b: Buffer) => sharp(b, { raw: { width: W, height: H, channels: C as 3 } });
const border = (b: Buffer) => {
  const v = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    let s = 0;
    for (let x = 0; x < W; x++) s += b[x * 3 + c] + b[((H - 1) * W + x) * 3 + c];
    v[c] = Math.round(s / (2 * W));
  }
  return { r: v[0], g: v[1], b: v[2] };
};
const centre = async (png: Buffer) => {
  const m = await sharp(png).metadata();
  return sharp(png).extract({ left: Math.floor(((m.width as number) - W) / 2), top: Math.floor(((m.height as number) - H) / 2), width: W, height: H }).raw().toBuffer();
};
const turn = async (b: Buffer, deg: number) => centre(await raw(b).rotate(deg, { background: border(b) }).png().toBuffer());
const side = Math.round(Math.sqrt(0.75) * W);
const crop = async (b: Buffer, [l, t]: [number, number]) => sharp(await raw(b).extract({ left: l, top: t, width: side, height: side }).png().toBuffer()).resize(W, H, { kernel: 'cubic' }).raw().toBuffer();
const uncrop = async (b: Buffer, [l, t]: [number, number]) => {
  const small = await sharp(b, { raw: { width: W, height: H, channels: 3 } }).resize(side, side, { kernel: 'cubic' }).raw().toBuffer();
  return sharp({ create: { width: W, height: H, channels: 3, background: border(b) } }).composite([{ input: small, raw: { width: side, height: side, channels: 3 }, left: l, top: t }]).removeAlpha().raw().toBuffer();
};
/** Each image through `f` (8-bit HWC in and out). */
async function each(batch: ImageBatch, f: (b: Buffer, k: number) => Promise<Buffer>): Promise<ImageBatch> {
  const out = new Float32Array(batch.count * per);
  for (let k = 0; k < batch.count; k++) out.set(imageFromBytes(await f(imageBytes(batch, k), k), 3, [C, H, W]), k * per);
  return { data: out, count: batch.count, shape: [C, H, W] };
}
const invert = async (b: ImageBatch) => {
  const x = (await pipe.invert({ image: b, steps })).data;
  return Array.from({ length: b.count }, (_, k) => x.subarray(k * lper, (k + 1) * lper));
};

if (sections.has('probes')) {
  const { key, marked } = await samples(24, 3, 5, 9);
  const rng = new FastGenerator(99);
  const offsets = Array.from({ length: 24 }, () => [Math.floor(rng.rand(1)[0] * (W - side + 1)), Math.floor(rng.rand(1)[0] * (H - side + 1))] as [number, number]);
  const found = async (b: ImageBatch) => (await invert(b)).filter((x) => detectInNoise(key, x, undefined, pipe.latentShape).pValue < 0.01).length;
  log(`probes: 24 watermarked images, found at p < 0.01 with ${steps} inversion steps, no search`);
  log(`  turned 75 degrees: ${await found(await each(marked, (b) => turn(b, 75)))} of 24`);
  for (const off of [0, -2, 2]) log(`  turned 75, then back by ${75 + off}: ${await found(await each(marked, async (b) => turn(Buffer.from(await turn(b, 75)), -(75 + off))))} of 24`);
  log(`  75% crop: ${await found(await each(marked, (b, k) => crop(b, offsets[k])))} of 24`);
  for (const dx of [0, 1, 2]) log(`  75% crop, put back ${dx} px off: ${await found(await each(marked, async (b, k) => uncrop(Buffer.from(await crop(b, offsets[k])), [offsets[k][0] + dx, offsets[k][1]])))} of 24`);
}

if (sections.has('grid')) {
  const { key, marked, clean } = await samples(40, 4, 6, 10);
  const rng = new FastGenerator(98);
  const offsets = Array.from({ length: 80 }, () => [Math.floor(rng.rand(1)[0] * (W - side + 1)), Math.floor(rng.rand(1)[0] * (H - side + 1))] as [number, number]);
  for (const [name, attack] of [['rotate75', (b: Buffer) => turn(b, 75)], ['crop75', (b: Buffer, k: number) => crop(b, offsets[k])]] as const) {
    const score = async (batch: ImageBatch, at: number) => (await detectInMovedNoises(key, await invert(await each(batch, (b, k) => attack(b, at + k))), pipe.latentShape)).map((d) => -d.log10P);
    log(`grid: the pixel-space search on the latent x_T, ${name}, 40 + 40: AUC ${rocAuc(await score(marked, 0), await score(clean, 40)).toFixed(4)}`);
  }
}

if (sections.has('turns')) {
  const { key, marked, clean } = await samples(60, 11, 21, 77);
  const t0 = Date.now();
  const dm = await detectWatermark(await each(marked, (b) => turn(b, 75)), pipe, key, { steps, geometric: true });
  const tm = (Date.now() - t0) / 1000 / 60;
  const t1 = Date.now();
  const dc = await detectWatermark(await each(clean, (b) => turn(b, 75)), pipe, key, { steps, geometric: true });
  const tc = (Date.now() - t1) / 1000 / 60;
  const rate = (ds: typeof dm, a: number) => (ds.filter((d) => d.pValue < a).length / ds.length).toFixed(3);
  log(`turns: the turn search, rotate75, 60 + 60, ${steps} inversion steps: AUC ${rocAuc(dm.map((d) => -d.log10P), dc.map((d) => -d.log10P)).toFixed(4)}; TPR ${rate(dm, 0.01)} / FPR ${rate(dc, 0.01)} at p < 1%, TPR ${rate(dm, 0.001)} / FPR ${rate(dc, 0.001)} at p < 0.1%`);
  log(`  angles found: ${dm.filter((d) => d.detected).map((d) => d.map.degrees).join(' ')}`);
  log(`  seconds per image: watermarked ${tm.toFixed(2)}, clean ${tc.toFixed(2)}`);
}
await pipe.release();
