/**
 * Where a latent run's watermark is lost: the share of x_T's signs that detection gets back at
 * each stage between the generated latent and the image, with a fixed key (8 payload bits) and
 * fixed seeds, so that every figure comes back the same on a rerun:
 *
 *   npm run bench:watermark-losses -- --run runs/emoji-latent [--count 200]
 *
 * Rows, each inverted by DDIM (eta 0) and tested with detectInNoise (with the latent grid's edge
 * classes, as detectWatermark tests a latent model):
 * - the generated latent itself (what the U-Net made, before the decoder), inverted with 50 steps,
 *   with 50 steps and 2 fixed-point refinements, and with 200 steps: the inversion's own loss;
 * - that latent with white noise of 1%, 3% and 10% of its RMS added: how much the inversion
 *   amplifies a small error in the latent;
 * - the decoded image encoded again (the posterior mean) as floats, clipped to [-1, 1], and
 *   written as 8-bit (the real path: inverted with 10, 50 and 200 steps and with 2 refinements);
 *   and after JPEG at quality 25.
 * Columns: the latent's error relative to the generated one (RMS of the difference over RMS of
 * the latent), the share of signs equal to x_T's, the share found at p < 0.1%, and the median of
 * -log10 p. Also: how far 3% of latent noise moves the decoded image, against clipping and 8-bit
 * rounding.
 */
import sharp from 'sharp';
import { DiffusionPipeline, FastGenerator, gaussianShading, generateKey } from '../src/index.js';
import type { LatentCodec } from '../src/run/autoencoder.js';
import { loadSamplingWeights } from '../src/run/run.js';
import { detectInNoise, imageBytes, imageFromBytes, quantize8 } from '../src/forensics/index.js';
import { flag, log, runFlag } from './args.js';

const runDir = runFlag('npm run bench:watermark-losses -- --run DIR [--count 200]');
const count = Number(flag('count', '200'));
if (!(Number.isInteger(count) && count >= 2)) throw new Error(`--count must be an integer >= 2, got ${flag('count')}`);
const pipe = await DiffusionPipeline.fromRun(runDir);
const codec = pipe.codec;
if (!codec) throw new Error(`${runDir} is not a latent run: a pixel-space run's image is its x_0, so only the inversion's own loss applies (bench:watermark)`);
const [C, H, W] = pipe.imageShape;
const per = C * H * W;
const lper = pipe.latentShape.reduce((a, b) => a * b, 1);
// The same denoiser with a codec that passes latents through, so that a latent can be inverted as it is.
const passThrough: LatentCodec = { imageShape: pipe.latentShape, latentShape: pipe.latentShape, encode: async (x) => x, decode: async (x) => x };
const onLatents = DiffusionPipeline.fromWeights(pipe.config, await loadSamplingWeights(runDir, pipe.config, pipe.text), { codec: passThrough, text: pipe.text });
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;

// ---- the watermarked latents and images ----
const key = { ...generateKey('gaussian-shading', { payloadBits: 8 }), secret: Buffer.alloc(32, 7).toString('base64') };
const xT = new Float32Array(count * lper);
const g = new FastGenerator(1000);
for (let k = 0; k < count; k++) xT.set(gaussianShading(key, k % 256).draw(1, lper, g), k * lper);
const z = new Float32Array(count * lper);
const images = await pipe.generate({
  count,
  steps: 50,
  eta: 0,
  initialNoise: xT,
  onStep: (s) => {
    if (s.index === s.total - 1) z.set(s.sample, s.offset * lper);
  },
});
log(`${count} watermarked samples (${elapsed()})`);
const eightBit = (x: Float32Array) => quantize8({ data: x, count, shape: [C, H, W] }).data;
async function jpeg(x: Float32Array, quality: number): Promise<Float32Array> {
  const out = new Float32Array(x.length);
  for (let k = 0; k < count; k++) {
    const raw = imageBytes({ data: x.subarray(k * per, (k + 1) * per), count: 1, shape: [C, H, W] }, 0);
    const file = await sharp(raw, { raw: { width: W, height: H, channels: C as 1 | 3 } }).jpeg({ quality }).toBuffer();
    out.set(imageFromBytes(await sharp(file).raw().toBuffer(), C, [C, H, W]), k * per);
  }
  return out;
}
const zRms = Math.sqrt(z.reduce((a, v) => a + v * v, 0) / z.length);
const relError = (latent: Float32Array) => Math.sqrt(latent.reduce((a, v, i) => a + (v - z[i]) ** 2, 0) / latent.length) / zRms;

