/** `diffuse export`: a run as a model folder in the diffusers layout (ONNX components, scheduler config, tokenizer). */
import { existsSync, readdirSync } from 'node:fs';
import { exportRun } from '../run/export.js';
import type { Command } from './flags.js';
import { UsageError, num } from './flags.js';

export const commandExport: Command = {
  summary: 'write a run as a model folder in the diffusers layout (ONNX components) that --model, DiffusionPipeline.fromPretrained, the studio and any ONNX runtime load',
  usage: 'diffuse export --run DIR --out DIR [--batch 1] [--force]',
  options: {
    run: { type: 'string', description: 'the run folder' },
    out: { type: 'string', description: 'the model folder to write (model_index.json, unet/, scheduler/, and vae_encoder/ + vae_decoder/ or tokenizer/ where the run has them)' },
    batch: { type: 'string', description: 'the batch size of the graphs (their shapes are static; larger batches run in pieces)', default: '1' },
    force: { type: 'boolean', description: 'overwrite an existing export in --out' },
  },
  async run(v) {
    if (!v.run) throw new UsageError('--run DIR is required');
    if (!v.out) throw new UsageError('--out DIR is required');
    const out = String(v.out);
    const batch = num(v, 'batch', { int: true, min: 1 }) as number;
    if (existsSync(out) && readdirSync(out).includes('model_index.json') && !v.force) throw new UsageError(`${out} already holds a model folder; pass --force to replace it`);
    const started = Date.now();
    const m = await exportRun(String(v.run), out, { batch });
    const parts = [
      `unet/model.onnx (inputs ${m.inputs.map((i) => `${i.name} [${i.shape.join(', ')}]`).join(', ')}; output ${m.outputs.map((o) => `${o.name} [${o.shape.join(', ')}]`).join(', ')}: the ${m.predictionType} prediction)`,
      ...(m.latent ? [`vae_encoder/ and vae_decoder/ (the autoencoder: images are the decoder's output for latents / ${m.latent.scalingFactor})`] : []),
      ...(m.text ? [`tokenizer/ and text_encoder/ (${m.text.encoder === 'trained' ? 'the trained encoder as its own graph' : 'a copy of the frozen encoder'})`] : []),
      'scheduler/scheduler_config.json',
    ];
    process.stderr.write(`wrote ${out}: ${parts.join(', ')} in ${((Date.now() - started) / 1000).toFixed(1)} s; use it with --model ${out} or DiffusionPipeline.fromPretrained\n`);
  },
};
