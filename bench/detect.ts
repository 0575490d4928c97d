/**
 * The synthetic-image detector (src/forensics/synthetic.ts) on a run: calibrated on one split,
 * tested on another, real and generated images always in the same format and processing.
 *
 *   npm run bench:detect -- --run runs/mnist [--count 1000] [--calibration 1000] [--other runs/other[,runs/another]] [--save]
 *
 * Real test images: the data set's test split [0, count). Calibration: test [S, S + n) and
 * n samples, S = 5000 for MNIST and Fashion-MNIST, half the split for emoji (calibrationStart); (half DDIM 50, half DPM-Solver++ 20, seeds 1001-1002). Test samples: seed 7, the pipeline's defaults (DDIM 50, the run's eta),
 * DPM-Solver++ 20 steps (seed 8), and Euler ancestral 30 steps (seed 9), a sampler the calibration never saw. Settings: both
 * PNG; both JPEG 90; both JPEG 75; both resized to 50% and back. Also: training-split images
 * (memorisation), and samples of another run (`--other DIR[,DIR...]`: transfer). --save writes the calibration
 * to the run's detector.json, which `diffuse inspect` reads.
 */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DiffusionPipeline, ImageBatch, calibrateDetector, detectSynthetic, loadDataset } from '../src/index.js';
import { DetectorProfile, calibrationStart, chooseProfile, jpegRoundTrip, quantize8, resizeRoundTrip, syntheticFeatures } from '../src/forensics/index.js';
import { averagePrecision, rocAuc } from '../src/eval/index.js';
import { flag, has, log, runFlag } from './args.js';

