/**
 * `diffuse sample --model DIR` and `diffuse img2img --model DIR`: a Stable Diffusion folder of ONNX
 * components (src/latent). What is written is signed with content credentials as for a run
 * (--c2pa); `sample --key` writes the watermark into x_T, as for a run. The run-only flags
 * (--class, --frames, --eta, --clip-sample, --generator, ...) are refused by name rather than ignored.
 */
import { safeText } from '../inspect/format.js';
import * as path from 'node:path';
import { ensureWritable, readImage } from '../data/index.js';
import { LatentImageBatch, LatentStepInfo, StableDiffusionPipeline } from '../latent/index.js';
import { saveGrid } from '../pipelines/index.js';
import { readSchedulerConfig } from '../samplers/from-config.js';
import { SCHEDULER_NAMES, SchedulerName } from '../samplers/registry.js';
import type { Scheduler } from '../samplers/scheduler.js';
import type { TimestepSpacing } from '../samplers/common.js';
import type { FlagValues } from './flags.js';
import { UsageError, num, oneOf } from './flags.js';
import { ProgressLine } from './progress.js';
import { conditionRecord, openCredentials, runName, signFiles } from './credentials.js';
import type { GenerationRecord, SigningCredentials } from '../provenance/index.js';
import { WatermarkKey, gaussianShading } from '../forensics/index.js';
import { watermarkFlags } from './watermark.js';
import { STOCHASTIC_SCHEDULERS } from '../pipelines/sampling-plan.js';
import { readLatentsFile } from './invert.js';

/** Flags that only a Diffuse run honours (with the value they have when not given). */
const RUN_ONLY: [string, unknown][] = [
  ['jump-repeats', undefined],
  ['class', undefined],
  ['frames', undefined],
  ['frame-count', '10'],
  ['compare', undefined],
  ['resize', undefined],
  ['cols', undefined],
  ['scale', undefined],
  ['eta', 'auto'],
  ['clip-sample', 'auto'],
  ['generator', 'torch'],
  ['guidance-rescale', '0'],
];

interface LatentArgs {
  dir: string;
  credentials?: SigningCredentials;
  /** Every image's prompt: each of --prompt's, --count times. */
  prompts: string[];
  count: number;
  negative?: string;
  steps: number;
  seed: number;
  guidance: number;
  device: 'cpu' | 'cuda';
  out: string;
  each?: string;
  named?: SchedulerName;
  spacing?: TimestepSpacing;
  /** --key (sample only): the watermark's key and payload. */
  key?: WatermarkKey;
  payload: number;
}

/** The flags of a --model command, checked before the model loads or a file is written. */
async function latentArgs(v: FlagValues, o: { watermark?: boolean } = {}): Promise<LatentArgs> {
  for (const [flag, unset] of RUN_ONLY) if (v[flag] !== undefined && v[flag] !== unset) throw new UsageError(`--${flag} applies to --run only (not yet to --model)`);
  // An edit starts from the image, not from x_T, so there is no initial noise to mark.
  if (!o.watermark && (v.key !== undefined || (v.payload !== undefined && v.payload !== '0'))) throw new UsageError('--key and --payload apply to text to image (diffuse sample --model): an edit starts from the image, not from x_T, where the watermark lives');
  if (v.prompt === undefined) throw new UsageError('--model needs --prompt "..." (several separated by \'|\')');
  const count = num(v, 'count', { int: true, min: 1, max: 64 }) ?? 1;
  const prompts = String(v.prompt)
    .split('|')
    .map((p) => p.trim())
    .flatMap((p) => Array.from({ length: count }, () => p));
  const out = String(v.out);
  if (!/\.png$/i.test(out)) throw new UsageError(`--out must be a .png file, got '${out}'`);
  const each = v.images === undefined ? undefined : String(v.images);
  const named = v.scheduler === undefined ? undefined : oneOf(v, 'scheduler', SCHEDULER_NAMES, 'ddim');
  const spacing = v.spacing === undefined || v.spacing === 'auto' ? undefined : oneOf(v, 'spacing', ['leading', 'trailing', 'linspace'] as const, 'leading');
  if (!named && (v.karras || spacing)) throw new UsageError("--karras and --spacing apply with --scheduler NAME (the folder's scheduler is used as it is configured)");
  for (const file of [out, each && path.join(each, '0000.png')]) if (file) await ensureWritable(file);
  const credentials = await openCredentials(v, (msg) => process.stderr.write(`${msg}\n`));
  const { key, payload } = o.watermark ? watermarkFlags(v) : { key: undefined, payload: 0 };
  if (key && named && STOCHASTIC_SCHEDULERS.includes(named)) process.stderr.write(`warning: ${named} adds fresh noise at every step, which washes out the watermark in x_T; use ddim (eta 0), dpm++2m, euler or heun\n`);
  return {
    dir: String(v.model),
    ...(credentials ? { credentials } : {}),
    prompts,
    count,
    ...(v['negative-prompt'] !== undefined ? { negative: String(v['negative-prompt']) } : {}),
    steps: num(v, 'steps', { int: true, min: 1, max: 1000 }) as number,
    seed: num(v, 'seed', { int: true, min: 0 }) as number,
    guidance: num(v, 'guidance', { min: 0 }) ?? 7.5,
    device: oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu'),
    out,
    ...(each ? { each } : {}),
    ...(named ? { named } : {}),
    ...(spacing ? { spacing } : {}),
    ...(key ? { key } : {}),
    payload,
  };
}

