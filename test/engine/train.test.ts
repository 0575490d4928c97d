import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'diffuse-train-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Least squares: loss = mean((x W^T + b - y)^2), W [3, 4], b [3]. */
function lsqLoss(scope: E.ParamScope, b: Record<string, E.Tensor>): E.Tensor {
  const w = scope.param('w', [3, 4], E.init.normal(0.5));
  const bias = scope.param('b', [3], E.init.zeros());
  return E.mseLoss(E.linear(b.x, w, bias), b.y);
}

function lsqBatch(seed: number) {
  const r = new E.Rng(seed);
  return { x: r.fillNormal(new Float32Array(8 * 4)) as Float32Array, y: r.fillNormal(new Float32Array(8 * 3)) as Float32Array };
}

/** Float64 AdamW exactly as PyTorch's torch.optim.AdamW, with global-norm clipping and EMA. */
function referenceAdamW(
  w: Float64Array,
  b: Float64Array,
  batches: { x: Float32Array; y: Float32Array }[],
  o: { lr: number; beta1: number; beta2: number; eps: number; wd: number; clip: number; ema: number },
) {
  const params = [w, b];
  const m = params.map((p) => new Float64Array(p.length));
  const v = params.map((p) => new Float64Array(p.length));
  const ema = params.map((p) => Float64Array.from(p));
  const losses: number[] = [];
  batches.forEach(({ x, y }, step) => {
    const gw = new Float64Array(12);
    const gb = new Float64Array(3);
    let loss = 0;
    for (let n = 0; n < 8; n++)
      for (let o2 = 0; o2 < 3; o2++) {
        let pred = b[o2];
        for (let i = 0; i < 4; i++) pred += w[o2 * 4 + i] * x[n * 4 + i];
        const d = pred - y[n * 3 + o2];
        loss += d * d;
        const g = (2 * d) / 24;
        gb[o2] += g;
        for (let i = 0; i < 4; i++) gw[o2 * 4 + i] += g * x[n * 4 + i];
      }
    losses.push(loss / 24);
    const grads = [gw, gb];
    const norm = Math.sqrt(grads.reduce((s, g) => s + g.reduce((a, v2) => a + v2 * v2, 0), 0));
    const scale = Math.min(1, o.clip / (norm + 1e-6));
    const t = step + 1;
    params.forEach((p, k) => {
      const decay = k === 0 ? 1 - o.lr * o.wd : 1; // rank >= 2 only
      for (let i = 0; i < p.length; i++) {
        const g = grads[k][i] * scale;
        m[k][i] = o.beta1 * m[k][i] + (1 - o.beta1) * g;
        v[k][i] = o.beta2 * v[k][i] + (1 - o.beta2) * g * g;
        const denom = Math.sqrt(v[k][i]) / Math.sqrt(1 - o.beta2 ** t) + o.eps;
        p[i] = p[i] * decay - (o.lr / (1 - o.beta1 ** t)) * (m[k][i] / denom);
        ema[k][i] = o.ema * ema[k][i] + (1 - o.ema) * p[i];
      }
    });
  });
  return { losses, ema };
}

async function makeStep(seed: number, opt: E.AdamWOptions) {
  const store = new E.ParamStore(seed);
  const step = await E.TrainStep.create({ store, batch: { x: { shape: [8, 4] }, y: { shape: [8, 3] } }, loss: lsqLoss, optimizer: opt });
  return { store, step };
}

describe('TrainStep: AdamW, clipping and EMA in one ONNX run', () => {
  const o = { lr: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, clipGradNorm: 0.5, emaDecay: 0.7 };

  it('matches a float64 PyTorch-style AdamW step for step', async () => {
    const { store, step } = await makeStep(1, o);
    const w = Float64Array.from(store.get('w')!.data);
    const b = Float64Array.from(store.get('b')!.data);
    const batches = Array.from({ length: 12 }, (_, i) => lsqBatch(100 + i));
    const ref = referenceAdamW(w, b, batches, { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, wd: o.weightDecay, clip: o.clipGradNorm, ema: o.emaDecay });
    for (let i = 0; i < batches.length; i++) {
      const r = await step.run(batches[i]);
      assert.ok(Math.abs(r.loss - ref.losses[i]) < 1e-5 * Math.max(1, ref.losses[i]), `step ${i}: loss ${r.loss} vs ${ref.losses[i]}`);
    }
    const close = (a: ArrayLike<number>, b2: ArrayLike<number>, what: string) => {
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b2[i]) < 2e-5, `${what}[${i}]: ${a[i]} vs ${b2[i]}`);
    };
    close(store.get('w')!.data, w, 'w');
    close(store.get('b')!.data, b, 'b');
    close(step.ema.get('w')!, ref.ema[0], 'ema w');
    close(step.ema.get('b')!, ref.ema[1], 'ema b');
    assert.equal(step.step, 12);
  });

  it('resumes exactly from a saved state (same losses as an uninterrupted run)', async () => {
    const batches = Array.from({ length: 10 }, (_, i) => lsqBatch(200 + i));
    const a = await makeStep(2, o);
    const straight: number[] = [];
    for (const b of batches) straight.push((await a.step.run(b)).loss);

    const first = await makeStep(2, o);
    const resumed: number[] = [];
    for (const b of batches.slice(0, 4)) resumed.push((await first.step.run(b)).loss);
    const file = path.join(dir, 'state.safetensors');
    await first.step.save(file, { note: 'hello' });
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left behind');

    const second = await makeStep(99, o); // different init: everything must come from the file
    const meta = await second.step.load(file);
    assert.equal(meta.note, 'hello');
    assert.equal(second.step.step, 4);
    for (const b of batches.slice(4)) resumed.push((await second.step.run(b)).loss);
    assert.deepEqual(resumed, straight);
  });

  it('stops on a non-finite loss and leaves the weights untouched', async () => {
    const { store, step } = await makeStep(3, { lr: 0.01 });
    const before = Float32Array.from(store.get('w')!.data);
    const bad = lsqBatch(5);
    bad.y[3] = Number.NaN;
    await assert.rejects(step.run(bad), (e: Error) => e instanceof E.NonFiniteError && /diverged at step 1/.test(e.message));
    assert.deepEqual(store.get('w')!.data, before);
    assert.equal(step.step, 0);
  });

  it('refuses a checkpoint of another model with a message naming the tensor', async () => {
    const { step } = await makeStep(4, { lr: 0.01 });
    const file = path.join(dir, 'other.safetensors');
    await E.saveSafetensors(file, new Map([['w', { shape: [4, 3], data: new Float32Array(12) }]]));
    await assert.rejects(step.load(file), /tensor 'w' is \[4, 3\], the model expects float32 \[3, 4\]/);
    await assert.rejects(step.load(path.join(dir, 'missing.safetensors')), /missing\.safetensors: cannot read \(ENOENT\)/);
  });
});