// ---- the rows ----
const rows: string[] = [];
async function row(what: string, latent: Float32Array, o: { steps?: number; refine?: number } = {}) {
  const inverted = (await onLatents.invert({ image: { data: latent, count, shape: pipe.latentShape }, steps: o.steps ?? 50, refine: o.refine })).data;
  let same = 0;
  for (let i = 0; i < inverted.length; i++) same += inverted[i] > 0 === xT[i] > 0 ? 1 : 0;
  const found = Array.from({ length: count }, (_, k) => detectInNoise(key, inverted.subarray(k * lper, (k + 1) * lper), undefined, pipe.latentShape));
  const scores = found.map((d) => -d.log10P).sort((a, b) => a - b);
  const median = (scores[(count - 1) >> 1] + scores[count >> 1]) / 2;
  rows.push(`| ${what} | ${relError(latent).toFixed(3)} | ${(same / inverted.length).toFixed(3)} | ${(found.filter((d) => d.pValue < 0.001).length / count).toFixed(3)} | ${median.toFixed(1)} |`);
  log(`${rows[rows.length - 1]} (${elapsed()})`);
}

await row('generated latent, 50 steps', z);
await row('generated latent, 50 steps, 2 refinements', z, { refine: 2 });
await row('generated latent, 200 steps', z, { steps: 200 });
const noise = new FastGenerator(5).randn(z.length);
for (const share of [0.01, 0.03, 0.1]) await row(`generated latent + ${share * 100}% white noise, 50 steps`, z.map((v, i) => v + share * zRms * noise[i]));
await row('decoded (floats, not clipped), encoded, 50 steps', await codec.encode(images.data, count));
await row('decoded, clipped to [-1, 1] (floats), encoded, 50 steps', await codec.encode(images.data.map((v) => Math.min(1, Math.max(-1, v))), count));
const encoded = await codec.encode(eightBit(images.data), count);
await row('decoded, 8-bit, encoded, 10 steps', encoded, { steps: 10 });
await row('decoded, 8-bit, encoded, 50 steps', encoded);
await row('decoded, 8-bit, encoded, 200 steps', encoded, { steps: 200 });
await row('decoded, 8-bit, encoded, 50 steps, 2 refinements', encoded, { refine: 2 });
await row('decoded, JPEG 25, encoded, 50 steps', await codec.encode(await jpeg(eightBit(images.data), 25), count));

// ---- does the image hold what the encoder misses? ----
const moved = await codec.decode(z.map((v, i) => v + 0.03 * zRms * noise[i]), count);
let change = 0;
let clipping = 0;
let rounding = 0;
let beyond = 0;
const rounded = eightBit(images.data);
for (let i = 0; i < moved.length; i++) {
  const clipped = Math.min(1, Math.max(-1, images.data[i]));
  change += (moved[i] - images.data[i]) ** 2;
  clipping += (clipped - images.data[i]) ** 2;
  rounding += (rounded[i] - clipped) ** 2;
  beyond += clipped !== images.data[i] ? 1 : 0;
}
await onLatents.release();
await pipe.release();

console.log(`\n## ${runDir}: ${count} watermarked samples (8 payload bits, DDIM 50, eta 0): what detection gets back of x_T\n`);
console.log('| latent inverted | error against the generated latent | signs equal to x_T | found at p < 0.1% | median -log10 p |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
console.log(
  `\nImages in [-1, 1]: 3% white noise in the latent moves the decoded image by ${Math.sqrt(change / moved.length).toFixed(4)} RMS; clipping to [-1, 1] moves it by ${Math.sqrt(clipping / moved.length).toFixed(4)} (${((100 * beyond) / moved.length).toFixed(1)}% of the values are outside), and 8-bit rounding after it by ${Math.sqrt(rounding / moved.length).toFixed(4)}. Took ${elapsed()}.`,
);
