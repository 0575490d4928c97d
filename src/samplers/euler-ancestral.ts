/**
 * Euler ancestral: an Euler step down to sigma_down, then fresh noise of size sigma_up, with
 * sigma_up^2 + sigma_down^2 = sigma_next^2 (k-diffusion's sample_euler_ancestral, diffusers'
 * EulerAncestralDiscreteScheduler). Stochastic: a sampler, not an ODE solver.
 */
import { TorchGenerator } from '../diffusion/index.js';
import { StepOptions, StepOutput, checkSameLength } from './common.js';
import { EulerDiscreteScheduler } from './euler.js';
import { KSchedulerConfig, predictX0Sigma } from './sigmas.js';

export class EulerAncestralDiscreteScheduler extends EulerDiscreteScheduler {
  private readonly defaultGenerator = new TorchGenerator(0);
  constructor(config: Partial<KSchedulerConfig> = {}) {
    super(config, 'EulerAncestralDiscreteScheduler');
  }

  override step(modelOutput: Float32Array, _timestep: number, sample: Float32Array, opts: StepOptions = {}): StepOutput {
    checkSameLength(modelOutput, sample, 'EulerAncestralDiscreteScheduler');
    if (this.index >= this.timesteps.length) throw new Error('EulerAncestralDiscreteScheduler.step: all steps are done; call setTimesteps again');
    const from = this.sigmas[this.index];
    const to = this.sigmas[this.index + 1];
    const x0 = predictX0Sigma(this.config.predictionType, modelOutput, sample, from);
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(to * to - up * up);
    const noise = opts.varianceNoise ?? (opts.generator ?? this.defaultGenerator).randn(sample.length);
    const prevSample = sample.map((x, i) => x + ((x - x0[i]) / from) * (down - from) + noise[i] * up);
    this.index++;
    return { prevSample, predOriginalSample: x0 };
  }
}
