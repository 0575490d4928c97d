import * as path from 'node:path';
import { BETA_SCHEDULES, LossWeighting, PREDICTION_TYPES, PredictionType } from '../diffusion/index.js';
import { loadDataset } from '../data/index.js';
import { unetPreset } from '../nn/presets.js';
import { RunConfig, TRAIN_DEFAULTS } from '../train/config.js';
import { readRunConfig } from '../train/run.js';
import { train } from '../train/trainer.js';
import type { Command } from './main.js';
import { UsageError, num, oneOf } from './main.js';
import { ProgressLine, formatDuration } from './progress.js';

const SCHEDULE_ALIASES: Record<string, string> = { cosine: 'squaredcos_cap_v2' };

export const commandTrain: Command = {
  summary: 'train a denoising U-Net on MNIST, Fashion-MNIST or a folder of images',
  usage: 'diffuse train --data mnist|fashion-mnist|FOLDER [--run DIR] [--minutes M | --steps N] [options]',
  options: {
    data: { type: 'string', description: "'mnist', 'fashion-mnist' or a folder of images", default: 'mnist' },
    run: { type: 'string', description: 'run folder for config, checkpoints, log and samples (default runs/<data>)' },
    resume: { type: 'boolean', description: 'continue the run folder from its checkpoint' },
    preset: { type: 'string', description: 'model preset: tiny, mnist, reference, color64', default: 'mnist' },
    size: { type: 'string', description: 'resize folder images to SIZE x SIZE' },
    channels: { type: 'string', description: 'folder images as 1 (grey) or 3 (RGB) channels' },
    limit: { type: 'string', description: 'use at most N training images' },
    flip: { type: 'boolean', description: 'random horizontal flips' },
    steps: { type: 'string', description: 'stop after N steps in total' },
    minutes: { type: 'string', description: 'stop after M minutes (a checkpoint is written)' },
    batch: { type: 'string', description: 'batch size', default: String(TRAIN_DEFAULTS.batchSize) },
    lr: { type: 'string', description: 'peak learning rate (AdamW)', default: String(TRAIN_DEFAULTS.lr) },
    warmup: { type: 'string', description: 'linear warm-up steps', default: String(TRAIN_DEFAULTS.warmupSteps) },
    'weight-decay': { type: 'string', description: 'AdamW weight decay', default: String(TRAIN_DEFAULTS.weightDecay) },
    'clip-grad': { type: 'string', description: 'clip gradients to this global norm', default: String(TRAIN_DEFAULTS.clipGradNorm) },
    ema: { type: 'string', description: 'EMA decay of the weights used for sampling', default: String(TRAIN_DEFAULTS.emaDecay) },
    schedule: { type: 'string', description: `beta schedule: ${BETA_SCHEDULES.join(', ')} (cosine = squaredcos_cap_v2)`, default: 'linear' },
    timesteps: { type: 'string', description: 'training timesteps T', default: '1000' },
    'beta-start': { type: 'string', description: 'first beta', default: '0.0001' },
    'beta-end': { type: 'string', description: 'last beta', default: '0.02' },
    'zero-snr': { type: 'boolean', description: 'rescale the schedule to zero terminal SNR' },
    prediction: { type: 'string', description: `what the network predicts: ${PREDICTION_TYPES.join(', ')}`, default: 'epsilon' },
    loss: { type: 'string', description: 'loss weighting: mse or min_snr', default: 'mse' },
    seed: { type: 'string', description: 'seed for weights, batches and noise', default: '0' },
    'sample-every': { type: 'string', description: 'write a sample grid every N steps (0: at the end only)', default: '1000' },
    'checkpoint-every': { type: 'string', description: 'write a checkpoint every N steps', default: '500' },
    'class-cond': { type: 'boolean', description: 'condition on class labels (mnist, fashion-mnist, class subfolders) for guided sampling' },
    'p-uncond': { type: 'string', description: 'with --class-cond: probability of dropping the label (classifier-free guidance)', default: '0.1' },
    dropout: { type: 'string', description: 'dropout rate in the ResBlocks', default: '0' },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  },
  async run(v) {
    const data = String(v.data ?? 'mnist');
    const runDir = String(v.run ?? path.join('runs', path.basename(data)));
    const steps = num(v, 'steps', { int: true, min: 1 });
    const minutes = num(v, 'minutes', { min: 0 });
    if (steps === undefined && minutes === undefined) throw new UsageError('give --steps N or --minutes M (or both) so that training knows when to stop');
    const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');

    let config: RunConfig;
    if (v.resume) {
      config = readRunConfig(runDir);
    } else {
      const schedule = (SCHEDULE_ALIASES[String(v.schedule)] ?? String(v.schedule)) as RunConfig['schedule']['betaSchedule'];
      if (!BETA_SCHEDULES.includes(schedule)) throw new UsageError(`--schedule must be one of ${BETA_SCHEDULES.join(', ')} or cosine, got '${String(v.schedule)}'`);
      const model = unetPreset(String(v.preset));
      config = {
        format: 'diffuse-run-1',
        data: { source: data, size: num(v, 'size', { int: true, min: 4 }), channels: num(v, 'channels', { int: true, min: 1, max: 3 }) as 1 | 3 | undefined, limit: num(v, 'limit', { int: true, min: 1 }), flip: Boolean(v.flip) },
        preset: String(v.preset),
        model,
        schedule: {
          numTrainTimesteps: num(v, 'timesteps', { int: true, min: 2 }) as number,
          betaStart: num(v, 'beta-start', { min: 0 }) as number,
          betaEnd: num(v, 'beta-end', { min: 0, max: 1 }) as number,
          betaSchedule: schedule,
          rescaleBetasZeroSnr: Boolean(v['zero-snr']),
        },
        predictionType: oneOf<PredictionType>(v, 'prediction', PREDICTION_TYPES, 'epsilon'),
        lossWeighting: oneOf<LossWeighting>(v, 'loss', ['mse', 'min_snr'], 'mse'),
        minSnrGamma: TRAIN_DEFAULTS.minSnrGamma,
        batchSize: num(v, 'batch', { int: true, min: 1 }) as number,
        lr: num(v, 'lr', { min: 0 }) as number,
        warmupSteps: num(v, 'warmup', { int: true, min: 0 }) as number,
        weightDecay: num(v, 'weight-decay', { min: 0 }) as number,
        clipGradNorm: num(v, 'clip-grad', { min: 0 }) as number,
        emaDecay: num(v, 'ema', { min: 0, max: 0.999999 }) as number,
        seed: num(v, 'seed', { int: true, min: 0 }) as number,
        ...(v['class-cond'] ? { classConditioning: { pUncond: num(v, 'p-uncond', { min: 0, max: 0.99 }) as number } } : {}),
      };
      const dropout = num(v, 'dropout', { min: 0, max: 0.9 }) as number;
      if (dropout > 0) config.model = { ...config.model, dropout };
    }
    const dataset = await loadDataset(config.data.source, 'train', { size: config.data.size, channels: config.data.channels, limit: config.data.limit });
    if (dataset.width !== dataset.height) throw new UsageError(`${dataset.name}: images are ${dataset.width}x${dataset.height}; the U-Net needs square images (pass --size N)`);
    // A preset adapts to the data's channels and size (validated below: the size must halve evenly per level).
    if (!v.resume) {
      config.model = { ...config.model, inChannels: dataset.channels, outChannels: dataset.channels, imageSize: dataset.height };
      if (config.classConditioning) {
        if (!dataset.classNames) throw new UsageError(`${dataset.name} has no class labels; --class-cond needs mnist, fashion-mnist or a folder with one subfolder per class`);
        config.model.numClasses = dataset.classNames.length;
        config.classNames = [...dataset.classNames];
      }
    }

    const bar = new ProgressLine();
    const abort = new AbortController();
    const onSigint = () => {
      if (abort.signal.aborted) process.exit(130);
      bar.say('Ctrl-C: saving a checkpoint before exiting (press again to quit at once)');
      abort.abort();
    };
    process.on('SIGINT', onSigint);
    bar.say(`Training on ${dataset.name} (${dataset.count} images ${dataset.channels}x${dataset.height}x${dataset.width}) -> ${runDir}`);
    try {
      const result = await train(runDir, config, dataset, {
        maxSteps: steps,
        minutes,
        resume: Boolean(v.resume),
        sampleEvery: num(v, 'sample-every', { int: true, min: 0 }),
        checkpointEvery: num(v, 'checkpoint-every', { int: true, min: 1 }),
        runtime: { device },
        signal: abort.signal,
        onProgress: (p) => {
          if (p.event) return bar.say(`step ${p.step}: wrote ${path.join(runDir, p.event)}`);
          bar.update(
            `step ${p.step}${p.maxSteps ? `/${p.maxSteps}` : ''} | loss ${p.loss.toFixed(4)} | ${p.imagesPerSecond.toFixed(0)} img/s | ${formatDuration(p.elapsedSeconds)} elapsed | ${p.etaSeconds !== undefined ? `${formatDuration(p.etaSeconds)} left` : ''}`,
          );
        },
      });
      bar.done();
      bar.say(`Stopped by ${result.stoppedBy} at step ${result.steps}, loss ${result.finalLoss.toFixed(4)}. Checkpoint: ${result.checkpoint}; samples: ${path.join(runDir, 'samples', 'final.png')}`);
    } finally {
      process.off('SIGINT', onSigint);
    }
  },
};
