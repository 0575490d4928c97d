import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';
import { REFERENCE_UNET, unet, type UNetConfig } from '../../src/index.js';
import { TINY_UNET } from './configs.js';
import { referenceUNet, Params64 } from './reference-unet.js';

againstReference('U-Net against an independent float64 reference', TINY_UNET);
againstReference('U-Net with scale-shift norm against the reference', { ...TINY_UNET, scaleShiftNorm: true });

function againstReference(title: string, TINY: UNetConfig): void {
  describe(title, () => {
    const N = 2;
    const xShape = [N, 2, 8, 8];
    const rng = new E.Rng(3);
    const x = rng.fillNormal(new Float64Array(E.sizeOf(xShape))) as Float64Array;
    const eps = rng.fillNormal(new Float64Array(E.sizeOf(xShape))) as Float64Array;
    const t = Float64Array.of(17, 640);
    const store = new E.ParamStore(11);
    // Trace once to create the parameters; give norms non-trivial scales and shifts.
    unet(new E.ParamScope(store), TINY, E.input('x', xShape), E.input('t', [N]));
    for (const [name, p] of store.params) {
      if (/norm.*\.(weight|bias)$/.test(name)) p.data = p.data.map(() => rng.normal() * 0.3 + (name.endsWith('weight') ? 1 : 0));
    }
    const names = [...store.params.keys()];
    const to64 = (): Params64 => new Map([...store.params].map(([k, v]) => [k, { shape: v.shape, data: Float64Array.from(v.data) }]));
    const refLoss = (p: Params64) => {
      const y = referenceUNet(p, TINY, x, xShape, t);
      return y.reduce((s, v, i) => s + (v - eps[i]) ** 2, 0) / y.length;
    };

    it('has the parameter count of its config', () => {
      assert.equal(names.length > 20, true);
      const big = new E.ParamStore(0);
      unet(new E.ParamScope(big), REFERENCE_UNET, E.input('x', [1, 3, 32, 32]), E.input('t', [1]));
      assert.equal(big.count(), 1_590_787);
    });

    it('matches the reference loss and every parameter gradient (finite differences)', async () => {
      const program = new E.Program((ins) => {
        const scope = new E.ParamScope(store);
        const loss = E.mseLoss(unet(scope, TINY, ins.x, ins.t), ins.eps);
        const params = names.map((n) => scope.used.get(n) as E.Tensor);
        const grads = E.grad(loss, params);
        return Object.fromEntries([['loss', loss], ...grads.map((g, i) => [`g:${names[i]}`, g])]);
      }, { weights: store.values() });
      const out = await program.run({
        x: { data: Float32Array.from(x), shape: xShape },
        t: { data: Float32Array.from(t), shape: [N] },
        eps: { data: Float32Array.from(eps), shape: xShape },
      });
      const base = to64();
      const l64 = refLoss(base);
      const l32 = out.loss.data[0] as number;
      assert.ok(Math.abs(l32 - l64) / l64 < 1e-5, `loss ${l32} vs reference ${l64}`);

      const h = 1e-4;
      const perturbed = (dir: Map<string, Float64Array>, s: number): Params64 =>
        new Map([...base].map(([k, v]) => [k, { shape: v.shape, data: v.data.map((a, i) => a + s * h * (dir.get(k) as Float64Array)[i]) }]));
      // Random directions through all 1e3+ parameters at once.
      for (let k = 0; k < 3; k++) {
        const dir = new Map(names.map((n) => [n, rng.fillNormal(new Float64Array(base.get(n)!.data.length)) as Float64Array]));
        const numeric = (refLoss(perturbed(dir, 1)) - refLoss(perturbed(dir, -1))) / (2 * h);
        let analytic = 0;
        for (const n of names) {
          const g = out[`g:${n}`].data as Float32Array;
          const d = dir.get(n)!;
          for (let i = 0; i < g.length; i++) analytic += g[i] * d[i];
        }
        assert.ok(Math.abs(analytic - numeric) / Math.abs(numeric) < 2e-3, `direction ${k}: ${analytic} vs ${numeric}`);
      }
      // Single elements in every parameter tensor.
      for (const n of names) {
        const g = out[`g:${n}`].data as Float32Array;
        const i = Math.floor(rng.uniform() * g.length);
        const dir = new Map(names.map((m) => [m, new Float64Array(base.get(m)!.data.length)]));
        dir.get(n)![i] = 1;
        const numeric = (refLoss(perturbed(dir, 1)) - refLoss(perturbed(dir, -1))) / (2 * h);
        const err = Math.abs(g[i] - numeric) / Math.max(Math.abs(numeric), 1e-3);
        assert.ok(err < 5e-3, `${n}[${i}]: autodiff ${g[i]} vs finite difference ${numeric}`);
      }
    });

    it('trains: the loss of a denoising toy problem falls (zero-initialised blocks too)', async () => {
      for (const config of [TINY, { ...TINY, zeroInit: true }]) await trainsOnToy(config);
    });
  });
}

