/**
 * A run as standard files for other runtimes (the browser studio, onnxruntime in Python, any ONNX
 * tool): the denoiser as an inference ONNX graph with its EMA weights baked in, the same weights
 * as safetensors, and a JSON file with what a caller needs to drive it. A latent run also gets its
 * autoencoder's encoder and decoder as ONNX graphs: its images are decoder(latents / scalingFactor).
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { NamedTensor, ParamScope, ParamStore, compileModel, input, saveSafetensors, writeFileAtomic } from '../engine/index.js';
import { decodeLatents, downsamplingFactor, encodeMoments } from '../nn/autoencoder.js';
import { loadAutoencoderWeights, readAutoencoderConfig } from './autoencoder.js';
import type { RunConfig } from './config.js';
import { loadSamplingWeights, modelInputs, openTextConditioner, readRunConfig, runModel, runPaths, weightsHash } from './run.js';
import { tokenizerConfigPath, tokenizerPath } from './text.js';

/** The files an export writes, inside its folder. */
export const EXPORT_FILES = { model: 'model.onnx', weights: 'weights.safetensors', config: 'export.json', encoder: 'vae_encoder.onnx', decoder: 'vae_decoder.onnx' } as const;

/** export.json: how to call model.onnx. */
export interface ExportManifest {
  format: 'diffuse-export-1';
  /** The batch size the graph was compiled for (ONNX shapes here are static). */
  batch: number;
  inputs: { name: string; shape: number[]; dtype: string }[];
  outputs: { name: string; shape: number[]; dtype: string }[];
  /** What the output is: eps, v or x_0 (the run's prediction type). */
  predictionType: RunConfig['predictionType'];
  /** SHA-256 of the weights (as DiffusionPipeline.modelHash). */
  modelHash: string;
  /** The run's config.json, whole: schedule, model, conditioning. */
  run: RunConfig;
  /**
   * A latent run's autoencoder: vae_encoder.onnx (x [batch, C, H, W] in [-1, 1] -> moments: the
   * posterior's mean and log-variance stacked on channels) and vae_decoder.onnx (z -> sample);
   * model.onnx denoises z x scalingFactor.
   */
  latent?: { scalingFactor: number; imageShape: [number, number, number]; latentShape: [number, number, number]; encoder: string; decoder: string };
}

/** Writes model.onnx, weights.safetensors and export.json (and a text run's tokenizer files) into `out`. */
export async function exportRun(runDir: string, out: string, o: { batch?: number } = {}): Promise<ExportManifest> {
  const batch = o.batch ?? 1;
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch must be a positive integer, got ${o.batch}`);
  const config = readRunConfig(runDir);
  const text = await openTextConditioner(runDir, config);
  try {
    const weights = await loadSamplingWeights(runDir, config, text);
    const inputs = modelInputs(config, batch, text);
    const store = new ParamStore(0);
    const result = runModel(new ParamScope(store), config, inputs, text);
    const model = compileModel({ inputs: Object.values(inputs), outputs: { out: result }, initializers: weights, name: 'diffuse-denoiser' });
    await mkdir(out, { recursive: true });
    await writeFileAtomic(path.join(out, EXPORT_FILES.model), model.bytes);
    const tensors = new Map<string, NamedTensor>();
    for (const [name, p] of store.params) tensors.set(name, { data: weights.get(name) as Float32Array, shape: p.shape });
    const manifest: ExportManifest = {
      format: 'diffuse-export-1',
      batch,
      inputs: model.inputs.map((s) => ({ name: s.name, shape: [...s.shape], dtype: s.dtype })),
      outputs: model.outputs.map((s) => ({ name: s.name, shape: [...s.shape], dtype: s.dtype })),
      predictionType: config.predictionType,
      modelHash: weightsHash(weights),
      run: config,
    };
    // The denoiser alone would mislead: a latent run's images also need its autoencoder and scaling factor.
    if (config.latent) manifest.latent = await exportAutoencoder(runDir, out, batch, config.latent.scalingFactor);
    await saveSafetensors(path.join(out, EXPORT_FILES.weights), tensors, { format: 'diffuse-export-1', model_hash: manifest.modelHash });
    await writeFileAtomic(path.join(out, EXPORT_FILES.config), `${JSON.stringify(manifest, null, 1)}\n`);
    for (const f of [tokenizerPath(runDir), tokenizerConfigPath(runDir)]) if (existsSync(f)) await copyFile(f, path.join(out, path.basename(f)));
    return manifest;
  } finally {
    await text?.release();
  }
}

/** A latent run's autoencoder (its copy in the run folder) as two inference graphs with the weights baked in. */
async function exportAutoencoder(runDir: string, out: string, batch: number, scalingFactor: number): Promise<NonNullable<ExportManifest['latent']>> {
  const dir = runPaths(runDir).autoencoder;
  const ae = readAutoencoderConfig(dir);
  const weights = await loadAutoencoderWeights(dir, ae);
  const m = ae.model;
  const f = downsamplingFactor(m);
  const imageShape: [number, number, number] = [m.inChannels, ae.imageSize, ae.imageSize];
  const latentShape: [number, number, number] = [m.latentChannels, ae.imageSize / f, ae.imageSize / f];
  const x = input('x', [batch, ...imageShape]);
  const encoder = compileModel({ inputs: [x], outputs: { moments: encodeMoments(new ParamScope(new ParamStore(0)), m, x) }, initializers: weights, name: 'diffuse-vae-encoder' });
  const z = input('z', [batch, ...latentShape]);
  const decoder = compileModel({ inputs: [z], outputs: { sample: decodeLatents(new ParamScope(new ParamStore(0)), m, z) }, initializers: weights, name: 'diffuse-vae-decoder' });
  await writeFileAtomic(path.join(out, EXPORT_FILES.encoder), encoder.bytes);
  await writeFileAtomic(path.join(out, EXPORT_FILES.decoder), decoder.bytes);
  return { scalingFactor, imageShape, latentShape, encoder: EXPORT_FILES.encoder, decoder: EXPORT_FILES.decoder };
}
