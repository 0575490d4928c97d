import * as path from 'node:path';
import { loadDataset } from '../data/index.js';
import { AUTOENCODER_PRESETS, autoencoderPreset, downsamplingFactor } from '../nn/autoencoder.js';
import { AUTOENCODER_DEFAULTS, AutoencoderRunConfig, readAutoencoderConfig } from '../run/autoencoder.js';
import { trainAutoencoder } from '../train/autoencoder-trainer.js';
import type { Command } from './flags.js';
import { UsageError, num, oneOf } from './flags.js';
import { ProgressLine } from './progress.js';
import { optimizerFlags, trainingSession } from './training-session.js';

export const commandTrainVae: Command = {
  summary: 'train the KL autoencoder of a latent diffusion model (then: diffuse train --vae DIR)',
  usage: 'diffuse train-vae --data emoji|FOLDER [--size 64] [--run DIR] [--minutes M | --steps N] [options]',
  options: {
    data: { type: 'string', description: "'emoji', 'mnist', 'fashion-mnist' or a folder of images", default: 'emoji' },
    run: { type: 'string', description: 'run folder for config, checkpoints, log and reconstruction previews (default runs/<data>-vae)' },
    resume: { type: 'boolean', description: 'continue the run folder from its checkpoint' },
    preset: { type: 'string', description: `autoencoder preset: ${Object.keys(AUTOENCODER_PRESETS).join(', ')} (f4: 64x64x3 -> 16x16x4; f8: -> 8x8x4)`, default: 'f4' },
    'block-channels': { type: 'string', description: "override the preset's channels per level, e.g. 16,32,64 (levels - 1 = halvings)" },
    'latent-channels': { type: 'string', description: "override the preset's latent channels" },
    size: { type: 'string', description: 'resize images to SIZE x SIZE (a multiple of the downsampling factor)', default: '64' },
    channels: { type: 'string', description: 'images as 1 (grey) or 3 (RGB) channels', default: '3' },
    limit: { type: 'string', description: 'use at most N training images' },
    flip: { type: 'boolean', description: 'random horizontal flips' },
    steps: { type: 'string', description: 'stop after N steps in total' },
    minutes: { type: 'string', description: 'stop after M minutes (a checkpoint is written)' },
    'kl-weight': { type: 'string', description: 'weight of the KL term (per pixel value, as LDM\'s per-image 1e-6)', default: String(AUTOENCODER_DEFAULTS.klWeight) },
    batch: { type: 'string', description: 'batch size', default: String(AUTOENCODER_DEFAULTS.batchSize) },
    lr: { type: 'string', description: 'peak learning rate (AdamW)', default: String(AUTOENCODER_DEFAULTS.lr) },
    warmup: { type: 'string', description: 'linear warm-up steps', default: String(AUTOENCODER_DEFAULTS.warmupSteps) },
    'weight-decay': { type: 'string', description: 'AdamW weight decay', default: String(AUTOENCODER_DEFAULTS.weightDecay) },
    'clip-grad': { type: 'string', description: 'clip gradients to this global norm', default: String(AUTOENCODER_DEFAULTS.clipGradNorm) },
    ema: { type: 'string', description: 'EMA decay of the weights used for encoding and decoding', default: String(AUTOENCODER_DEFAULTS.emaDecay) },
    seed: { type: 'string', description: 'seed for weights, batches and noise', default: '0' },
    'sample-every': { type: 'string', description: 'write a reconstruction preview every N steps (0: at the end only)', default: '500' },
    'checkpoint-every': { type: 'string', description: 'write a checkpoint every N steps', default: '500' },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  },
  async run(v) {
    const data = String(v.data ?? 'emoji');
    const runDir = String(v.run ?? path.join('runs', `${path.basename(data)}-vae`));
    const steps = num(v, 'steps', { int: true, min: 1 });
    const minutes = num(v, 'minutes', { min: 0 });
    if (steps === undefined && minutes === undefined) throw new UsageError('give --steps N or --minutes M (or both) so that training knows when to stop');
    const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
    let config: AutoencoderRunConfig;
    if (v.resume) config = readAutoencoderConfig(runDir);
    else {
      let model;
      try {
        model = autoencoderPreset(String(v.preset));
      } catch (e) {
        throw new UsageError(`--preset: ${(e as Error).message}`);
      }
      if (v['block-channels'] !== undefined) {
        const text = String(v['block-channels']);
        const xs = text.split(',').map((x) => Number(x.trim()));
        if (xs.some((x) => !Number.isInteger(x) || x < 1)) throw new UsageError(`--block-channels must be comma-separated positive integers, got '${text}'`);
        model.blockOutChannels = xs;
      }
      model.latentChannels = num(v, 'latent-channels', { int: true, min: 1 }) ?? model.latentChannels;
      const channels = num(v, 'channels', { int: true, min: 1, max: 3 }) as number;
      if (channels !== 1 && channels !== 3) throw new UsageError(`--channels must be 1 or 3, got ${channels}`);
      const size = num(v, 'size', { int: true, min: 4 }) as number;
      const f = downsamplingFactor(model);
      if (size % f !== 0) throw new UsageError(`--size ${size} is not a multiple of the ${String(v.preset)} preset's downsampling factor ${f}`);
      config = {
        format: 'diffuse-autoencoder-1',
        data: { source: data, size, channels, limit: num(v, 'limit', { int: true, min: 1 }), flip: Boolean(v.flip) },
        preset: String(v.preset),
        model: { ...model, inChannels: channels },
        imageSize: size,
        klWeight: num(v, 'kl-weight', { min: 0 }) as number,
        ...optimizerFlags(v),
      };
    }
    const bar = new ProgressLine();
    if (config.data.source === 'emoji') bar.say(`Loading and resizing ${config.data.limit ? `up to ${config.data.limit}` : 'the 3,035 training'} emoji images...`);
    const dataset = await loadDataset(config.data.source, 'train', { size: config.data.size, channels: config.data.channels, limit: config.data.limit });
    const f = downsamplingFactor(config.model);
    bar.say(
      `Training a ${config.preset ?? 'custom'} autoencoder on ${dataset.name} (${dataset.count} images ${dataset.channels}x${dataset.height}x${dataset.width} -> latents ` +
        `${config.model.latentChannels}x${dataset.height / f}x${dataset.width / f}) -> ${runDir}`,
    );
    const result = await trainingSession(v, runDir, bar, { steps, minutes }, (loop) =>
      trainAutoencoder(runDir, config, dataset, { ...loop, resume: Boolean(v.resume), runtime: { device } }),
    );
    const q = result.quality;
    bar.say(`Stopped by ${result.stoppedBy} at step ${result.steps}, loss ${result.finalLoss.toFixed(4)}. Reconstruction of ${q.images} training images: PSNR ${q.psnr.toFixed(2)} dB, mean |error| ${q.l1.toFixed(4)}.`);
    bar.say(`Checkpoint: ${result.checkpoint}; previews (originals above, reconstructions below): ${path.join(runDir, 'samples', 'final.png')}`);
    bar.say(`Next: diffuse train --vae ${runDir} --data ${config.data.source} --size ${config.imageSize} --preset color32 --minutes M`);
  },
};
