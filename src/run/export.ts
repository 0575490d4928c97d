/**
 * A run as a model folder in the diffusers layout (export-layout.ts): the denoiser, and a latent
 * run's autoencoder, as inference ONNX graphs with the EMA weights baked in; the scheduler config
 * in diffusers' names; the tokenizer. `DiffusionPipeline.fromPretrained`, every command's
 * `--model DIR` and the browser studio load it; onnxruntime in any language runs its graphs.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { NamedTensor, ParamScope, ParamStore, Tensor, compileModel, input, saveSafetensors, writeFileAtomic } from '../engine/index.js';
import { decodeLatents, downsamplingFactor, encodeMoments } from '../nn/autoencoder.js';
import { unet } from '../nn/unet.js';
import { transformerTextEncoder } from '../text/encoder.js';
import { loadAutoencoderWeights, readAutoencoderConfig } from './autoencoder.js';
import { EXPORT_FORMAT, EXPORT_INPUT_NAMES, EXPORT_OUTPUT_NAME, ExportManifest, modelIndexOf, schedulerConfigJson } from './export-layout.js';
import { loadSamplingWeights, modelInputs, openTextConditioner, readRunConfig, runModel, runModelHash, runPaths } from './run.js';
import { schedulerConfigOf } from './sampling-defaults.js';
import { tokenizerConfigPath, tokenizerPath } from './text.js';

/** Writes the run folder `runDir` as a model folder `out` (see export-layout.ts). */
export async function exportRun(runDir: string, out: string, o: { batch?: number } = {}): Promise<ExportManifest> {
  const batch = o.batch ?? 1;
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch must be a positive integer, got ${o.batch}`);
  const config = readRunConfig(runDir);
  const text = await openTextConditioner(runDir, config);
  try {
    const weights = await loadSamplingWeights(runDir, config, text);
    const store = new ParamStore(0);
    const trained = config.text?.encoder.kind === 'transformer' ? config.text.encoder : undefined;
    // The run's feeds under the export's names (sample, timestep, class_labels, ...); runModel reads them by Diffuse's.
    // A trained text encoder becomes its own graph, as in diffusers: the U-Net then takes its states, and a prompt is encoded once, not at every step.
    const inputs: Record<string, Tensor> = {};
    for (const [key, t] of Object.entries(modelInputs(config, batch, text))) if (!(trained && key === 'ids')) inputs[key] = input(EXPORT_INPUT_NAMES[key] ?? key, t.shape, t.dtype);
    let result: Tensor;
    if (trained) {
      const L = trained.maxLength;
      const states = { states: input(EXPORT_INPUT_NAMES.text_states, [batch, L, trained.width]), mask: input(EXPORT_INPUT_NAMES.text_mask, [batch, L]), pooled: input(EXPORT_INPUT_NAMES.text_pooled, [batch, trained.width]) };
      Object.assign(inputs, { text_states: states.states, text_mask: states.mask, text_pooled: states.pooled });
      result = unet(new ParamScope(store), config.model, inputs.x, inputs.t, { text: states });
      const ids = input('input_ids', [batch, L], 'int64');
      const encoded = transformerTextEncoder(new ParamScope(store).child('text'), trained, ids);
      const encoder = compileModel({ inputs: [ids], outputs: { last_hidden_state: encoded.states, attention_mask: encoded.mask, pooler_output: encoded.pooled }, initializers: weights, name: 'diffuse-text-encoder' });
      await mkdir(path.join(out, 'text_encoder'), { recursive: true });
      await writeFileAtomic(path.join(out, 'text_encoder', 'model.onnx'), encoder.bytes);
    } else {
      result = runModel(new ParamScope(store), config, inputs, text);
    }
    const model = compileModel({ inputs: Object.values(inputs), outputs: { [EXPORT_OUTPUT_NAME]: result }, initializers: weights, name: 'diffuse-unet' });
    for (const folder of ['unet', 'scheduler']) await mkdir(path.join(out, folder), { recursive: true });
    await writeFileAtomic(path.join(out, 'unet', 'model.onnx'), model.bytes);
    const autoencoder = config.latent ? await exportAutoencoder(runDir, out, batch, config.latent.scalingFactor) : undefined;
    const manifest: ExportManifest = {
      format: EXPORT_FORMAT,
      batch,
      inputs: model.inputs.map((s) => ({ name: s.name, shape: [...s.shape], dtype: s.dtype })),
      outputs: model.outputs.map((s) => ({ name: s.name, shape: [...s.shape], dtype: s.dtype })),
      predictionType: config.predictionType,
      modelHash: runModelHash(weights, autoencoder?.weights),
      run: config,
      ...(autoencoder ? { latent: autoencoder.latent } : {}),
      ...(config.text ? { text: { tokenizer: true, encoder: config.text.encoder.kind === 'onnx' ? ('frozen' as const) : ('trained' as const) } } : {}),
    };
    const tensors = new Map<string, NamedTensor>();
    for (const [name, p] of store.params) tensors.set(name, { data: weights.get(name) as Float32Array, shape: p.shape });
    await saveSafetensors(path.join(out, 'unet', 'weights.safetensors'), tensors, { format: EXPORT_FORMAT, model_hash: manifest.modelHash });
    const m = config.model;
    const { format: _f, modelHash: _h, batch: _b, ...diffuse } = manifest;
    const unetConfig = { _class_name: 'UNet', sample_size: m.imageSize, in_channels: m.inChannels, out_channels: m.outChannels, ...(m.numClasses !== undefined ? { num_class_embeds: m.numClasses + 1 } : {}), diffuse };
    await writeFileAtomic(path.join(out, 'unet', 'config.json'), `${JSON.stringify(unetConfig, null, 1)}\n`);
    await writeFileAtomic(path.join(out, 'scheduler', 'scheduler_config.json'), `${JSON.stringify(schedulerConfigJson(config, schedulerConfigOf(config).clipSample ?? true), null, 1)}\n`);
    if (config.text) {
      await mkdir(path.join(out, 'tokenizer'), { recursive: true });
      for (const f of [tokenizerPath(runDir), tokenizerConfigPath(runDir)]) if (existsSync(f)) await copyFile(f, path.join(out, 'tokenizer', path.basename(f)));
      if (config.text.encoder.kind === 'onnx') {
        await mkdir(path.join(out, 'text_encoder'), { recursive: true });
        await copyFile(config.text.encoder.file, path.join(out, 'text_encoder', 'model.onnx'));
      }
    }
    // Last: a folder with model_index.json is a complete export.
    await writeFileAtomic(path.join(out, 'model_index.json'), `${JSON.stringify(modelIndexOf(manifest), null, 1)}\n`);
    return manifest;
  } finally {
    await text?.release();
  }
}

/** A latent run's autoencoder (its copy in the run folder) as two inference graphs with the weights baked in. */
async function exportAutoencoder(runDir: string, out: string, batch: number, scalingFactor: number) {
  const dir = runPaths(runDir).autoencoder;
  const ae = readAutoencoderConfig(dir);
  const weights = await loadAutoencoderWeights(dir, ae);
  const m = ae.model;
  const f = downsamplingFactor(m);
  const imageShape: [number, number, number] = [m.inChannels, ae.imageSize, ae.imageSize];
  const latentShape: [number, number, number] = [m.latentChannels, ae.imageSize / f, ae.imageSize / f];
  const x = input('sample', [batch, ...imageShape]);
  const encoder = compileModel({ inputs: [x], outputs: { latent_parameters: encodeMoments(new ParamScope(new ParamStore(0)), m, x) }, initializers: weights, name: 'diffuse-vae-encoder' });
  const z = input('latent_sample', [batch, ...latentShape]);
  const decoder = compileModel({ inputs: [z], outputs: { sample: decodeLatents(new ParamScope(new ParamStore(0)), m, z) }, initializers: weights, name: 'diffuse-vae-decoder' });
  const vaeConfig = { _class_name: 'AutoencoderKL', in_channels: m.inChannels, out_channels: m.inChannels, latent_channels: m.latentChannels, sample_size: ae.imageSize, scaling_factor: scalingFactor };
  for (const [folder, graph] of [['vae_encoder', encoder], ['vae_decoder', decoder]] as const) {
    await mkdir(path.join(out, folder), { recursive: true });
    await writeFileAtomic(path.join(out, folder, 'model.onnx'), graph.bytes);
    await writeFileAtomic(path.join(out, folder, 'config.json'), `${JSON.stringify(vaeConfig, null, 1)}\n`);
  }
  return { weights, latent: { scalingFactor, imageShape, latentShape } };
}
