import * as path from 'node:path';
import { BETA_SCHEDULES, LossWeighting, PREDICTION_TYPES, PredictionType } from '../diffusion/index.js';
import { loadDataset } from '../data/index.js';
import { unetPreset } from '../nn/presets.js';
import { BpeTokenizer, TextTokenizer } from '../text/tokenizer.js';
import { readTokenizerFile } from '../text/tokenizer-folder.js';
import { TextConditioner } from '../run/text.js';
import { RunConfig, TIMESTEP_SAMPLINGS, TRAIN_DEFAULTS, TimestepSampling } from '../run/config.js';
import { readRunConfig } from '../run/run.js';
import { train } from '../train/trainer.js';
import { AutoencoderNetwork } from '../run/autoencoder.js';
import { LatentCache, encodeDataset, scalingFactorOf } from '../train/latents.js';
import { existsSync, readdirSync } from 'node:fs';
import type { Command } from './flags.js';
import { UsageError, num, oneOf } from './flags.js';
import { ProgressLine, formatDuration } from './progress.js';
import { optimizerFlags, trainingSession } from './training-session.js';

const SCHEDULE_ALIASES: Record<string, string> = { cosine: 'squaredcos_cap_v2' };

/** --base-channels, --channel-mults, --res-blocks, --attention, --zero-init, --scale-shift-norm: changes to the preset (validated with the model). */
function modelOverrides(v: Record<string, unknown>): Partial<RunConfig['model']> {
  const list = (flag: string): number[] | undefined => {
    if (v[flag] === undefined) return undefined;
    const text = String(v[flag]);
    if (flag === 'attention' && text === 'none') return [];
    const xs = text.split(',').map((x) => Number(x.trim()));
    if (xs.some((x) => !Number.isInteger(x) || x < 1)) throw new UsageError(`--${flag} must be comma-separated positive integers, got '${text}'`);
    return xs;
  };
  const out: Partial<RunConfig['model']> = {};
  const base = num(v, 'base-channels', { int: true, min: 1 });
  if (base !== undefined) out.baseChannels = base;
  const mults = list('channel-mults');
  if (mults) out.channelMults = mults;
  const blocks = num(v, 'res-blocks', { int: true, min: 1 });
  if (blocks !== undefined) out.resBlocks = blocks;
  const attention = list('attention');
  if (attention) out.attentionResolutions = attention;
  if (v['zero-init']) out.zeroInit = true;
  if (v['scale-shift-norm']) out.scaleShiftNorm = true;
  return out;
}

function snrGammaOf(v: Record<string, unknown>): number {
  const gamma = num(v, 'snr-gamma') as number;
  if (!(gamma > 0)) throw new UsageError(`--snr-gamma must be a number > 0, got '${String(v['snr-gamma'])}'`);
  return gamma;
}

/** --lr-decay cosine decays over the run's --steps, so it needs them. */
function lrDecayOf(v: Record<string, unknown>, steps: number | undefined): Pick<RunConfig, 'lrDecay'> {
  const kind = oneOf(v, 'lr-decay', ['constant', 'cosine'] as const, 'constant');
  if (kind === 'constant') return {};
  if (steps === undefined) throw new UsageError('--lr-decay cosine decays over the run: give --steps N (with --minutes M as well if you want a time limit)');
  const warmup = num(v, 'warmup', { int: true, min: 0 }) as number;
  if (steps <= warmup) throw new UsageError(`--lr-decay cosine: --steps ${steps} must exceed --warmup ${warmup}`);
  return { lrDecay: { steps, minRatio: num(v, 'lr-min', { min: 0, max: 1 }) as number } };
}

