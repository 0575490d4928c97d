/**
 * An autoencoder run folder (what `diffuse train-vae` writes): config.json with format
 * 'diffuse-autoencoder-1', checkpoints/latest.safetensors, log.jsonl, samples/. A latent U-Net
 * run keeps a copy of its autoencoder in its own `autoencoder/` subfolder (config.json and
 * weights.safetensors, the EMA weights only), so that a run folder is complete on its own.
 *
 * `AutoencoderNetwork` is the trained autoencoder with its weights baked in: encode images to
 * the posterior's moments, decode latents to images. `LatentCodec` adds the scaling factor that
 * makes latents unit-variance for the diffusion model (Rombach et al. 2022, sec. 4.3.2 and
 * appendix G: z is divided by its standard deviation over the data, "scale_by_std").
 */
import { existsSync } from 'node:fs';
import { readSettingsJson } from '../data/safe-file.js';
import * as path from 'node:path';
import { ParamScope, ParamStore, Program, RuntimeOptions, input, loadSafetensors, saveSafetensors, writeFileAtomic } from '../engine/index.js';
import type { NamedTensor } from '../engine/index.js';
import { AutoencoderConfig, decodeLatents, downsamplingFactor, encodeMoments, validateAutoencoderConfig } from '../nn/autoencoder.js';
import type { DataConfig, OptimizerConfig, RunConfig } from './config.js';
import { validateOptimizerConfig } from './config.js';
import { runPaths } from './run.js';
import { isExportFolder, readExportFolder } from './export-folder.js';

export interface AutoencoderRunConfig extends OptimizerConfig {
  format: 'diffuse-autoencoder-1';
  data: DataConfig;
  preset?: string;
  model: AutoencoderConfig;
  /** Side of the training images (any side divisible by the downsampling factor encodes). */
  imageSize: number;
  /**
   * Weight of the KL term against the reconstruction term, as in LDM's autoencoders (1e-6):
   * loss = mean |x - x̂| + klWeight * KL / (pixels per image), i.e. LDM's per-image sums divided
   * by the number of pixel values.
   */
  klWeight: number;
}

export const AUTOENCODER_DEFAULTS = { klWeight: 1e-6, batchSize: 32, lr: 1e-3, warmupSteps: 100, weightDecay: 0, clipGradNorm: 1, emaDecay: 0.999, seed: 0 };

/** Checks every field; errors name the field. */
export function validateAutoencoderRunConfig(c: AutoencoderRunConfig): void {
  const fail = (field: string, msg: string): never => {
    throw new Error(`autoencoder config: ${field} ${msg}`);
  };
  validateAutoencoderConfig(c.model);
  const f = downsamplingFactor(c.model);
  if (!(Number.isInteger(c.imageSize) && c.imageSize > 0 && c.imageSize % f === 0)) fail('imageSize', `must be a positive multiple of the downsampling factor ${f}, got ${c.imageSize}`);
  if (!(c.klWeight >= 0)) fail('klWeight', `must be >= 0, got ${c.klWeight}`);
  validateOptimizerConfig(c, fail);
}

/** Reads and checks an autoencoder folder's config.json (a train-vae run, or a latent run's autoencoder/ copy). */
export function readAutoencoderConfig(dir: string): AutoencoderRunConfig {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) throw new Error(`${dir}: not an autoencoder folder (no config.json); train one with 'diffuse train-vae --run ${dir}'`);
  const c = readSettingsJson(file) as AutoencoderRunConfig;
  if (c.format !== 'diffuse-autoencoder-1') {
    const hint = (c as { format?: string }).format === 'diffuse-run-1' ? ' (this is a U-Net run; give the folder diffuse train-vae wrote)' : '';
    throw new Error(`${file}: not an autoencoder config (format '${String(c.format)}', expected diffuse-autoencoder-1)${hint}`);
  }
  validateAutoencoderRunConfig(c);
  return c;
}