/** The folder's scheduler, or the one --scheduler names on the folder's noise schedule. */
function chooseScheduler(a: LatentArgs, pipe: StableDiffusionPipeline, karras: boolean, say: (msg: string) => void): { scheduler: Scheduler; name: string } {
  if (!a.named) {
    const { className: name, name: kind } = readSchedulerConfig(pipe.schedulerConfig);
    if (a.key && STOCHASTIC_SCHEDULERS.includes(kind)) say(`warning: the folder's ${name} adds fresh noise at every step, which washes out the watermark in x_T; pass --scheduler ddim (or dpm++2m, euler, heun)`);
    return { scheduler: pipe.makeScheduler(), name };
  }
  return { scheduler: pipe.schedulerNamed(a.named, { spacing: a.spacing, karras }), name: a.named };
}

/** Loads the model, runs `work` with a progress line, writes the grid (one row per prompt) and each image. */
async function runLatent(
  a: LatentArgs,
  v: FlagValues,
  what: string,
  work: (pipe: StableDiffusionPipeline, scheduler: Scheduler, onStep: (info: LatentStepInfo) => void) => Promise<LatentImageBatch>,
  edit?: { operation: 'img2img' | 'inpaint'; strength: number; input: string },
): Promise<void> {
  const pipe = await StableDiffusionPipeline.fromPretrained(a.dir, { device: a.device });
  const bar = new ProgressLine();
  const started = Date.now();
  let images: LatentImageBatch;
  let name: string;
  let modelHash = '';
  try {
    for (const note of pipe.notes) bar.say(`note: ${note}`);
    const chosen = chooseScheduler(a, pipe, Boolean(v.karras), (msg) => bar.say(msg));
    name = chosen.name;
    if (a.credentials) modelHash = await pipe.modelHash();
    images = await work(pipe, chosen.scheduler, ({ index, total, timestep }) => bar.update(`${what}, ${name} step ${index + 1}/${total} (t = ${+timestep.toFixed(2)}), ${a.prompts.length} image(s) | ${((Date.now() - started) / 1000).toFixed(1)} s`));
  } finally {
    bar.done();
    await pipe.release();
  }
  for (const p of new Set(a.prompts)) for (const w of pipe.tokenizer.warnings(p)) bar.say(`note: "${safeText(p.slice(0, 40))}": ${w}`);
  await saveGrid(images, a.out, { cols: a.count, scale: 1 });
  bar.say(`wrote ${a.out} (${images.count} image(s) of ${images.shape[2]}x${images.shape[1]}, ${what}, ${name}, ${a.steps} steps, guidance ${a.guidance}, seed ${a.seed}${a.key ? `, watermarked with payload ${a.payload}` : ''}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  const eachFiles: string[] = [];
  if (a.each) {
    const per = images.data.length / images.count;
    const digits = Math.max(4, String(images.count - 1).length);
    for (let k = 0; k < images.count; k++) {
      eachFiles.push(path.join(a.each, `${String(k).padStart(digits, '0')}.png`));
      await saveGrid({ data: images.data.subarray(k * per, (k + 1) * per), count: 1, shape: images.shape }, eachFiles[k], { scale: 1, pad: 0 });
    }
    bar.say(`wrote ${images.count} images to ${a.each}/`);
  }
  if (a.credentials) {
    // The record names the model folder (not its path) and the U-Net's hash; never a key.
    const record = (k: number | 'grid'): GenerationRecord => ({
      operation: edit?.operation ?? 'generate',
      run: runName(a.dir),
      modelHash,
      scheduler: name,
      steps: a.steps,
      seed: a.seed,
      ...conditionRecord({ prompt: a.prompts, ...(a.negative !== undefined ? { negativePrompt: a.negative } : {}), guidance: a.guidance }, k),
      ...(edit ? { strength: edit.strength } : {}),
      ...(a.key ? { watermarkPayload: a.payload } : {}),
      index: k,
    });
    const ingredient = edit ? { title: path.basename(edit.input), format: /\.jpe?g$/i.test(edit.input) ? 'image/jpeg' : 'image/png' } : undefined;
    const added = await signFiles([a.out], a.credentials, () => record('grid'), ingredient);
    await signFiles(eachFiles, a.credentials, (_, k) => record(k), ingredient);
    bar.say(`signed ${1 + eachFiles.length} PNG file(s) with content credentials (${added} bytes added to ${a.out})`);
  }
}

/** `diffuse sample --model DIR`: text to image. */
export async function sampleLatent(v: FlagValues): Promise<void> {
  const start = v.latents === undefined ? undefined : await readLatentsFile(String(v.latents));
  // With --latents the image's size is x_T's, and DDIM (the inversion's own) the default scheduler.
  const a = await latentArgs(start && v.scheduler === undefined ? { ...v, scheduler: 'ddim' } : v, { watermark: true });
  let width = num(v, 'width', { int: true, min: 8 });
  let height = num(v, 'height', { int: true, min: 8 });
  if (start) {
    const file = String(v.latents);
    if (width !== undefined || height !== undefined) throw new UsageError(`--width and --height come from ${file} (x_T of ${start.shape.slice(2).join('x')} latents)`);
    if (a.key) throw new UsageError('--latents and --key both choose x_T: give one');
    if (start.shape[0] !== a.prompts.length) throw new UsageError(`${file} holds ${start.shape[0]} x_T but --prompt and --count ask for ${a.prompts.length} image(s)`);
    if (start.metadata.steps && Number(start.metadata.steps) !== a.steps) process.stderr.write(`note: ${file} was inverted with ${start.metadata.steps} steps; with ${a.steps} the image does not come back exactly\n`);
  }
  const watermark = a.key ? { watermark: gaussianShading(a.key, a.payload) } : {};
  await runLatent(a, v, 'text to image', async (pipe, scheduler, onStep) => {
    if (start) {
      const [, c, h, w] = start.shape;
      if (c !== pipe.latentChannels) throw new UsageError(`${String(v.latents)}: x_T has ${c} channels, this folder's latents ${pipe.latentChannels}`);
      [width, height] = [w * pipe.vaeScale, h * pipe.vaeScale];
      if (start.metadata.modelHash && start.metadata.modelHash !== (await pipe.modelHash())) process.stderr.write(`note: ${String(v.latents)} was inverted with another model (${start.metadata.model ?? start.metadata.run ?? 'unknown'}); it will not give that image back here\n`);
    }
    return pipe.generate({ prompt: a.prompts, ...(a.negative !== undefined ? { negativePrompt: a.negative } : {}), guidance: a.guidance, steps: a.steps, seed: a.seed, width, height, scheduler, onStep, ...watermark, ...(start ? { latents: start.data } : {}) });
  });
}

