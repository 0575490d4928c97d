/**
 * A detector of this model's samples, from the model itself (white box, no detector network).
 *
 * The signal: the model's noise estimate on the *clean* image, scaled as if it were x_t,
 * eps(sqrt(alphaBar_t) x, t), at a few small t. Up to the factor -sqrt(1 - alphaBar_t) this is
 * the model's score at the image: how far the model would move it towards its own data
 * manifold. Samples end where the reverse process stops moving them, so the model sees little
 * "noise" in them; real images keep details the model does not reproduce. This is the
 * reconstruction-error idea of AEROBLADE (arXiv 2401.17879) and the stepwise error of SeDID
 * (arXiv 2307.06272) taken to a single deterministic step with no added noise. On
 * runs/mnist-final (400 + 400, ad hoc, .tmp pilots): the mean squared estimate at t = 100 alone
 * separated samples from held-out test digits with AUC 0.895; with drawn noise added, as the
 * training loss does, only 0.70; DIRE's reconstruction error after 5-20 inversion steps, 0.37-0.48.
 *
 * Latent runs add AEROBLADE's signal, the autoencoder's reconstruction error, and read the
 * denoiser on the image's latent (see syntheticFeatures).
 *
 * Features: statistics of |eps| at each timestep (see syntheticFeatures). A logistic regression
 * turns them into the log-odds that the image is a sample, its penalty chosen by cross-validation.
 * It is fitted on a calibration split (real images never used for testing, samples drawn with
 * their own seeds from two samplers, DDIM 50 and DPM-Solver++ 20): once for lossless files (as
 * saved, and resized by half and back, since a resized image is still a PNG) and once per JPEG
 * quality (95, 90, 75, 50), since JPEG's quantisation noise moves every feature; a JPEG file is
 * scored with the profile of the quality nearest its own (estimated from its quantisation table).
 * Real and generated calibration images go through the same processing, so the format is never
 * the signal.
 */
import type { DiffusionPipeline, ImageBatch } from '../pipelines/index.js';
import type { SchedulerName } from '../samplers/registry.js';
import { LogisticModel, crossValidatedLogistic, logistic, logit } from './logistic.js';
import { jpegRoundTrip, quantize8, resizeRoundTrip } from './processing.js';

/** Fractions of T at which the model's estimate is read: t = round(f * T). */
export const DETECTOR_TIMESTEP_FRACTIONS = [0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3] as const;

/**
 * Which calibration applies: 'lossless' (PNG and other exact files) or 'jpegQ' (a JPEG file saved
 * at quality Q; chooseProfile picks the calibrated quality nearest the file's).
 */
export type DetectorProfile = 'lossless' | `jpeg${number}`;

/** A detector calibration for one model (stored as detector.json in the run folder). */
export interface DetectorCalibration {
  format: 'diffuse-detector-1';
  /** SHA-256 of the model's weights: a calibration applies to exactly one model. */
  modelHash: string;
  /** The features' kind (see syntheticFeatures); files without it are pixel-space calibrations. */
  space?: DetectorSpace;
  timesteps: number[];
  /** Autoencoder calibrations: the side of the centred square every image is read as. */
  crop?: number;
  /** 'lossless' and one 'jpegQ' per calibrated JPEG quality. */
  profiles: Partial<Record<DetectorProfile, DetectorProfileModel>> & { lossless: DetectorProfileModel };
  /** What it was fitted on, for the record. */
  data: {
    real: string;
    realCount: number;
    syntheticCount: number;
    syntheticSettings: string;
    jpegQualities: number[];
    resizeFactors: number[];
  };
}

export interface DetectorProfileModel extends LogisticModel {
  /** The score above which 1% of the calibration split's real images fall, scored out of fold (the 1%-FPR threshold). */
  threshold1pct: number;
  /** The L2 penalty cross-validation chose. */
  lambda: number;
}

export interface SyntheticDetection {
  /** Log-odds that the image is a sample of this model (higher = more likely generated). */
  score: number;
  /** logistic(score) = 1 / (1 + e^-score): calibrated with equal numbers of real and generated images (a prior of 1/2). */
  probability: number;
  /** score > the profile's 1%-FPR threshold from calibration. */
  flagged: boolean;
  profile: DetectorProfile;
  /**
   * [H, W]: where the model sees what it would not have made: the mean |eps| over timesteps and
   * channels at each pixel (pixel-space runs), or the mean autoencoder reconstruction error (latent runs).
   */
  heatMap: Float32Array;
}

