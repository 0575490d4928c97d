import { createGenerator } from '../diffusion/index.js';
import { Pixels, saveGif, savePng, toGrid, upscale } from '../data/index.js';
import { divergedFraction } from '../eval/evaluate.js';
import { makeScheduler } from '../samplers/registry.js';
import { generate } from '../samplers/pipeline.js';
import { schedulerConfigOf } from '../train/config.js';
import { loadSamplingWeights, makeDenoiser, openTextConditioner, readRunConfig } from '../train/run.js';
import type { Command } from './main.js';
import { UsageError, num, oneOf } from './main.js';
import { DIVERGED_WARNING, SAMPLING_FLAGS, divergedWarning, parseSampling, withRunDefaults } from './sampling-flags.js';
import { ProgressLine } from './progress.js';

export const commandSample: Command = {
  summary: 'generate images from a trained run (grid, and the reverse process as a strip or GIF)',
  usage: 'diffuse sample --run DIR [--prompt "a cat face" [--negative-prompt P] | --class K] [--guidance W] [--scheduler ddim|ddpm|dpm++2m|euler|euler_a|heun] [--karras] [--steps N] [--eta E] [--seed S] [--count K] --out grid.png [--frames strip.png|anim.gif]',
  options: {
    run: { type: 'string', description: 'run folder written by diffuse train' },
    ...SAMPLING_FLAGS,
    generator: { type: 'string', description: "'torch' (same noise as torch.manual_seed) or 'fast'", default: 'torch' },
    count: { type: 'string', description: 'number of images', default: '64' },
    cols: { type: 'string', description: 'grid columns (default: square)' },
    scale: { type: 'string', description: 'pixel scale of the output (default 2 below 48 px)' },
    out: { type: 'string', description: 'grid PNG to write', default: 'samples.png' },
    frames: { type: 'string', description: 'also write the reverse process: a .png strip or an animated .gif' },
    'frame-count': { type: 'string', description: 'frames in --frames', default: '10' },
    class: { type: 'string', description: 'class-conditional runs: a class index or name for every image (default: one row per class)' },
    prompt: { type: 'string', description: "text-conditional runs: the prompt; several separated by '|' give one row each" },
    'negative-prompt': { type: 'string', description: 'text-conditional runs: steer away from this prompt (replaces the empty prompt of guidance)' },
    guidance: { type: 'string', description: 'classifier-free guidance weight (1 = none)', default: '3' },
    'guidance-rescale': { type: 'string', description: 'guidance rescale phi in [0, 1]', default: '0' },
  },
  async run(v) {
    const bar0 = (msg: string) => process.stderr.write(`${msg}\n`);
    if (!v.run) throw new UsageError('--run DIR is required (a folder written by diffuse train)');
    const runDir = String(v.run);
    const flags = parseSampling(v);
    const config = readRunConfig(runDir);
    const { scheduler: kind, karras, steps, eta, seed, device, clipSample, timestepSpacing } = withRunDefaults(flags, config);
    const count = num(v, 'count', { int: true, min: 1 }) as number;
    const frameCount = num(v, 'frame-count', { int: true, min: 2 }) as number;
    const out = String(v.out);
    const frames = v.frames as string | undefined;
    if (frames && !/\.(png|gif)$/i.test(frames)) throw new UsageError(`--frames must end in .png (a strip) or .gif (an animation), got '${frames}'`);
    if (!/\.png$/i.test(out)) throw new UsageError(`--out must be a .png file, got '${out}'`);
    const T = config.schedule.numTrainTimesteps;
    if (steps > T) throw new UsageError(`--steps ${steps} exceeds the run's ${T} training timesteps`);

    const schedulerConfig = schedulerConfigOf(config, { clipSample, timestepSpacing });
    const scheduler = makeScheduler(kind, schedulerConfig, { karras });
    const text = await openTextConditioner(runDir, config, { device });
    const weights = await loadSamplingWeights(runDir, config, text);
    const classes = config.model.numClasses;
    let gridCols = num(v, 'cols', { int: true, min: 1 });
    let guidance = {};
    if (classes !== undefined) {
      let labels: Int32Array;
      if (v.class !== undefined) {
        const name = String(v.class);
        const byName = config.classNames?.indexOf(name) ?? -1;
        const k = byName >= 0 ? byName : Number(name);
        if (!Number.isInteger(k) || k < 0 || k >= classes) {
          throw new UsageError(`--class must be 0..${classes - 1}${config.classNames ? ` or one of ${config.classNames.join(', ')}` : ''}, got '${name}'`);
        }
        labels = new Int32Array(count).fill(k);
      } else {
        // One row per class.
        const perRow = Math.ceil(count / classes);
        labels = Int32Array.from({ length: count }, (_, i) => Math.min(classes - 1, Math.floor(i / perRow)));
        gridCols ??= perRow;
      }
      guidance = { labels, scale: num(v, 'guidance', { min: 0 }), rescale: num(v, 'guidance-rescale', { min: 0, max: 1 }) };
    } else if (v.class !== undefined) {
      throw new UsageError('--class needs a class-conditional run (train with --class-cond)');
    }
    if (text) {
      if (v.prompt === undefined) throw new UsageError(`this run is text-conditional: give --prompt "..." (--prompt "" for unconditional samples)`);
      const list = String(v.prompt).split('|').map((p) => p.trim());
      const negative = v['negative-prompt'] === undefined ? undefined : String(v['negative-prompt']);
      for (const p of [...list, ...(negative ? [negative] : [])]) for (const w of text.tokenizer.warnings(p)) bar0(`warning: "${p}": ${w}`);
      const perRow = Math.ceil(count / list.length);
      if (list.length > 1) gridCols ??= perRow;
      const prompts = Array.from({ length: count }, (_, i) => list[Math.min(list.length - 1, Math.floor(i / perRow))]);
      guidance = {
        prompts,
        ...(negative !== undefined ? { negativePrompts: new Array<string>(count).fill(negative) } : {}),
        scale: num(v, 'guidance', { min: 0 }),
        rescale: num(v, 'guidance-rescale', { min: 0, max: 1 }),
      };
    } else if (v.prompt !== undefined || v['negative-prompt'] !== undefined) {
      throw new UsageError('--prompt needs a text-conditional run (train with --text)');
    }
    const denoise = makeDenoiser(config, weights, { device }, guidance, text);
    const m = config.model;
    const shape = [m.inChannels, m.imageSize, m.imageSize];
    const scale = num(v, 'scale', { int: true, min: 1 }) ?? (m.imageSize < 48 ? 2 : 1);

    // Frames: x_t at evenly spaced steps, starting from pure noise.
    const per = shape.reduce((a, b) => a * b, 1);
    const showN = Math.min(count, 8);
    const evals = kind === 'heun' ? 2 * steps - 1 : steps; // Heun evaluates the model twice per step
    const keepAt = new Set(Array.from({ length: frameCount - 1 }, (_, k) => Math.round(((k + 1) * (evals - 1)) / (frameCount - 1))));
    const snapshots: Float32Array[] = [];
    const bar = new ProgressLine();
    const started = Date.now();
    const generator = createGenerator(oneOf(v, 'generator', ['torch', 'fast'] as const, 'torch'), seed);
    const images = await generate({
      denoise,
      scheduler,
      count,
      shape,
      steps,
      eta,
      generator,
      onStep: (i, t, x) => {
        if (i === 0 && frames) snapshots.push(x.slice(0, showN * per)); // just after the first step, close to the initial noise
        if (frames && keepAt.has(i)) snapshots.push(x.slice(0, showN * per));
        bar.update(`${kind} step ${i + 1}/${scheduler.timesteps.length} (t = ${+t.toFixed(2)}) | ${((Date.now() - started) / 1000).toFixed(1)} s`);
      },
    });
    bar.done();
    await denoise.release();
    await text?.release();
    await savePng(out, upscale(toGrid(images, count, shape, gridCols), scale));
    const diverged = divergedFraction(images);
    if (diverged > DIVERGED_WARNING) bar.say(divergedWarning(diverged, 'the image shows them clipped'));
    bar.say(`wrote ${out} (${count} images, ${kind}, ${steps} steps${kind === 'ddim' ? `, eta ${eta}` : ''}${schedulerConfig.timestepSpacing ? `, ${schedulerConfig.timestepSpacing} spacing` : ''}, seed ${seed}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    if (frames) {
      if (/\.gif$/i.test(frames)) {
        const pics: Pixels[] = snapshots.map((s) => upscale(toGrid(s, showN, shape, showN), scale));
        await saveGif(frames, pics);
      } else {
        // One row per image, one column per frame: noise on the left, sample on the right.
        const cols2 = snapshots.length;
        const strip = new Float32Array(showN * cols2 * per);
        for (let r = 0; r < showN; r++) for (let c = 0; c < cols2; c++) strip.set(snapshots[c].subarray(r * per, (r + 1) * per), (r * cols2 + c) * per);
        await savePng(frames, upscale(toGrid(strip, showN * cols2, shape, cols2), scale));
      }
      bar.say(`wrote ${frames} (the reverse process in ${snapshots.length} frames, pure noise to image)`);
    }
  },
};
