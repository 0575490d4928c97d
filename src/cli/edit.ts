/**
 * `diffuse img2img` and `diffuse inpaint`: edit an image with a trained run (SDEdit, RePaint),
 * and optionally draw input | mask | results side by side.
 */
import * as path from 'node:path';
import { DataError, ensureWritable, readImage } from '../data/index.js';
import { divergedFraction } from '../eval/evaluate.js';
import { gaussianShading } from '../forensics/index.js';
import { DiffusionPipeline, ImageBatch, InitialNoiseSource, SamplingOptions, repeatPlane, saveGrid } from '../pipelines/index.js';
import { readRunConfig } from '../run/run.js';
import { runImageShape } from '../run/autoencoder.js';
import type { RunConfig } from '../run/config.js';
import type { Command, Flag, FlagValues } from './flags.js';
import { UsageError, num, oneOf } from './flags.js';
import { ProgressLine } from './progress.js';
import { img2imgLatent, inpaintLatent } from './sample-latent.js';
import type { GenerationRecord, IngredientRecord, SigningCredentials } from '../provenance/index.js';
import { CREDENTIAL_FLAGS, conditionRecord, openCredentials, runName, signFiles } from './credentials.js';
import { CONDITION_FLAGS, DIVERGED_WARNING, SAMPLING_FLAGS, conditionFlags, divergedWarning, parseSampling, withRunDefaults } from './sampling-flags.js';
import { WATERMARK_FLAGS, watermarkFlags } from './watermark.js';

const EDIT_FLAGS: Record<string, Flag> = {
  run: { type: 'string', description: 'run folder written by diffuse train' },
  image: { type: 'string', description: "the input image: a file of the model's size and channels, or mnist:INDEX / fashion-mnist:INDEX" },
  resize: { type: 'boolean', description: "resize (cover crop) an image of another size to the model's" },
  ...SAMPLING_FLAGS,
  ...CONDITION_FLAGS,
  generator: { type: 'string', description: "'torch' (same noise as torch.manual_seed) or 'fast'", default: 'torch' },
  count: { type: 'string', description: 'results to generate from the one input (default 4; with --model, 1 per prompt)' },
  model: { type: 'string', description: 'a model folder instead of a run: a Stable Diffusion folder of ONNX components (Optimum\'s export layout) or a Diffuse export' },
  width: { type: 'string', description: 'with --model: resize the input to this width (default: its own, rounded down to a multiple of 8)' },
  height: { type: 'string', description: 'with --model: resize the input to this height (default: its own, rounded down to a multiple of 8)' },
  out: { type: 'string', description: 'grid PNG of the results', default: 'edited.png' },
  compare: { type: 'string', description: 'also write a side-by-side PNG: input | mask | results' },
  scale: { type: 'string', description: 'pixel scale of the pictures (default 2 below 48 px)' },
  ...CREDENTIAL_FLAGS,
  ...WATERMARK_FLAGS,
};

interface EditSetup {
  runDir: string;
  config: RunConfig;
  image: ImageBatch;
  out: string;
  compare?: string;
  scale?: number;
  options: SamplingOptions & { count: number };
  device: 'cpu' | 'cuda';
  say: (msg: string) => void;
  credentials?: SigningCredentials;
  /** The input image as the content credentials name it. */
  ingredient: IngredientRecord;
  /** --key: the watermark written into the noise, and its payload. */
  watermark?: { source: InitialNoiseSource; payload: number };
}

