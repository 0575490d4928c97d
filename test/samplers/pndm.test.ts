/**
 * PNDMScheduler against diffusers' own tests (tests/schedulers/test_scheduler_pndm.py): its
 * timesteps, and the full loops with its deterministic dummy model and sample, whose sum and
 * mean of |x_0| the tests state.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PNDMScheduler } from '../../src/index.js';
import { type PNDMSchedulerConfig } from '../../src/samplers/index.js';

const f = Math.fround;

/** diffusers' full_loop: 10 steps, the Runge-Kutta start then the multistep rule, model(x, t) = x t / (t + 1). */
function fullLoop(config: Partial<PNDMSchedulerConfig>): Float32Array {
  const s = new PNDMScheduler({ numTrainTimesteps: 1000, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear', ...config });
  s.setTimesteps(10);
  // dummy_sample_deter: arange(4 * 3 * 8 * 8) / 768 (its layout does not change sums of elementwise steps)
  let x: Float32Array = Float32Array.from({ length: 768 }, (_, i) => f(i / 768));
  for (const t of s.timesteps) x = s.step(x.map((v) => f(f(v * t) / (t + 1))), t, x).prevSample;
  return x;
}

const sumAbs = (x: Float32Array) => x.reduce((a, v) => a + Math.abs(v), 0);

describe("PNDMScheduler reproduces diffusers' tests", () => {
  it('schedules the Runge-Kutta start and the multistep steps as diffusers (steps_offset 1, 10 steps)', () => {
    const s = new PNDMScheduler({ stepsOffset: 1 });
    s.setTimesteps(10);
    assert.deepEqual(s.timesteps, [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
  });

  it('skips the Runge-Kutta start as Stable Diffusion configures it (the first step evaluated twice)', () => {
    const s = new PNDMScheduler({ stepsOffset: 1, skipPrkSteps: true });
    s.setTimesteps(10);
    assert.deepEqual(s.timesteps, [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  });

  const cases: [string, Partial<PNDMSchedulerConfig>, number, number][] = [
    ['no noise', {}, 198.1318, 0.258],
    ['v_prediction', { predictionType: 'v_prediction' }, 67.3986, 0.0878],
    ['set_alpha_to_one, beta_start 0.01', { setAlphaToOne: true, betaStart: 0.01 }, 230.0399, 0.2995],
    ['no set_alpha_to_one, beta_start 0.01', { setAlphaToOne: false, betaStart: 0.01 }, 186.9482, 0.2434],
  ];
  for (const [name, config, sum, mean] of cases) {
    it(`full loop, ${name}: sum |x| ${sum}, mean ${mean}`, () => {
      const x = fullLoop(config);
      assert.ok(Math.abs(sumAbs(x) - sum) < 1e-2, `sum ${sumAbs(x)}`);
      assert.ok(Math.abs(sumAbs(x) / x.length - mean) < 1e-3, `mean ${sumAbs(x) / x.length}`);
    });
  }

  it('refuses the multistep rule before the Runge-Kutta start, and an unset schedule', () => {
    const s = new PNDMScheduler();
    assert.throws(() => s.step(new Float32Array(4), 1, new Float32Array(4)), /call setTimesteps/);
    s.setTimesteps(10);
    // Jump past the Runge-Kutta evaluations by hand: the multistep rule needs their estimates.
    (s as unknown as { counter: number }).counter = 12;
    assert.throws(() => s.step(new Float32Array(4), 1, new Float32Array(4)), /needs the Runge-Kutta start/);
  });
});
