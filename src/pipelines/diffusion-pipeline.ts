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
 * SamplingPipeline, which the browser studio runs too; this file loads a run in Node, or what
 * `diffuse export` made of one:
 *
 *   const pipe = await DiffusionPipeline.fromPretrained('models/mnist');   // model_index.json, unet/, scheduler/, ...
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { folderFiles } from '../components/model-folder.js';
import { readSettingsJson } from '../data/safe-file.js';
import type { Device, RuntimeOptions } from '../engine/index.js';
import type { RunConfig } from '../run/config.js';
import { RunNetwork, loadSamplingWeights, openTextConditioner, readRunConfig, runModelHash, runPaths, weightsHash } from '../run/run.js';
import { AutoencoderNetwork, LatentCodec, latentCodec } from '../run/autoencoder.js';
import { isExportFolder } from '../run/export-folder.js';
import { DIFFUSE_PIPELINE_CLASS } from '../run/export-layout.js';
import type { TextConditioner } from '../run/text.js';
import { openExportedModel } from './exported-model.js';
import type { ConditionedNetwork } from './guidance.js';
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
    /** The denoiser: the run's graph compiled here, or an export's unet/model.onnx. */
    private readonly compiled: ConditionedNetwork & { release(): Promise<void> },
    /** The run's text conditioning (tokenizer, encoder) for text-conditional runs. */
    readonly text?: TextConditioner,
    /** Whether release() frees `text` (fromRun opened it) or leaves it to the caller (fromWeights). */
    private readonly ownsText = false,
    /** SHA-256 of the weights (see weightsHash): which exact model this is (a latent run opened with fromRun: the U-Net and its autoencoder). */
    readonly modelHash = '',
    codec?: LatentCodec,
    /** A latent run's autoencoder that fromRun or fromPretrained opened (released with the pipeline). */
    private readonly ownedAutoencoder?: { release(): Promise<void> },
  ) {
    super(config, compiled, codec);
  }

  /**
   * Loads a run folder: config.json, the checkpoint's EMA weights, tokenizer.json and the text
   * encoder, and for a latent run its autoencoder/ folder.
   */
  static async fromRun(dir: string, opts: PipelineOptions = {}): Promise<DiffusionPipeline> {
    // What `diffuse export` wrote stands in for its run wherever a run is asked for.
    if (isExportFolder(dir)) return DiffusionPipeline.fromPretrained(dir, opts);
    const config = readRunConfig(dir);
    const runtime: RuntimeOptions = { ...opts.runtime, ...(opts.device ? { device: opts.device } : {}) };
    const text = await openTextConditioner(dir, config, runtime);
    let autoencoder: AutoencoderNetwork | undefined;
    try {
      const weights = await loadSamplingWeights(dir, config, text);
      autoencoder = config.latent ? await AutoencoderNetwork.open(runPaths(dir).autoencoder, runtime) : undefined;
      const codec = autoencoder && latentCodec(autoencoder, (config.latent as { scalingFactor: number }).scalingFactor);
      // A latent run's images are the decoder's: its hash covers the autoencoder's weights too.
      return new DiffusionPipeline(config, new RunNetwork(config, weights, runtime, text), text, true, runModelHash(weights, autoencoder?.weights), codec, autoencoder);
    } catch (e) {
      await text?.release();
      await autoencoder?.release();
      throw e;
    }
  }

  /**
   * Loads a model folder that `diffuse export` wrote (the diffusers layout: model_index.json,
   * unet/, scheduler/, and vae_encoder/ and vae_decoder/ for a latent run, tokenizer/ for a text
   * run): the same images as fromRun on the run it came from. A Stable Diffusion folder (Optimum's
   * export) is StableDiffusionPipeline.fromPretrained's.
   */
  static async fromPretrained(dir: string, opts: PipelineOptions = {}): Promise<DiffusionPipeline> {
    if (!isExportFolder(dir)) {
      if (!existsSync(dir)) throw new Error(`${dir}: no such model folder`);
      const index = path.join(dir, 'model_index.json');
      const cls = existsSync(index) ? String((readSettingsJson(index) as { _class_name?: unknown })?._class_name ?? '') : '';
      if (/^\w*StableDiffusion\w*$/.test(cls)) throw new Error(`${dir}: a ${cls} folder; open it with StableDiffusionPipeline.fromPretrained`);
      throw new Error(`${dir}: not a Diffuse export (no model_index.json naming ${DIFFUSE_PIPELINE_CLASS}); write one with 'diffuse export --run RUN --out ${dir}'`);
    }
    const files = folderFiles(dir, { device: opts.device ?? opts.runtime?.device, ort: opts.runtime?.ort });
    const config = readRunConfig(dir);
    const opened = await openExportedModel(files);
    return new DiffusionPipeline(config, opened.network, undefined, false, opened.manifest.modelHash, opened.codec, opened.codec);
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
