/**
 * An inspector: trust settings and, with a Diffuse run, the loaded model, its detector calibration
 * (or why there is none) and a watermark key, ready to report on image after image. Without a run
 * it reports the file-level signals (credentials, metadata) of any image. `diffuse inspect` and
 * the studio's Inspect tab both use it.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { MAX_IMAGE_PIXELS, readRegularFile, readSettingsFile } from '../data/safe-file.js';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import type { Device } from '../engine/index.js';
import { DetectorCalibration, checkCalibration } from '../forensics/synthetic.js';
import { SearchThreads } from '../forensics/geometry-threads.js';
import { ThreadPool, checkThreadCount, workerModule } from '../threads/pool.js';
import type { PixelRequest, PixelSignals } from './pixel-signals.js';
import type { WatermarkKey } from '../forensics/key.js';
import { DiffusionPipeline } from '../pipelines/index.js';
import { StableDiffusionPipeline } from '../latent/index.js';
import type { TrustSettings } from '../provenance/index.js';
import { InspectReport, inspectImage } from './inspect.js';
import type { ReportPictures } from './format.js';
import { modelFlag } from '../run/export-folder.js';

/** Where a run keeps its detector calibration. */
export const DETECTOR_FILE = 'detector.json';

export interface InspectorOptions {
  key?: WatermarkKey;
  /** PEM text of trusted root certificates for content credentials. */
  trustAnchors?: string;
  /** Trust lists for content credentials (anchors, allowed list, key usages). */
  trust?: TrustSettings;
  /** Credentials and metadata only: skip the checks that decode the pixels. */
  metadataOnly?: boolean;
  device?: Device;
  /** DDIM inversion steps of the watermark check (default 50). */
  inversionSteps?: number;
  /** False-positive rate of the watermark decision (default 0.01). */
  fpr?: number;
  /** Also look for the watermark with the image turned back by up to this many degrees (default 0). */
  maxRotation?: number;
  /** Also look for the watermark after a turn by any angle or a crop enlarged back to size (default off). */
  geometric?: boolean;
  /**
   * Threads (default: one per core; 1: everything in this thread, one image at a time): of the
   * geometric search with a run; of the pixel checks without one.
   */
  threads?: number;
  /** Resize images of another size to the model's. */
  resize?: boolean;
  /** Text-conditional runs: the prompt to invert with. */
  prompt?: string;
}

export interface InspectOneOptions {
  /** Keep the image and its heat map as data: URLs (for an HTML report). */
  pictures?: boolean;
  /** Write the heat map as DIR/<name>.heat.png. */
  heatDir?: string;
  onStep?: (what: string) => void;
  /** The SHA-256 (hex) the file must have (see FileOptions.sha256). */
  sha256?: string;
}

export class Inspector {
  /**
   * The geometric search's threads, kept for the inspector's life: the search (most of a second
   * per unmarked image) then runs beside the next image's inversion instead of blocking this thread.
   */
  private readonly searchThreads?: SearchThreads;
  /**
   * Without a run, the pixel checks (decoding, the Stable Diffusion mark, hidden metadata) run on
   * these threads while this thread reads, parses and validates the next files.
   */
  private readonly pixelThreads?: ThreadPool<PixelRequest, PixelSignals>;

  /** A Stable Diffusion folder's pipeline (openStableDiffusion), whose watermark and autoencoder detector are checked. */
  private folder?: StableDiffusionPipeline;
  /** Whether release() releases the folder (false when it was given already open). */
  private ownsFolder = true;

  private constructor(
    /** The run's model; undefined for file-level inspection only. */
    readonly pipe: DiffusionPipeline | undefined,
    private readonly o: InspectorOptions,
    readonly calibration?: DetectorCalibration,
    /** Why the detector is off, when it is. */
    readonly calibrationMissing?: string,
  ) {
    const threads = o.threads ?? availableParallelism();
    // A latent run's search inverts turned images (turn-search.ts): the model already uses every core.
    if (pipe && !pipe.codec && o.key && o.geometric && threads > 1) this.searchThreads = new SearchThreads(threads);
    if (!pipe && !o.metadataOnly && threads > 1) {
      checkThreadCount(threads, 'inspect');
      this.pixelThreads = new ThreadPool(workerModule(import.meta.url, 'pixel-worker'), 'pixel check', threads);
    }
  }