/** The parameter names and shapes of a config, traced once. */
function expectedParams(model: AutoencoderConfig): ParamStore {
  const store = new ParamStore(0);
  const x = input('x', [1, model.inChannels, 8 * downsamplingFactor(model), 8 * downsamplingFactor(model)]);
  const moments = encodeMoments(new ParamScope(store), model, x);
  decodeLatents(new ParamScope(store), model, input('z', [1, model.latentChannels, moments.shape[2], moments.shape[3]]));
  return store;
}

/**
 * The weights to run an autoencoder folder with: weights.safetensors (a latent run's copy) or
 * the EMA weights of checkpoints/latest.safetensors (a train-vae run), checked by name and shape.
 */
export async function loadAutoencoderWeights(dir: string, config: AutoencoderRunConfig): Promise<Map<string, Float32Array>> {
  const copy = path.join(dir, 'weights.safetensors');
  const file = existsSync(copy) ? copy : runPaths(dir).checkpoint;
  if (!existsSync(file)) throw new Error(`${dir}: no weights yet (neither weights.safetensors nor ${runPaths(dir).checkpoint}); train with 'diffuse train-vae --run ${dir}' first`);
  const { tensors } = await loadSafetensors(file);
  const weights = new Map<string, Float32Array>();
  for (const [name, p] of expectedParams(config.model).params) {
    const t = tensors.get(`ema/${name}`) ?? tensors.get(name);
    if (!t) throw new Error(`${file}: missing weight '${name}'; it was written for another autoencoder config`);
    if (!(t.data instanceof Float32Array) || t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new Error(`${file}: weight '${name}' is [${t.shape.join(', ')}] but config.json's model needs float32 [${p.shape.join(', ')}]`);
    }
    weights.set(name, t.data);
  }
  return weights;
}

/** Writes an autoencoder folder that holds only what sampling needs: config.json and weights.safetensors. */
export async function saveAutoencoderCopy(dir: string, config: AutoencoderRunConfig, weights: ReadonlyMap<string, Float32Array>): Promise<void> {
  const store = expectedParams(config.model);
  const tensors = new Map<string, NamedTensor>([...store.params].map(([name, p]) => [name, { shape: p.shape, data: weights.get(name) as Float32Array }]));
  await saveSafetensors(path.join(dir, 'weights.safetensors'), tensors, { 'diffuse.format': 'autoencoder-weights-1' });
  await writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
}

/** A trained autoencoder with its weights baked in (ONNX Runtime pre-packs them): encode and decode in batches. */
export class AutoencoderNetwork {
  private readonly encoder: Program;
  private readonly decoder: Program;
  /** [channels, height, width] of the images it was trained on, and of their latents. */
  readonly imageShape: [number, number, number];
  readonly latentShape: [number, number, number];

  constructor(
    readonly config: AutoencoderRunConfig,
    /** The weights baked into both networks (the EMA weights of a train-vae run). */
    readonly weights: ReadonlyMap<string, Float32Array>,
    runtime: RuntimeOptions = {},
  ) {
    const m = config.model;
    this.encoder = new Program((ins) => ({ moments: encodeMoments(new ParamScope(new ParamStore(0)), m, ins.x) }), { ...runtime, weights, name: 'vae_encoder' });
    this.decoder = new Program((ins) => ({ sample: decodeLatents(new ParamScope(new ParamStore(0)), m, ins.z) }), { ...runtime, weights, name: 'vae_decoder' });
    const f = downsamplingFactor(m);
    this.imageShape = [m.inChannels, config.imageSize, config.imageSize];
    this.latentShape = [m.latentChannels, config.imageSize / f, config.imageSize / f];
  }

  /** Opens an autoencoder folder (a train-vae run or a latent run's autoencoder/). */
  static async open(dir: string, runtime: RuntimeOptions = {}): Promise<AutoencoderNetwork> {
    const config = readAutoencoderConfig(dir);
    return new AutoencoderNetwork(config, await loadAutoencoderWeights(dir, config), runtime);
  }

