/**
 * The watermark against attacks: `count` watermarked and `count` unwatermarked samples of a run
 * (DDIM, eta 0, other seeds), each attacked, then detected by DDIM inversion. Per attack: AUC of
 * the score -log10 p, TPR and empirical FPR at the stated thresholds p < 1% and p < 0.1% (the
 * p-value's own thresholds, never read off this ROC), and payload bit accuracy. Then the
 * false-positive rate on `null-count` clean images (half generated without the key, half real
 * held-out images when the run's data set has a test split), sample quality with and without the
 * watermark, and the cost of embedding and detection.
 *
 *   npm run bench:watermark -- --run runs/mnist [--count 1000] [--null-count 10000] [--steps 50] [--inversion-steps N] [--attacks none,jpeg25,...] [--max-rotation 0 | --geometric] [--skip-quality] [--payload-bits 32] [--dump FILE]
 *
 * --max-rotation N detects with the search over turns of up to N degrees (detectWatermark's
 * maxRotation) in every row, the clean images' included; --geometric with the search over turns by
 * any angle and crops (detectWatermark's geometric), likewise.
 *
 * Attacks are applied to 8-bit images, as files hold them; `a+b` applies b to what a left (e.g.
 * `jpeg25+blur05`: a JPEG file blurred before detection). Sizes scale with the image: Tree-Ring's
 * blur (radius 4 at 512 px) is 0.2 px at 28 px, so blur sigma 0.5 and 1 px are far stronger here.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import sharp from 'sharp';
import { DiffusionPipeline, FastGenerator, ImageBatch, WatermarkKey, detectWatermark, gaussianShading, generateKey, loadDataset, readRunConfig } from '../src/index.js';
import { Classifier, FEATURE_DIM, confidence, frechetDistance, precisionRecall, rocAuc } from '../src/eval/index.js';
import { imageBytes, imageFromBytes, readPayload } from '../src/forensics/index.js';
import { flag, has, log, runFlag } from './args.js';

const runDir = runFlag('npm run bench:watermark -- --run DIR [--count 1000] [--null-count 10000] [--steps 50] [--inversion-steps N] [--attacks a,b,...] [--max-rotation 0 | --geometric] [--skip-quality]');
const count = Number(flag('count', '1000'));
const nullCount = Number(flag('null-count', '10000'));
const steps = Number(flag('steps', '50'));
/** Inversion steps of detection (default: as many as sampling). */
const inversionSteps = Number(flag('inversion-steps', String(steps)));
const maxRotation = Number(flag('max-rotation', '0'));
const geometric = has('geometric');
/** --dump FILE: also write every row's inverted noises (x_T estimates), the key and the payloads, as JSON, to study detection statistics offline without inverting again. */
const dumpFile = flag('dump');
const dumped: Record<string, { marked: string[]; clean: string[] }> = {};
const searched = maxRotation ? ` and a search over turns of up to ${maxRotation} degrees` : geometric ? ' and the geometric search (turns and crops)' : '';
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;

const config = readRunConfig(runDir);
const pipe = await DiffusionPipeline.fromRun(runDir);
const [C, H, W] = pipe.imageShape;
const per = C * H * W;
/** Values of x_T per image: the latent's for a latent run (where the mark is written), else the image's. */
const noisePer = pipe.latentShape.reduce((a, b) => a * b, 1);
/** --payload-bits N: a key whose marks carry N payload bits (default 32). */
const payloadBits = Number(flag('payload-bits', '32'));
const key: WatermarkKey = generateKey('gaussian-shading', { payloadBits });
const payloads = Array.from({ length: count }, () => (payloadBits ? randomBytes(4).readUInt32LE(0) % 2 ** payloadBits : 0));