describe('zero-initialised U-Net (zeroInit)', () => {
  it('starts with its residual branches and output at exactly zero, the rest as before', () => {
    const plain = new E.ParamStore(4);
    const zero = new E.ParamStore(4);
    const x = E.input('x', [1, 2, 8, 8]);
    const t = E.input('t', [1]);
    unet(new E.ParamScope(plain), TINY_UNET, x, t);
    unet(new E.ParamScope(zero), { ...TINY_UNET, zeroInit: true }, x, t);
    const zeroed = [...zero.params.keys()].filter((n) => /(conv2|attn\.proj|^out)\.(weight|bias)$/.test(n));
    assert.ok(zeroed.some((n) => n.startsWith('mid.attn.proj')) && zeroed.includes('out.weight') && zeroed.some((n) => n.endsWith('conv2.weight')), zeroed.join(', '));
    for (const [n, p] of zero.params) {
      if (zeroed.includes(n)) assert.ok(p.data.every((v) => v === 0), `${n} is not zero`);
      else assert.ok(p.data.some((v) => v !== 0) || /norm.*bias$/.test(n), `${n} should keep its usual initialisation`);
    }
  });

  it('outputs zero at initialisation, whatever the input', async () => {
    const store = new E.ParamStore(4);
    const config = { ...TINY_UNET, zeroInit: true };
    unet(new E.ParamScope(store), config, E.input('x', [2, 2, 8, 8]), E.input('t', [2]));
    const program = new E.Program((ins) => ({ y: unet(new E.ParamScope(store), config, ins.x, ins.t) }), { weights: store.values() });
    const rng = new E.Rng(1);
    const out = await program.run({ x: { data: rng.fillNormal(new Float32Array(2 * 128)) as Float32Array, shape: [2, 2, 8, 8] }, t: { data: Float32Array.of(3, 900), shape: [2] } });
    assert.ok((out.y.data as Float32Array).every((v) => v === 0));
    await program.release();
  });
});

async function trainsOnToy(TINY: UNetConfig): Promise<void> {
  {
    const s = new E.ParamStore(5);
    const B = 8;
    const shape = [B, 2, 8, 8];
    const step = await E.TrainStep.create({
      store: s,
      batch: { x: { shape }, t: { shape: [B] }, eps: { shape } },
      loss: (scope, b) => E.mseLoss(unet(scope, TINY, b.x, b.t), b.eps),
      optimizer: { lr: 3e-3, clipGradNorm: 1, emaDecay: 0.9 },
    });
    // Data: smooth "images" plus noise; the network must predict the noise.
    const r = new E.Rng(9);
    const batch = () => {
      const img = new Float32Array(E.sizeOf(shape)).map((_, i) => Math.sin((i % 8) * 0.7 + Math.floor(i / 64)));
      const noise = r.fillNormal(new Float32Array(E.sizeOf(shape))) as Float32Array;
      return { x: img.map((v, i) => 0.6 * v + 0.8 * noise[i]), t: new Float32Array(B).fill(500), eps: noise };
    };
    const losses: number[] = [];
    for (let i = 0; i < 60; i++) losses.push((await step.run(batch())).loss);
    const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const last = losses.slice(-5).reduce((a, b) => a + b) / 5;
    assert.ok(last < 0.5 * first, `${JSON.stringify(TINY)}: loss fell only from ${first} to ${last}`);
    await step.release();
  }
}