  /** The posterior's mean and standard deviation of n images ([n, C, H, W] in [-1, 1]), in batches of `batchSize`. */
  async encode(images: Float32Array, n: number, batchSize = 64): Promise<{ mean: Float32Array; std: Float32Array }> {
    const [c, h, w] = this.imageShape;
    const per = c * h * w;
    const lper = this.latentShape[0] * this.latentShape[1] * this.latentShape[2];
    if (images.length !== n * per) throw new Error(`encode: ${images.length} values are not ${n} images of ${c}x${h}x${w}`);
    const mean = new Float32Array(n * lper);
    const std = new Float32Array(n * lper);
    for (let at = 0; at < n; at += batchSize) {
      const k = Math.min(batchSize, n - at);
      const { moments } = await this.encoder.run({ x: { data: images.subarray(at * per, (at + k) * per), shape: [k, c, h, w] } });
      const m = moments.data as Float32Array;
      for (let i = 0; i < k; i++) {
        mean.set(m.subarray(2 * i * lper, (2 * i + 1) * lper), (at + i) * lper);
        const logvar = m.subarray((2 * i + 1) * lper, (2 * i + 2) * lper);
        for (let j = 0; j < lper; j++) std[(at + i) * lper + j] = Math.exp(0.5 * logvar[j]);
      }
    }
    return { mean, std };
  }

  /** Images ([n, C, H, W], about [-1, 1]) from n latents ([n, latent, h, w], unscaled). */
  async decode(latents: Float32Array, n: number, batchSize = 64): Promise<Float32Array> {
    const [lc, lh, lw] = this.latentShape;
    const lper = lc * lh * lw;
    if (latents.length !== n * lper) throw new Error(`decode: ${latents.length} values are not ${n} latents of ${lc}x${lh}x${lw}`);
    const per = this.imageShape[0] * this.imageShape[1] * this.imageShape[2];
    const out = new Float32Array(n * per);
    for (let at = 0; at < n; at += batchSize) {
      const k = Math.min(batchSize, n - at);
      const { sample } = await this.decoder.run({ z: { data: latents.subarray(at * lper, (at + k) * lper), shape: [k, lc, lh, lw] } });
      out.set(sample.data as Float32Array, at * per);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.encoder.release();
    await this.decoder.release();
  }
}

/**
 * Moves images in and out of a latent diffusion model's space: an autoencoder and the scaling
 * factor (the U-Net sees z * scalingFactor, as diffusers' `vae.config.scaling_factor`).
 * The sampling pipeline takes any object of this shape (the studio could supply its own).
 */
export interface LatentCodec {
  readonly imageShape: [number, number, number];
  readonly latentShape: [number, number, number];
  /** Scaled latents of n images: the posterior mean times the scaling factor (deterministic, as for img2img and inversion). */
  encode(images: Float32Array, n: number): Promise<Float32Array>;
  /** Images of n scaled latents. */
  decode(latents: Float32Array, n: number): Promise<Float32Array>;
}

/** A LatentCodec over an AutoencoderNetwork and a scaling factor. */
export function latentCodec(network: AutoencoderNetwork, scalingFactor: number): LatentCodec {
  return {
    imageShape: network.imageShape,
    latentShape: network.latentShape,
    async encode(images, n) {
      const { mean } = await network.encode(images, n);
      return mean.map((v) => v * scalingFactor);
    },
    async decode(latents, n) {
      return network.decode(latents.map((v) => v / scalingFactor), n);
    },
  };
}

/**
 * [channels, height, width] of a run's images: the autoencoder's images for a latent run (its
 * U-Net's own shape is the latents'), else the U-Net's.
 */
export function runImageShape(dir: string, config: RunConfig): [number, number, number] {
  if (!config.latent) return [config.model.inChannels, config.model.imageSize, config.model.imageSize];
  const exported = isExportFolder(dir) ? readExportFolder(dir).latent : undefined;
  if (exported) return exported.imageShape;
  const ae = readAutoencoderConfig(runPaths(dir).autoencoder);
  return [ae.model.inChannels, ae.imageSize, ae.imageSize];
}