export const commandTrain: Command = {
  summary: 'train a denoising U-Net on MNIST, Fashion-MNIST, emoji or a folder of images, optionally conditioned on labels or captions',
  usage: 'diffuse train --data mnist|fashion-mnist|emoji|FOLDER [--text | --class-cond] [--run DIR] [--minutes M | --steps N] [options]',
  options: {
    data: { type: 'string', description: "'mnist', 'fashion-mnist', 'emoji' or a folder of images", default: 'mnist' },
    run: { type: 'string', description: 'run folder for config, checkpoints, log and samples (default runs/<data>)' },
    resume: { type: 'boolean', description: 'continue the run folder from its checkpoint' },
    preset: { type: 'string', description: 'model preset: tiny, mnist, color32, reference, color64', default: 'mnist' },
    size: { type: 'string', description: 'resize folder images to SIZE x SIZE' },
    channels: { type: 'string', description: 'folder images as 1 (grey) or 3 (RGB) channels' },
    limit: { type: 'string', description: 'use at most N training images' },
    flip: { type: 'boolean', description: 'random horizontal flips' },
    steps: { type: 'string', description: 'stop after N steps in total' },
    minutes: { type: 'string', description: 'stop after M minutes (a checkpoint is written)' },
    batch: { type: 'string', description: 'batch size', default: String(TRAIN_DEFAULTS.batchSize) },
    lr: { type: 'string', description: 'peak learning rate (AdamW)', default: String(TRAIN_DEFAULTS.lr) },
    warmup: { type: 'string', description: 'linear warm-up steps', default: String(TRAIN_DEFAULTS.warmupSteps) },
    'lr-decay': { type: 'string', description: "after warm-up: constant, or cosine (down to --lr-min x lr at --steps; needs --steps)", default: 'constant' },
    'lr-min': { type: 'string', description: 'with --lr-decay cosine: final learning rate as a fraction of --lr', default: '0' },
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
    'snr-gamma': { type: 'string', description: 'with --loss min_snr: the gamma of min(SNR, gamma) (Hang et al. 2023; lower puts more weight on the noisier timesteps)', default: String(TRAIN_DEFAULTS.minSnrGamma) },
    't-sampling': { type: 'string', description: "timesteps of a batch: uniform (independent) or stratified (one per 1/B of [0, T): less noisy loss)", default: 'uniform' },
    seed: { type: 'string', description: 'seed for weights, batches and noise', default: '0' },
    'sample-every': { type: 'string', description: 'write a sample grid every N steps (0: at the end only)', default: '1000' },
    'checkpoint-every': { type: 'string', description: 'write a checkpoint every N steps', default: '500' },
    'class-cond': { type: 'boolean', description: 'condition on class labels (mnist, fashion-mnist, class subfolders) for guided sampling' },
    text: { type: 'boolean', description: 'condition on captions (mnist, fashion-mnist, emoji, or a folder with img.txt / metadata.jsonl) through a text encoder' },
    'p-uncond': { type: 'string', description: 'with --class-cond or --text: probability of dropping the condition (classifier-free guidance)', default: '0.1' },
    'text-width': { type: 'string', description: 'with --text: width of the jointly trained transformer encoder', default: '64' },
    'text-layers': { type: 'string', description: 'with --text: transformer blocks', default: '2' },
    'text-heads': { type: 'string', description: 'with --text: attention heads of the encoder', default: '4' },
    'text-vocab': { type: 'string', description: 'with --text: BPE vocabulary size to learn from the captions', default: '1000' },
    'text-encoder': { type: 'string', description: 'with --text: a frozen pretrained encoder, FILE.onnx (input input_ids, output last_hidden_state), instead of training one' },
    tokenizer: { type: 'string', description: "with --text-encoder: the encoder's own tokenizer, a Hugging Face tokenizer.json (tokenizer_config.json beside it is read too)" },
    'cross-attention': { type: 'string', description: 'with --text: resolutions with cross-attention, e.g. 14,7 (default: every level below full size)' },
    dropout: { type: 'string', description: 'dropout rate in the ResBlocks', default: '0' },
    'base-channels': { type: 'string', description: "override the preset's channels at full resolution" },
    'channel-mults': { type: 'string', description: "override the preset's channel multipliers per level, e.g. 1,2,4" },
    'res-blocks': { type: 'string', description: "override the preset's ResBlocks per level" },
    attention: { type: 'string', description: "override the preset's self-attention resolutions, e.g. 14,7 (none: no attention)" },
    'zero-init': { type: 'boolean', description: 'start each ResBlock, attention block and the output conv at zero (ADM), so that each block begins as the identity' },
    'scale-shift-norm': { type: 'boolean', description: "the time embedding scales and shifts each ResBlock's second GroupNorm (ADM's AdaGN) instead of being added" },
    vae: { type: 'string', description: "train a latent model on the latents of this autoencoder (a folder 'diffuse train-vae' wrote); the images are encoded once and cached in the run" },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  },
  async run(v) {
    const bar0 = (msg: string) => process.stderr.write(`${msg}\n`);
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
        timestepSampling: oneOf<TimestepSampling>(v, 't-sampling', TIMESTEP_SAMPLINGS, 'uniform'),
        minSnrGamma: snrGammaOf(v),
        ...optimizerFlags(v),
        ...lrDecayOf(v, steps),
        ...(v['class-cond'] ? { classConditioning: { pUncond: num(v, 'p-uncond', { min: 0, max: 0.99 }) as number } } : {}),
      };
      const dropout = num(v, 'dropout', { min: 0, max: 0.9 }) as number;
      if (dropout > 0) config.model = { ...config.model, dropout };
      config.model = { ...config.model, ...modelOverrides(v) };
    }
    if (v.text && v['class-cond']) throw new UsageError('choose one condition: --text or --class-cond');
    const wantsText = v.resume ? config.text !== undefined : Boolean(v.text);
    if (!wantsText) for (const f of ['text-encoder', 'tokenizer', 'cross-attention']) if (v[f] !== undefined) throw new UsageError(`--${f} needs --text`);
    if (v.vae !== undefined && v.resume) throw new UsageError('--vae starts a latent run; a resumed run uses the autoencoder in its own folder (leave --vae out)');
    const vaeDir = v.vae === undefined ? undefined : String(v.vae);
    if (vaeDir && existsSync(runDir) && readdirSync(runDir).length > 0) throw new UsageError(`${runDir} already holds a run; choose another --run folder (or --resume it without --vae)`);
    const autoencoder = vaeDir ? await AutoencoderNetwork.open(vaeDir, { device }) : undefined;
    try {
      await trainWith(autoencoder);
    } finally {
      await autoencoder?.release();
    }

    async function trainWith(autoencoder: AutoencoderNetwork | undefined): Promise<void> {
      if (autoencoder) {
        // The images are the autoencoder's: its size and channels unless given (and then checked by encodeDataset).
        const [c, h] = autoencoder.imageShape;
        config.data = { ...config.data, size: config.data.size ?? h, channels: config.data.channels ?? (c as 1 | 3) };
      }
      if (config.data.source === 'emoji') bar0(`Loading and resizing ${config.data.limit ? `up to ${config.data.limit}` : 'the 3,035 training'} emoji images...`);
      const dataset = await loadDataset(config.data.source, 'train', { size: config.data.size, channels: config.data.channels, limit: config.data.limit, captions: wantsText });
      if (dataset.width !== dataset.height) throw new UsageError(`${dataset.name}: images are ${dataset.width}x${dataset.height}; the U-Net needs square images (pass --size N)`);
      // A preset adapts to the data's channels and size (validated below: the size must halve evenly per level).
      if (!v.resume) {
        // Attention stays at the same levels (the mnist preset's 7x7 is the third level, 8x8 at 32 px).
        // A latent run's U-Net sees the latents: their channels and side.
        const [channels, side] = autoencoder ? autoencoder.latentShape : [dataset.channels, dataset.height];
        const { imageSize, attentionResolutions } = config.model;
        const downsampling = (r: number) => (imageSize % r === 0 ? imageSize / r : NaN);
        const attention = v.attention !== undefined ? attentionResolutions : attentionResolutions.map((r) => side / downsampling(r));
        config.model = { ...config.model, inChannels: channels, outChannels: channels, imageSize: side, attentionResolutions: attention };
        if (config.classConditioning) {
          if (!dataset.classNames) throw new UsageError(`${dataset.name} has no class labels; --class-cond needs mnist, fashion-mnist or a folder with one subfolder per class`);
          config.model.numClasses = dataset.classNames.length;
          config.classNames = [...dataset.classNames];
        }
      }
      let tokenizer: TextTokenizer | undefined;
      if (!v.resume && v.text) {
        if (!dataset.captions) throw new UsageError(`${dataset.name} has no captions; --text needs mnist, fashion-mnist, emoji, or a folder with img.txt beside each image (or a metadata.jsonl)`);
        const file = v['text-encoder'] === undefined ? undefined : String(v['text-encoder']);
        if (file && v.tokenizer === undefined) throw new UsageError("--text-encoder needs the encoder's own tokenizer: --tokenizer tokenizer.json (Hugging Face's format, as the encoder was published with)");
        if (!file && v.tokenizer !== undefined) throw new UsageError('--tokenizer goes with --text-encoder (a jointly trained encoder learns its tokenizer from the captions)');
        // A pretrained encoder reads the ids of its own tokenizer; a jointly trained one learns a BPE from the captions.
        tokenizer = file ? readTokenizerFile(String(v.tokenizer)) : BpeTokenizer.train(dataset.captions, { vocabSize: num(v, 'text-vocab', { int: true, min: 8 }) });
        const pUncond = num(v, 'p-uncond', { min: 0, max: 0.99 }) as number;
        config.text = file
          ? { encoder: { kind: 'onnx', file: path.resolve(file), maxLength: tokenizer.maxLength }, pUncond }
          : {
              encoder: {
                kind: 'transformer',
                maxLength: tokenizer.maxLength,
                vocabSize: tokenizer.vocabSize,
                width: num(v, 'text-width', { int: true, min: 1 }) as number,
                layers: num(v, 'text-layers', { int: true, min: 1 }) as number,
                heads: num(v, 'text-heads', { int: true, min: 1 }) as number,
              },
              pUncond,
            };
        const probe = await TextConditioner.open(config.text, tokenizer);
        const levels = config.model.channelMults.map((_, l) => config.model.imageSize / 2 ** l);
        const cross = v['cross-attention'] === undefined ? levels.slice(1) : String(v['cross-attention']).split(',').map(Number);
        for (const r of cross) if (!levels.includes(r)) throw new UsageError(`--cross-attention: ${r} is not a resolution of this model (levels: ${levels.join(', ')})`);
        config.model = { ...config.model, contextDim: probe.width, crossAttentionResolutions: cross };
        await probe.release();
      }

      const bar = new ProgressLine();
      let latent: { autoencoder: AutoencoderNetwork; cache: LatentCache } | undefined;
      if (autoencoder && vaeDir) {
        const started = performance.now();
        const cache = await encodeDataset(autoencoder, dataset, {
          flip: config.data.flip,
          onProgress: (done, total) => bar.update(`encoding the images with ${vaeDir}: ${done}/${total} | ${formatDuration((performance.now() - started) / 1000)} elapsed`),
        });
        bar.done();
        const scalingFactor = scalingFactorOf(cache, config.seed);
        config.latent = { scalingFactor, source: path.resolve(vaeDir) };
        bar.say(`Latents ${autoencoder.latentShape.join('x')} of ${dataset.count} images${config.data.flip ? ' and their mirror images' : ''} (${formatDuration((performance.now() - started) / 1000)}); scaling factor ${scalingFactor.toFixed(5)} (1 / their standard deviation)`);
        latent = { autoencoder, cache };
      }
      if (tokenizer instanceof BpeTokenizer) bar.say(`Text: ${tokenizer.vocabSize}-token BPE vocabulary from ${new Set(dataset.captions).size} distinct captions, ${tokenizer.maxLength} tokens per prompt`);
      else if (tokenizer) bar.say(`Text: the encoder's own tokenizer (${tokenizer.vocabSize} tokens), ${tokenizer.maxLength} tokens per prompt`);
      bar.say(`Training on ${dataset.name} (${dataset.count} images ${dataset.channels}x${dataset.height}x${dataset.width}) -> ${runDir}`);
      const result = await trainingSession(v, runDir, bar, { steps, minutes }, (loop) =>
        train(runDir, config, dataset, { ...loop, resume: Boolean(v.resume), runtime: { device }, tokenizer, latent }),
      );
      bar.say(`Stopped by ${result.stoppedBy} at step ${result.steps}, loss ${result.finalLoss.toFixed(4)}. Checkpoint: ${result.checkpoint}; samples: ${path.join(runDir, 'samples', 'final.png')}`);
      const decay = config.lrDecay;
      if (result.stoppedBy !== 'steps' && decay && result.steps < decay.steps) {
        // A time limit on a slow or busy machine cuts the decay short: the model is not the one the recipe makes.
        bar.say(
          `note: the learning rate was still decaying (step ${result.steps} of ${decay.steps}); ` +
            `'diffuse train --run ${runDir} --resume --steps ${decay.steps}' finishes the run exactly as an uninterrupted one would.`,
        );
      }
    }
  },
};
