import * as path from 'node:path';
import { ensureWritable } from '../data/index.js';
import { gaussianShading } from '../forensics/index.js';
import { divergedFraction } from '../eval/evaluate.js';
import { DiffusionPipeline, ImageBatch, saveFrames, saveGrid } from '../pipelines/index.js';
import { readRunConfig } from '../run/run.js';
import { runImageShape } from '../run/autoencoder.js';
import type { GenerationRecord } from '../provenance/index.js';
import { CREDENTIAL_FLAGS, conditionRecord, openCredentials, runName, signFiles } from './credentials.js';
import type { Command } from './flags.js';
import { LatentsFile, readLatentsFile } from './invert.js';
import { UsageError, num, oneOf } from './flags.js';
import { CONDITION_FLAGS, DIVERGED_WARNING, SAMPLING_FLAGS, conditionFlags, divergedWarning, parseSampling, withRunDefaults } from './sampling-flags.js';
import { ProgressLine } from './progress.js';
import { sampleLatent } from './sample-latent.js';
import { WATERMARK_FLAGS, watermarkFlags } from './watermark.js';
import { sampleThroughQueue } from './scan.js';

export const commandSample: Command = {
  summary: 'generate images from a trained run (grid, and the reverse process as a strip or GIF)',
  usage: 'diffuse sample --run DIR | --model DIR [--width W --height H] [--prompt "a cat face" [--negative-prompt P] | --class K] [--guidance W] [--scheduler ddim|pndm|ddpm|dpm++2m|euler|euler_a|heun] [--karras] [--steps N] [--eta E] [--seed S] [--count K] --out grid.png [--frames strip.png|anim.gif] [--images DIR] [--latents xT.safetensors] [--key key.json --payload ID] [--c2pa DIR]',
  options: {
    run: { type: 'string', description: 'run folder written by diffuse train' },
    model: { type: 'string', description: 'a model folder instead of a run: a Stable Diffusion folder of ONNX components (Optimum\'s export layout) or a Diffuse export' },
    width: { type: 'string', description: 'with --model: image width in pixels (default: the model\'s)' },
    height: { type: 'string', description: 'with --model: image height in pixels (default: the model\'s)' },
    ...SAMPLING_FLAGS,
    generator: { type: 'string', description: "'torch' (same noise as torch.manual_seed) or 'fast'", default: 'torch' },
    count: { type: 'string', description: 'number of images (default 64; with --model, 1 per prompt)' },
    cols: { type: 'string', description: 'grid columns (default: square)' },
    scale: { type: 'string', description: 'pixel scale of the output (default 2 below 48 px)' },
    out: { type: 'string', description: 'grid PNG to write', default: 'samples.png' },
    frames: { type: 'string', description: 'also write the reverse process: a .png strip or an animated .gif' },
    images: { type: 'string', description: 'also write each image as its own PNG in this folder (0000.png, 0001.png, ...)' },
    latents: { type: 'string', description: 'start from this x_T (diffuse invert --out): with the same prompt and DDIM steps the inverted image comes back; with another prompt, an edit of it' },
    'per-image-seeds': { type: 'boolean', description: 'image k gets seed --seed + k and its own noise generator: any range of images is the same made alone or on another machine (as with --redis)' },
    redis: { type: 'string', description: 'generate through a Redis queue: `diffuse worker --run DIR` processes on any machines write --images (per-image seeds; no grid). Default URL: $DIFFUSE_REDIS_URL' },
    chunk: { type: 'string', description: 'with --redis: images per job', default: '64' },
    name: { type: 'string', description: 'with --redis: a name for the generation, shown by diffuse scan status and list' },
    follow: { type: 'boolean', description: 'with --redis: stay and show progress until every image is written' },
    'frame-count': { type: 'string', description: 'frames in --frames', default: '10' },
    ...CONDITION_FLAGS,
    ...WATERMARK_FLAGS,
    ...CREDENTIAL_FLAGS,
  },
  async run(v) {
    const say = (msg: string) => process.stderr.write(`${msg}\n`);
    if (v.model !== undefined) {
      if (v.run !== undefined) throw new UsageError('give --run DIR (a Diffuse run) or --model DIR (a Stable Diffusion folder), not both');
      return sampleLatent(v);
    }
    if (!v.run) throw new UsageError('--run DIR (a folder written by diffuse train) or --model DIR (a Stable Diffusion folder of ONNX components) is required');
    for (const f of ['width', 'height']) if (v[f] !== undefined) throw new UsageError(`--${f} applies to a Stable Diffusion folder's --model only (a run's images, and its export's, have the run's size)`);
    const runDir = String(v.run);
    const flags = parseSampling(v);
    const config = readRunConfig(runDir);
    const { key, payload } = watermarkFlags(v);
    const start = v.latents === undefined ? undefined : await readLatentsFile(String(v.latents));
    const count = num(v, 'count', { int: true, min: 1 }) ?? start?.shape[0] ?? 64;
    const perImageSeeds = Boolean(v['per-image-seeds']) || v.redis !== undefined;
    // One grid holds every image in memory (float32): refuse what cannot fit before any work.
    const perImage = runImageShape(runDir, config).reduce((a, b) => a * b, 4);
    const MAX_GRID_BYTES = 2 ** 31;
    if (v.redis === undefined && count * perImage > MAX_GRID_BYTES) {
      throw new UsageError(`--count ${count}: the grid would hold ${(count * perImage / 2 ** 30).toFixed(count * perImage > 2 ** 36 ? 0 : 1)} GiB of images; at most ${Math.floor(MAX_GRID_BYTES / perImage)} images of this model fit in one run (run several with different --seed)`);
    }
    const frameCount = num(v, 'frame-count', { int: true, min: 2 }) as number;
    const out = String(v.out);
    const frames = v.frames as string | undefined;
    if (frames && !/\.(png|gif)$/i.test(frames)) throw new UsageError(`--frames must end in .png (a strip) or .gif (an animation), got '${frames}'`);
    if (!/\.png$/i.test(out)) throw new UsageError(`--out must be a .png file, got '${out}'`);
    const T = config.schedule.numTrainTimesteps;
    if (flags.steps > T) throw new UsageError(`--steps ${flags.steps} exceeds the run's ${T} training timesteps`);
    const generatorKind = oneOf(v, 'generator', ['torch', 'fast'] as const, 'torch');
    if (start) checkLatents(String(v.latents), start, { key: Boolean(key), count, redis: v.redis !== undefined, steps: flags.steps, say });
    // The plan: eta 0 by default when x_T is given (--key, --latents), and what each costs.
    const { scheduler: kind, karras, steps, eta: sampleEta, seed, device, clipSample, timestepSpacing } = withRunDefaults(flags, config, { operation: 'generate', ...(key ? { start: 'watermark' } : start ? { start: 'latents' } : {}) }, say);
    const { condition, cols } = conditionFlags(v, config, count, say);
    if (v.redis !== undefined) {
      if (frames) throw new UsageError('--frames needs the images in one process; with --redis the workers write --images only');
      if (v.images === undefined) throw new UsageError('--redis needs --images DIR: the folder (on storage the workers share) they write the images into');
      return sampleThroughQueue(v, { runDir, config, count, seed, key, payload, condition, sampling: { scheduler: kind, karras, spacing: timestepSpacing, clipSample, steps, eta: sampleEta, generatorKind } });
    }
    let gridCols = num(v, 'cols', { int: true, min: 1 }) ?? cols;
    const scale = num(v, 'scale', { int: true, min: 1 });

    // Refuse an output path that cannot be written before the work, not after it.
    const each = v.images === undefined ? undefined : String(v.images);
    for (const file of [out, frames, each && path.join(each, '0000.png')]) if (file) await ensureWritable(file);
    const credentials = await openCredentials(v, say);
    const pipe = await DiffusionPipeline.fromRun(runDir, { device });
    if (start && start.shape.slice(1).some((d, i) => d !== pipe.latentShape[i])) {
      await pipe.release();
      throw new UsageError(`${String(v.latents)}: x_T of ${start.shape.slice(1).join('x')}, but this run starts from ${pipe.latentShape.join('x')}`);
    }
    if (start && start.metadata.modelHash && start.metadata.modelHash !== pipe.modelHash) say(`note: ${String(v.latents)} was inverted with another model (${start.metadata.run ?? start.metadata.model ?? 'unknown'}); it will not give that image back here`);
    const shape = pipe.imageShape;
    const per = shape.reduce((a, b) => a * b, 1);
    // onStep's samples are what the denoiser sees: a latent run's latents (decoded below).
    const latentPer = pipe.latentShape.reduce((a, b) => a * b, 1);
    // Frames: the first images' x_t just after the first step (close to the initial noise) and at evenly spaced evaluations.
    const showN = Math.min(count, 8);
    const snapshots: ImageBatch[] = [];
    let keepAt: Set<number> | undefined; // evaluations to snapshot, once their total is known
    const bar = new ProgressLine();
    const started = Date.now();
    let images: ImageBatch;
    try {
      images = await pipe.generate({
        ...condition,
        count,
        scheduler: kind,
        karras,
        spacing: timestepSpacing,
        clipSample,
        steps,
        eta: sampleEta,
        ...(perImageSeeds ? { seeds: Array.from({ length: count }, (_, k) => seed + k) } : { seed }),
        generatorKind,
        ...(key ? { watermark: gaussianShading(key, payload) } : {}),
        ...(start ? { initialNoise: start.data } : {}),
        onStep: ({ index, total, timestep, sample, offset, batchCount }) => {
          if (frames && offset === 0) {
            keepAt ??= new Set([0, ...Array.from({ length: frameCount - 1 }, (_, k) => Math.round(((k + 1) * (total - 1)) / (frameCount - 1)))]);
            if (keepAt.has(index)) snapshots.push({ data: sample.slice(0, showN * latentPer), count: showN, shape: pipe.latentShape });
          }
          bar.update(`${kind} step ${index + 1}/${total} (t = ${+timestep.toFixed(2)})${count > batchCount ? `, images ${offset + 1}-${offset + batchCount} of ${count}` : ''} | ${((Date.now() - started) / 1000).toFixed(1)} s`);
        },
      });
      if (pipe.codec) for (const s of snapshots) Object.assign(s, { data: await pipe.codec.decode(s.data, s.count), shape });
    } finally {
      bar.done();
      await pipe.release();
    }
    await saveGrid(images, out, { cols: gridCols, scale });
    const diverged = divergedFraction(images.data);
    if (diverged > DIVERGED_WARNING) bar.say(divergedWarning(diverged, 'the image shows them clipped'));
    bar.say(`wrote ${out} (${count} images, ${kind}, ${steps} steps${kind === 'ddim' ? `, eta ${sampleEta}` : ''}${timestepSpacing ? `, ${timestepSpacing} spacing` : ''}, seed ${seed}${key ? `, watermarked with payload ${payload}` : ''}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    const eachFiles: string[] = [];
    if (each) {
      const digits = Math.max(4, String(images.count - 1).length);
      for (let k = 0; k < images.count; k++) {
        eachFiles.push(path.join(each, `${String(k).padStart(digits, '0')}.png`));
        await saveGrid({ data: images.data.subarray(k * per, (k + 1) * per), count: 1, shape: images.shape }, eachFiles[k], { scale: 1, pad: 0 });
      }
      bar.say(`wrote ${images.count} images to ${each}/ at the model's size`);
    }
    if (frames) {
      await saveFrames(snapshots, frames, { scale });
      bar.say(`wrote ${frames} (the reverse process in ${snapshots.length} frames, pure noise to image)`);
    }
    if (credentials) {
      const record = (k: number | 'grid'): GenerationRecord => ({
        operation: 'generate',
        run: runName(runDir),
        modelHash: pipe.modelHash,
        scheduler: kind,
        steps,
        seed: perImageSeeds && k !== 'grid' ? seed + k : seed,
        eta: sampleEta,
        ...conditionRecord(condition, k),
        ...(key ? { watermarkPayload: payload } : {}),
        index: k,
      });
      const signed = [out, ...(frames && /\.png$/i.test(frames) ? [frames] : [])];
      const added = await signFiles(signed, credentials, () => record('grid'));
      await signFiles(eachFiles, credentials, (_, k) => record(k));
      bar.say(`signed ${signed.length + eachFiles.length} PNG file(s) with content credentials (${added} bytes added to ${out})${frames && /\.gif$/i.test(frames) ? `; ${frames} is a GIF, which C2PA tools do not sign here` : ''}`);
    }
  },
};

/** --latents checked against the other flags (the count is the file's unless --count gives the same). */
export function checkLatents(file: string, start: LatentsFile, o: { key: boolean; count: number; redis: boolean; steps: number; say: (msg: string) => void }): void {
  if (o.key) throw new UsageError('--latents and --key both choose x_T: give one');
  if (o.redis) throw new UsageError('--latents applies without --redis');
  if (o.count !== start.shape[0]) throw new UsageError(`--count ${o.count}, but ${file} holds ${start.shape[0]} x_T; leave --count out`);
  if (start.metadata.steps && Number(start.metadata.steps) !== o.steps) o.say(`note: ${file} was inverted with ${start.metadata.steps} steps; with ${o.steps} the image does not come back exactly`);
}
