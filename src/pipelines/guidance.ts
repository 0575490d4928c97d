/**
 * Conditioning and classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598): a
 * conditional model trained with its condition dropped is both conditional and unconditional,
 * and eps = eps(x, null) + w (eps(x, c) - eps(x, null)) steers samples towards c. Both
 * predictions come from one batched evaluation of 2N images.
 */
import type { Denoiser } from '../samplers/scheduler.js';
import type { RunConfig } from '../run/config.js';
import { conditioningOf } from '../run/conditioning.js';
import type { Feeds } from '../run/run.js';
import { OptionError } from '../engine/errors.js';

/**
 * What guidance needs of a network: the run's config, the image shape, prompt feeds (text runs),
 * and one evaluation of n images at timestep t with their condition feeds. RunNetwork
 * (onnxruntime-node) meets it, and so does the studio page's onnxruntime-web session.
 */
export interface ConditionedNetwork {
  readonly config: RunConfig;
  /** [channels, height, width] of one image. */
  readonly shape: [number, number, number];
  /** Text-conditional runs: the graph feeds of a batch of prompts. */
  readonly text?: { feeds(prompts: readonly string[]): Promise<Feeds> };
  run(x: Float32Array, t: number, n: number, conditions: Feeds): Promise<Float32Array>;
}

export interface Guidance {
  /** Class of each generated image (class-conditional models); omitted: the unconditional (null) class. */
  labels?: Int32Array;
  /** Prompt of each generated image (text-conditional models); omitted: the empty prompt. */
  prompts?: readonly string[];
  /** Prompts to steer away from: they replace the empty prompt of the unconditional branch. */
  negativePrompts?: readonly string[];
  /** Classifier-free guidance weight w: eps = eps(x, empty) + w (eps(x, c) - eps(x, empty)); 1 = plain conditional. */
  scale?: number;
  /** Guidance rescale phi (Lin et al. 2023, arXiv 2305.08891, eq. 15-16): match the guided prediction's std to the conditional one's. */
  rescale?: number;
}

/** Joins two batches of feeds along the batch axis. */
function concatFeeds(a: Feeds, b: Feeds): Feeds {
  const out: Feeds = {};
  for (const k of Object.keys(a)) {
    const [x, y] = [a[k], b[k]];
    const data = x.data instanceof BigInt64Array ? new BigInt64Array(x.data.length + y.data.length) : new Float32Array(x.data.length + y.data.length);
    data.set(x.data as never);
    data.set(y.data as never, x.data.length);
    out[k] = { data, shape: [x.shape[0] + y.shape[0], ...x.shape.slice(1)] };
  }
  return out;
}

/** Checks that a guidance fits the run: conditions only for conditional runs, of the run's kind. */
export function checkGuidance(config: RunConfig, guidance: Guidance): void {
  const kind = conditioningOf(config);
  const classes = kind === 'class';
  const conditional = kind !== 'none';
  if (!conditional && (guidance.labels || guidance.prompts || guidance.negativePrompts || (guidance.scale ?? 1) !== 1)) {
    throw new OptionError('this run is unconditional: it takes no `classLabel`, `prompt` or `guidance` (a run takes them when trained with `classConditioning` or `text` conditioning)');
  }
  if (!classes && guidance.labels) throw new Error('this run is text-conditional: give prompts, not class labels');
  if (!config.text && (guidance.prompts || guidance.negativePrompts)) throw new OptionError('this run is not text-conditional: it takes no `prompt` (a run takes prompts when trained with `text` conditioning)');
  if (classes && guidance.labels) {
    const K = config.model.numClasses as number;
    for (const l of guidance.labels) if (!(l >= 0 && l < K)) throw new Error(`class ${l} is out of range: the model has classes 0..${K - 1}`);
  }
}

/**
 * The network as a Denoiser for a batch of n images under one guidance: the conditional and
 * unconditional (or negative-prompt) predictions combined with weight w.
 */
export function guidedDenoiser(network: ConditionedNetwork, guidance: Guidance = {}): Denoiser {
  const { config, text } = network;
  checkGuidance(config, guidance);
  const kind = conditioningOf(config);
  const classes = kind === 'class';
  const conditional = kind !== 'none';
  const w = guidance.scale ?? 1;
  const per = network.shape.reduce((a, b) => a * b, 1);
  const nullClass = BigInt(config.model.numClasses ?? 0);
  const labelFeeds = (labels: BigInt64Array): Feeds => ({ label: { data: labels, shape: [labels.length] } });
  const checkCount = (what: string, m: number, n: number) => {
    if (m !== n) throw new Error(`guidance: ${m} ${what} for ${n} images`);
  };
  /** Condition feeds for n images: the conditional branch and the unconditional (or negative) branch. */
  const conditionFeeds = async (n: number): Promise<{ cond: Feeds; uncond: Feeds }> => {
    if (classes) {
      const uncond = labelFeeds(new BigInt64Array(n).fill(nullClass));
      if (!guidance.labels) return { cond: uncond, uncond };
      checkCount('labels', guidance.labels.length, n);
      return { cond: labelFeeds(BigInt64Array.from(guidance.labels, BigInt)), uncond };
    }
    if (text) {
      const prompts = guidance.prompts ?? new Array<string>(n).fill('');
      const negatives = guidance.negativePrompts ?? new Array<string>(n).fill('');
      checkCount('prompts', prompts.length, n);
      checkCount('negative prompts', negatives.length, n);
      return { cond: await text.feeds(prompts), uncond: await text.feeds(negatives) };
    }
    return { cond: {}, uncond: {} };
  };
  let conditions: { n: number; value: Promise<{ cond: Feeds; uncond: Feeds }> } | undefined;
  return async (x: Float32Array, t: number, batch: number) => {
    if (conditions?.n !== batch) conditions = { n: batch, value: conditionFeeds(batch) };
    const { cond, uncond } = await conditions.value;
    if (!conditional || w === 1) return network.run(x, t, batch, cond);
    const both = new Float32Array(2 * batch * per);
    both.set(x);
    both.set(x, batch * per);
    const out = await network.run(both, t, 2 * batch, concatFeeds(cond, uncond));
    const c = out.subarray(0, batch * per);
    const u = out.subarray(batch * per);
    const guided = c.map((ci, i) => u[i] + w * (ci - u[i]));
    if (guidance.rescale) rescaleGuidance(guided, c, batch, per, guidance.rescale);
    return guided;
  };
}

/** Lin et al. 2023 eq. 15-16, per image: x = phi * x * std(cond) / std(x) + (1 - phi) * x. */
function rescaleGuidance(guided: Float32Array, cond: Float32Array, batch: number, per: number, phi: number): void {
  const std = (a: Float32Array, k: number) => {
    let m = 0;
    for (let i = k * per; i < (k + 1) * per; i++) m += a[i];
    m /= per;
    let v = 0;
    for (let i = k * per; i < (k + 1) * per; i++) v += (a[i] - m) ** 2;
    return Math.sqrt(v / (per - 1));
  };
  for (let k = 0; k < batch; k++) {
    const factor = phi * (std(cond, k) / std(guided, k)) + (1 - phi);
    for (let i = k * per; i < (k + 1) * per; i++) guided[i] *= factor;
  }
}
