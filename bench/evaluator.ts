/**
 * How strict is the evaluator's classifier? On held-out images of a labelled set (MNIST by
 * default, or emoji's nine categories): its accuracy, the fraction of real images it reads with
 * confidence >= 0.9, the same with random white pixels added, and the fraction of overlays of two
 * images of different classes (no single class) it reads confidently. Uses (or trains and caches)
 * the classifier that `diffuse eval` uses.
 *
 *   node --import tsx bench/evaluator.ts [--data mnist|fashion-mnist|emoji] [--size 64] [--count 2000]
 */
import { FastGenerator, loadDataset } from '../src/index.js';
import { Classifier, confidence, overlays } from '../src/eval/index.js';

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const data = flag('data') ?? 'mnist';
const size = flag('size') === undefined ? undefined : Number(flag('size'));
const train = await loadDataset(data, 'train', { size });
const test = await loadDataset(data, 'test', { size });
const n = Math.min(Number(flag('count') ?? 2000), test.count);
const per = test.images.length / test.count;
const labels = test.labels as Int32Array;
const cls = await Classifier.forDataset(train, { log: (s) => process.stderr.write(`${s}\r`) });
const confident = async (x: Float32Array) => confidence((await cls.apply(x, n)).probs, n, cls.classes).confident;

const real = test.images.slice(0, n * per);
const { probs } = await cls.apply(real, n);
const K = cls.classes;
const correct = new Array<number>(K).fill(0);
const seen = new Array<number>(K).fill(0);
for (let k = 0; k < n; k++) {
  let best = 0;
  for (let c = 1; c < K; c++) if (probs[k * K + c] > probs[k * K + best]) best = c;
  seen[labels[k]]++;
  if (best === labels[k]) correct[labels[k]]++;
}
const rng = new FastGenerator(9);
const speckled = real.slice();
for (let k = 0; k < n; k++) for (const u of rng.rand(15)) speckled[k * per + Math.floor(u * per)] = 1;

const total = correct.reduce((a, b) => a + b, 0);
console.log(`evaluator classifier on ${n} held-out ${test.name} images (${test.channels}x${test.height}x${test.width}, ${K} classes, trained on ${train.count})`);
console.log(`| test accuracy | real confident | real + 15 white pixels confident | overlays of two different classes confident |`);
console.log(`| ${((100 * total) / n).toFixed(2)}% | ${(100 * (await confident(real))).toFixed(1)}% | ${(100 * (await confident(speckled))).toFixed(1)}% | ${(100 * (await confident(overlays(test, n)))).toFixed(1)}% |`);
console.log(`accuracy per class: ${(train.classNames ?? []).map((name, c) => `${name} ${seen[c] ? ((100 * correct[c]) / seen[c]).toFixed(0) : '-'}% of ${seen[c]}`).join(', ')}`);
await cls.release();