/** count watermarked images (one payload each, chunks of 250) and count clean ones, DDIM eta 0. */
async function samples(): Promise<{ marked: ImageBatch; clean: ImageBatch }> {
  const marked = new Float32Array(count * per);
  for (let at = 0; at < count; at += 250) {
    const n = Math.min(250, count - at);
    // One payload per image: generate image by image within the chunk's noise draw.
    const noise = new Float32Array(n * noisePer);
    const g = new FastGenerator(1000 + at);
    for (let k = 0; k < n; k++) noise.set(gaussianShading(key, payloads[at + k]).draw(1, noisePer, g), k * noisePer);
    marked.set((await pipe.generate({ count: n, steps, eta: 0, initialNoise: noise })).data, at * per);
  }
  const clean = await pipe.generate({ count, steps, eta: 0, seed: 2 });
  return { marked: { data: marked, count, shape: [C, H, W] }, clean };
}

// ---- 8-bit images and attacks ----
const toBytes = (img: Float32Array): Buffer => imageBytes({ data: img, count: 1, shape: [C, H, W] }, 0);
const fromBytes = (b: Uint8Array, channels = C): Float32Array => imageFromBytes(b, channels, [C, H, W]);
const raw = (b: Buffer) => sharp(b, { raw: { width: W, height: H, channels: C as 1 | 3 } });
const decode = async (s: sharp.Sharp): Promise<Float32Array> => {
  const { data, info } = await (C === 1 ? s.toColourspace('b-w') : s.toColourspace('srgb')).raw().toBuffer({ resolveWithObject: true });
  if (info.width !== W || info.height !== H) throw new Error(`attack produced ${info.width}x${info.height}`);
  return fromBytes(data, info.channels);
};
const jpeg = (q: number) => async (b: Buffer) => decode(sharp(await raw(b).jpeg({ quality: q }).toBuffer()));
const rng = new FastGenerator(99);
const borderColour = (b: Buffer) => {
  const vals: number[] = [];
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let x = 0; x < W; x++) s += b[x * C + c] + b[((H - 1) * W + x) * C + c];
    vals.push(Math.round(s / (2 * W)));
  }
  return C === 1 ? { r: vals[0], g: vals[0], b: vals[0] } : { r: vals[0], g: vals[1], b: vals[2] };
};
const floatAttack = (f: (v: number, i: number) => number) => async (b: Buffer) => {
  const x = new Float32Array(per);
  for (let i = 0; i < per; i++) x[i] = Math.round(Math.min(255, Math.max(0, f(b[i] / 255, i) * 255))); // in [0, 1], then quantised without wrap-around
  return fromBytes(Buffer.from(Uint8Array.from(x)));
};

/** Separable Gaussian blur of the 8-bit image (radius ceil(3 sigma), edges repeated), quantised back to 8 bits. */
function blur(b: Buffer, sigma: number): Promise<Float32Array> {
  const r = Math.ceil(3 * sigma);
  const k = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const sum = k.reduce((a, v) => a + v, 0);
  const w = k.map((v) => v / sum);
  const at = (x: Float64Array, c: number, y: number, i: number) => x[(Math.min(H - 1, Math.max(0, y)) * W + Math.min(W - 1, Math.max(0, i))) * C + c];
  const src = Float64Array.from(b);
  const tmp = new Float64Array(per);
  const out = new Float64Array(per);
  for (let c = 0; c < C; c++)
    for (let y = 0; y < H; y++)
      for (let i = 0; i < W; i++) {
        let s = 0;
        for (let d = -r; d <= r; d++) s += w[d + r] * at(src, c, y, i + d);
        tmp[(y * W + i) * C + c] = s;
      }
  for (let c = 0; c < C; c++)
    for (let y = 0; y < H; y++)
      for (let i = 0; i < W; i++) {
        let s = 0;
        for (let d = -r; d <= r; d++) s += w[d + r] * at(tmp, c, y + d, i);
        out[(y * W + i) * C + c] = s;
      }
  return Promise.resolve(fromBytes(Uint8Array.from(out, (v) => Math.round(Math.min(255, Math.max(0, v))))));
}

