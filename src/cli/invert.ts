/**
 * `diffuse invert`: DDIM inversion of an image to the initial noise x_T that regenerates it, with a
 * Diffuse run or a Stable Diffusion folder, written as safetensors. `diffuse sample --latents FILE`
 * starts from it: with the same prompt and steps it gives the image back; with another prompt, an
 * edit that keeps the image's layout. `--check` regenerates at once and shows both.
 */
import * as path from 'node:path';
import { ensureWritable, readImage } from '../data/index.js';
import { decodeSafetensors, saveSafetensors } from '../engine/index.js';
import { readRegularFile } from '../data/safe-file.js';
import { StableDiffusionPipeline } from '../latent/index.js';
import { DiffusionPipeline, saveGrid } from '../pipelines/index.js';
import { conditioningOf } from '../run/conditioning.js';
import { readRunConfig } from '../run/run.js';
import { runImageShape } from '../run/autoencoder.js';
import type { Command, FlagValues } from './flags.js';
import { UsageError, modelFlag, num, oneOf } from './flags.js';
import { ProgressLine } from './progress.js';

/** What an inversion file holds besides x_T (safetensors metadata). */
export const LATENTS_FORMAT = 'diffuse-latents-1';

export interface LatentsFile {
  /** x_T: [count, C, h, w], unit variance. */
  data: Float32Array;
  shape: [number, number, number, number];
  metadata: Record<string, string>;
}

/** The largest inversion file read: 64 images of 1024x1024 (4 x 128 x 128 latents) take 16 MiB. */
const MAX_LATENTS_BYTES = 256 * 2 ** 20;

/**
 * Reads what `diffuse invert` wrote; every problem is one line naming the file. Read as a regular
 * file within a size limit: a FIFO or a device (--latents /dev/zero) is refused, not waited on.
 */
export async function readLatentsFile(file: string): Promise<LatentsFile> {
  const st = decodeSafetensors(await readRegularFile(file, MAX_LATENTS_BYTES, { what: 'a .safetensors file', limitFor: 'an inversion file', skipped: false }), file);
  if (st.metadata.format !== LATENTS_FORMAT) throw new UsageError(`${file}: not an inversion written by diffuse invert (format '${st.metadata.format ?? 'none'}', expected ${LATENTS_FORMAT})`);
  const t = st.tensors.get('latents');
  if (!t || !(t.data instanceof Float32Array) || t.shape.length !== 4) throw new UsageError(`${file}: no float32 'latents' tensor of rank 4`);
  if (!t.data.every(Number.isFinite)) throw new UsageError(`${file}: the latents hold values that are not finite`);
  return { data: t.data, shape: t.shape as [number, number, number, number], metadata: st.metadata };
}

export const commandInvert: Command = {
  summary: 'DDIM inversion: the initial noise that regenerates an image (a run or a Stable Diffusion folder), for sample --latents',
  usage: 'diffuse invert --run DIR | --model DIR --image FILE [--prompt P] [--steps 50] [--refine 0] --out xT.safetensors [--check side.png]',
  options: {
    run: { type: 'string', description: 'the run folder of the model to invert with' },
    model: { type: 'string', description: 'or a model folder: a Stable Diffusion folder of ONNX components, or a Diffuse export' },
    image: { type: 'string', description: 'the image to invert (a file, or mnist:INDEX for a run)' },
    prompt: { type: 'string', description: 'text-conditional models: the prompt to invert with (default empty)' },
    steps: { type: 'string', description: 'DDIM steps; sample --latents regenerates with as many', default: '50' },
    refine: { type: 'string', description: 'fixed-point refinements per step (each costs one more model evaluation; the round trip gets closer)', default: '0' },
    width: { type: 'string', description: 'with --model: resize the image to this width first (default: its own, rounded down to a multiple of 8)' },
    height: { type: 'string', description: 'with --model: and this height' },
    resize: { type: 'boolean', description: "with --run: resize an image of another size to the model's" },
    out: { type: 'string', description: 'the .safetensors file to write x_T into' },
    check: { type: 'string', description: 'also regenerate from x_T (DDIM, the same steps and prompt) and write the image and its regeneration side by side as this PNG' },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  },
  async run(v) {
    if ((v.run === undefined) === (v.model === undefined)) throw new UsageError('give --run DIR (a Diffuse run) or --model DIR (a Stable Diffusion folder), one of them');
    if (!v.image) throw new UsageError('--image FILE is required');
    if (!v.out) throw new UsageError('--out FILE.safetensors is required');
    const out = String(v.out);
    if (!/\.safetensors$/i.test(out)) throw new UsageError(`--out must be a .safetensors file, got '${out}'`);
    const check = v.check === undefined ? undefined : String(v.check);
    if (check && !/\.png$/i.test(check)) throw new UsageError(`--check must be a .png file, got '${check}'`);
    for (const f of [out, check]) if (f) await ensureWritable(f);
    const steps = num(v, 'steps', { int: true, min: 1, max: 1000 }) as number;
    const refine = num(v, 'refine', { int: true, min: 0, max: 20 }) as number;
    const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
    const bar = new ProgressLine();
    const started = Date.now();
    const onStep = (index: number, total: number) => bar.update(`inverting, step ${index + 1}/${total} | ${((Date.now() - started) / 1000).toFixed(1)} s`);
    try {
      const r = v.model !== undefined ? await invertWithFolder(v, steps, refine, device, onStep, bar) : await invertWithRun(v, steps, refine, device, onStep, bar);
      bar.done();
      await saveSafetensors(out, new Map([['latents', { data: r.latents, shape: r.shape }]]), {
        format: LATENTS_FORMAT,
        ...r.metadata,
        steps: String(steps),
        refine: String(refine),
        image: path.basename(String(v.image)),
      });
      bar.say(`wrote ${out} (x_T of ${r.shape.slice(1).join('x')}, ${steps} DDIM steps${refine ? `, ${refine} refinements each` : ''}, ${((Date.now() - started) / 1000).toFixed(1)} s); diffuse sample ${v.model !== undefined ? `--model ${String(v.model)}` : modelFlag(String(v.run))} --latents ${out} starts from it`);
      if (check && r.back) {
        const { input, back, shape } = r.back;
        await saveGrid({ data: Float32Array.from([...input, ...back]), count: 2, shape }, check, { cols: 2, scale: shape[1] < 48 ? 4 : 1 });
        let sq = 0;
        for (let i = 0; i < input.length; i++) sq += (Math.min(1, Math.max(-1, back[i])) - input[i]) ** 2;
        const rms = Math.sqrt(sq / input.length);
        bar.say(`wrote ${check} (the image, then its regeneration from x_T: RMS difference ${((rms * 255) / 2).toFixed(1)} levels of 255)`);
      }
    } finally {
      bar.done();
    }
  },
};

