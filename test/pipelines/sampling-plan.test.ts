/** The sampling plan: the run's defaults, the refusals and the warnings, one rule at a time. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { INPAINT_SCHEDULERS, planSampling } from '../../src/pipelines/index.js';
import { OptionError } from '../../src/index.js';
import { defaultEta, defaultSpacing } from '../../src/run/sampling-defaults.js';
import { tinyConfig } from '../train/helpers.js';

const uncond = tinyConfig();
const cond = tinyConfig({ model: { ...tinyConfig().model, numClasses: 3 }, classConditioning: { pUncond: 0.1 } });

describe('planSampling', () => {
  it("fills in the run's defaults: ddim, the run's eta and spacing", () => {
    const p = planSampling(uncond);
    assert.deepEqual([p.scheduler, p.eta, p.spacing, p.karras, p.warnings], ['ddim', defaultEta(uncond), defaultSpacing(uncond, 'ddim'), false, []]);
    assert.equal(planSampling(cond).eta, 0, 'conditional runs sample deterministically by default');
    assert.equal(planSampling(uncond, { scheduler: 'euler' }).spacing, defaultSpacing(uncond, 'euler'));
    assert.equal(planSampling(uncond, { eta: 0.3 }).eta, 0.3, "the caller's eta wins");
  });

  it('takes eta 0 when x_T is given, and says what a stochastic step costs a watermark', () => {
    assert.equal(planSampling(uncond, { start: 'watermark' }).eta, 0);
    assert.equal(planSampling(uncond, { start: 'latents' }).eta, 0);
    assert.deepEqual(planSampling(uncond, { start: 'watermark', scheduler: 'dpm++2m' }).warnings, []);
    const noisy = planSampling(uncond, { start: 'watermark', eta: 1, scheduler: 'euler_a' }).warnings;
    assert.equal(noisy.length, 2);
    assert.match(noisy[0], /`eta` 1 adds fresh noise at every step, which washes out the watermark/);
    assert.match(noisy[1], /euler_a adds fresh noise at every step/);
    assert.match(planSampling(uncond, { start: 'latents', scheduler: 'euler' }).warnings[0], /comes back to its image with ddim, eta 0/);
  });

  it('inpaints on ddim or ddpm with the posterior noise of RePaint by default, and inverts with ddim at eta 0', () => {
    assert.deepEqual(INPAINT_SCHEDULERS, ['ddim', 'ddpm']);
    assert.equal(planSampling(uncond, { operation: 'inpaint' }).eta, 1);
    assert.equal(planSampling(uncond, { operation: 'inpaint', start: 'watermark' }).eta, 0);
    assert.throws(() => planSampling(uncond, { operation: 'inpaint', scheduler: 'heun' }), (e: Error) => e instanceof OptionError && /`scheduler` heun is not supported/.test(e.message));
    const inv = planSampling(uncond, { operation: 'invert' });
    assert.deepEqual([inv.scheduler, inv.eta, inv.clipSample], ['ddim', 0, false]);
    assert.throws(() => planSampling(uncond, { operation: 'invert', scheduler: 'euler' }), /inversion runs DDIM backwards with eta 0/);
  });

  it('refuses unknown schedulers, Karras spacing where it does not apply, and a negative eta', () => {
    assert.throws(() => planSampling(uncond, { scheduler: 'lms' }), /unknown `scheduler` 'lms' \(known: /);
    assert.throws(() => planSampling(uncond, { scheduler: 'ddim', karras: true }), /`karras` applies to euler, euler_a, heun, dpm\+\+2m, dpm\+\+1, not ddim/);
    assert.equal(planSampling(uncond, { scheduler: 'heun', karras: true }).karras, true);
    assert.throws(() => planSampling(uncond, { eta: -1 }), /`eta` must be a number >= 0, got -1/);
  });
});