/** Everything a user can get wrong is checked here, before the model loads or a file is written. */
async function setup(v: FlagValues, operation: 'img2img' | 'inpaint'): Promise<EditSetup> {
  const say = (msg: string) => process.stderr.write(`${msg}\n`);
  for (const f of ['width', 'height']) if (v[f] !== undefined) throw new UsageError(`--${f} applies to a Stable Diffusion folder's --model only (a run's images, and its export's, have the run's size)`);
  if (!v.run) throw new UsageError('--run DIR is required (a folder written by diffuse train)');
  if (!v.image) throw new UsageError('--image FILE is required (or mnist:INDEX)');
  const runDir = String(v.run);
  const config = readRunConfig(runDir);
  const parsed = parseSampling(v);
  const { key, payload } = watermarkFlags(v);
  // The plan: the run's defaults, eta 0 with a watermark, and the schedulers inpainting runs on.
  const { scheduler, karras, steps, eta, seed, device, clipSample, timestepSpacing } = withRunDefaults(parsed, config, { operation, ...(key ? { start: 'watermark' } : {}) }, say);
  const T = config.schedule.numTrainTimesteps;
  if (steps > T) throw new UsageError(`--steps ${steps} exceeds the run's ${T} training timesteps`);
  const count = num(v, 'count', { int: true, min: 1 }) as number;
  const out = String(v.out);
  const compare = v.compare === undefined ? undefined : String(v.compare);
  for (const [flag, file] of [['out', out], ['compare', compare]] as const) {
    if (file !== undefined && !/\.png$/i.test(file)) throw new UsageError(`--${flag} must be a .png file, got '${file}'`);
  }
  const [channels, size] = runImageShape(runDir, config);
  const read = await readImage(String(v.image), { channels: channels as 1 | 3, size, resize: Boolean(v.resize) });
  const { condition } = conditionFlags(v, config, count, say, { classRows: false });
  // Refuse an output path that cannot be written before the work, not after it.
  for (const file of [out, compare]) if (file) await ensureWritable(file);
  const spec = String(v.image);
  const credentials = await openCredentials(v, say);
  return {
    ...(key ? { watermark: { source: gaussianShading(key, payload), payload } } : {}),
    credentials,
    ingredient: { title: /^[a-z-]+:\d+$/.test(spec) ? spec : path.basename(spec), format: /\.jpe?g$/i.test(spec) ? 'image/jpeg' : 'image/png' },
    runDir,
    config,
    image: { data: read.data, count: 1, shape: read.shape },
    out,
    compare,
    scale: num(v, 'scale', { int: true, min: 1 }),
    options: { ...condition, count, scheduler, karras, steps, eta, seed, clipSample, spacing: timestepSpacing, generatorKind: oneOf(v, 'generator', ['torch', 'fast'] as const, 'torch') },
    device,
    say,
  };
}