interface Inverted {
  latents: Float32Array;
  shape: [number, number, number, number];
  metadata: Record<string, string>;
  back?: { input: Float32Array; back: Float32Array; shape: [number, number, number] };
}

async function invertWithFolder(v: FlagValues, steps: number, refine: number, device: 'cpu' | 'cuda', onStep: (i: number, n: number) => void, bar: ProgressLine): Promise<Inverted> {
  if (v.resize) throw new UsageError('--resize applies to --run (with --model, --width and --height resize)');
  const width = num(v, 'width', { int: true, min: 8 });
  const height = num(v, 'height', { int: true, min: 8 });
  if ((width === undefined) !== (height === undefined)) throw new UsageError('give both --width and --height, or neither (the image keeps its size)');
  const image = await readImage(String(v.image), { channels: 3, convert: true, multipleOf: 8, ...(width && height ? { resizeTo: [width, height] as [number, number] } : {}) });
  const dir = String(v.model);
  const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device });
  try {
    for (const note of pipe.notes) bar.say(`note: ${note}`);
    const prompt = v.prompt === undefined ? '' : String(v.prompt);
    const x = await pipe.invert({ image: { data: image.data, count: 1, shape: image.shape }, prompt, steps, refine, onStep: ({ index, total }) => onStep(index, total) });
    const metadata = { model: path.basename(path.resolve(dir)), modelHash: await pipe.modelHash(), prompt };
    const shape: [number, number, number, number] = [1, ...x.shape];
    if (v.check === undefined) return { latents: x.latents, shape, metadata };
    bar.update('regenerating from x_T');
    const back = await pipe.generate({ prompt, guidance: 1, steps, latents: x.latents, scheduler: pipe.schedulerNamed('ddim'), width: image.shape[2], height: image.shape[1] });
    return { latents: x.latents, shape, metadata, back: { input: image.data, back: back.data, shape: image.shape } };
  } finally {
    await pipe.release();
  }
}

async function invertWithRun(v: FlagValues, steps: number, refine: number, device: 'cpu' | 'cuda', onStep: (i: number, n: number) => void, bar: ProgressLine): Promise<Inverted> {
  for (const f of ['width', 'height'] as const) if (v[f] !== undefined) throw new UsageError(`--${f} applies to a Stable Diffusion folder's --model (a run's images, and its export's, have the run's size; --resize resizes to it)`);
  const runDir = String(v.run);
  const config = readRunConfig(runDir);
  if (conditioningOf(config) === 'class') throw new UsageError(`${runDir} is class-conditional: inversion takes unconditional and text-conditional runs`);
  const [channels, size] = runImageShape(runDir, config);
  const image = await readImage(String(v.image), { channels: channels as 1 | 3, size, resize: Boolean(v.resize), convert: true });
  const pipe = await DiffusionPipeline.fromRun(runDir, { device });
  try {
    const prompt = config.text ? (v.prompt === undefined ? '' : String(v.prompt)) : undefined;
    if (!config.text && v.prompt !== undefined) throw new UsageError(`${runDir} is not text-conditional: --prompt does not apply`);
    const batch = { data: image.data, count: 1, shape: image.shape };
    const x = await pipe.invert({ image: batch, steps, refine, ...(prompt !== undefined ? { prompt } : {}), onStep: ({ index, total }) => onStep(index, total) });
    const metadata = { run: path.basename(path.resolve(runDir)), modelHash: pipe.modelHash, ...(prompt !== undefined ? { prompt } : {}) };
    const shape: [number, number, number, number] = [1, ...pipe.latentShape];
    if (v.check === undefined) return { latents: x.data, shape, metadata };
    bar.update('regenerating from x_T');
    const back = await pipe.generate({ count: 1, scheduler: 'ddim', eta: 0, steps, initialNoise: x.data, ...(prompt !== undefined ? { prompt, guidance: 1 } : {}) });
    return { latents: x.data, shape, metadata, back: { input: image.data, back: back.data, shape: image.shape } };
  } finally {
    await pipe.release();
  }
}
