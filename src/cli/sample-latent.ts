/**
 * `diffuse sample --model DIR`: text to image with a Stable Diffusion folder of ONNX components
 * (src/latent). The run-only flags (--class, --key, --c2pa, --frames, --eta, --clip-sample,
 * --generator) are refused by name rather than ignored.
 */
import * as path from 'node:path';
import { ensureWritable } from '../data/index.js';
import { StableDiffusionPipeline } from '../latent/index.js';
import { saveGrid } from '../pipelines/index.js';
import { readSchedulerConfig } from '../samplers/from-config.js';
import { SCHEDULER_NAMES, makeScheduler } from '../samplers/registry.js';
import type { FlagValues } from './flags.js';
import { UsageError, num, oneOf } from './flags.js';
import { ProgressLine } from './progress.js';

/** Flags of `sample` that only a Diffuse run honours (with the value they have when not given). */
const RUN_ONLY: [string, unknown][] = [
  ['class', undefined],
  ['key', undefined],
  ['payload', '0'],
  ['c2pa', undefined],
  ['c2pa-key', undefined],
  ['c2pa-cert', undefined],
  ['frames', undefined],
  ['frame-count', '10'],
  ['cols', undefined],
  ['scale', undefined],
  ['eta', 'auto'],
  ['clip-sample', 'auto'],
  ['generator', 'torch'],
  ['guidance-rescale', '0'],
];

export async function sampleLatent(v: FlagValues): Promise<void> {
  const dir = String(v.model);
  for (const [flag, unset] of RUN_ONLY) if (v[flag] !== undefined && v[flag] !== unset) throw new UsageError(`--${flag} applies to --run only (not yet to --model)`);
  if (v.prompt === undefined) throw new UsageError('--model needs --prompt "..." (several separated by \'|\')');
  const prompts = String(v.prompt).split('|').map((p) => p.trim());
  const count = num(v, 'count', { int: true, min: 1, max: 64 }) ?? 1;
  const all = prompts.flatMap((p) => Array.from({ length: count }, () => p));
  const steps = num(v, 'steps', { int: true, min: 1, max: 1000 }) as number;
  const seed = num(v, 'seed', { int: true, min: 0 }) as number;
  const guidance = num(v, 'guidance', { min: 0 }) ?? 7.5;
  const width = num(v, 'width', { int: true, min: 8 });
  const height = num(v, 'height', { int: true, min: 8 });
  const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
  const out = String(v.out);
  if (!/\.png$/i.test(out)) throw new UsageError(`--out must be a .png file, got '${out}'`);
  const each = v.images === undefined ? undefined : String(v.images);
  for (const file of [out, each && path.join(each, '0000.png')]) if (file) await ensureWritable(file);

  const named = v.scheduler === undefined ? undefined : oneOf(v, 'scheduler', SCHEDULER_NAMES, 'ddim');
  const spacing = v.spacing === undefined || v.spacing === 'auto' ? undefined : oneOf(v, 'spacing', ['leading', 'trailing', 'linspace'] as const, 'leading');
  if (!named && (v.karras || spacing)) throw new UsageError("--karras and --spacing apply with --scheduler NAME (the folder's scheduler is used as it is configured)");

  const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device });
  const bar = new ProgressLine();
  const started = Date.now();
  let kindName: string;
  let images;
  try {
    for (const note of pipe.notes) bar.say(`note: ${note}`);
    // The folder's scheduler, or another one named by --scheduler on the folder's noise schedule.
    let scheduler = pipe.makeScheduler();
    const folder = readSchedulerConfig(pipe.schedulerConfig);
    kindName = folder.className;
    if (named) {
      const { numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, predictionType, stepsOffset, setAlphaToOne } = folder.config;
      const alphaToOne = (named === 'ddim' || named === 'pndm') && setAlphaToOne !== undefined ? { setAlphaToOne } : {};
      // Latents are not images: no clipping, no thresholding to [-1, 1].
      scheduler = makeScheduler(named, { numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, predictionType, stepsOffset, clipSample: false, ...alphaToOne, ...(spacing ? { timestepSpacing: spacing } : {}) }, { karras: Boolean(v.karras), thresholding: false });
      kindName = named;
    }
    images = await pipe.generate({
      prompt: all,
      ...(v['negative-prompt'] !== undefined ? { negativePrompt: String(v['negative-prompt']) } : {}),
      guidance,
      steps,
      seed,
      width,
      height,
      scheduler,
      onStep: (i, total, t) => bar.update(`${kindName} step ${i + 1}/${total} (t = ${+t.toFixed(2)}), ${all.length} image(s) | ${((Date.now() - started) / 1000).toFixed(1)} s`),
    });
  } finally {
    bar.done();
    await pipe.release();
  }
  for (const p of prompts) for (const w of pipe.tokenizer.warnings(p)) bar.say(`note: "${p.slice(0, 40)}": ${w}`);
  await saveGrid(images, out, { cols: count, scale: 1 });
  bar.say(`wrote ${out} (${all.length} image(s) of ${images.shape[2]}x${images.shape[1]}, ${kindName}, ${steps} steps, guidance ${guidance}, seed ${seed}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  if (each) {
    const per = images.data.length / images.count;
    const digits = Math.max(4, String(images.count - 1).length);
    for (let k = 0; k < images.count; k++) {
      await saveGrid({ data: images.data.subarray(k * per, (k + 1) * per), count: 1, shape: images.shape }, path.join(each, `${String(k).padStart(digits, '0')}.png`), { scale: 1, pad: 0 });
    }
    bar.say(`wrote ${images.count} images to ${each}/`);
  }
}
