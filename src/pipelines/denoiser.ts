/** A guided denoiser over a run's weights, compiled for onnxruntime-node. */
import type { RuntimeOptions } from '../engine/index.js';
import type { Denoiser } from '../samplers/scheduler.js';
import type { RunConfig } from '../run/config.js';
import { RunNetwork } from '../run/run.js';
import type { TextConditioner } from '../run/text.js';
import { Guidance, checkGuidance, guidedDenoiser } from './guidance.js';

/**
 * A denoiser that owns its network: `makeDenoiser(config, weights, runtime, guidance, text)` for
 * code that drives a scheduler by hand; `DiffusionPipeline` is the usual front door.
 */
export function makeDenoiser(
  config: RunConfig,
  weights: ReadonlyMap<string, Float32Array>,
  runtime: RuntimeOptions = {},
  guidance: Guidance = {},
  text?: TextConditioner,
): Denoiser & { release(): Promise<void> } {
  checkGuidance(config, guidance);
  const network = new RunNetwork(config, weights, runtime, text);
  return Object.assign(guidedDenoiser(network, guidance), { release: () => network.release() });
}