const run = runFlag('npm run bench:detect -- --run DIR [--count 1000] [--calibration 1000] [--other DIR[,DIR...]] [--save]');
const count = Number(flag('count', '1000'));
const calCount = Number(flag('calibration', '1000'));
const other = flag('other');
const pipe = await DiffusionPipeline.fromRun(run);
const per = pipe.imageShape.reduce((a, b) => a * b, 1);
const source = pipe.config.data.source;
const slice = (b: ImageBatch, from: number, n: number): ImageBatch => {
  if (b.count < from + n) throw new Error(`${source} has ${b.count} images in that split; ${from + n} needed`);
  return { data: b.data.slice(from * per, (from + n) * per), count: n, shape: pipe.imageShape };
};
const [channels, side] = pipe.imageShape;
const split = async (s: 'train' | 'test'): Promise<ImageBatch> => {
  const d = await loadDataset(source, s, { size: side, channels: channels as 1 | 3 });
  return { data: d.images, count: d.count, shape: pipe.imageShape };
};
const test = await split('test');
const calFrom = calibrationStart(test.count);
if (count > calFrom) throw new Error(`--count ${count}: the ${source} test split keeps [0, ${calFrom}) for testing; use --count ${calFrom} or less`);
const t0 = performance.now();
const calibration = await calibrateDetector(pipe, {
  real: slice(test, calFrom, calCount),
  realSource: `${source} test [${calFrom}, ${calFrom + calCount})`,
  onPhase: log,
});
log(`calibrated in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
if (has('save')) writeFileSync(path.join(run, 'detector.json'), `${JSON.stringify(calibration, null, 1)}\n`);

const real = quantize8(slice(test, 0, count));
log(`drawing ${count} test samples each: DDIM 50 (seed 7), DPM-Solver++ 20 (seed 8), Euler ancestral 30 (seed 9)`);
const fake = quantize8(await pipe.generate({ count, seed: 7 }));
const fakeDpm = quantize8(await pipe.generate({ count, seed: 8, scheduler: 'dpm++2m', steps: 20 }));
const fakeEa = quantize8(await pipe.generate({ count, seed: 9, scheduler: 'euler_a', steps: 30 }));

const score = async (b: ImageBatch, profile: DetectorProfile) => {
  const t = performance.now();
  const d = await detectSynthetic(b, pipe, calibration, { profile });
  return { scores: d.map((x) => x.score), flagged: d.filter((x) => x.flagged).length / b.count, ms: (performance.now() - t) / b.count };
};
// The profile as diffuse inspect picks it: from the file's format and its estimated JPEG quality.
const settings: [string, DetectorProfile, (b: ImageBatch) => Promise<ImageBatch>][] = [
  ['both PNG', chooseProfile(calibration), async (b) => b],
  ['both JPEG 90', chooseProfile(calibration, 90), (b) => jpegRoundTrip(b, 90)],
  ['both JPEG 75', chooseProfile(calibration, 75), (b) => jpegRoundTrip(b, 75)],
  ['both resized to 50% and back', chooseProfile(calibration), (b) => resizeRoundTrip(b, 0.5)],
];
const fmt = (v: number) => v.toFixed(3);
console.log(`Detector on ${run} (model ${pipe.modelHash.slice(0, 12)}): ${count} samples (DDIM 50, seed 7) against ${count} real ${source} test images [0, ${count}); calibration on ${calibration.data.real} and ${calCount} samples (${calibration.data.syntheticSettings}).\n`);
console.log('| setting | profile | AP | AUC | TPR at the 1% threshold | FPR at the 1% threshold (real test images) | DPM-Solver++ 20: AP / AUC / TPR | Euler a 30 (not in calibration): AP / AUC / TPR |');
console.log('|---|---|---|---|---|---|---|---|');
let msPer = 0;
for (const [name, profile, process] of settings) {
  const [rs, fs, gs, es] = [await score(await process(real), profile), await score(await process(fake), profile), await score(await process(fakeDpm), profile), await score(await process(fakeEa), profile)];
  if (name === 'both PNG') msPer = (rs.ms + fs.ms) / 2;
  const cells = (x: typeof fs) => `${fmt(averagePrecision(x.scores, rs.scores))} / ${fmt(rocAuc(x.scores, rs.scores))} / ${fmt(x.flagged)}`;
  console.log(`| ${name} | ${profile} | ${fmt(averagePrecision(fs.scores, rs.scores))} | ${fmt(rocAuc(fs.scores, rs.scores))} | ${fmt(fs.flagged)} | ${fmt(rs.flagged)} | ${cells(gs)} | ${cells(es)} |`);
}
const r = await score(real, 'lossless');
if (calFrom > count) {
  const more = await score(quantize8(slice(test, count, calFrom - count)), 'lossless');
  console.log(`\nFalse positives at the 1% threshold on ${calFrom - count} more real test images [${count}, ${calFrom}), PNG: ${fmt(more.flagged)}.`);
}
const fk = await score(fake, 'lossless');
const train = await score(quantize8(slice(await split('train'), 0, count)), 'lossless');
console.log(`Training-split images (memorisation), PNG: flagged ${fmt(train.flagged)} (real test images: ${fmt(r.flagged)}); AUC of samples against training images ${fmt(rocAuc(fk.scores, train.scores))}, against test images ${fmt(rocAuc(fk.scores, r.scores))}; AUC training vs test images (0.5 = no memorisation signal) ${fmt(rocAuc(train.scores, r.scores))}.`);
// AEROBLADE's own score on latent runs, before any fitting: the smaller the autoencoder's reconstruction error, the likelier generated.
const aeroblade = async (b: ImageBatch) => (await syntheticFeatures(b, pipe, [])).features.map((f) => -f[0]);
const aeroReal = pipe.codec ? await aeroblade(real) : [];
if (pipe.codec) console.log(`Reconstruction error alone (AEROBLADE's score without fitting: -log mean |x - D(E(x))|), PNG: AUC of this run's samples against real test images ${fmt(rocAuc(await aeroblade(fake), aeroReal))}.`);
for (const dir of other ? other.split(',') : []) {
  const o = await DiffusionPipeline.fromRun(dir);
  const shared = o.codec && pipe.codec && o.config.latent?.source === pipe.config.latent?.source ? `, same autoencoder source ${o.config.latent?.source}` : o.codec ? ', another autoencoder' : ', pixel space';
  if (o.imageShape.join('x') !== pipe.imageShape.join('x')) throw new Error(`--other ${dir} makes ${o.imageShape.join('x')} images; this run makes ${pipe.imageShape.join('x')}`);
  const oFake = quantize8(await o.generate({ count, seed: 7 }));
  await o.release();
  const s = await score(oFake, 'lossless');
  const alone = pipe.codec ? `; reconstruction error alone: AUC ${fmt(rocAuc(await aeroblade(oFake), aeroReal))}` : '';
  console.log(`Samples of another model (${dir}, model ${o.modelHash.slice(0, 12)}${shared}), PNG, scored by this run's detector: AP ${fmt(averagePrecision(s.scores, r.scores))}, AUC ${fmt(rocAuc(s.scores, r.scores))}, flagged ${fmt(s.flagged)}${alone}.`);
}
console.log(`\nCost: ${msPer.toFixed(1)} ms per image (${calibration.timesteps.length} model evaluations each${pipe.codec ? ', and one encoding and decoding by the autoencoder' : ''}, batches of 250, PNG setting); the whole bench took ${((performance.now() - t0) / 1000).toFixed(0)} s.`);
await pipe.release();
