/**
 * Heun's method (Karras et al. 2022, Algorithm 1): an Euler step, then a correction with the
 * average of the slopes at both ends; second order, two model evaluations per step (the last
 * step to sigma = 0 is plain Euler). As diffusers' HeunDiscreteScheduler, its timesteps list
 * repeats each inner timestep, and `step` is called once per model evaluation.
 */
import { StepOptions, StepOutput, checkSameLength } from './common.js';
import { EulerDiscreteScheduler } from './euler.js';
import { KSchedulerConfig, predictX0Sigma } from './sigmas.js';

export class HeunDiscreteScheduler extends EulerDiscreteScheduler {
  override readonly order = 2;
  private pending: { derivative: Float32Array; dt: number; sample: Float32Array } | null = null;
  constructor(config: Partial<KSchedulerConfig> = {}) {
    super(config, 'HeunDiscreteScheduler');
  }

  override setTimesteps(n: number): void {
    super.setTimesteps(n);
    const s = this.sigmas;
    const t = this.timesteps;
    this.sigmas = [s[0], ...s.slice(1, -1).flatMap((v) => [v, v]), s[s.length - 1]];
    this.timesteps = [t[0], ...t.slice(1).flatMap((v) => [v, v])];
    this.pending = null;
  }

  override setBeginIndex(index: number): void {
    super.setBeginIndex(index);
    this.pending = null;
  }

  override step(modelOutput: Float32Array, _timestep: number, sample: Float32Array, _opts: StepOptions = {}): StepOutput {
    checkSameLength(modelOutput, sample, 'HeunDiscreteScheduler');
    if (this.index >= this.timesteps.length) throw new Error('HeunDiscreteScheduler.step: all steps are done; call setTimesteps again');
    let prevSample: Float32Array;
    let x0: Float32Array;
    if (!this.pending) {
      const sigma = this.sigmas[this.index];
      const next = this.sigmas[this.index + 1];
      x0 = predictX0Sigma(this.config.predictionType, modelOutput, sample, sigma);
      const derivative = sample.map((x, i) => (x - x0[i]) / sigma);
      const dt = next - sigma;
      prevSample = sample.map((x, i) => x + derivative[i] * dt);
      if (next > 0) this.pending = { derivative, dt, sample };
    } else {
      // Correction: the model was evaluated at the Euler prediction, at sigma_next.
      const next = this.sigmas[this.index];
      x0 = predictX0Sigma(this.config.predictionType, modelOutput, sample, next);
      const { derivative, dt, sample: start } = this.pending;
      prevSample = start.map((x, i) => x + 0.5 * (derivative[i] + (sample[i] - x0[i]) / next) * dt);
      this.pending = null;
    }
    this.index++;
    return { prevSample, predOriginalSample: x0 };
  }
}