type Attack = (b: Buffer) => Promise<Float32Array>;
const ATTACKS: Record<string, Attack> = {
  none: async (b) => fromBytes(b),
  jpeg90: jpeg(90),
  jpeg75: jpeg(75),
  jpeg50: jpeg(50),
  jpeg25: jpeg(25),
  crop75: async (b) => {
    const side = Math.round(Math.sqrt(0.75) * W);
    const [left, top] = [Math.floor(rng.rand(1)[0] * (W - side + 1)), Math.floor(rng.rand(1)[0] * (H - side + 1))];
    return decode(sharp(await raw(b).extract({ left, top, width: side, height: side }).png().toBuffer()).resize(W, H, { kernel: 'cubic' }));
  },
  ...Object.fromEntries(
    [5, 15, 75].map((deg) => [
      `rotate${deg}`,
      async (b: Buffer) => {
        const rotated = await raw(b).rotate(deg, { background: borderColour(b) }).png().toBuffer();
        const meta = await sharp(rotated).metadata();
        return decode(sharp(rotated).extract({ left: Math.floor(((meta.width as number) - W) / 2), top: Math.floor(((meta.height as number) - H) / 2), width: W, height: H }));
      },
    ]),
  ),
  // Gaussian blur in float (sharp's integer kernel leaves a 28-px image unchanged at sigma 0.5).
  blur05: (b) => blur(b, 0.5),
  blur1: (b) => blur(b, 1),
  noise005: (b) => {
    const z = rng.randn(per);
    return floatAttack((v, i) => v + 0.05 * z[i])(b);
  },
  noise01: (b) => {
    const z = rng.randn(per);
    return floatAttack((v, i) => v + 0.1 * z[i])(b);
  },
  brightness15: floatAttack((v) => v * 1.5),
  jitter: (b) => {
    // brightness, contrast and (colour runs) saturation, each by a random factor in [0.8, 1.2]
    const [kb, kc, ks] = Array.from(rng.rand(3), (u) => 0.8 + 0.4 * u);
    let mean = 0;
    for (let i = 0; i < per; i++) mean += b[i] / 255 / per;
    const grey = (i: number) => (C === 3 ? (b[i - (i % 3)] + b[i - (i % 3) + 1] + b[i - (i % 3) + 2]) / 3 / 255 : b[i] / 255);
    return floatAttack((v, i) => {
      const sat = C === 3 ? grey(i) + ks * (v - grey(i)) : v;
      return (mean + kc * (sat - mean)) * kb;
    })(b);
  },
  resize50: async (b) => decode(sharp(await raw(b).resize(Math.round(W / 2), Math.round(H / 2)).png().toBuffer()).resize(W, H, { kernel: 'cubic' })),
};
const REGEN = ['regen0.1', 'regen0.2', 'regen0.3'];
/**
 * Averaging (Yang et al. 2024, arXiv 2406.09026): the attacker averages N watermarked images and N
 * clean ones; their difference estimates the key's pattern. Removal subtracts it from watermarked
 * images (the TPR columns); forgery adds it to clean ones (the FPR columns count forged detections).
 */
const AVERAGING = ['avg10', 'avg100'];
const TREE_RING_SIX = ['rotate75', 'jpeg25', 'crop75', 'blur1', 'noise01', 'jitter'];
const chosen = (flag('attacks') ?? [...Object.keys(ATTACKS), ...REGEN, ...AVERAGING].join(',')).split(',');