  /**
   * How many images are worth inspecting at once with `inspect` (results do not depend on it): one
   * per search thread with the geometric search, else 1 (the model already uses every core).
   */
  get parallel(): number {
    // File-level signals only: files in work at once, so that reading, decoding (sharp's own
    // threads), parsing and the mark's threads overlap. One at a time when asked for one thread.
    if (!this.pipe) return this.o.threads === 1 ? 1 : 8;
    return this.searchThreads?.size ?? 1;
  }

  /**
   * Loads the run's model and its detector.json (a missing or mismatched calibration turns the
   * detector off, said in each report); without a run, an inspector of file-level signals.
   */
  static async open(runDir: string | undefined, o: InspectorOptions = {}): Promise<Inspector> {
    if (runDir === undefined) return new Inspector(undefined, o);
    const pipe = await DiffusionPipeline.fromRun(runDir, { device: o.device ?? 'cpu' });
    // A latent run searches turns by turning the image itself (turn-search.ts); the small turns of maxRotation move the inverted noise, which a latent grid does not follow.
    if (pipe.codec && (o.maxRotation ?? 0) > 0) {
      await pipe.release();
      throw new Error(`${runDir} is a latent run: it is searched for turns with geometric (any angle), not maxRotation`);
    }
    const calFile = path.join(runDir, DETECTOR_FILE);
    if (!existsSync(calFile)) return new Inspector(pipe, o, undefined, `no detector calibration (${calFile}); make one with diffuse detector calibrate ${modelFlag(runDir)}`);
    try {
      return new Inspector(pipe, o, checkCalibration(JSON.parse(readSettingsFile(calFile)), pipe.modelHash));
    } catch (e) {
      return new Inspector(pipe, o, undefined, `${calFile}: ${(e as Error).message}`);
    }
  }

  /**
   * An inspector with a Stable Diffusion folder of ONNX components: the file-level signals, the
   * autoencoder detector when the folder holds its calibration (detector.json, from `diffuse
   * detector calibrate --model`) and, with a key, the watermark `diffuse sample --model --key`
   * writes. One image at a time (the folder's networks already use every core).
   */
  static async openStableDiffusion(dir: string, o: InspectorOptions = {}, opened?: StableDiffusionPipeline): Promise<Inspector> {
    if (o.geometric || (o.maxRotation ?? 0) > 0) throw new Error(`${dir}: a Stable Diffusion image's watermark is checked as it is; the rotation and geometric searches work with pixel-space runs only`);
    if (o.resize) throw new Error(`${dir}: a Stable Diffusion image is checked at its own size (resize option not taken)`);
    // A pipeline already open on the folder (the studio's, shared with its Generate tab) is used, not released.
    const folder = opened ?? (await StableDiffusionPipeline.fromPretrained(dir, { device: o.device ?? 'cpu' }));
    const calFile = path.join(dir, DETECTOR_FILE);
    let calibration: DetectorCalibration | undefined;
    let missing: string | undefined;
    if (!existsSync(calFile)) missing = `no detector calibration (${calFile}); make one with diffuse detector calibrate --model ${dir} --real FOLDER --generated FOLDER`;
    else {
      try {
        calibration = checkCalibration(JSON.parse(readSettingsFile(calFile)), await folder.autoencoderHash());
        if (calibration.space !== 'autoencoder') throw new Error(`a calibration for a Diffuse run (${calibration.space ?? 'pixel'} space), not for this folder's autoencoder`);
      } catch (e) {
        calibration = undefined;
        missing = `${calFile}: ${(e as Error).message}`;
      }
    }
    const inspector = new Inspector(undefined, { ...o, threads: 1 }, calibration, missing);
    inspector.folder = folder;
    inspector.ownsFolder = !opened;
    return inspector;
  }

  /** Notes on the Stable Diffusion folder (fp16 files, the tokenizer), to print once. */
  get notes(): readonly string[] {
    return this.folder?.notes ?? [];
  }

