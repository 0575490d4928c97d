/**
 * How strict is the evaluator's classifier? On held-out MNIST digits: its accuracy, the
 * fraction of real digits it reads with confidence >= 0.9, the same with random white pixels
 * added, and the fraction of overlays of two different digits (no single digit) it reads
 * confidently. Uses (or trains and caches) the classifier that `diffuse eval` uses.
 *
 *   node --import tsx bench/evaluator.ts [--count 2000]
 */
import { Classifier, FastGenerator, confidence, loadMnist, overlays } from '../src/index.js';

const args = process.argv.slice(2);
const i = args.indexOf('--count');
const n = i >= 0 ? Number(args[i + 1]) : 2000;
const train = loadMnist('train');
const test = loadMnist('test');
const per = test.images.length / test.count;
const labels = test.labels as Int32Array;
const cls = await Classifier.forDataset(train, { log: (s) => process.stderr.write(`${s}\r`) });
const confident = async (x: Float32Array) => confidence((await cls.apply(x, n)).probs, n, cls.classes).confident;

const real = test.images.slice(0, n * per);
const { probs } = await cls.apply(real, n);
let correct = 0;
for (let k = 0; k < n; k++) {
  let best = 0;
  for (let c = 1; c < cls.classes; c++) if (probs[k * cls.classes + c] > probs[k * cls.classes + best]) best = c;
  if (best === labels[k]) correct++;
}
const rng = new FastGenerator(9);
const speckled = real.slice();
for (let k = 0; k < n; k++) for (const u of rng.rand(15)) speckled[k * per + Math.floor(u * per)] = 1;

console.log(`evaluator classifier on ${n} held-out MNIST digits`);
console.log(`| test accuracy | real confident | real + 15 white pixels confident | overlays of two different digits confident |`);
console.log(`| ${(100 * correct / n).toFixed(2)}% | ${(100 * (await confident(real))).toFixed(1)}% | ${(100 * (await confident(speckled))).toFixed(1)}% | ${(100 * (await confident(overlays(test, n)))).toFixed(1)}% |`);
await cls.release();
