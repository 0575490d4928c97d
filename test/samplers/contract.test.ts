import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, SCHEDULER_NAMES, TorchGenerator, makeScheduler } from '../../src/index.js';
import { type Scheduler } from '../../src/index.js';

/** float64 alphaBar of diffusers' linear schedule (betas from linspace(1e-4, 0.02, 1000)). */
const alphaBar = (t: number) => {
  let a = 1;
  for (let i = 0; i <= t; i++) a *= 1 - (0.0001 + ((0.02 - 0.0001) * i) / 999);
  return a;
};

describe('the Scheduler contract', () => {
  it('every scheduler declares its order: Heun 2, the rest 1', () => {
    for (const name of SCHEDULER_NAMES) {
      const s: Scheduler = makeScheduler(name, {});
      assert.equal(s.order, name === 'heun' ? 2 : 1, name);
      s.setTimesteps(10);
      // Heun evaluates twice per step but the last; PLMS evaluates its first step twice.
      assert.equal(s.timesteps.length, name === 'heun' ? 2 * 10 - 1 : name === 'pndm' ? 11 : 10, `${name}: one timestep per model evaluation`);
    }
  });

  it("Euler's initNoiseSigma is diffusers': sqrt(sigma_max^2 + 1) for leading spacing, sigma_max for linspace and trailing", () => {
    // diffusers' EulerDiscreteScheduler.init_noise_sigma; sigma_t = sqrt((1 - alphaBar_t) / alphaBar_t).
    const sigma = (t: number) => Math.sqrt((1 - alphaBar(t)) / alphaBar(t));
    for (const [spacing, first] of [['leading', 900], ['linspace', 999], ['trailing', 999]] as const) {
      for (const S of [EulerDiscreteScheduler, EulerAncestralDiscreteScheduler]) {
        const s = new S({ timestepSpacing: spacing });
        s.setTimesteps(10);
        assert.equal(s.timesteps[0], first);
        const want = spacing === 'leading' ? Math.sqrt(sigma(first) ** 2 + 1) : sigma(first);
        assert.ok(Math.abs(s.initNoiseSigma / want - 1) < 1e-5, `${S.name} ${spacing}: ${s.initNoiseSigma} vs ${want}`);
      }
    }
  });

  it("Euler's trailing timesteps round half to even, as numpy does in diffusers", () => {
    // np.round(np.arange(1000, 0, -62.5)) - 1: 937.5 -> 938, 812.5 -> 812, ... (half to even)
    const want = [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61];
    for (const s of [new EulerDiscreteScheduler({ timestepSpacing: 'trailing' }), new DDIMScheduler({ timestepSpacing: 'trailing' })]) {
      s.setTimesteps(16);
      assert.deepEqual(s.timesteps, want, s.constructor.name);
    }
  });

  it('addNoise puts x_0 at the same noise level in every parametrisation', () => {
    // VP: x_t = sqrt(ab) x_0 + sqrt(1 - ab) z; the sigma family: x = x_0 + sigma z = x_t / sqrt(ab).
    const x0 = new TorchGenerator(1).randn(64);
    const z = new TorchGenerator(2).randn(64);
    const ddpm = new DDPMScheduler({ timestepSpacing: 'leading' });
    ddpm.setTimesteps(10);
    const euler = new EulerDiscreteScheduler({ timestepSpacing: 'leading' });
    euler.setTimesteps(10);
    const heun = new HeunDiscreteScheduler({ timestepSpacing: 'leading' });
    heun.setTimesteps(10);
    const dpm = new DPMSolverMultistepScheduler({ timestepSpacing: 'leading' });
    dpm.setTimesteps(10);
    for (const t of [900, 500, 100]) {
      const ab = alphaBar(t);
      const want = x0.map((v, i) => Math.sqrt(ab) * v + Math.sqrt(1 - ab) * z[i]);
      const close = (got: Float32Array, scale: number, who: string) => got.forEach((v, i) => assert.ok(Math.abs(v * scale - want[i]) < 1e-4, `${who} at t = ${t}: ${v * scale} vs ${want[i]}`));
      close(ddpm.addNoise(x0, z, [t]), 1, 'DDPM');
      close(new DDIMScheduler().addNoise(x0, z, [t]), 1, 'DDIM');
      close(euler.addNoise(x0, z, [t]), Math.sqrt(ab), 'Euler');
      close(heun.addNoise(x0, z, [t]), Math.sqrt(ab), 'Heun');
      if (dpm.timesteps.includes(t)) close(dpm.addNoise(x0, z, [t]), 1, 'DPM-Solver++');
    }
    assert.throws(() => euler.addNoise(x0, z, [123]), /timestep 123 is not in the current schedule/);
  });

  it('DPM-Solver++ refuses as many steps as training timesteps, where two steps would share a timestep (h = 0, NaN images)', () => {
    for (const timestepSpacing of ['linspace', 'leading'] as const) {
      const dpm = new DPMSolverMultistepScheduler({ numTrainTimesteps: 20, timestepSpacing });
      assert.throws(() => dpm.setTimesteps(20), new RegExp(`20 steps with ${timestepSpacing} spacing repeat a timestep of this 20-timestep schedule; use at most 19 steps`));
      dpm.setTimesteps(19);
      assert.equal(new Set(dpm.timesteps).size, 19);
    }
  });
});
