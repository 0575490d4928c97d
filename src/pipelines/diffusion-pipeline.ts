/**
 * DiffusionPipeline: one object for everything a trained run can do, as diffusers' pipelines
 * are for theirs.
 *
 *   const pipe = await DiffusionPipeline.fromRun('runs/mnist');
 *   const { data, count, shape } = await pipe.generate({ count: 16, seed: 7 });
 *   await saveGrid({ data, count, shape }, 'grid.png');
 *   await pipe.release();
 *
 * The sampling procedures (generate, img2img, inpaint, invert, predictNoise) live in
 * SamplingPipeline, which the browser studio runs too; this file loads a run in Node.
 */
import type { Device, RuntimeOptions } from '../engine/index.js';
import type { RunConfig } from '../run/config.js';
import { RunNetwork, loadSamplingWeights, openTextConditioner, readRunConfig, runPaths, weightsHash } from '../run/run.js';
import { AutoencoderNetwork, LatentCodec, latentCodec } from '../run/autoencoder.js';
import type { TextConditioner } from '../run/text.js';
import { SamplingPipeline } from './sampling-pipeline.js';

export interface PipelineOptions {
  /** 'cpu' (default) or 'cuda'. */
  device?: Device;
  runtime?: RuntimeOptions;
}

/** A run loaded in Node: its network compiled for onnxruntime-node, with every SamplingPipeline procedure. */
export class DiffusionPipeline extends SamplingPipeline {
  private constructor(
    config: RunConfig,
    private readonly compiled: RunNetwork,
    /** The run's text conditioning (tokenizer, encoder) for text-conditional runs. */
    readonly text?: TextConditioner,
    /** Whether release() frees `text` (fromRun opened it) or leaves it to the caller (fromWeights). */
    private readonly ownsText = false,
    /** SHA-256 of the weights (see weightsHash): which exact model this is (a latent run opened with fromRun: the U-Net and its autoencoder). */
    readonly modelHash = '',
    codec?: LatentCodec,
    /** A latent run's autoencoder that fromRun opened (released with the pipeline). */
    private readonly ownedAutoencoder?: AutoencoderNetwork,
  ) {
    super(config, compiled, codec);
  }

  /**
   * Loads a run folder: config.json, the checkpoint's EMA weights, tokenizer.json and the text
   * encoder, and for a latent run its autoencoder/ folder.
   */
  static async fromRun(dir: string, opts: PipelineOptions = {}): Promise<DiffusionPipeline> {
    const config = readRunConfig(dir);
    const runtime: RuntimeOptions = { ...opts.runtime, ...(opts.device ? { device: opts.device } : {}) };
    const text = await openTextConditioner(dir, config, runtime);
    let autoencoder: AutoencoderNetwork | undefined;
    try {
      const weights = await loadSamplingWeights(dir, config, text);
      autoencoder = config.latent ? await AutoencoderNetwork.open(runPaths(dir).autoencoder, runtime) : undefined;
      const codec = autoencoder && latentCodec(autoencoder, (config.latent as { scalingFactor: number }).scalingFactor);
      // A latent run's images are the decoder's: its hash covers the autoencoder's weights too.
      const hashed = autoencoder ? new Map([...weights, ...[...autoencoder.weights].map(([k, w]) => [`autoencoder/${k}`, w] as const)]) : weights;
      return new DiffusionPipeline(config, new RunNetwork(config, weights, runtime, text), text, true, weightsHash(hashed), codec, autoencoder);
    } catch (e) {
      await text?.release();
      await autoencoder?.release();
      throw e;
    }
  }

  /** The modelHash of a run folder (the pipeline is loaded for it and let go). */
  static async modelHashOf(dir: string): Promise<string> {
    const pipe = await DiffusionPipeline.fromRun(dir);
    try {
      return pipe.modelHash;
    } finally {
      await pipe.release();
    }
  }

  /** A pipeline over weights in memory (the trainer's previews); `text` and `codec` stay the caller's to release. */
  static fromWeights(config: RunConfig, weights: ReadonlyMap<string, Float32Array>, opts: PipelineOptions & { text?: TextConditioner; codec?: LatentCodec } = {}): DiffusionPipeline {
    const runtime: RuntimeOptions = { ...opts.runtime, ...(opts.device ? { device: opts.device } : {}) };
    if (config.latent && !opts.codec) throw new Error('fromWeights: this is a latent run; pass its codec (latentCodec(autoencoder, config.latent.scalingFactor))');
    return new DiffusionPipeline(config, new RunNetwork(config, weights, runtime, opts.text), opts.text, false, weightsHash(weights), opts.codec);
  }

  /** Frees the compiled network (and the text encoder and autoencoder of a run loaded with fromRun). */
  async release(): Promise<void> {
    await this.compiled.release();
    if (this.ownsText) await this.text?.release();
    await this.ownedAutoencoder?.release();
  }
}
