/**
 * Training the KL autoencoder of latent diffusion (`diffuse train-vae`): encode, draw
 * z = mean + std * eps, decode, and minimise
 *
 *   mean |x - x̂| + klWeight * KL(q(z|x) || N(0, I)) / (pixel values per image)
 *
 * which is LDM's autoencoder loss (Rombach et al. 2022, appendix G; per-image sums there, per
 * pixel value here) without its perceptual (LPIPS) and adversarial terms: no pretrained network
 * is needed, at the price of softer reconstructions. One compiled step (forward, backward, AdamW,
 * EMA); batches, flips and eps are a pure function of (seed, step), so a resumed run continues
 * exactly. Previews are reconstructions of fixed training images by the EMA weights.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { ParamScope, ParamStore, RuntimeOptions, Tensor, TrainStep, add, mean, mul, writeFileAtomic } from '../engine/index.js';
import { FastGenerator } from '../diffusion/index.js';
import type { ImageDataset } from '../data/index.js';
import { decodeLatents, downsamplingFactor, encodeMoments, klDivergence, l1PerImage, samplePosterior } from '../nn/autoencoder.js';
import { AutoencoderNetwork, AutoencoderRunConfig, readAutoencoderConfig, validateAutoencoderRunConfig } from '../run/autoencoder.js';
import { emaDecayAt, learningRate } from '../run/config.js';
import { runPaths } from '../run/run.js';
import { saveGrid } from '../pipelines/output.js';
import { EpochOrder } from './epochs.js';
import { LoopOptions, LoopResult, trainingLoop } from './loop.js';
import { mirrorImages } from './latents.js';
import { OptionError } from '../engine/errors.js';

export interface AutoencoderTrainOptions extends LoopOptions {
  /** Continue from the run folder's checkpoint. */
  resume?: boolean;
  runtime?: RuntimeOptions;
  /** Images reconstructed in each preview (default 8). */
  sampleCount?: number;
}

/** How well an autoencoder reproduces images: mean |x - x̂| and PSNR on [-1, 1] images (peak-to-peak 2). */
export interface ReconstructionQuality {
  images: number;
  l1: number;
  psnr: number;
}

export interface AutoencoderTrainResult extends LoopResult {
  checkpoint: string;
  /** Of the EMA weights on up to 512 training images (from the posterior mean). */
  quality: ReconstructionQuality;
}

/** The loss of one batch: mean L1 plus the weighted KL per pixel value. */
export function autoencoderLoss(config: AutoencoderRunConfig) {
  const pixels = config.model.inChannels * config.imageSize * config.imageSize;
  return (scope: ParamScope, b: Record<string, Tensor>): Tensor => {
    const moments = encodeMoments(scope, config.model, b.x);
    const recon = decodeLatents(scope, config.model, samplePosterior(moments, b.eps));
    return add(mean(l1PerImage(b.x, recon)), mul(mean(klDivergence(moments)), config.klWeight / pixels));
  };
}

/** Batches (images, flips, posterior noise) as a pure function of (seed, step). */
export class AutoencoderBatchMaker {
  private readonly order: EpochOrder;
  constructor(
    readonly data: ImageDataset,
    readonly config: AutoencoderRunConfig,
  ) {
    this.order = new EpochOrder(data.count, config.batchSize, config.seed);
  }

