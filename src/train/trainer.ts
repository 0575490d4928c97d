/**
 * Training: sample t and eps, noise the images with q(x_t | x_0), and fit the
 * U-Net's output to the target with one compiled step (forward, loss, backward,
 * AdamW, EMA). Every step's batch, timesteps and noise are a pure function of
 * (seed, step), so a resumed run continues exactly where it stopped.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { NonFiniteError, ParamScope, ParamStore, RuntimeOptions, Tensor, TrainStep, mean, mul, square, sub, writeFileAtomic } from '../engine/index.js';
import { FastGenerator, NoiseSchedule, lossWeight, qSample, trainingTarget } from '../diffusion/index.js';
import { CAPTION_TEMPLATES, EMOJI_PREVIEW_PROMPTS, ImageDataset, classPrompt, shuffled } from '../data/index.js';
import { BpeTokenizer, TextTokenizer } from '../text/tokenizer.js';
import { DiffusionPipeline, saveGrid } from '../pipelines/index.js';
import { RunConfig, TimestepSampling, emaDecayAt, learningRate, validateRunConfig } from '../run/config.js';
import { readRunConfig, runModel, runPaths } from '../run/run.js';
import { TextConditioner, readTokenizer, writeTokenizer } from '../run/text.js';

export interface TrainOptions {
  /** Stop after this many steps in total (counting resumed ones). */
  maxSteps?: number;
  /** Stop after this many minutes of this session. */
  minutes?: number;
  /** Continue from the run folder's checkpoint. */
  resume?: boolean;
  logEvery?: number;
  checkpointEvery?: number;
  /** Write a sample grid every N steps (0: only at the end). */
  sampleEvery?: number;
  /** Images in each sample grid. */
  sampleCount?: number;
  runtime?: RuntimeOptions;
  /** Progress callback (the CLI draws its bar with it). */
  onProgress?: (p: Progress) => void;
  /** Aborting saves a checkpoint and returns (Ctrl-C in the CLI). */
  signal?: AbortSignal;
  /** Text runs: the tokenizer to use (default: one trained on the data set's captions). */
  tokenizer?: TextTokenizer;
}

/** Up to 8 prompts for preview grids: one per class for labelled sets, else the first distinct captions. */
export function previewPrompts(data: ImageDataset, max = 8): string[] {
  if (data.classNames && data.name in CAPTION_TEMPLATES) return data.classNames.slice(0, max).map((_, k) => classPrompt(data.name, data.classNames!, k));
  if (data.name === 'emoji') return EMOJI_PREVIEW_PROMPTS.slice(0, max);
  return [...new Set(data.captions ?? [])].slice(0, max);
}

export interface Progress {
  step: number;
  maxSteps?: number;
  loss: number;
  gradNorm: number;
  lr: number;
  imagesPerSecond: number;
  elapsedSeconds: number;
  /** Seconds left by the step or time budget, whichever ends first. */
  etaSeconds?: number;
  event?: string;
}

export interface TrainResult {
  steps: number;
  finalLoss: number;
  stoppedBy: 'steps' | 'time' | 'signal';
  checkpoint: string;
}

/** Batches as a pure function of (seed, step): exact resumption needs no extra state. */
export class BatchMaker {
  private epochCache: { epoch: number; order: number[] } | undefined;
  readonly schedule: NoiseSchedule;
  constructor(
    readonly data: ImageDataset,
    readonly config: RunConfig,
  ) {
    this.schedule = new NoiseSchedule(config.schedule);
    if (config.classConditioning && (!data.labels || !data.classNames)) {
      throw new Error(`${data.name} has no class labels; class-conditional training needs mnist, fashion-mnist or a folder with one subfolder per class`);
    }
    if (config.classConditioning && data.classNames!.length !== config.model.numClasses) {
      throw new Error(`${data.name} has ${data.classNames!.length} classes but the model was configured for ${config.model.numClasses}`);
    }
    if (config.text && !data.captions) {
      throw new Error(`${data.name} has no captions; text-conditional training needs mnist, fashion-mnist, emoji, or a folder with img.txt beside each image (or a metadata.jsonl)`);
    }
    if (Math.floor(data.count / config.batchSize) < 1) {
      throw new Error(`batch size ${config.batchSize} is larger than the ${data.count} training images; lower --batch`);
    }
  }