export interface FeatureOptions {
  /** Images per model evaluation (default 250). */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** The detector's timesteps for a model with T training steps. */
export function detectorTimesteps(T: number): number[] {
  return DETECTOR_TIMESTEP_FRACTIONS.map((f) => Math.max(1, Math.round(f * T)));
}

/** Features per timestep of a pixel-space run (see syntheticFeatures). */
export const FEATURES_PER_TIMESTEP = 7;
/** Features per timestep of a latent run: statistics of the denoiser's estimate on the latent grid. */
export const LATENT_FEATURES_PER_TIMESTEP = 3;
/** Features of the autoencoder's reconstruction error (latent runs only). */
export const RECONSTRUCTION_FEATURES = 7;

/**
 * Which kind of model a calibration's features come from: pixel-space (the default of older
 * files), latent (a Diffuse latent run), or autoencoder (the autoencoder's reconstruction error
 * alone: a Stable Diffusion folder, autoencoder-detector.ts).
 */
export type DetectorSpace = 'pixel' | 'latent' | 'autoencoder';

/** The length of a calibration's feature vector. */
export function featureCount(space: DetectorSpace, timesteps: number): number {
  if (space === 'autoencoder') return RECONSTRUCTION_FEATURES;
  return space === 'latent' ? RECONSTRUCTION_FEATURES + LATENT_FEATURES_PER_TIMESTEP * timesteps : FEATURES_PER_TIMESTEP * timesteps;
}

// Floors keep the logarithm finite for a (theoretical) all-zero estimate or an empty region.
const logMean = (sum: number, n: number) => Math.log(n ? sum / n + 1e-12 : 1e-12);

/** Sum of the largest `top` values of `magnitudes` (sorted in place). */
function largestSum(magnitudes: Float32Array, top: number): number {
  magnitudes.sort();
  let largest = 0;
  for (let i = magnitudes.length - top; i < magnitudes.length; i++) largest += magnitudes[i];
  return largest;
}

/** Three statistics of an error map e, as logarithms: mean |e|, mean e^2, and the mean of the largest 5% of |e|. */
function errorStats(e: Float32Array): [number, number, number] {
  const per = e.length;
  const magnitudes = new Float32Array(per);
  let [l1, l2] = [0, 0];
  for (let i = 0; i < per; i++) {
    const a = Math.abs(e[i]);
    magnitudes[i] = a;
    l1 += a;
    l2 += a * a;
  }
  const top = Math.max(1, Math.ceil(0.05 * per));
  return [logMean(l1, per), logMean(l2, per), logMean(largestSum(magnitudes, top), top)];
}

/**
 * Seven statistics of an error map e over one image x (both [C, H, W]), as logarithms: mean |e|
 * and mean e^2; the same over x's dark pixels (x < -0.5) and over the rest; the mean of the
 * largest 5% of |e|. Adds |e| / (C * parts) to the heat map at each pixel.
 */
export function regionStats(e: Float32Array, x: Float32Array, plane: number, heat: Float32Array, parts: number): number[] {
  const per = e.length;
  const c = per / plane;
  let [dark1, dark2, bright1, bright2, nDark] = [0, 0, 0, 0, 0];
  for (let i = 0; i < per; i++) {
    const a = Math.abs(e[i]);
    if (x[i] < -0.5) {
      dark1 += a;
      dark2 += a * a;
      nDark++;
    } else {
      bright1 += a;
      bright2 += a * a;
    }
    heat[i % plane] += a / (c * parts);
  }
  const [l1, l2, largest] = errorStats(e);
  return [l1, l2, logMean(dark1, nDark), logMean(dark2, nDark), logMean(bright1, per - nDark), logMean(bright2, per - nDark), largest];
}

/**
 * Per image: the feature vector and the heat map.
 *
 * Pixel-space runs: per timestep, regionStats of the model's estimate eps(sqrt(alphaBar_t) x, t).
 * Dark and bright regions are split because JPEG and resizing change them differently: with the
 * split, JPEG 90 went from AP 0.904 to 0.949 and resizing from 0.670 to 0.869 (MNIST, 600 + 600
 * images per class, ad hoc .tmp pilot). The heat map is the mean |eps| over timesteps and channels.
 *
 * Latent runs: AEROBLADE's signal (Ricker et al. 2024, arXiv 2401.17879): the autoencoder's
 * reconstruction error x - D(E(x)), whose regionStats come first; an image the decoder made lies
 * on the decoder's output manifold and comes back closer than a photograph or a drawing does.
 * AEROBLADE measures the error with LPIPS; here the plain pixel error (no second network). Then,
 * per timestep, the log mean |eps|, log mean eps^2 and log mean of the largest 5% of |eps| of the
 * latent denoiser on the scaled latent z = E(x) (the pixel runs' signal on the latent grid). The
 * heat map is the mean reconstruction error over channels at each pixel.
 */
export async function syntheticFeatures(
  images: ImageBatch,
  pipe: DiffusionPipeline,
  timesteps: readonly number[] = detectorTimesteps(pipe.config.schedule.numTrainTimesteps),
  o: FeatureOptions = {},
): Promise<{ features: number[][]; heatMaps: Float32Array[] }> {
  const [c, h, w] = images.shape;
  const plane = h * w;
  const per = c * plane;
  const features = Array.from({ length: images.count }, () => [] as number[]);
  const heatMaps = Array.from({ length: images.count }, () => new Float32Array(plane));
  const image = (k: number) => images.data.subarray(k * per, (k + 1) * per);
  let sample = images;
  if (pipe.codec) {
    const latents = await pipe.codec.encode(images.data, images.count);
    const back = await pipe.codec.decode(latents, images.count);
    for (let k = 0; k < images.count; k++) {
      const error = image(k).map((v, i) => v - back[k * per + i]);
      features[k].push(...regionStats(error, image(k), plane, heatMaps[k], 1));
    }
    sample = { data: latents, count: images.count, shape: pipe.latentShape };
  }
  const lper = sample.data.length / images.count;
  const { alphasCumprod } = pipe.tables;
  for (const [j, t] of timesteps.entries()) {
    const sa = Math.sqrt(alphasCumprod[t]);
    const eps = await pipe.predictNoise({ sample: { ...sample, data: sample.data.map((v) => sa * v) }, timestep: t, batchSize: o.batchSize });
    for (let k = 0; k < images.count; k++) {
      const e = eps.data.subarray(k * lper, (k + 1) * lper);
      if (!pipe.codec) {
        features[k].push(...regionStats(e, image(k), plane, heatMaps[k], timesteps.length));
        continue;
      }
      features[k].push(...errorStats(e));
    }
    o.onProgress?.(j + 1, timesteps.length);
  }
  return { features, heatMaps };
}

/**
 * Where a data set's held-out split is cut between testing and calibrating the detector: images
 * from this index on calibrate (`diffuse detector calibrate`), those before test (bench:detect).
 * Index 5000 for the 10,000 test images of MNIST and Fashion-MNIST; half way for smaller splits
 * (emoji's 746).
 */
export function calibrationStart(heldOut: number): number {
  return heldOut >= 10_000 ? 5000 : Math.floor(heldOut / 2);
}

export interface CalibrateOptions extends FeatureOptions {
  /** Real images the model never trained on (a held-out split); the same number of samples is drawn. */
  real: ImageBatch;
  /** Where the real images came from, for the record (e.g. "mnist test[5000, 6000)"). */
  realSource: string;
  /** Seed of the calibration samples (default 1001; keep it apart from seeds used for testing). */
  seed?: number;
  /** Samplers of the calibration samples, sharing the count (default: DDIM 50 with the run's eta, and DPM-Solver++ 20). */
  samplers?: { scheduler: SchedulerName; steps: number }[];
  /** JPEG qualities with a profile each: every image is re-encoded at each (default 95, 90, 75, 50). */
  jpegQualities?: number[];
  /** Resize factors of the 'lossless' profile: each image is also fitted resized by each and back (default 0.5); [] for none. */
  resizeFactors?: number[];
  /** Called with a phase name as the work goes on. */
  onPhase?: (phase: string) => void;
}

/**
 * Fits the detector for this model: draws as many samples as there are real images, saves both
 * as 8-bit (as files are), and fits the lossless and JPEG profiles. Real images must be held out
 * from training (the model may have memorised training images) and from any test of the detector.
 */
export async function calibrateDetector(pipe: DiffusionPipeline, o: CalibrateOptions): Promise<DetectorCalibration> {
  const { real } = o;
  const [mc, mh, mw] = pipe.imageShape;
  const [c, h, w] = real.shape;
  if (c !== mc || h !== mh || w !== mw) throw new Error(`calibration images are ${c}x${h}x${w} but the model makes ${mc}x${mh}x${mw}`);
  if (real.count < 50) throw new Error(`calibration needs at least 50 real images, got ${real.count}`);
  const qualities = o.jpegQualities ?? [95, 90, 75, 50];
  const timesteps = detectorTimesteps(pipe.config.schedule.numTrainTimesteps);
  // Steps are capped at half the run's training timesteps (small test runs have fewer than 50),
  // where every scheduler and spacing still takes distinct timesteps.
  const T = pipe.config.schedule.numTrainTimesteps;
  const samplers = (o.samplers ?? [
    { scheduler: 'ddim', steps: 50 },
    { scheduler: 'dpm++2m', steps: 20 },
  ]).map((x) => ({ ...x, steps: Math.min(x.steps, Math.max(1, Math.floor(T / 2))) }));
  const seed = o.seed ?? 1001;
  const parts: Float32Array[] = [];
  for (const [i, s] of samplers.entries()) {
    const n = Math.floor((real.count * (i + 1)) / samplers.length) - Math.floor((real.count * i) / samplers.length);
    o.onPhase?.(`drawing ${n} samples (${s.scheduler}, ${s.steps} steps)`);
    parts.push((await pipe.generate({ count: n, seed: seed + i, scheduler: s.scheduler, steps: s.steps, batchSize: o.batchSize })).data);
  }
  const all = new Float32Array(real.data.length);
  parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
  if (!all.every(Number.isFinite)) throw new Error(`the model's samples (${samplers.map((x) => `${x.scheduler} ${x.steps} steps`).join(', ')}) hold values that are not finite: its sampler diverged, and a detector fitted on them would mean nothing`);
  const synthetic = quantize8({ data: all, count: real.count, shape: real.shape });
  const profiles = await fitProfiles(quantize8(real), synthetic, async (batch) => (await syntheticFeatures(batch, pipe, timesteps, o)).features, { ...o, jpegQualities: qualities });
  return {
    format: 'diffuse-detector-1',
    modelHash: pipe.modelHash,
    space: pipe.codec ? 'latent' : 'pixel',
    timesteps,
    profiles,
    data: { real: o.realSource, realCount: real.count, syntheticCount: real.count, syntheticSettings: `${samplers.map((x) => `${x.scheduler} ${x.steps} steps`).join(', ')}; seeds from ${seed}`, jpegQualities: qualities, resizeFactors: o.resizeFactors ?? [0.5] },
  };
}

/**
 * The detector's profiles from 8-bit real and generated images (any counts, one shape), with
 * `features` giving each image's feature vector: 'lossless' on the images as they are and resized
 * by each factor and back, and one profile per JPEG quality on both sets re-encoded at it. Both
 * sets always go through the same processing, so that the format is never the signal. Each profile
 * is a logistic regression whose penalty is chosen by 5-fold cross-validation (an image and its
 * processed copies stay in one fold), with the threshold above which 1% of the real images'
 * out-of-fold scores fall.
 */
export async function fitProfiles(
  real: ImageBatch,
  synthetic: ImageBatch,
  features: (batch: ImageBatch) => Promise<number[][]>,
  o: { jpegQualities: readonly number[]; resizeFactors?: readonly number[]; onPhase?: (phase: string) => void },
): Promise<DetectorCalibration['profiles']> {
  const fit = async (pairs: [ImageBatch, ImageBatch][], name: DetectorProfile): Promise<DetectorProfileModel> => {
    o.onPhase?.(`fitting the ${name} profile`);
    const x: number[][] = [];
    const y: number[] = [];
    const groups: number[] = [];
    for (const [r, s] of pairs) {
      const fr = await features(r);
      const fs = await features(s);
      x.push(...fr, ...fs);
      y.push(...fr.map(() => 0), ...fs.map(() => 1));
      // Image k of the real set is group k, of the synthetic set n + k, in every processing.
      groups.push(...fr.map((_, k) => k), ...fs.map((_, k) => real.count + k));
    }
    // The penalty by 5-fold cross-validation; the threshold from out-of-fold scores of the real images,
    // so that a calibration with few images does not set it on scores the model was fitted to.
    const { model, lambda, outOfFold } = crossValidatedLogistic(x, y, groups);
    const scores = outOfFold.filter((_, i) => y[i] === 0).sort((a, b) => a - b);
    return { ...model, lambda, threshold1pct: scores[Math.min(scores.length - 1, Math.ceil(0.99 * scores.length) - 1)] };
  };
  const losslessPairs: [ImageBatch, ImageBatch][] = [[real, synthetic]];
  for (const f of o.resizeFactors ?? [0.5]) losslessPairs.push([await resizeRoundTrip(real, f), await resizeRoundTrip(synthetic, f)]);
  const profiles: DetectorCalibration['profiles'] = { lossless: await fit(losslessPairs, 'lossless') };
  for (const q of o.jpegQualities) profiles[`jpeg${q}`] = await fit([[await jpegRoundTrip(real, q), await jpegRoundTrip(synthetic, q)]], `jpeg${q}`);
  return profiles;
}

/** Checks that a parsed detector.json is a calibration of this format (and of this model, when a hash is given). */
export function checkCalibration(v: unknown, modelHash?: string): DetectorCalibration {
  const c = v as DetectorCalibration;
  const okModel = (m: DetectorProfileModel | undefined, d: number) =>
    m !== undefined && [m.mean, m.scale, m.weights].every((a) => Array.isArray(a) && a.length === d && a.every(Number.isFinite)) && Number.isFinite(m.bias) && Number.isFinite(m.threshold1pct);
  if (c?.format !== 'diffuse-detector-1' || !Array.isArray(c.timesteps) || !c.profiles) throw new Error('not a Diffuse detector calibration (format diffuse-detector-1)');
  if (c.space !== undefined && c.space !== 'pixel' && c.space !== 'latent' && c.space !== 'autoencoder') throw new Error(`detector calibration: unknown space '${String(c.space)}'`);
  if (c.space === 'autoencoder' && !(Number.isInteger(c.crop) && (c.crop as number) >= 8)) throw new Error('detector calibration: an autoencoder calibration needs its crop (a side of at least 8 pixels)');
  const d = featureCount(c.space ?? 'pixel', c.timesteps.length);
  if (!okModel(c.profiles.lossless, d)) throw new Error("detector calibration: the 'lossless' profile is missing or malformed");
  for (const [name, m] of Object.entries(c.profiles)) if (!/^(lossless|jpeg\d+)$/.test(name) || !okModel(m, d)) throw new Error(`detector calibration: profile '${name}' is malformed`);
  if (modelHash && c.modelHash !== modelHash) throw new Error(`the detector was calibrated for a different ${c.space === 'autoencoder' ? 'autoencoder' : 'model'} (its hash differs): calibrate it again for this ${c.space === 'autoencoder' ? 'folder' : 'run'}`);
  return c;
}

/** The profile for a file: 'lossless' unless it is a JPEG, then the calibrated quality nearest its own. */
export function chooseProfile(calibration: DetectorCalibration, jpegQuality?: number): DetectorProfile {
  if (jpegQuality === undefined) return 'lossless';
  const qs = Object.keys(calibration.profiles)
    .filter((k) => k.startsWith('jpeg'))
    .map((k) => Number(k.slice(4)));
  if (!qs.length) return 'lossless';
  const q = qs.reduce((a, b) => (Math.abs(b - jpegQuality) < Math.abs(a - jpegQuality) ? b : a));
  return `jpeg${q}`;
}

/** Scores each image: the log-odds and probability that it is a sample of this model, with a heat map. */
export async function detectSynthetic(
  images: ImageBatch,
  pipe: DiffusionPipeline,
  calibration: DetectorCalibration,
  o: FeatureOptions & { profile?: DetectorProfile | readonly DetectorProfile[] } = {},
): Promise<SyntheticDetection[]> {
  checkCalibration(calibration, pipe.modelHash);
  const space: DetectorSpace = pipe.codec ? 'latent' : 'pixel';
  if ((calibration.space ?? 'pixel') !== space) throw new Error(`the detector was calibrated for a ${calibration.space ?? 'pixel'}-space model, but this run is ${space === 'latent' ? 'a latent' : 'a pixel-space'} run: calibrate it again for this run`);
  const { features, heatMaps } = await syntheticFeatures(images, pipe, calibration.timesteps, o);
  return features.map((f, k) => {
    const profile = (Array.isArray(o.profile) ? o.profile[k] : o.profile) ?? 'lossless';
    const m = calibration.profiles[profile as DetectorProfile];
    if (!m) throw new Error(`the detector calibration has no profile '${profile}' (it has ${Object.keys(calibration.profiles).join(', ')})`);
    const score = logit(m, f);
    return { score, probability: logistic(score), flagged: score > m.threshold1pct, profile: profile as DetectorProfile, heatMap: heatMaps[k] };
  });
}
