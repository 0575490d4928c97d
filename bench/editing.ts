/**
 * What the editing pipelines do to held-out MNIST digits, read by the evaluator's classifier:
 * - img2img (SDEdit) at growing strength: how often the digit keeps its class, and the Fréchet
 *   distance (classifier features) of the results to other held-out digits;
 * - inpainting of the lower half: how often the completed digit has the original's class, for
 *   RePaint with resampling, RePaint without it (jumpRepeats 1), and a baseline that fills the
 *   hole with noise and runs one SDEdit pass (strength 0.5) over the whole image;
 * - DDIM inversion: round-trip error (invert, regenerate with the same steps) on the model's own
 *   samples and on held-out digits, at 10, 25, 50 and 100 steps.
 *
 *   npm run bench:editing -- --run runs/mnist [--count 500] [--invert-count 100] [--sections img2img,inpaint,invert]
 */
import { DiffusionPipeline, TorchGenerator } from '../src/index.js';
import { Classifier, FEATURE_DIM, frechetDistance } from '../src/eval/index.js';
import { loadMnist } from '../src/data/index.js';
import { flag, log, runFlag } from './args.js';

const runDir = runFlag('npm run bench:editing -- --run DIR [--count 500] [--invert-count 100]');
const n = Number(flag('count', '500'));
const nInvert = Number(flag('invert-count', '100'));
const sections = (flag('sections') ?? 'img2img,inpaint,invert').split(',');

const test = loadMnist('test');
const per = 28 * 28;
const labels = (test.labels as Int32Array).subarray(0, n);
const inputs = test.images.slice(0, n * per);
const reference = test.images.slice(n * per, 2 * n * per); // other held-out digits, for the Fréchet distance
const cls = await Classifier.forDataset(loadMnist('train'), { log: (s) => process.stderr.write(`${s}\r`) });
const refFeatures = (await cls.apply(reference, n)).features;
const pipe = await DiffusionPipeline.fromRun(runDir);

/** Fraction whose argmax class is the input's, and the Fréchet distance to other held-out digits. */
async function read(images: Float32Array): Promise<{ kept: number; frechet: number }> {
  const clipped = images.map((v) => Math.max(-1, Math.min(1, v)));
  const { probs, features } = await cls.apply(clipped, n);
  let kept = 0;
  for (let k = 0; k < n; k++) {
    let best = 0;
    for (let c = 1; c < 10; c++) if (probs[k * 10 + c] > probs[k * 10 + best]) best = c;
    if (best === labels[k]) kept++;
  }
  return { kept: kept / n, frechet: frechetDistance(features, n, refFeatures, n, FEATURE_DIM) };
}
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const started = Date.now();
const seconds = () => ((Date.now() - started) / 1000).toFixed(0);

console.log(`\n${runDir}: ${n} held-out MNIST digits (test split 0..${n - 1}), DDIM 50 steps, seed 0; Fréchet distance against held-out digits ${n}..${2 * n - 1}`);
if (sections.includes('img2img')) {
const floor = await read(inputs);
console.log(`\nimg2img (SDEdit), eta as the run's default; the inputs themselves: class ${pct(floor.kept)}, Fréchet ${floor.frechet.toFixed(2)}\n`);
console.log('| strength | class kept | Fréchet ↓ |');
console.log('|---|---|---|');
for (const strength of [0.1, 0.3, 0.5, 0.7, 0.9, 1.0]) {
  const out = await pipe.img2img({ image: inputs, strength, steps: 50, seed: 0 });
  const r = await read(out.data);
  console.log(`| ${strength} | ${pct(r.kept)} | ${r.frechet.toFixed(2)} |`);
  log(`  img2img ${strength} done (${seconds()} s)`);
}

}

if (sections.includes('inpaint')) {
const mask = new Float32Array(per).map((_, i) => (i >= per / 2 ? 1 : 0)); // generate the lower half
console.log('\ninpainting the lower half (DDIM 50 steps, eta 1)\n');
console.log('| method | model evaluations | class of the original | Fréchet ↓ | seconds |');
console.log('|---|---|---|---|---|');
for (const [name, jumpLength, jumpRepeats] of [['RePaint, jump length 5, 5 repeats (default)', 5, 5], ['RePaint without resampling (jump repeats 1)', 5, 1]] as const) {
  const t0 = Date.now();
  let evals = 0;
  const out = await pipe.inpaint({ image: inputs, mask, steps: 50, jumpLength, jumpRepeats, seed: 0, onStep: (s) => void (s.offset === 0 && (evals = s.total)) });
  const r = await read(out.data);
  console.log(`| ${name} | ${evals} | ${pct(r.kept)} | ${r.frechet.toFixed(2)} | ${((Date.now() - t0) / 1000).toFixed(0)} |`);
}
{
  // Baseline: the hole filled with N(0, 1) noise (clipped to the image range), one SDEdit pass over the whole image.
  const t0 = Date.now();
  const noise = new Float32Array(n * per);
  const z = new TorchGenerator(5).randn(n * per);
  for (let i = 0; i < n * per; i++) noise[i] = mask[i % per] ? Math.max(-1, Math.min(1, z[i])) : inputs[i];
  const out = await pipe.img2img({ image: noise, strength: 0.5, steps: 50, seed: 0 });
  const r = await read(out.data);
  console.log(`| hole filled with noise, one SDEdit pass (strength 0.5) | 25 | ${pct(r.kept)} | ${r.frechet.toFixed(2)} | ${((Date.now() - t0) / 1000).toFixed(0)} |`);
}

}

if (sections.includes('invert')) {
console.log(`\nDDIM inversion round trip: invert (eta 0) then regenerate from the result (DDIM, eta 0, x_0 unclipped) with the same steps; ${nInvert} images; error in [-1, 1] pixel units\n`);
console.log('| steps | refinements | own samples: RMS error | own samples: max abs error | held-out digits: RMS error | held-out: max abs error | seconds per image (invert) |');
console.log('|---|---|---|---|---|---|---|');
const own = (await pipe.generate({ count: nInvert, steps: 50, seed: 11 })).data.map((v) => Math.max(-1, Math.min(1, v))); // as a PNG would hold them
const real = test.images.slice(0, nInvert * per);
const roundTrip = async (image: Float32Array, steps: number, refine: number) => {
  const t0 = Date.now();
  const xT = await pipe.invert({ image, steps, refine });
  const invertSeconds = (Date.now() - t0) / 1000 / nInvert;
  const back = await pipe.generate({ count: nInvert, steps, eta: 0, clipSample: false, initialNoise: xT.data });
  let sq = 0;
  let max = 0;
  for (let i = 0; i < image.length; i++) {
    const d = Math.abs(back.data[i] - image[i]);
    sq += d * d;
    max = Math.max(max, d);
  }
  return { rms: Math.sqrt(sq / image.length), max, invertSeconds };
};
for (const [steps, refine] of [[10, 0], [25, 0], [50, 0], [100, 0], [10, 2], [50, 2]]) {
  const a = await roundTrip(own, steps, refine);
  const b = await roundTrip(real, steps, refine);
  console.log(`| ${steps} | ${refine} | ${a.rms.toFixed(4)} | ${a.max.toFixed(3)} | ${b.rms.toFixed(4)} | ${b.max.toFixed(3)} | ${a.invertSeconds.toFixed(3)} |`);
}
}
await pipe.release();
await cls.release();
log(`done in ${seconds()} s`);
