/**
 * Training: sample t and eps, noise the images with q(x_t | x_0), and fit the
 * U-Net's output to the target with one compiled step (forward, loss, backward,
 * AdamW, EMA). Every step's batch, timesteps and noise are a pure function of
 * (seed, step), so a resumed run continues exactly where it stopped.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { ParamScope, ParamStore, RuntimeOptions, Tensor, TrainStep, mean, mul, square, sub, writeFileAtomic } from '../engine/index.js';
import { FastGenerator, NoiseSchedule, lossWeight, qSample, trainingTarget } from '../diffusion/index.js';
import { CAPTION_TEMPLATES, EMOJI_PREVIEW_PROMPTS, ImageDataset, classPrompt } from '../data/index.js';
import { EpochOrder } from './epochs.js';
import { BpeTokenizer, TextTokenizer } from '../text/tokenizer.js';
import { DiffusionPipeline, saveGrid } from '../pipelines/index.js';
import { RunConfig, TimestepSampling, emaDecayAt, learningRate, validateRunConfig } from '../run/config.js';
import { defaultEta } from '../run/sampling-defaults.js';
import { readRunConfig, runModel, runPaths } from '../run/run.js';
import { isExportFolder } from '../run/export-folder.js';
import { TextConditioner, readTokenizer, writeTokenizer } from '../run/text.js';
import { AutoencoderNetwork, LatentCodec, latentCodec, saveAutoencoderCopy } from '../run/autoencoder.js';
import { LoopOptions, LoopResult, trainingLoop } from './loop.js';
import { LatentCache, loadLatentCache, saveLatentCache } from './latents.js';
import { OptionError } from '../engine/errors.js';

export type { Progress } from './loop.js';

export interface TrainOptions extends LoopOptions {
  /** Continue from the run folder's checkpoint. */
  resume?: boolean;
  /** Images in each sample grid. */
  sampleCount?: number;
  runtime?: RuntimeOptions;
  /** Text runs: the tokenizer to use (default: one trained on the data set's captions). */
  tokenizer?: TextTokenizer;
  /**
   * Latent runs (config.latent), new ones only: the autoencoder and the data set encoded by it
   * (encodeDataset; config.latent.scalingFactor from scalingFactorOf). Both are written into the
   * run folder; a resumed run reads them from there.
   */
  latent?: { autoencoder: AutoencoderNetwork; cache: LatentCache };
}

/** Up to 8 prompts for preview grids: one per class for labelled sets, else the first distinct captions. */
export function previewPrompts(data: ImageDataset, max = 8): string[] {
  if (data.classNames && data.name in CAPTION_TEMPLATES) return data.classNames.slice(0, max).map((_, k) => classPrompt(data.name, data.classNames!, k));
  if (data.name === 'emoji') return EMOJI_PREVIEW_PROMPTS.slice(0, max);
  return [...new Set(data.captions ?? [])].slice(0, max);
}

export interface TrainResult extends LoopResult {
  checkpoint: string;
}

/**
 * Batches as a pure function of (seed, step): exact resumption needs no extra state. Latent runs
 * pass the encoded data set: x_0 is then a fresh posterior draw of each image's latent, scaled.
 */
export class BatchMaker {
  private readonly order: EpochOrder;
  readonly schedule: NoiseSchedule;
  constructor(
    readonly data: ImageDataset,
    readonly config: RunConfig,
    readonly latents?: LatentCache,
  ) {
    this.schedule = new NoiseSchedule(config.schedule);
    if (config.latent && !latents) throw new Error('BatchMaker: a latent run needs its encoded data set (encodeDataset)');
    if (latents && latents.count !== data.count) throw new Error(`BatchMaker: ${latents.count} encoded images for ${data.count} training images`);
    if (latents && config.data.flip && !latents.flipped) throw new Error('BatchMaker: this run flips, so it needs the mirrored images encoded too (encodeDataset with flip)');
    if (config.classConditioning && (!data.labels || !data.classNames)) {
      throw new Error(`${data.name} has no class labels; class-conditional training needs mnist, fashion-mnist or a folder with one subfolder per class`);
    }
    if (config.classConditioning && data.classNames!.length !== config.model.numClasses) {
      throw new Error(`${data.name} has ${data.classNames!.length} classes but the model was configured for ${config.model.numClasses}`);
    }
    if (config.text && !data.captions) {
      throw new Error(`${data.name} has no captions; text-conditional training needs mnist, fashion-mnist, emoji, or a folder with img.txt beside each image (or a metadata.jsonl)`);
    }
    this.order = new EpochOrder(data.count, config.batchSize, config.seed);
  }