async function attack(name: string, batch: ImageBatch, watermarked: boolean): Promise<ImageBatch> {
  // 'jpeg25+blur05': the attacks one after the other, each on the 8-bit image the previous one left.
  if (name.includes('+')) {
    let out = batch;
    for (const part of name.split('+')) out = await attack(part, out, watermarked);
    return out;
  }
  if (name.startsWith('avg')) {
    const n = Math.min(Number(name.slice(3)), count);
    const pattern = new Float32Array(per);
    for (let k = 0; k < n; k++) for (let i = 0; i < per; i++) pattern[i] += (marked.data[k * per + i] - clean.data[k * per + i]) / n;
    const sign = watermarked ? -1 : 1;
    return { ...batch, data: batch.data.map((v, i) => Math.round(Math.min(1, Math.max(-1, v + sign * pattern[i % per])) * 127.5 + 127.5) / 127.5 - 1) };
  }
  if (name.startsWith('regen')) {
    // The attacker has the weights: noise to t/T and denoise with 20 DDIM steps (strength = t/T).
    const strength = Number(name.slice(5));
    const clipped = batch.data.map((v) => Math.round(Math.min(1, Math.max(-1, v)) * 127.5 + 127.5) / 127.5 - 1);
    return pipe.img2img({ image: { ...batch, data: clipped }, strength, steps: 20, eta: 0, seed: 7 });
  }
  const out = new Float32Array(batch.count * per);
  for (let k = 0; k < batch.count; k++) out.set(await ATTACKS[name](toBytes(batch.data.subarray(k * per, (k + 1) * per))), k * per);
  return { data: out, count: batch.count, shape: batch.shape };
}

async function detect(batch: ImageBatch, dumpAs?: { attack: string; side: 'marked' | 'clean' }) {
  if (dumpFile && dumpAs) {
    const noise = (await pipe.invert({ image: batch, steps: inversionSteps })).data;
    const row = (dumped[dumpAs.attack] ??= { marked: [], clean: [] });
    for (let k = 0; k < batch.count; k++) row[dumpAs.side].push(Buffer.from(noise.slice(k * noisePer, (k + 1) * noisePer).buffer).toString('base64'));
  }
  return detectWatermark(batch, pipe, key, { steps: inversionSteps, maxRotation, geometric });
}

const rows: string[] = [];
const payloadRows: string[] = [];
const pct = (a: number, n: number) => (n ? `${((100 * a) / n).toFixed(1)}%` : '-');
const summary: Record<string, { auc: number; tpr1: number }> = {};
log(`${runDir}: ${count} watermarked + ${count} clean samples, DDIM ${steps} steps eta 0; inversion ${inversionSteps} steps${searched}`);
const { marked, clean } = await samples();
log(`sampled (${elapsed()})`);
for (const name of chosen) {
  for (const part of name.split('+')) if (!(part in ATTACKS) && !REGEN.includes(part) && !AVERAGING.includes(part)) throw new Error(`unknown attack '${part}'`);
  const attacked = await attack(name, marked, true);
  // How much the attack changed the images (in [0, 255] levels), so that an attack that does nothing shows.
  let change = 0;
  for (let i = 0; i < attacked.data.length; i++) change += Math.abs(attacked.data[i] - Math.max(-1, Math.min(1, marked.data[i]))) * 127.5;
  change /= attacked.data.length;
  const [dm, dc] = [await detect(attacked, { attack: name, side: 'marked' }), await detect(await attack(name, clean, false), { attack: name, side: 'clean' })];
  const score = (d: { log10P: number }) => -d.log10P;
  const a = rocAuc(dm.map(score), dc.map(score));
  const rate = (ds: typeof dm, alpha: number) => ds.filter((d) => d.pValue < alpha).length / ds.length;
  let bits = 0;
  dm.forEach((d, k) => {
    for (let j = 0; j < payloadBits; j++) bits += ((d.payload >>> j) & 1) === ((payloads[k] >>> j) & 1) ? 1 : 0;
  });
  // The decoder's own estimate of its payload's reliability against the truth, on the images it detects.
  const found = dm.flatMap((d, k) => (d.pValue < 0.01 ? [{ d, r: readPayload(d), k }] : []));
  const right = found.filter(({ d, k }) => d.payload === payloads[k]).length;
  const predicted = found.reduce((s, { r }) => s + r.reliability, 0);
  let bitErrors = 0;
  let predictedBitErrors = 0;
  // The bits the reports call certain (estimated under 1% wrong), and how many of them were wrong.
  let certain = 0;
  let certainWrong = 0;
  for (const { d, r, k } of found) for (let j = 0; j < payloadBits; j++) {
    const wrong = ((d.payload >>> j) & 1) === ((payloads[k] >>> j) & 1) ? 0 : 1;
    bitErrors += wrong;
    predictedBitErrors += r.bitError[j];
    if (r.bitError[j] < 0.01) [certain, certainWrong] = [certain + 1, certainWrong + wrong];
  }
  const sure = found.filter(({ r }) => r.reliability >= 0.99);
  const sureRight = sure.filter(({ d, k }) => d.payload === payloads[k]).length;
  payloadRows.push(`| ${name} | ${found.length} | ${right} (${pct(right, found.length)}) | ${pct(predicted, found.length)} | ${bitErrors} | ${predictedBitErrors.toFixed(1)} | ${sure.length} | ${sureRight} (${pct(sureRight, sure.length)}) | ${certain} | ${certainWrong} (${pct(certainWrong, certain)}) |`);
  summary[name] = { auc: a, tpr1: rate(dm, 0.01) };
  rows.push(`| ${name} | ${change.toFixed(1)} | ${a.toFixed(4)} | ${rate(dm, 0.01).toFixed(3)} | ${rate(dc, 0.01).toFixed(3)} | ${rate(dm, 0.001).toFixed(3)} | ${rate(dc, 0.001).toFixed(3)} | ${payloadBits ? (bits / (payloadBits * count)).toFixed(3) : '-'} |`);
  log(`${rows[rows.length - 1]} (${elapsed()})`);
}

