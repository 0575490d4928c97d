/**
 * Batch generation as jobs: `count` images of a run split into ranges of `chunk` images. Image k
 * has its own seed, seed + k (SamplingOptions.seeds), so a range made by any worker is byte for
 * byte the range a one-machine `diffuse sample --per-image-seeds` makes. Workers write the PNGs
 * (OUT/0000.png, ...) to storage they share, each file through a temporary name and a rename, so
 * a file that exists is complete. The watermark key and the signing key stay with the workers;
 * the payload (not a secret) travels with the settings.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { GeneratorKind } from '../diffusion/index.js';
import { gaussianShading } from '../forensics/gaussian-shading.js';
import type { WatermarkKey } from '../forensics/key.js';
import { DiffusionPipeline, GenerateOptions, ImageBatch, saveGrid } from '../pipelines/index.js';
import type { SigningCredentials } from '../provenance/index.js';
import { GenerationRecord, signImage } from '../provenance/index.js';
import type { SchedulerName, TimestepSpacing } from '../samplers/index.js';
import { readFileSync } from 'node:fs';

/** How every image of a generation is made: the resolved options of `diffuse sample`. */
export interface GenerationSettings {
  /** The run folder's name, for the content credentials' record. */
  run: string;
  /** Absolute folder the workers write into (shared storage). */
  out: string;
  count: number;
  /** Image k's seed is seed + k. */
  seed: number;
  chunk: number;
  scheduler: SchedulerName;
  karras?: boolean;
  spacing?: TimestepSpacing;
  clipSample?: boolean;
  steps: number;
  eta: number;
  generatorKind: GeneratorKind;
  guidance?: number;
  guidanceRescale?: number;
  /** One prompt or class for all images, or one per image. */
  prompt?: string | string[];
  negativePrompt?: string;
  classLabel?: number | number[];
  /** The watermark's payload when the workers hold the key (requirements.key). */
  payload?: number;
}

/** What a generation job stores as its result. */
export interface GenerationResult {
  /** 'images 64-127' */
  file: string;
  error?: string;
  files?: string[];
  seconds?: number;
}

/** File names of a generation: as `diffuse sample --images` names them (at least 4 digits). */
export function imageFileName(k: number, count: number): string {
  return `${String(k).padStart(Math.max(4, String(count - 1).length), '0')}.png`;
}

/** The ranges [first, first + n) a generation is split into. */
export function generationRanges(count: number, chunk: number): { first: number; n: number }[] {
  const out: { first: number; n: number }[] = [];
  for (let first = 0; first < count; first += chunk) out.push({ first, n: Math.min(chunk, count - first) });
  return out;
}

/** A name for the signing certificate that needs no secret: the first 16 hex digits of its SHA-256. */
export function signerFingerprint(c: SigningCredentials): string {
  return createHash('sha256').update(new Uint8Array(c.certificate.rawData)).digest('hex').slice(0, 16);
}

const pick = <T>(v: T | T[] | undefined, k: number): T | undefined => (Array.isArray(v) ? v[k] : v);

/** Makes images [first, first + n) and writes them; returns the files written. */
export async function generateRange(
  pipe: DiffusionPipeline,
  s: GenerationSettings,
  first: number,
  n: number,
  secrets: { key?: WatermarkKey; signing?: SigningCredentials },
): Promise<string[]> {
  const slice = <T>(v: T | T[] | undefined): T | T[] | undefined => (Array.isArray(v) ? v.slice(first, first + n) : v);
  const o: GenerateOptions = {
    count: n,
    seeds: Array.from({ length: n }, (_, k) => s.seed + first + k),
    scheduler: s.scheduler,
    karras: s.karras,
    spacing: s.spacing,
    clipSample: s.clipSample,
    steps: s.steps,
    eta: s.eta,
    generatorKind: s.generatorKind,
    ...(s.guidance !== undefined ? { guidance: s.guidance } : {}),
    ...(s.guidanceRescale !== undefined ? { guidanceRescale: s.guidanceRescale } : {}),
    ...(s.prompt !== undefined ? { prompt: slice(s.prompt) } : {}),
    ...(s.negativePrompt !== undefined ? { negativePrompt: s.negativePrompt } : {}),
    ...(s.classLabel !== undefined ? { classLabel: slice(s.classLabel) } : {}),
    ...(secrets.key && s.payload !== undefined ? { watermark: gaussianShading(secrets.key, s.payload) } : {}),
  };
  const images: ImageBatch = await pipe.generate(o);
  const per = images.shape.reduce((a, b) => a * b, 1);
  mkdirSync(s.out, { recursive: true });
  const files: string[] = [];
  for (let k = 0; k < n; k++) {
    const index = first + k;
    const file = path.join(s.out, imageFileName(index, s.count));
    const tmp = path.join(s.out, `.${path.basename(file)}.${process.pid}.tmp.png`);
    try {
      await saveGrid({ data: images.data.subarray(k * per, (k + 1) * per), count: 1, shape: images.shape }, tmp, { scale: 1, pad: 0 });
      if (secrets.signing) {
        const record: GenerationRecord = {
          operation: 'generate',
          run: s.run,
          modelHash: pipe.modelHash,
          scheduler: s.scheduler,
          steps: s.steps,
          seed: s.seed + index,
          eta: s.eta,
          ...(s.guidance !== undefined ? { guidance: s.guidance } : {}),
          ...(pick(s.prompt, index) !== undefined ? { prompt: pick(s.prompt, index) } : {}),
          ...(s.negativePrompt !== undefined ? { negativePrompt: s.negativePrompt } : {}),
          ...(pick(s.classLabel, index) !== undefined ? { classLabel: String(pick(s.classLabel, index)) } : {}),
          ...(secrets.key && s.payload !== undefined ? { watermarkPayload: s.payload } : {}),
          index,
        };
        writeFileSync(tmp, await signImage(readFileSync(tmp), secrets.signing, record));
      }
      renameSync(tmp, file);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    files.push(file);
  }
  return files;
}
