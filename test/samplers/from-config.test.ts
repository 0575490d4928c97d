/**
 * Schedulers read from diffusers' scheduler_config.json. The configs below have the keys and
 * values of the scheduler/ folders of public Stable Diffusion models (SD 1.5 as saved by diffusers
 * 0.17, SD 2.1 at 768 px, SD-Turbo, an SDXL fine-tune with other classes' keys left in), written
 * out here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, PNDMScheduler, readSchedulerConfig, schedulerFromConfig } from '../../src/index.js';
import { parsePythonJson } from '../../src/samplers/index.js';

const SD15 = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.17.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  clip_sample_range: 1.0,
  dynamic_thresholding_ratio: 0.995,
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  thresholding: false,
  trained_betas: null,
};
const SD21_768 = {
  _class_name: 'DDIMScheduler',
  _diffusers_version: '0.8.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'v_prediction',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};
const SD_TURBO = {
  _class_name: 'EulerDiscreteScheduler',
  _diffusers_version: '0.24.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  steps_offset: 1,
  timestep_spacing: 'trailing',
  trained_betas: null,
  use_karras_sigmas: false,
};
const SDXL_EULER_A = {
  _class_name: 'EulerAncestralDiscreteScheduler',
  _diffusers_version: '0.24.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'linspace',
  trained_betas: null,
};

describe("schedulers from diffusers' scheduler_config.json", () => {
  it("reads SD 1.5's PLMS: scaled-linear betas, the first step twice, steps offset 1", () => {
    const r = readSchedulerConfig(SD15);
    assert.equal(r.name, 'pndm');
    assert.deepEqual(r.ignored, ['clip_sample', 'clip_sample_range', 'dynamic_thresholding_ratio', 'sample_max_value', 'thresholding']);
    const s = schedulerFromConfig(SD15) as PNDMScheduler;
    assert.ok(s instanceof PNDMScheduler && s.config.skipPrkSteps && !s.config.setAlphaToOne);
    s.setTimesteps(50);
    assert.deepEqual(s.timesteps.slice(0, 4), [981, 961, 961, 941]);
    assert.equal(s.timesteps.at(-1), 1);
    // Stable Diffusion's alphaBar at the last training step, from float64 betas (sqrt-linear from 0.00085 to 0.012).
    let ab = 1;
    for (let i = 0; i < 1000; i++) ab *= 1 - (Math.sqrt(0.00085) + ((Math.sqrt(0.012) - Math.sqrt(0.00085)) * i) / 999) ** 2;
    assert.ok(Math.abs(s.alphasCumprod[999] / ab - 1) < 1e-4, `${s.alphasCumprod[999]} vs ${ab}`);
    assert.deepEqual(s.alphasCumprod, new PNDMScheduler({ betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012 }).alphasCumprod);
  });

  it("reads SD 2.1's v-prediction DDIM, SD-Turbo's trailing Euler and an SDXL Euler ancestral with other classes' keys", () => {
    const ddim = schedulerFromConfig(SD21_768) as DDIMScheduler;
    assert.ok(ddim instanceof DDIMScheduler);
    assert.equal(ddim.config.predictionType, 'v_prediction');
    assert.equal(ddim.config.clipSample, false);
    assert.equal(ddim.finalAlphaCumprod, ddim.alphasCumprod[0]);
    const turbo = schedulerFromConfig(SD_TURBO) as EulerDiscreteScheduler;
    assert.ok(turbo instanceof EulerDiscreteScheduler);
    turbo.setTimesteps(1);
    assert.deepEqual(turbo.timesteps, [999]);
    const r = readSchedulerConfig(SDXL_EULER_A);
    assert.equal(r.name, 'euler_a');
    assert.deepEqual(r.ignored, ['clip_sample', 'interpolation_type', 'sample_max_value', 'set_alpha_to_one', 'skip_prk_steps']);
    assert.ok(schedulerFromConfig(SDXL_EULER_A) instanceof EulerAncestralDiscreteScheduler);
  });

  it("uses diffusers' defaults where the file is silent (Heun's are Stable Diffusion's betas), and takes overrides", () => {
    assert.deepEqual(readSchedulerConfig({ _class_name: 'HeunDiscreteScheduler' }).config, { numTrainTimesteps: 1000, betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'linear', predictionType: 'epsilon', timestepSpacing: 'linspace', stepsOffset: 0, useKarrasSigmas: false, clipSample: false, clipSampleRange: 1 });
    const dpm = schedulerFromConfig({ _class_name: 'DPMSolverMultistepScheduler' }, 'x', { useKarrasSigmas: true }) as DPMSolverMultistepScheduler;
    assert.equal(dpm.config.thresholding, false);
    assert.equal(dpm.config.useKarrasSigmas, true);
  });

  it("parses what Python's json module writes: -Infinity and NaN as bare words, left alone in strings", () => {
    const text = '{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "note": "-Infinity NaN \\" Infinity", "x": [NaN, Infinity]}';
    const j = parsePythonJson(text) as Record<string, unknown>;
    assert.equal(j.lambda_min_clipped, -Infinity);
    assert.equal(j.note, '-Infinity NaN " Infinity');
    assert.ok(Number.isNaN((j.x as number[])[0]) && (j.x as number[])[1] === Infinity);
    assert.equal((schedulerFromConfig(j) as DPMSolverMultistepScheduler).config.lambdaMinClipped, -Infinity);
    assert.throws(() => parsePythonJson('{"a": ', 'sched.json'), /sched\.json: not valid JSON/);
  });

  it('refuses, in one line naming the file and the key, what it cannot honour', () => {
    assert.throws(() => readSchedulerConfig({ _class_name: 'LMSDiscreteScheduler' }, 'm/scheduler_config.json'), /m\/scheduler_config\.json: LMSDiscreteScheduler is not supported \(supported: DDPMScheduler, DDIMScheduler, PNDMScheduler/);
    assert.throws(() => readSchedulerConfig({ _class_name: 'DPMSolverMultistepScheduler', algorithm_type: 'sde-dpmsolver++' }), /algorithm_type = "sde-dpmsolver\+\+" is not supported \(only "dpmsolver\+\+"/);
    assert.throws(() => readSchedulerConfig({ _class_name: 'EulerDiscreteScheduler', timestep_type: 'continuous' }), /timestep_type = "continuous" is not supported/);
    assert.throws(() => readSchedulerConfig({ _class_name: 'DDIMScheduler', steps_offset: '1' }), /steps_offset must be a number/);
    assert.throws(() => readSchedulerConfig({ beta_start: 1 }), /no _class_name/);
    assert.throws(() => readSchedulerConfig([]), /not a scheduler config/);
    assert.throws(() => schedulerFromConfig({ _class_name: 'DDIMScheduler', beta_schedule: 'exotic' }, 'f.json'), /f\.json: DDIMScheduler: unknown betaSchedule 'exotic'/);
    assert.throws(() => schedulerFromConfig({ _class_name: 'DDIMScheduler', trained_betas: [0.1, 0.2] }, 'f.json').setTimesteps(2), /trainedBetas has 2 values but numTrainTimesteps is 1000/);
  });
});
