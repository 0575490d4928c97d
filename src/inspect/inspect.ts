/**
 * An analyst's report on one image, from any source: the file-level signals (file-signals.ts:
 * content credentials, metadata, the Stable Diffusion invisible mark, NovelAI's hidden record and
 * signature) and, with a Diffuse run (`pipe`), two model signals for images of the model's size:
 * - Watermark: whether this generator, with this key, made the image (a p-value).
 * - Detector: whether the image looks like a sample of this model (a calibrated probability).
 * Then a verdict (verdict.ts) that names the strongest evidence.
 */
import { MAX_IMAGE_PIXELS, readRegularFile } from '../data/safe-file.js';
import { readImage } from '../data/read-image.js';
import { DetectorCalibration, chooseProfile, detectSynthetic } from '../forensics/synthetic.js';
import { detectWithAutoencoder } from '../forensics/autoencoder-detector.js';
import { estimateJpegQuality } from '../forensics/jpeg-quality.js';
import { detectWatermark } from '../forensics/detect.js';
import { readPayload } from '../forensics/gaussian-shading.js';
import { describeMap, isMoved } from '../forensics/geometry-search.js';
import type { WatermarkKey } from '../forensics/key.js';
import type { SearchThreads } from '../forensics/geometry-threads.js';
import type { DiffusionPipeline } from '../pipelines/index.js';
import type { StableDiffusionPipeline } from '../latent/index.js';
import { FileOptions, inspectFile } from './file-signals.js';
import type { InspectReport } from './report.js';
import { verdict } from './verdict.js';

export * from './report.js';
export { inspectFile } from './file-signals.js';
export type { FileOptions } from './file-signals.js';
export { verdict, formatP } from './verdict.js';

export interface InspectOptions extends FileOptions {
  /** The model of a Diffuse run: adds the watermark and detector signals. Without it, file-level signals only. */
  pipe?: DiffusionPipeline;
  /** Or a Stable Diffusion folder: adds the watermark signal (with `key`), checked at the image's own size. */
  folder?: StableDiffusionPipeline;
  /** The watermark key; without it the watermark is not checked. */
  key?: WatermarkKey;
  /** The detector calibration (the run's detector.json); without it the detector is skipped. */
  calibration?: DetectorCalibration;
  /** Why there is no calibration, for the report. */
  calibrationMissing?: string;
  /** DDIM inversion steps of the watermark check (default 50). */
  inversionSteps?: number;
  /** False-positive rate of the watermark decision (default 0.01). */
  fpr?: number;
  /** Also look for the watermark with the image turned back by up to this many degrees (default 0). */
  maxRotation?: number;
  /** Also look for the watermark after a turn by any angle or a crop enlarged back to size (default off). */
  geometric?: boolean;
  /** Threads the geometric search runs on (default: this thread); see SearchThreads. */
  searchThreads?: SearchThreads;
  /** Resize images of another size to the model's (explicit: scores are then less reliable). */
  resize?: boolean;
  /** Text-conditional runs: the prompt to invert with (default empty). */
  prompt?: string;
  /** Called with the heat map ([H, W], mean |eps|) so the caller can keep or write it; returns the file it went to, if any. */
  saveHeatMap?: (file: string, map: Float32Array, shape: [number, number]) => Promise<string | undefined>;
  onStep?: (what: string) => void;
}

/** Inspects one image file: its file-level signals and, with a run, the model's. Never throws for a bad file. */
export async function inspectImage(file: string, o: InspectOptions = {}): Promise<InspectReport> {
  const report = await inspectFile(file, o);
  if (o.pipe && !report.error) await addModelSignals(report, await readRegularFile(file, o.maxBytes), file, o.pipe, o);
  else if (o.folder && !report.error) await addFolderSignals(report, await readRegularFile(file, o.maxBytes), file, o.folder, o);
  if (!report.error) report.verdict = verdict(report);
  return report;
}

