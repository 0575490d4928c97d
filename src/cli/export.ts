/** `diffuse export`: a run as model.onnx + weights.safetensors + export.json for other runtimes. */
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { EXPORT_FILES, exportRun } from '../run/export.js';
import type { Command } from './flags.js';
import { UsageError, num } from './flags.js';

export const commandExport: Command = {
  summary: 'write a run as a standard inference ONNX file, safetensors weights and export.json (for the browser, Python, any ONNX tool)',
  usage: 'diffuse export --run DIR --out DIR [--batch 1] [--force]',
  options: {
    run: { type: 'string', description: 'the run folder' },
    out: { type: 'string', description: 'the folder to write (model.onnx, weights.safetensors, export.json)' },
    batch: { type: 'string', description: 'the batch size of the graph (its shapes are static)', default: '1' },
    force: { type: 'boolean', description: 'overwrite an existing export in --out' },
  },
  async run(v) {
    if (!v.run) throw new UsageError('--run DIR is required');
    if (!v.out) throw new UsageError('--out DIR is required');
    const out = String(v.out);
    const batch = num(v, 'batch', { int: true, min: 1 }) as number;
    if (existsSync(out) && readdirSync(out).includes(EXPORT_FILES.model) && !v.force) throw new UsageError(`${out} already holds an export; pass --force to replace it`);
    const started = Date.now();
    const m = await exportRun(String(v.run), out, { batch });
    process.stderr.write(
      `wrote ${path.join(out, EXPORT_FILES.model)} (inputs ${m.inputs.map((i) => `${i.name} [${i.shape.join(', ')}]`).join(', ')}; output ${m.outputs.map((o) => `${o.name} [${o.shape.join(', ')}]`).join(', ')}: the ${m.predictionType} prediction), ${m.latent ? `${m.latent.encoder} and ${m.latent.decoder} (the autoencoder: images are the decoder's output for latents / ${m.latent.scalingFactor}), ` : ''}${EXPORT_FILES.weights} and ${EXPORT_FILES.config} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    );
  },
};
