/**
 * A detector of images made through a Stable Diffusion folder's autoencoder, from the
 * autoencoder alone: AEROBLADE's signal (Ricker et al. 2024, arXiv 2401.17879). An image the
 * decoder made lies on the decoder's outputs, so encoding and decoding it again, x -> D(E(x)),
 * changes it less than it changes a photograph or a drawing. The features are the seven
 * statistics of the error x - D(E(x)) that latent runs use (regionStats in synthetic.ts);
 * AEROBLADE measures the error with LPIPS, this the plain pixel error (no second network).
 *
 * It says "made through this autoencoder", not "made by this model": every model that decodes
 * with the same autoencoder leaves the same mark (AEROBLADE's finding, and ours on latent runs).
 *
 * Every image is read as its centred square of `crop` pixels, at its own resolution (resizing
 * would blur away what the detector measures), and calibrated as synthetic.ts calibrates a run:
 * 8-bit real images and images the folder made, through the same processing (as saved, resized by
 * half and back, JPEG at each quality), a logistic regression per profile and its 1%-FPR
 * threshold. The generated images are the analyst's own (for example `diffuse sample --model DIR
 * --images OUT`): drawing them here at 512 px would cost minutes each on a CPU.
 */
import type { StableDiffusionPipeline } from '../latent/index.js';
import type { ImageBatch } from '../pipelines/index.js';
import { logistic, logit } from './logistic.js';
import { quantize8 } from './processing.js';
import { DetectorCalibration, DetectorProfile, SyntheticDetection, checkCalibration, fitProfiles, regionStats } from './synthetic.js';

/** Side of the centred square the detector reads by default: Stable Diffusion 1.x's native size. */
export const DEFAULT_DETECTOR_CROP = 512;

/** Per image: the seven statistics of x - D(E(x)) and the heat map (mean |error| over channels at each pixel). */
export async function reconstructionFeatures(images: ImageBatch, folder: StableDiffusionPipeline, o: { onProgress?: (done: number, total: number) => void } = {}): Promise<{ features: number[][]; heatMaps: Float32Array[] }> {
  const [c, h, w] = images.shape;
  if (c !== 3 || h % folder.vaeScale || w % folder.vaeScale) throw new Error(`the autoencoder reads colour images with sides that are multiples of ${folder.vaeScale}, got ${c}x${h}x${w}`);
  const plane = h * w;
  const per = c * plane;
  const features: number[][] = [];
  const heatMaps: Float32Array[] = [];
  // One image at a time: Stable Diffusion's autoencoder at 512 px takes gigabytes per image.
  for (let k = 0; k < images.count; k++) {
    const x = images.data.subarray(k * per, (k + 1) * per);
    const back = await folder.decode(await folder.encode(x, 1, h, w, undefined), 1, h / folder.vaeScale, w / folder.vaeScale);
    const heat = new Float32Array(plane);
    features.push(regionStats(x.map((v, i) => v - back[i]), x, plane, heat, 1));
    heatMaps.push(heat);
    o.onProgress?.(k + 1, images.count);
  }
  return { features, heatMaps };
}

export interface AutoencoderCalibrateOptions {
  /** Real images (never made by a generator), each read as the centred square of `crop`. */
  real: ImageBatch;
  /** Images made through this folder's autoencoder, as many or a similar number, the same shape. */
  generated: ImageBatch;
  /** Where each set came from, for the record. */
  realSource: string;
  generatedSource: string;
  /** JPEG qualities with a profile each (default 95, 90, 75, 50). */
  jpegQualities?: number[];
  /** Resize factors of the 'lossless' profile (default 0.5); [] for none. */
  resizeFactors?: number[];
  onPhase?: (phase: string) => void;
  onProgress?: (done: number, total: number) => void;
}

/** Fits the autoencoder detector of a Stable Diffusion folder on real images and images it made. */
export async function calibrateAutoencoderDetector(folder: StableDiffusionPipeline, o: AutoencoderCalibrateOptions): Promise<DetectorCalibration> {
  const [c, h, w] = o.real.shape;
  if (o.generated.shape.some((d, i) => d !== o.real.shape[i])) throw new Error(`the real images are ${c}x${h}x${w} but the generated ones ${o.generated.shape.join('x')}: read both as the same square`);
  if (h !== w) throw new Error(`calibration images are read as squares, got ${h}x${w}`);
  for (const [name, set] of [['real', o.real], ['generated', o.generated]] as const) if (set.count < 50) throw new Error(`calibration needs at least 50 ${name} images, got ${set.count}`);
  const qualities = o.jpegQualities ?? [95, 90, 75, 50];
  const resizeFactors = o.resizeFactors ?? [0.5];
  const profiles = await fitProfiles(quantize8(o.real), quantize8(o.generated), async (batch) => (await reconstructionFeatures(batch, folder, o)).features, { jpegQualities: qualities, resizeFactors, onPhase: o.onPhase });
  return {
    format: 'diffuse-detector-1',
    modelHash: await folder.autoencoderHash(),
    space: 'autoencoder',
    timesteps: [],
    crop: h,
    profiles,
    data: { real: o.realSource, realCount: o.real.count, syntheticCount: o.generated.count, syntheticSettings: o.generatedSource, jpegQualities: qualities, resizeFactors },
  };
}

/** Scores images (each the calibration's centred square): the log-odds that the folder's autoencoder made it, and a heat map. */
export async function detectWithAutoencoder(
  images: ImageBatch,
  folder: StableDiffusionPipeline,
  calibration: DetectorCalibration,
  o: { profile?: DetectorProfile; hash?: string } = {},
): Promise<SyntheticDetection[]> {
  checkCalibration(calibration, o.hash ?? (await folder.autoencoderHash()));
  if (calibration.space !== 'autoencoder') throw new Error(`the detector calibration is for a Diffuse run (${calibration.space ?? 'pixel'} space), not for a Stable Diffusion folder's autoencoder`);
  const [, h, w] = images.shape;
  if (h !== calibration.crop || w !== calibration.crop) throw new Error(`the detector reads ${calibration.crop}x${calibration.crop} squares, got ${w}x${h}`);
  const profile = o.profile ?? 'lossless';
  const m = calibration.profiles[profile];
  if (!m) throw new Error(`the detector calibration has no profile '${profile}' (it has ${Object.keys(calibration.profiles).join(', ')})`);
  const { features, heatMaps } = await reconstructionFeatures(images, folder);
  return features.map((f, k) => {
    const score = logit(m, f);
    return { score, probability: logistic(score), flagged: score > m.threshold1pct, profile, heatMap: heatMaps[k] };
  });
}