/** The watermark and detector of a Diffuse run, for images it can score. */
async function addModelSignals(report: InspectReport, bytes: Buffer, file: string, pipe: DiffusionPipeline, o: InspectOptions): Promise<void> {
  const [c, h] = pipe.imageShape;
  let image: { data: Float32Array; shape: [number, number, number] } | undefined;
  let skip: string | undefined;
  const maxPixels = o.maxPixels ?? MAX_IMAGE_PIXELS;
  if ((report.width ?? 0) * (report.height ?? 0) > maxPixels) {
    skip = `the image declares ${report.width}x${report.height} pixels, over the ${(maxPixels / 1e6).toFixed(0)}-megapixel decoding limit; not decoded`;
  } else {
    try {
      image = await readImage(file, { channels: c as 1 | 3, size: h, resize: o.resize, convert: true });
    } catch (e) {
      skip = (e as Error).message.replace(`${file} `, '').replace(`${file}: `, '');
      if (/takes \d+x\d+/.test(skip)) skip = `the image is ${report.width}x${report.height} but the model takes ${h}x${h}: a score would be meaningless (pass --resize to resize it explicitly; scores are then less reliable)`;
    }
  }
  if (!image) {
    report.watermark = { status: 'skipped', reason: skip ?? 'image unreadable' };
    report.detector = { status: 'skipped', reason: skip ?? 'image unreadable' };
    return;
  }
  const batch = { data: image.data, count: 1, shape: image.shape };
  if (o.key) {
    const steps = o.inversionSteps ?? 50;
    const [d] = await detectWatermark(batch, pipe, o.key, {
      steps,
      fpr: o.fpr ?? 0.01,
      maxRotation: o.maxRotation ?? 0,
      geometric: o.geometric ?? false,
      threads: o.searchThreads ?? 1,
      ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
      onStep: (i, total) => o.onStep?.(`watermark: inverting, step ${i + 1}/${total}`),
    });
    const turned = {
      ...(o.maxRotation ? { maxRotation: o.maxRotation, ...(d.detected ? { rotation: d.rotation } : {}) } : {}),
      ...(o.geometric ? { geometric: true, ...(d.detected && isMoved(d.map) ? { found: describeMap(d.map) } : {}) } : {}),
    };
    report.watermark = { status: 'checked', detected: d.detected, pValue: d.pValue, log10P: d.log10P, fpr: d.fpr, inversionSteps: steps, ...(d.detected ? payloadFields(d) : {}), ...turned };
  } else report.watermark = { status: 'skipped', reason: 'no watermark key given (--key)' };
  if (o.calibration) {
    o.onStep?.('detector');
    const profile = chooseProfile(o.calibration, report.format === 'jpeg' ? estimateJpegQuality(bytes) : undefined);
    const [d] = await detectSynthetic(batch, pipe, o.calibration, { profile });
    report.detector = { status: 'checked', score: d.score, probability: d.probability, flagged: d.flagged, profile };
    const saved = await o.saveHeatMap?.(file, d.heatMap, [image.shape[1], image.shape[2]]);
    if (saved) report.detector.heatMap = saved;
  } else report.detector = { status: 'skipped', reason: o.calibrationMissing ?? 'no detector calibration' };
}


/**
 * The signals of a Stable Diffusion folder: its autoencoder detector (with the folder's
 * detector.json; autoencoder-detector.ts) on the image's centred square, and its watermark
 * (`diffuse sample --model --key`) for images whose sides are multiples of 8 (the size they were
 * made at; the mark lives on that size's latent grid).
 */
async function addFolderSignals(report: InspectReport, bytes: Buffer, file: string, folder: StableDiffusionPipeline, o: InspectOptions): Promise<void> {
  const [w, h] = [report.width ?? 0, report.height ?? 0];
  const maxPixels = o.maxPixels ?? MAX_IMAGE_PIXELS;
  const tooLarge = w * h > maxPixels ? `the image declares ${w}x${h} pixels, over the ${(maxPixels / 1e6).toFixed(0)}-megapixel decoding limit; not decoded` : undefined;
  await addFolderDetector(report, bytes, file, folder, o, tooLarge);
  if (!o.key) {
    report.watermark = { status: 'skipped', reason: 'no watermark key given (--key)' };
    return;
  }
  const skip = tooLarge ?? (w % 8 || h % 8 ? `the image is ${w}x${h}; a Stable Diffusion folder makes sides that are multiples of 8, so it was resized or cropped since (diffuse watermark detect --model --width W --height H resizes it back)` : undefined);
  if (skip) {
    report.watermark = { status: 'skipped', reason: skip };
    return;
  }
  const image = await readImage(file, { channels: 3, convert: true });
  const steps = o.inversionSteps ?? 50;
  const [d] = await detectWatermark({ data: image.data, count: 1, shape: image.shape }, folder, o.key, {
    steps,
    fpr: o.fpr ?? 0.01,
    ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
    onStep: (i, total) => o.onStep?.(`watermark: inverting, step ${i + 1}/${total}`),
  });
  report.watermark = { status: 'checked', detected: d.detected, pValue: d.pValue, log10P: d.log10P, fpr: d.fpr, inversionSteps: steps, ...(d.detected ? payloadFields(d) : {}) };
}

/** The autoencoder detector on the image's centred square of the calibration's side. */
async function addFolderDetector(report: InspectReport, bytes: Buffer, file: string, folder: StableDiffusionPipeline, o: InspectOptions, tooLarge: string | undefined): Promise<void> {
  const cal = o.calibration;
  if (!cal) {
    report.detector = { status: 'skipped', reason: o.calibrationMissing ?? 'no detector calibration' };
    return;
  }
  const side = cal.crop as number;
  const [w, h] = [report.width ?? 0, report.height ?? 0];
  const skip = tooLarge ?? (w < side || h < side ? `the image is ${w}x${h}, smaller than the ${side}x${side} square the detector was calibrated on` : undefined);
  if (skip) {
    report.detector = { status: 'skipped', reason: skip };
    return;
  }
  o.onStep?.('detector: reconstructing');
  const image = await readImage(file, { channels: 3, convert: true, crop: side });
  const profile = chooseProfile(cal, report.format === 'jpeg' ? estimateJpegQuality(bytes) : undefined);
  const [d] = await detectWithAutoencoder({ data: image.data, count: 1, shape: image.shape }, folder, cal, { profile, hash: cal.modelHash });
  report.detector = { status: 'checked', score: d.score, probability: d.probability, flagged: d.flagged, profile };
  const saved = await o.saveHeatMap?.(file, d.heatMap, [side, side]);
  if (saved) report.detector.heatMap = saved;
}

/** A detected watermark's payload as the report gives it: the value, its estimated reliability and the bits that may be wrong. */
function payloadFields(d: Parameters<typeof readPayload>[0]) {
  const r = readPayload(d);
  return { payload: r.payload, payloadBits: r.payloadBits, payloadReliability: r.reliability, uncertainBits: r.uncertainBits };
}