  make(step: number): { x: Float32Array; eps: Float32Array } {
    const { data, config } = this;
    const B = config.batchSize;
    const shape: [number, number, number] = [data.channels, data.height, data.width];
    const per = data.channels * data.height * data.width;
    const f = downsamplingFactor(config.model);
    const latentPer = config.model.latentChannels * (data.height / f) * (data.width / f);
    const g = new FastGenerator((Math.imul(config.seed + 3, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0);
    const flips = g.rand(B);
    const x = new Float32Array(B * per);
    this.order.indices(step).forEach((i, k) => {
      const src = data.images.subarray(i * per, (i + 1) * per);
      x.set(config.data.flip && flips[k] < 0.5 ? mirrorImages(src, 1, shape) : src, k * per);
    });
    return { x, eps: g.randn(B * latentPer) };
  }
}

/** Mean L1 and PSNR of reconstructions (from the posterior mean) of up to `max` images spread over the data. */
export async function reconstructionQuality(autoencoder: AutoencoderNetwork, data: ImageDataset, max = 512): Promise<ReconstructionQuality> {
  const n = Math.min(max, data.count);
  const picked = spreadIndices(data.count, n);
  const per = data.channels * data.height * data.width;
  const images = new Float32Array(n * per);
  picked.forEach((i, k) => images.set(data.images.subarray(i * per, (i + 1) * per), k * per));
  const recon = await autoencoder.decode((await autoencoder.encode(images, n)).mean, n);
  let l1 = 0;
  let se = 0;
  for (let i = 0; i < images.length; i++) {
    const d = Math.max(-1, Math.min(1, recon[i])) - images[i];
    l1 += Math.abs(d);
    se += d * d;
  }
  const mse = se / images.length;
  return { images: n, l1: l1 / images.length, psnr: 10 * Math.log10(4 / mse) };
}

function spreadIndices(count: number, n: number): number[] {
  return Array.from({ length: n }, (_, k) => Math.floor((k * count) / n));
}

/** A preview: the originals in the top row, their reconstructions below. */
async function writeReconstructionGrid(autoencoder: AutoencoderNetwork, data: ImageDataset, file: string, count: number): Promise<void> {
  const n = Math.min(count, data.count);
  const per = data.channels * data.height * data.width;
  const images = new Float32Array(n * per);
  spreadIndices(data.count, n).forEach((i, k) => images.set(data.images.subarray(i * per, (i + 1) * per), k * per));
  const recon = await autoencoder.decode((await autoencoder.encode(images, n)).mean, n);
  const both = new Float32Array(2 * n * per);
  both.set(images);
  both.set(recon, n * per);
  await saveGrid({ data: both, count: 2 * n, shape: [data.channels, data.height, data.width] }, file, { cols: n });
}

/** Trains (or resumes) an autoencoder run in `runDir` on `data`. */
export async function trainAutoencoder(runDir: string, config: AutoencoderRunConfig, data: ImageDataset, opts: AutoencoderTrainOptions = {}): Promise<AutoencoderTrainResult> {
  validateAutoencoderRunConfig(config);
  const paths = runPaths(runDir);
  const m = config.model;
  if (data.channels !== m.inChannels || data.height !== config.imageSize || data.width !== config.imageSize) {
    throw new OptionError(`data is ${data.channels}x${data.height}x${data.width} but the autoencoder is configured for ${m.inChannels}x${config.imageSize}x${config.imageSize}; set \`data.size\` and \`data.channels\` to match`);
  }
  if (opts.resume) {
    const saved = readAutoencoderConfig(runDir);
    if (JSON.stringify(saved.model) !== JSON.stringify(config.model)) throw new OptionError(`${paths.config}: the run was trained with another autoencoder config; resume without changing the \`model\`, or start a new run in another \`runDir\``);
    if (!existsSync(paths.checkpoint)) throw new Error(`${runDir}: nothing to resume (no ${paths.checkpoint})`);
  } else if (existsSync(runDir) && readdirSync(runDir).length > 0) {
    throw new OptionError(`${runDir} already holds a run; set \`resume\` to continue it, or choose another \`runDir\``);
  }
  const batches = new AutoencoderBatchMaker(data, config);
  mkdirSync(paths.checkpoints, { recursive: true });
  mkdirSync(paths.samples, { recursive: true });
  if (!opts.resume) await writeFileAtomic(paths.config, JSON.stringify(config, null, 2) + '\n');

  const B = config.batchSize;
  const f = downsamplingFactor(m);
  const step = await TrainStep.create({
    store: new ParamStore(config.seed),
    batch: { x: { shape: [B, m.inChannels, config.imageSize, config.imageSize] }, eps: { shape: [B, m.latentChannels, config.imageSize / f, config.imageSize / f] } },
    loss: autoencoderLoss(config),
    optimizer: { lr: config.lr, weightDecay: config.weightDecay, clipGradNorm: config.clipGradNorm, emaDecay: config.emaDecay },
    runtime: opts.runtime,
  });
  try {
    if (opts.resume) await step.load(paths.checkpoint);
    const withEma = async <T>(use: (ae: AutoencoderNetwork) => Promise<T>): Promise<T> => {
      const ae = new AutoencoderNetwork(config, new Map(step.ema), opts.runtime);
      try {
        return await use(ae);
      } finally {
        await ae.release();
      }
    };
    const result = await trainingLoop(
      {
        step,
        batchSize: B,
        batch: async (s) => batches.make(s),
        lr: (s) => learningRate(config, s),
        emaDecay: (s) => emaDecayAt(config, s),
        logFile: paths.log,
        checkpoint: paths.checkpoint,
        save: () => step.save(paths.checkpoint, { 'diffuse.model': JSON.stringify(config.model) }),
        sample: (name) => withEma((ae) => writeReconstructionGrid(ae, data, `${paths.samples}/${name}.png`, opts.sampleCount ?? 8)),
      },
      opts,
    );
    const quality = await withEma((ae) => reconstructionQuality(ae, data));
    return { ...result, checkpoint: paths.checkpoint, quality };
  } finally {
    await step.release();
  }
}