  /** Text runs: the step's captions, each replaced by the empty prompt with probability pUncond (own random stream). */
  prompts(step: number): string[] {
    const { data, config } = this;
    if (!config.text || !data.captions) throw new Error('BatchMaker.prompts: not a text-conditional run');
    const idx = this.indices(step);
    const keep = new FastGenerator((Math.imul(config.seed + 7, 0x27d4eb2f) ^ Math.imul(step + 1, 0x165667b1)) >>> 0).rand(idx.length);
    return idx.map((i, k) => (keep[k] < config.text!.pUncond ? '' : (data.captions as readonly string[])[i]));
  }

  /** The data-set indices of the step's batch. */
  private indices(step: number): number[] {
    return this.order.indices(step);
  }

  make(step: number): { x: Float32Array; t: Float32Array; target: Float32Array; w: Float32Array; dropout_seed?: Float32Array; label?: BigInt64Array } {
    const { data, config } = this;
    const B = config.batchSize;
    const idx = this.indices(step);
    const g = new FastGenerator((Math.imul(config.seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0);
    const flips = g.rand(B);
    const flipped = (k: number) => config.data.flip && flips[k] < 0.5;
    const per = this.latents ? this.latents.mean.length / this.latents.count : data.channels * data.height * data.width;
    const x0 = new Float32Array(B * per);
    if (!this.latents) {
      for (let k = 0; k < B; k++) {
        const src = data.images.subarray(idx[k] * per, (idx[k] + 1) * per);
        if (flipped(k)) {
          const w = data.width;
          for (let r = 0; r < per / w; r++) for (let c = 0; c < w; c++) x0[k * per + r * w + c] = src[r * w + (w - 1 - c)];
        } else x0.set(src, k * per);
      }
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
    if (this.latents) {
      // Drawn after everything a pixel run draws, so that pixel runs keep their exact batches.
      const posterior = g.randn(B * per);
      const scale = (config.latent as { scalingFactor: number }).scalingFactor;
      for (let k = 0; k < B; k++) {
        const { mean: mu, std } = flipped(k) ? (this.latents.flipped as { mean: Float32Array; std: Float32Array }) : this.latents;
        for (let j = 0, at = idx[k] * per; j < per; j++) x0[k * per + j] = scale * (mu[at + j] + std[at + j] * posterior[k * per + j]);
      }
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
 * Writes a grid of samples from the EMA weights with DDIM (50 steps, fixed seed) and the eta that
 * `diffuse sample` uses by default (defaultEta), so that a preview shows what sampling will give.
 * With `prompts` (text runs) or `labels` (class runs), one row per condition, at guidance 3.
 */
export async function writeSampleGrid(
  config: RunConfig,
  weights: ReadonlyMap<string, Float32Array>,
  file: string,
  count: number,
  runtime?: RuntimeOptions,
  condition: { text?: TextConditioner; prompts?: readonly string[]; codec?: LatentCodec } = {},
): Promise<void> {
  const rows = condition.prompts?.length ?? (config.model.numClasses ?? 0);
  const perRow = rows ? Math.max(1, Math.floor(count / rows)) : count;
  if (rows) count = rows * perRow;
  const row = (i: number) => Math.floor(i / perRow);
  const pipe = DiffusionPipeline.fromWeights(config, weights, { runtime, text: condition.text, codec: condition.codec });
  try {
    const images = await pipe.generate({
      count,
      ...(condition.prompts ? { prompt: Array.from({ length: count }, (_, i) => condition.prompts![row(i)]) } : {}),
      ...(rows && !condition.prompts ? { classLabel: Array.from({ length: count }, (_, i) => row(i)) } : {}),
      ...(rows ? { guidance: 3 } : {}),
      scheduler: 'ddim',
      eta: defaultEta(config),
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
  if (isExportFolder(runDir)) throw new Error(`${runDir}: a model folder that diffuse export wrote, not a run; train into a run folder (the export has no checkpoints to resume)`);
  const paths = runPaths(runDir);
  const m = config.model;
  if (!config.latent && (data.channels !== m.inChannels || data.height !== m.imageSize || data.width !== m.imageSize)) {
    throw new Error(
      `data is ${data.channels}x${data.height}x${data.width} but the model expects ${m.inChannels}x${m.imageSize}x${m.imageSize}; pick a matching \`model\` (preset), or \`data.size\` and \`data.channels\``,
    );
  }
  if (opts.resume) {
    const saved = readRunConfig(runDir);
    if (JSON.stringify(saved.model) !== JSON.stringify(config.model)) {
      throw new OptionError(`${paths.config}: the run was trained with another model config; resume without changing the \`model\`, or start a new run in another \`runDir\``);
    }
    if (!existsSync(paths.checkpoint)) throw new Error(`${runDir}: nothing to resume (no ${paths.checkpoint})`);
  } else if (existsSync(runDir) && readdirSync(runDir).length > 0) {
    throw new OptionError(`${runDir} already holds a run; set \`resume\` to continue it, or choose another \`runDir\``);
  }
  // Everything that can be checked is checked before the run folder is touched.
  let ownedAutoencoder: AutoencoderNetwork | undefined;
  let latents: LatentCache | undefined;
  let codec: LatentCodec | undefined;
  if (config.latent) {
    let autoencoder: AutoencoderNetwork;
    if (opts.resume) {
      autoencoder = ownedAutoencoder = await AutoencoderNetwork.open(paths.autoencoder, opts.runtime);
      latents = await loadLatentCache(paths.latents, { count: data.count, shape: autoencoder.latentShape, flip: config.data.flip });
    } else {
      if (!opts.latent) throw new Error('train: a latent run (config.latent) needs opts.latent, the autoencoder and the data encoded by it (encodeDataset)');
      ({ autoencoder, cache: latents } = opts.latent);
    }
    const [c, h, w] = autoencoder.imageShape;
    if (data.channels !== c || data.height !== h || data.width !== w) throw new OptionError(`data is ${data.channels}x${data.height}x${data.width} but the autoencoder takes ${c}x${h}x${w}; set \`data.size\` to ${h}`);
    const [lc, lh] = autoencoder.latentShape;
    if (m.inChannels !== lc || m.outChannels !== lc || m.imageSize !== lh) throw new Error(`the U-Net takes ${m.inChannels}x${m.imageSize}x${m.imageSize} but the autoencoder's latents are ${autoencoder.latentShape.join('x')}`);
    codec = latentCodec(autoencoder, config.latent.scalingFactor);
  }
  const batches = new BatchMaker(data, config, latents);
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
    if (opts.latent && latents) {
      mkdirSync(paths.autoencoder, { recursive: true });
      await saveAutoencoderCopy(paths.autoencoder, opts.latent.autoencoder.config, opts.latent.autoencoder.weights);
      await saveLatentCache(paths.latents, latents, { 'diffuse.format': 'latent-cache-1' });
    }
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
  const samplePrompts = text ? previewPrompts(data) : undefined;
  try {
    const result = await trainingLoop(
      {
        step,
        batchSize: B,
        batch: async (s) => {
          const feeds = text ? Object.fromEntries(Object.entries(await text.feeds(batches.prompts(s))).map(([k, v]) => [k, v.data])) : {};
          return { ...batches.make(s), ...feeds };
        },
        lr: (s) => learningRate(config, s),
        emaDecay: (s) => emaDecayAt(config, s),
        logFile: paths.log,
        checkpoint: paths.checkpoint,
        save,
        sample: (name) => writeSampleGrid(config, step.ema, `${paths.samples}/${name}.png`, opts.sampleCount ?? 64, opts.runtime, { text, prompts: samplePrompts, codec }),
      },
      opts,
    );
    return { ...result, checkpoint: paths.checkpoint };
  } finally {
    await step.release();
    await text?.release();
    await ownedAutoencoder?.release();
  }
}
