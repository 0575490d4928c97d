import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DDIMScheduler, DDPMScheduler, TorchGenerator } from '../../src/index.js';
import { type TimestepSpacing } from '../../src/index.js';
import { type DDIMSchedulerConfig, type DDPMSchedulerConfig } from '../../src/samplers/index.js';

/** Reference outputs of diffusers' scheduler arithmetic in PyTorch (see make_scheduler_fixtures.py). */
const fixture = JSON.parse(readFileSync(new URL('../fixtures/schedulers.json', import.meta.url), 'utf8')) as {
  shape: number[];
  cases: {
    kind: 'ddpm' | 'ddim';
    config: Record<string, unknown>;
    run: { steps: number; eta?: number; use_clipped_model_output?: boolean };
    timesteps: number[];
    betas: string;
    alphas_cumprod: string;
    first_prev_sample: string;
    first_pred_original: string;
    after_12_steps: string;
    add_noise: string;
  }[];
  spacings: Record<string, number[]>;
};

const bits = (b64: string) => new Uint32Array(Uint8Array.from(Buffer.from(b64, 'base64')).buffer);
const asBits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
const f = Math.fround;

/** diffusers' snake_case config names to Diffuse's camelCase. */
function camel(cfg: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) {
    const name = k === 'T' ? 'numTrainTimesteps' : k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    out[name] = v;
  }
  return out;
}

function maxUlp(a: Uint32Array, b: Uint32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] | 0) - (b[i] | 0)));
  return m;
}

describe('DDPMScheduler and DDIMScheduler reproduce diffusers bit for bit', () => {
  const size = fixture.shape.reduce((a, b) => a * b);
  fixture.cases.forEach((c, i) => {
    it(`${c.kind} ${JSON.stringify(c.config)} ${JSON.stringify(c.run)}`, () => {
      const cfg = camel(c.config);
      const s = c.kind === 'ddpm' ? new DDPMScheduler(cfg as Partial<DDPMSchedulerConfig>) : new DDIMScheduler(cfg as Partial<DDIMSchedulerConfig>);
      // PyTorch's sigmoid uses a vectorised exp whose last bit differs from Math.exp:
      // the sigmoid schedule matches to a few float32 ULPs; everything else to the bit.
      const tol = c.config.beta_schedule === 'sigmoid' ? 16 : 0;
      const same = (a: Float32Array, b64: string, what: string) => {
        const u = maxUlp(asBits(a), bits(b64));
        assert.ok(u <= tol, `${what}: differs by ${u} ULP`);
      };
      same(s.betas, c.betas, 'betas');
      same(s.alphasCumprod, c.alphas_cumprod, 'alphas_cumprod');
      s.setTimesteps(c.run.steps);
      assert.deepEqual(s.timesteps, c.timesteps);

      const inputs = new TorchGenerator(1000 + i);
      let sample = inputs.randn(size);
      const z = inputs.randn(size);
      const gen = new TorchGenerator(7);
      let first: [Float32Array, Float32Array] | undefined;
      for (const t of s.timesteps.slice(0, 12)) {
        const k = f(t / s.config.numTrainTimesteps);
        const modelOutput = sample.map((x, j) => f(f(f(f(0.9) * x) * k) + f(f(0.1) * z[j])));
        const out = s.step(modelOutput, t, sample, { generator: gen, eta: c.run.eta, useClippedModelOutput: c.run.use_clipped_model_output });
        sample = out.prevSample;
        first ??= [out.prevSample, out.predOriginalSample];
      }
      same(first![0], c.first_prev_sample, 'first prev_sample');
      same(first![1], c.first_pred_original, 'first pred_original_sample');
      same(sample, c.after_12_steps, 'sample after 12 steps');

      const noiseGen = new TorchGenerator(2000 + i);
      const orig = noiseGen.randn(size);
      const noise = noiseGen.randn(size);
      same(s.addNoise(orig, noise, [0, s.config.numTrainTimesteps - 1]), c.add_noise, 'add_noise');
    });
  });

  it('timestep spacings match (leading, trailing, linspace)', () => {
    for (const [key, want] of Object.entries(fixture.spacings)) {
      const [spacing, T, n] = key.split(':');
      const s = new DDIMScheduler({ numTrainTimesteps: Number(T), timestepSpacing: spacing as TimestepSpacing, stepsOffset: 1 });
      s.setTimesteps(Number(n));
      assert.deepEqual(s.timesteps, want, key);
    }
  });
});

describe('scheduler configuration errors name the field', () => {
  it('rejects unknown names and values', () => {
    assert.throws(() => new DDPMScheduler({ betaSchedule: 'cosine' as never }), /unknown betaSchedule 'cosine' \(known: linear, scaled_linear, squaredcos_cap_v2, sigmoid\)/);
    assert.throws(() => new DDIMScheduler({ num_train_timesteps: 10 } as never), /DDIMScheduler: unknown option 'num_train_timesteps'/);
    assert.throws(() => new DDPMScheduler({ varianceType: 'learned' as never }), /unknown varianceType 'learned'/);
    assert.throws(() => new DDIMScheduler({ predictionType: 'eps' as never }), /unknown predictionType 'eps'/);
    const s = new DDIMScheduler();
    assert.throws(() => s.step(new Float32Array(4), 10, new Float32Array(4)), /call setTimesteps\(n\) first/);
    assert.throws(() => s.setTimesteps(1001), /1001 inference steps exceed the 1000 training timesteps/);
    s.setTimesteps(10);
    assert.throws(() => s.step(new Float32Array(3), 10, new Float32Array(4)), /modelOutput has 3 values but sample has 4/);
  });
});