  /** The report on one file (never throws for a bad image: the report's error says why), with its pictures if asked. */
  async inspect(file: string, one: InspectOneOptions = {}): Promise<{ report: InspectReport; pictures?: ReportPictures }> {
    const shape = this.pipe?.imageShape;
    let heat: Buffer | undefined;
    const report = await inspectImage(file, {
      pipe: this.pipe,
      ...(this.folder ? { folder: this.folder } : {}),
      key: this.o.key,
      calibration: this.calibration,
      calibrationMissing: this.calibrationMissing,
      trustAnchors: this.o.trustAnchors,
      trust: this.o.trust,
      metadataOnly: this.o.metadataOnly,
      pixelThreads: this.pixelThreads,
      inversionSteps: this.o.inversionSteps,
      fpr: this.o.fpr,
      maxRotation: this.o.maxRotation,
      geometric: this.o.geometric,
      searchThreads: this.searchThreads,
      resize: this.o.resize,
      ...(this.o.prompt !== undefined && (this.pipe?.conditioning === 'text' || this.folder) ? { prompt: this.o.prompt } : {}),
      onStep: one.onStep,
      ...(one.sha256 !== undefined ? { sha256: one.sha256 } : {}),
      saveHeatMap:
        one.heatDir || one.pictures
          ? async (f, map, shape) => {
              heat = await heatMapPng(map, shape);
              if (!one.heatDir) return undefined;
              const out = path.join(one.heatDir, `${path.basename(f).replace(/\.[^.]+$/, '')}.heat.png`);
              await writeFile(out, heat);
              return out;
            }
          : undefined,
    });
    if (!one.pictures) return { report };
    return { report, pictures: await picturesOf(file, report, heat, shape ? [shape[1], shape[2]] : undefined) };
  }

  async release(): Promise<void> {
    await this.searchThreads?.close();
    await this.pixelThreads?.close();
    await this.pipe?.release();
    if (this.ownsFolder) await this.folder?.release();
  }
}

/** The heat map ([H, W], mean |eps|) as a PNG, scaled to its maximum and enlarged 4x. */
async function heatMapPng(map: Float32Array, shape: [number, number]): Promise<Buffer> {
  const max = map.reduce((a, b) => Math.max(a, b), 1e-12);
  const px = Buffer.from(Array.from(map, (x) => Math.round((255 * x) / max)));
  // A model's small images are enlarged to be seen; a Stable Diffusion crop is large enough as it is.
  const f = Math.max(shape[0], shape[1]) <= 64 ? 4 : 1;
  return sharp(px, { raw: { width: shape[1], height: shape[0], channels: 1 } }).resize(shape[1] * f, shape[0] * f, { kernel: 'nearest' }).png().toBuffer();
}

/**
 * The image and its heat map as data: URLs for the HTML page. A model-sized image is enlarged with
 * square pixels to the heat map's size; any other image becomes a thumbnail of at most 256 px.
 */
async function picturesOf(file: string, r: InspectReport, heat: Buffer | undefined, model: [number, number] | undefined): Promise<ReportPictures> {
  const out: ReportPictures = {};
  if (heat) out.heatMap = `data:image/png;base64,${heat.toString('base64')}`;
  if (r.error || (r.width ?? 0) * (r.height ?? 0) > MAX_IMAGE_PIXELS) return out;
  try {
    const img = sharp(await readRegularFile(file), { limitInputPixels: MAX_IMAGE_PIXELS });
    const small = model && r.width === model[1] && r.height === model[0];
    const pic = small
      ? await img.resize(model[1] * 4, model[0] * 4, { fit: 'contain', kernel: 'nearest', background: '#ffffff' }).png().toBuffer()
      : await img.resize(256, 256, { fit: 'inside', withoutEnlargement: true }).flatten({ background: '#ffffff' }).jpeg({ quality: 82 }).toBuffer();
    out.image = `data:image/${small ? 'png' : 'jpeg'};base64,${pic.toString('base64')}`;
  } catch {
    // The report already says why the file cannot be decoded.
  }
  return out;
}