console.log(`\n## ${runDir}: ${count} watermarked vs ${count} clean samples (DDIM ${steps}, eta 0), detection by ${inversionSteps}-step DDIM inversion${searched}\n`);
console.log('| attack | mean change (levels of 255) | AUC | TPR at p < 1% | FPR at p < 1% | TPR at p < 0.1% | FPR at p < 0.1% | payload bit accuracy |');
console.log('(avgN rows: TPR after the averaged pattern is subtracted from watermarked images; FPR = clean images with the pattern added that are detected, i.e. forgeries)');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
console.log(`\nPayloads of the watermarked images detected at p < 1%: exactly right, against the decoder's own estimate (the mean of payloadReliability, the probability that no bit's vote is wrong), and bit errors against the sum of the bits' estimated error probabilities:\n`);
console.log('| attack | detected | payload right | estimated right | bit errors | estimated bit errors | estimated >= 0.99 | of those right | bits estimated < 1% wrong | of those wrong |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of payloadRows) console.log(r);
if (dumpFile) writeFileSync(dumpFile, JSON.stringify({ run: runDir, key, payloads, noisePer, noiseShape: pipe.latentShape, latent: pipe.codec !== undefined, inversionSteps, attacks: dumped }));
const six = TREE_RING_SIX.filter((n) => n in summary);
if (six.length) {
  const mean = (f: (s: { auc: number; tpr1: number }) => number) => six.reduce((a, n) => a + f(summary[n]), 0) / six.length;
  console.log(`\nMean over Tree-Ring's six attacks (${six.join(', ')}): AUC ${mean((s) => s.auc).toFixed(4)}, TPR at 1% FPR ${mean((s) => s.tpr1).toFixed(3)}`);
}

// ---- false positives on clean images ----
if (nullCount > 0) {
  const generated = Math.ceil(nullCount / 2);
  const parts: { what: string; batch: ImageBatch }[] = [{ what: 'generated without the key', batch: await pipe.generate({ count: generated, steps, eta: 0, seed: 3 }) }];
  const test = await loadDataset(config.data.source, 'test').catch(() => undefined);
  const realN = nullCount - generated;
  if (test && test.count >= realN && test.channels === C && test.height === H) {
    parts.push({ what: 'real held-out images', batch: { data: test.images.slice(0, realN * per), count: realN, shape: [C, H, W] } });
  } else {
    parts[0] = { what: 'generated without the key', batch: await pipe.generate({ count: nullCount, steps, eta: 0, seed: 3 }) };
  }
  console.log(`\nFalse positives on ${nullCount} clean images (p-value thresholds as stated):\n`);
  console.log('| images | count | flagged at p < 1% | flagged at p < 0.1% |');
  console.log('|---|---|---|---|');
  let all1 = 0;
  let all01 = 0;
  for (const { what, batch } of parts) {
    const ps: number[] = [];
    for (let at = 0; at < batch.count; at += 500) {
      const n = Math.min(500, batch.count - at);
      const ds = await detect({ data: batch.data.subarray(at * per, (at + n) * per), count: n, shape: batch.shape });
      ps.push(...ds.map((d) => d.pValue));
      log(`  null ${what}: ${at + n}/${batch.count} (${elapsed()})`);
    }
    const f1 = ps.filter((p) => p < 0.01).length;
    const f01 = ps.filter((p) => p < 0.001).length;
    all1 += f1;
    all01 += f01;
    console.log(`| ${what} | ${ps.length} | ${f1} (${((100 * f1) / ps.length).toFixed(2)}%) | ${f01} (${((100 * f01) / ps.length).toFixed(3)}%) |`);
  }
  console.log(`| all | ${nullCount} | ${all1} (${((100 * all1) / nullCount).toFixed(2)}%) | ${all01} (${((100 * all01) / nullCount).toFixed(3)}%) |`);
}

// ---- quality and cost ----
/**
 * Unlabelled runs (emoji) have no evaluator classifier: their samples are compared in a feature
 * space that needs no training, each channel averaged over an 8 x 8 grid of cells (192 values for
 * colour). Coarser than classifier features: it sees colour and layout, not detail.
 */
const CELLS = 8;
/** The cell of each pixel and how many pixels each cell holds, computed once. */
const cellOf = Int32Array.from({ length: H * W }, (_, i) => Math.floor((Math.floor(i / W) * CELLS) / H) * CELLS + Math.floor(((i % W) * CELLS) / W));
const cellSize = new Float32Array(CELLS * CELLS);
for (const cell of cellOf) cellSize[cell]++;
function pixelFeatures(x: Float32Array, n: number): Float32Array {
  const f = new Float32Array(n * C * CELLS * CELLS);
  for (let k = 0; k < n; k++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < H * W; i++) f[(k * C + c) * CELLS * CELLS + cellOf[i]] += Math.max(-1, Math.min(1, x[k * per + c * H * W + i])) / cellSize[cellOf[i]];
  return f;
}
const train = await loadDataset(config.data.source, 'train', { size: config.data.size, channels: config.data.channels, limit: config.data.limit });
if (!has('skip-quality')) {
  const seed2 = await pipe.generate({ count, steps, eta: 0, seed: 4 });
  const test = await loadDataset(config.data.source, 'test').catch(() => undefined);
  if (train.labels && test && test.count >= count) {
    const cls = await Classifier.forDataset(train, { log: () => {} });
    const real = test.images.slice(0, count * per);
    const fr = (await cls.apply(real, count)).features;
    const q = async (b: ImageBatch) => {
      const x = b.data.map((v) => Math.max(-1, Math.min(1, v)));
      const { features, probs } = await cls.apply(x, count);
      const pr = precisionRecall(fr, count, features, count, FEATURE_DIM);
      return `Fréchet ${frechetDistance(features, count, fr, count, FEATURE_DIM).toFixed(2)}, precision ${pr.precision.toFixed(3)}, recall ${pr.recall.toFixed(3)}, confident ${(100 * confidence(probs, count, cls.classes).confident).toFixed(1)}%`;
    };
    console.log(`\nQuality against ${count} held-out images (evaluator classifier, DDIM ${steps}, eta 0):\n`);
    console.log(`- watermarked: ${await q(marked)}`);
    console.log(`- clean, seed 2: ${await q(clean)}`);
    console.log(`- clean, seed 4 (the spread between two seeds): ${await q(seed2)}`);
    await cls.release();
  } else {
    const n = Math.min(count, train.count);
    const d = C * CELLS * CELLS;
    const fr = pixelFeatures(train.images.slice(0, n * per), n);
    const q = (b: ImageBatch) => {
      const f = pixelFeatures(b.data.subarray(0, n * per), n);
      const pr = precisionRecall(fr, n, f, n, d);
      return `Fréchet ${frechetDistance(f, n, fr, n, d).toFixed(3)}, precision ${pr.precision.toFixed(3)}, recall ${pr.recall.toFixed(3)}`;
    };
    console.log(`\nQuality against ${n} training images (no evaluator classifier for this data: 8 x 8 cell means per channel, ${d} values; DDIM ${steps}, eta 0):\n`);
    console.log(`- watermarked: ${q(marked)}`);
    console.log(`- clean, seed 2: ${q(clean)}`);
    console.log(`- clean, seed 4 (the spread between two seeds): ${q(seed2)}`);
  }
}
const batch = Math.min(100, count);
console.log(`\nCost per image (batches of ${batch}; embedding draws x_T, detection inverts):\n`);
console.log('| inversion steps | detection s/image | TPR at p < 1%, no attack |');
console.log('|---|---|---|');
const t0 = Date.now();
const x = new FastGenerator(5);
for (let k = 0; k < 100; k++) gaussianShading(key, 1).draw(1, noisePer, x);
const embed = (Date.now() - t0) / 1000 / 100;
for (const [s, turns, geo] of [[50, 0, false], [20, 0, false], [10, 0, false], [5, 0, false], ...(maxRotation ? [[inversionSteps, maxRotation, false]] : []), ...(geometric ? [[inversionSteps, 0, true]] : [])] as [number, number, boolean][]) {
  const sub: ImageBatch = { data: marked.data.slice(0, batch * per), count: batch, shape: [C, H, W] };
  const t = Date.now();
  const ds = await detectWatermark(sub, pipe, key, { steps: s, maxRotation: turns, geometric: geo });
  console.log(`| ${s}${turns ? `, turns up to ${turns} degrees` : ''}${geo ? ', turns and crops searched (found unmoved: the search is skipped)' : ''} | ${((Date.now() - t) / 1000 / batch).toFixed(4)} | ${(ds.filter((d) => d.pValue < 0.01).length / batch).toFixed(2)} |`);
}
if (geometric) {
  // Unwatermarked images get the whole search: its cost per image on one thread and on every core
  // (the rows above use every core), and how many of them are flagged.
  const sub: ImageBatch = { data: clean.data.slice(0, batch * per), count: batch, shape: [C, H, W] };
  const seconds: number[] = [];
  // A latent run's search (turn-search.ts) inverts turned images and takes no threads: timed once.
  for (const threads of new Set(pipe.codec ? [1] : [1, availableParallelism()])) {
    const t = Date.now();
    const ds = await detectWatermark(sub, pipe, key, { steps: inversionSteps, geometric, threads });
    seconds.push((Date.now() - t) / 1000 / batch);
    const ratio = seconds.length > 1 ? `, ${(seconds[0] / seconds[1]).toFixed(2)}x faster than 1 thread` : '';
    const what = pipe.codec ? 'turns and crops searched (image moved back and inverted again: every 3 degrees, whole-pixel crops)' : 'turns and crops searched';
    console.log(`| ${inversionSteps}, ${what}, ${batch} clean images (the whole search), ${threads} thread${threads > 1 ? 's' : ''}${ratio} | ${seconds[seconds.length - 1].toFixed(4)} | (clean: ${ds.filter((d) => d.pValue < 0.01).length} of ${batch} flagged) |`);
  }
}
console.log(`\nEmbedding: ${(embed * 1000).toFixed(2)} ms per image (the keystream and the sign flips; the sampling itself costs what unwatermarked sampling costs). Total ${elapsed()}.`);
await pipe.release();