  /** Text runs: the step's captions, each replaced by the empty prompt with probability pUncond (own random stream). */
  prompts(step: number): string[] {
    const { data, config } = this;
    if (!config.text || !data.captions) throw new Error('BatchMaker.prompts: not a text-conditional run');
    const idx = this.indices(step);
    const keep = new FastGenerator((Math.imul(config.seed + 7, 0x27d4eb2f) ^ Math.imul(step + 1, 0x165667b1)) >>> 0).rand(idx.length);
    return idx.map((i, k) => (keep[k] < config.text!.pUncond ? '' : (data.captions as readonly string[])[i]));
  }

  /** The data-set indices of the step's batch: consecutive slices of a per-epoch shuffle. */
  private indices(step: number): number[] {
    const B = this.config.batchSize;
    const perEpoch = Math.floor(this.data.count / B);
    const offset = (step % perEpoch) * B;
    return this.order(Math.floor(step / perEpoch)).slice(offset, offset + B);
  }

  private order(epoch: number): number[] {
    if (this.epochCache?.epoch !== epoch) this.epochCache = { epoch, order: shuffled(this.data.count, new FastGenerator(this.config.seed * 1_000_003 + epoch)) };
    return this.epochCache.order;
  }

  make(step: number): { x: Float32Array; t: Float32Array; target: Float32Array; w: Float32Array; dropout_seed?: Float32Array; label?: BigInt64Array } {
    const { data, config } = this;
    const B = config.batchSize;
    const per = data.channels * data.height * data.width;
    const idx = this.indices(step);
    const g = new FastGenerator((Math.imul(config.seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0);
    const x0 = new Float32Array(B * per);
    const flips = g.rand(B);
    for (let k = 0; k < B; k++) {
      const src = data.images.subarray(idx[k] * per, (idx[k] + 1) * per);
      if (config.data.flip && flips[k] < 0.5) {
        const w = data.width;
        for (let r = 0; r < per / w; r++) for (let c = 0; c < w; c++) x0[k * per + r * w + c] = src[r * w + (w - 1 - c)];
      } else x0.set(src, k * per);
    }
    const T = config.schedule.numTrainTimesteps;
    const ts = drawTimesteps(g.rand(B), T, config.timestepSampling ?? 'uniform');
    const noise = g.randn(B * per);
    let label: BigInt64Array | undefined;
    if (config.classConditioning) {
      const keep = g.rand(B);
      const nullClass = BigInt(config.model.numClasses as number);
      label = BigInt64Array.from({ length: B }, (_, k) => (keep[k] < config.classConditioning!.pUncond ? nullClass : BigInt((data.labels as Int32Array)[idx[k]])));
    }
    return {
      ...(label ? { label } : {}),
      x: qSample(this.schedule, x0, noise, ts),
      t: Float32Array.from(ts),
      target: trainingTarget(config.predictionType, this.schedule, x0, noise, ts),
      w: Float32Array.from(ts, (t) => lossWeight(config.lossWeighting, config.predictionType, this.schedule, t, config.minSnrGamma)),
      ...(config.model.dropout ? { dropout_seed: Float32Array.of((step * 7919) % 10007) } : {}),
    };
  }
}

/**
 * Integer timesteps in [0, T) from uniforms u in [0, 1): independent, or stratified (the k-th of
 * B in the k-th slice [kT/B, (k+1)T/B)). Batches are shuffled, so slice k goes to a random image.
 */
export function drawTimesteps(u: Float32Array | Float64Array, T: number, kind: TimestepSampling): number[] {
  const B = u.length;
  const at = kind === 'stratified' ? (k: number) => (k + u[k]) / B : (k: number) => u[k];
  return Array.from({ length: B }, (_, k) => Math.min(T - 1, Math.floor(at(k) * T)));
}

/** The per-sample weighted loss mean_i w_i * mean((f(x_i, t_i) - target_i)^2). */
export function diffusionLoss(config: RunConfig, text?: TextConditioner) {
  return (scope: ParamScope, b: Record<string, Tensor>): Tensor => {
    const pred = runModel(scope, config, b, text);
    const perSample = mean(square(sub(pred, b.target)), [1, 2, 3]);
    return mean(mul(perSample, b.w));
  };
}

/**
 * Writes a grid of samples from the EMA weights with DDIM (50 steps, fixed seed).
 * With `prompts` (text runs) or `labels` (class runs), one row per condition, at guidance 3.
 */
export async function writeSampleGrid(
  config: RunConfig,
  weights: ReadonlyMap<string, Float32Array>,
  file: string,
  count: number,
  runtime?: RuntimeOptions,
  condition: { text?: TextConditioner; prompts?: readonly string[] } = {},
): Promise<void> {
  const rows = condition.prompts?.length ?? (config.model.numClasses ?? 0);
  const perRow = rows ? Math.max(1, Math.floor(count / rows)) : count;
  if (rows) count = rows * perRow;
  const row = (i: number) => Math.floor(i / perRow);
  const pipe = DiffusionPipeline.fromWeights(config, weights, { runtime, text: condition.text });
  try {
    const images = await pipe.generate({
      count,
      ...(condition.prompts ? { prompt: Array.from({ length: count }, (_, i) => condition.prompts![row(i)]) } : {}),
      ...(rows && !condition.prompts ? { classLabel: Array.from({ length: count }, (_, i) => row(i)) } : {}),
      ...(rows ? { guidance: 3 } : {}),
      scheduler: 'ddim',
      eta: 0,
      steps: Math.min(50, config.schedule.numTrainTimesteps),
      seed: 1234,
    });
    await saveGrid(images, file, { cols: rows ? perRow : undefined });
  } finally {
    await pipe.release();
  }
}

export async function train(runDir: string, config: RunConfig, data: ImageDataset, opts: TrainOptions = {}): Promise<TrainResult> {
  validateRunConfig(config);
  const paths = runPaths(runDir);
  const m = config.model;
  if (data.channels !== m.inChannels || data.height !== m.imageSize || data.width !== m.imageSize) {
    throw new Error(
      `data is ${data.channels}x${data.height}x${data.width} but the model expects ${m.inChannels}x${m.imageSize}x${m.imageSize}; pick a matching --preset or --size/--channels`,
    );
  }
  if (opts.resume) {
    const saved = readRunConfig(runDir);
    if (JSON.stringify(saved.model) !== JSON.stringify(config.model)) {
      throw new Error(`${paths.config}: the run was trained with another model config; resume without changing --preset, or start a new --run`);
    }
    if (!existsSync(paths.checkpoint)) throw new Error(`${runDir}: nothing to resume (no ${paths.checkpoint})`);
  } else if (existsSync(runDir) && readdirSync(runDir).length > 0) {
    throw new Error(`${runDir} already holds a run; pass --resume to continue it or choose another --run folder`);
  }
  // Everything that can be checked is checked before the run folder is touched.
  const batches = new BatchMaker(data, config);
  let text: TextConditioner | undefined;
  let tokenizer: TextTokenizer | undefined;
  if (config.text) {
    tokenizer = opts.resume ? readTokenizer(runDir, config.text) : (opts.tokenizer ?? BpeTokenizer.train(data.captions as readonly string[]));
    text = await TextConditioner.open(config.text, tokenizer, opts.runtime);
  }
  mkdirSync(paths.checkpoints, { recursive: true });
  mkdirSync(paths.samples, { recursive: true });
  if (!opts.resume) {
    if (tokenizer) await writeTokenizer(runDir, tokenizer);
    await writeFileAtomic(paths.config, JSON.stringify(config, null, 2) + '\n');
  }

  const store = new ParamStore(config.seed);
  const B = config.batchSize;
  const shape = [B, m.inChannels, m.imageSize, m.imageSize];
  const step = await TrainStep.create({
    store,
    batch: {
      x: { shape },
      t: { shape: [B] },
      target: { shape },
      w: { shape: [B] },
      ...(m.dropout ? { dropout_seed: { shape: [] } } : {}),
      ...(config.classConditioning ? { label: { shape: [B], dtype: 'int64' as const } } : {}),
      ...(text?.inputs(B) ?? {}),
    },
    loss: diffusionLoss(config, text),
    optimizer: { lr: config.lr, weightDecay: config.weightDecay, clipGradNorm: config.clipGradNorm, emaDecay: config.emaDecay },
    runtime: opts.runtime,
  });
  if (opts.resume) await step.load(paths.checkpoint);

  const save = async () => {
    await step.save(paths.checkpoint, { 'diffuse.model': JSON.stringify(config.model) });
  };
  const sample = async (name: string) => {
    await writeSampleGrid(config, step.ema, `${paths.samples}/${name}.png`, opts.sampleCount ?? 64, opts.runtime, { text, prompts: samplePrompts });
  };

  const samplePrompts = text ? previewPrompts(data) : undefined;
  const logEvery = opts.logEvery ?? 50;
  const checkpointEvery = opts.checkpointEvery ?? 500;
  const sampleEvery = opts.sampleEvery ?? 0;
  const started = performance.now();
  const startStep = step.step;
  const deadline = opts.minutes !== undefined ? started + opts.minutes * 60_000 : Infinity;
  let loss = NaN;
  let lossAvg = 0;
  let stoppedBy: TrainResult['stoppedBy'] = 'steps';
  let logLines: string[] = [];
  const flushLog = async () => {
    if (logLines.length) await appendFile(paths.log, logLines.join(''));
    logLines = [];
  };

  for (;;) {
    if (opts.maxSteps !== undefined && step.step >= opts.maxSteps) break;
    if (performance.now() >= deadline) {
      stoppedBy = 'time';
      break;
    }
    if (opts.signal?.aborted) {
      stoppedBy = 'signal';
      break;
    }
    const s = step.step;
    const lr = learningRate(config, s);
    let r;
    try {
      const feeds = text ? Object.fromEntries(Object.entries(await text.feeds(batches.prompts(s))).map(([k, v]) => [k, v.data])) : {};
      r = await step.run({ ...batches.make(s), ...feeds }, { lr, emaDecay: emaDecayAt(config, s) });
    } catch (e) {
      // The step did not touch the weights: keep the last good state on disk, then stop.
      await flushLog();
      await save();
      await step.release();
      await text?.release();
      throw e instanceof NonFiniteError ? new Error(`${e.message} The last good state is in ${paths.checkpoint}; resume with a lower --lr.`) : e;
    }
    loss = r.loss;
    lossAvg = s === startStep ? loss : 0.98 * lossAvg + 0.02 * loss;
    const elapsed = (performance.now() - started) / 1000;
    const done = step.step - startStep;
    const ips = (done * B) / elapsed;
    const stepsLeft = opts.maxSteps !== undefined ? (opts.maxSteps - step.step) / (done / elapsed) : Infinity;
    const timeLeft = (deadline - performance.now()) / 1000;
    const eta = Math.min(stepsLeft, timeLeft);
    const progress: Progress = { step: step.step, maxSteps: opts.maxSteps, loss: lossAvg, gradNorm: r.gradNorm, lr, imagesPerSecond: ips, elapsedSeconds: elapsed, etaSeconds: Number.isFinite(eta) ? eta : undefined };
    if (step.step % logEvery === 0) {
      logLines.push(JSON.stringify({ step: step.step, loss: r.loss, loss_avg: lossAvg, grad_norm: r.gradNorm, lr, images_per_second: +ips.toFixed(1), elapsed_s: +elapsed.toFixed(1) }) + '\n');
      await flushLog();
    }
    opts.onProgress?.(progress);
    if (step.step % checkpointEvery === 0) await save();
    if (sampleEvery > 0 && step.step % sampleEvery === 0) {
      await sample(`step-${String(step.step).padStart(7, '0')}`);
      opts.onProgress?.({ ...progress, event: `samples/step-${String(step.step).padStart(7, '0')}.png` });
    }
  }
  await flushLog();
  await save();
  await sample('final');
  await step.release();
  await text?.release();
  return { steps: step.step, finalLoss: lossAvg, stoppedBy, checkpoint: paths.checkpoint };
}