/** The --image of an edit: its size rounded down to a multiple of the autoencoder's factor, or --width x --height. */
async function editImage(v: FlagValues, a: LatentArgs, strength: number): Promise<{ data: Float32Array; shape: [number, number, number] }> {
  if (!v.image) throw new UsageError('--image FILE is required');
  const width = num(v, 'width', { int: true, min: 8 });
  const height = num(v, 'height', { int: true, min: 8 });
  if ((width === undefined) !== (height === undefined)) throw new UsageError('give both --width and --height, or neither (the input keeps its size)');
  if (Math.floor(a.steps * strength) < 1) throw new UsageError(`--strength ${strength} with --steps ${a.steps} leaves no step to run (strength x steps must be >= 1)`);
  return readImage(String(v.image), { channels: 3, convert: true, multipleOf: 8, ...(width && height ? { resizeTo: [width, height] as [number, number] } : {}) });
}

/** `diffuse img2img --model DIR --image FILE`. */
export async function img2imgLatent(v: FlagValues, strength: number): Promise<void> {
  const a = await latentArgs(v);
  const read = await editImage(v, a, strength);
  await runLatent(
    a,
    v,
    `img2img, strength ${strength}`,
    (pipe, scheduler, onStep) =>
      pipe.img2img({ image: { data: read.data, count: 1, shape: read.shape }, prompt: a.prompts, ...(a.negative !== undefined ? { negativePrompt: a.negative } : {}), guidance: a.guidance, steps: a.steps, seed: a.seed, strength, scheduler, onStep }),
    { operation: 'img2img', strength, input: String(v.image) },
  );
}

/** `diffuse inpaint --model DIR --image FILE --mask FILE`: the mask stretched to the image's size, white = generate. */
export async function inpaintLatent(v: FlagValues, strength: number): Promise<void> {
  const a = await latentArgs(v);
  const read = await editImage(v, a, strength);
  const [, h, w] = read.shape;
  const mask = await readImage(String(v.mask), { channels: 1, convert: true, resizeTo: [w, h] });
  await runLatent(a, v, `inpaint${strength < 1 ? `, strength ${strength}` : ''}`, (pipe, scheduler, onStep) =>
    pipe.inpaint({
      image: { data: read.data, count: 1, shape: read.shape },
      mask: { data: mask.data.map((x) => (x + 1) / 2), shape: [1, h, w] },
      prompt: a.prompts,
      ...(a.negative !== undefined ? { negativePrompt: a.negative } : {}),
      guidance: a.guidance,
      steps: a.steps,
      seed: a.seed,
      strength,
      scheduler,
      onStep,
    }),
    { operation: 'inpaint', strength, input: String(v.image) },
  );
}