/** Runs an edit with a progress line, then writes the results grid and the side-by-side picture. */
async function runEdit(
  s: EditSetup,
  what: string,
  edit: (pipe: DiffusionPipeline, o: SamplingOptions) => Promise<ImageBatch>,
  record: Pick<GenerationRecord, 'operation' | 'strength'>,
  mask?: ImageBatch,
): Promise<void> {
  const pipe = await DiffusionPipeline.fromRun(s.runDir, { device: s.device });
  const bar = new ProgressLine();
  const started = Date.now();
  let results: ImageBatch;
  try {
    results = await edit(pipe, { ...s.options, onStep: ({ index, total }) => bar.update(`${what}: step ${index + 1}/${total} | ${((Date.now() - started) / 1000).toFixed(1)} s`) });
  } finally {
    bar.done();
    await pipe.release();
  }
  const diverged = divergedFraction(results.data);
  if (diverged > DIVERGED_WARNING) bar.say(divergedWarning(diverged, 'the image shows them clipped'));
  await saveGrid(results, s.out, { scale: s.scale, cols: Math.min(results.count, 8) });
  bar.say(`wrote ${s.out} (${results.count} images, ${what}${s.watermark ? `, watermarked with payload ${s.watermark.payload}` : ''}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  if (s.compare) {
    const per = results.data.length / results.count;
    const row = [s.image.data, ...(mask ? [mask.data.map((v) => 2 * v - 1)] : [])];
    const n = row.length + results.count;
    const all = new Float32Array(n * per);
    row.forEach((img, k) => all.set(img.subarray(0, per), k * per));
    all.set(results.data, row.length * per);
    await saveGrid({ data: all, count: n, shape: results.shape }, s.compare, { scale: s.scale, cols: n });
    bar.say(`wrote ${s.compare} (${mask ? 'input | mask | results' : 'input | results'})`);
  }
  if (s.credentials) {
    const o = s.options;
    const files = [s.out, ...(s.compare ? [s.compare] : [])];
    const added = await signFiles(
      files,
      s.credentials,
      () => ({ ...record, run: runName(s.runDir), modelHash: pipe.modelHash, scheduler: String(o.scheduler), steps: o.steps as number, seed: o.seed as number, eta: o.eta, ...conditionRecord(o, 'grid'), ...(s.watermark ? { watermarkPayload: s.watermark.payload } : {}), index: 'grid' }),
      s.ingredient,
    );
    bar.say(`signed ${files.length} PNG file(s) with content credentials, the input recorded as an ingredient (${added} bytes added to ${s.out})`);
  }
}

export const commandImg2Img: Command = {
  summary: 'change an image with a trained run (SDEdit: noise it part-way, denoise it back)',
  usage: 'diffuse img2img --run DIR | --model DIR [--width W --height H] --image in.png [--strength 0.6] [--prompt "..." | --class K] [--scheduler ddim] [--steps 50] [--count 4] --out out.png [--compare side.png] [--key key.json --payload ID] [--c2pa DIR]',
  options: {
    ...EDIT_FLAGS,
    strength: { type: 'string', description: 'how much to change, 0..1: the image is noised to int(steps x strength) steps before the end and denoised from there', default: '0.6' },
  },
  async run(v) {
    const strength = num(v, 'strength', { min: 0, max: 1 }) as number;
    if (v.model !== undefined) {
      if (v.run !== undefined) throw new UsageError('give --run DIR (a Diffuse run) or --model DIR (a Stable Diffusion folder), not both');
      return img2imgLatent(v, strength);
    }
    for (const f of ['width', 'height']) if (v[f] !== undefined) throw new UsageError(`--${f} applies to a Stable Diffusion folder's --model only (a run's images, and its export's, have the run's size)`);
    const s = await setup(v, 'img2img');
    const steps = s.options.steps as number;
    if (Math.floor(steps * strength) < 1 && strength > 0) throw new UsageError(`--strength ${strength} with --steps ${steps} leaves no step to run (strength x steps must be >= 1)`);
    await runEdit(s, `img2img, strength ${strength}`, (pipe, o) => pipe.img2img({ ...o, image: s.image, strength, watermark: s.watermark?.source }), { operation: 'img2img', strength });
  },
};

export const commandInpaint: Command = {
  summary: 'fill the masked part of an image with a trained run (RePaint)',
  usage: 'diffuse inpaint --run DIR | --model DIR [--width W --height H] --image in.png --mask mask.png [--jump-length 5] [--jump-repeats 5] [--steps 50] [--count 4] --out out.png [--compare side.png] [--key key.json --payload ID] [--c2pa DIR]',
  options: {
    ...EDIT_FLAGS,
    mask: { type: 'string', description: 'a PNG of the same size: white = generate, black = keep (grey levels are rounded)' },
    'jump-length': { type: 'string', description: "RePaint's resampling: steps between jumps, and how far each goes back up", default: '5' },
    'jump-repeats': { type: 'string', description: 'times each jump is made (1 = no resampling); default 5, 1 with --key' },
    strength: { type: 'string', description: 'with --model: how much of the schedule to run, 0..1 (default 1: from pure noise)' },
  },
  async run(v) {
    if (!v.mask) throw new UsageError('--mask FILE is required: a PNG of the image size, white where to generate');
    if (v.model !== undefined) {
      if (v.run !== undefined) throw new UsageError('give --run DIR (a Diffuse run) or --model DIR (a Stable Diffusion folder), not both');
      for (const f of ['jump-length', 'jump-repeats']) if (v[f] !== undefined && !(f === 'jump-length' && v[f] === '5')) throw new UsageError(`--${f} applies to --run only (a Stable Diffusion folder inpaints without RePaint's resampling)`);
      return inpaintLatent(v, num(v, 'strength', { min: 0, max: 1 }) ?? 1);
    }
    if (v.strength !== undefined) throw new UsageError("--strength applies to --model only (a run's inpainting runs the whole schedule)");
    const jumpLength = num(v, 'jump-length', { int: true, min: 1 }) as number;
    const s = await setup(v, 'inpaint');
    // A watermark in x_T needs plain replacement: RePaint's jumps add fresh noise that washes it out (docs/WATERMARK.md "Edits").
    const jumpRepeats = (num(v, 'jump-repeats', { int: true, min: 1 }) ?? (s.watermark ? 1 : 5)) as number;
    if (s.watermark && v['jump-repeats'] === undefined) s.say('with --key: no resampling (--jump-repeats 1) and eta 0, so that the watermark reaches the image; the seam may show more');
    if (s.watermark && jumpRepeats > 1) s.say(`warning: --jump-repeats ${jumpRepeats} adds fresh noise at every jump, which washes out the watermark (found in 0 of 100 images with 5); use 1`);
    const [, h, w] = s.image.shape;
    const maskFile = String(v.mask);
    let read;
    try {
      read = await readImage(maskFile, { channels: 1, convert: true, size: h });
    } catch (e) {
      if (e instanceof DataError && /takes \d+x\d+ images/.test(e.message)) throw new DataError(`${maskFile}: the mask must have the image's size, ${w}x${h}`);
      throw e;
    }
    const mask: ImageBatch = { data: read.data.map((x) => (x > 0 ? 1 : 0)), count: 1, shape: [1, h, w] };
    await runEdit(s, `inpaint, jump length ${jumpLength} x ${jumpRepeats}`, (pipe, o) => pipe.inpaint({ ...o, image: s.image, mask, jumpLength, jumpRepeats, watermark: s.watermark?.source }), { operation: 'inpaint' }, {
      ...mask,
      data: repeatPlane(mask.data, s.image.shape[0]),
      shape: s.image.shape,
    });
  },
};
