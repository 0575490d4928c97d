import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ortWeb from 'onnxruntime-web';
import * as E from '../../src/engine/index.js';
import { unet } from '../../src/index.js';
import { TINY_UNET } from './configs.js';

describe('onnxruntime-web (wasm) runs the same models', () => {
  it('gives the training graph the same loss and gradients as onnxruntime-node', async () => {
    ortWeb.env.wasm.numThreads = 1;
    const cfg = TINY_UNET;
    const store = new E.ParamStore(0);
    const x = E.input('x', [2, 2, 8, 8]);
    const t = E.input('t', [2]);
    const scope = new E.ParamScope(store);
    const loss = E.mseLoss(unet(scope, cfg, x, t), E.constant(new Array(256).fill(0.1), [2, 2, 8, 8]));
    const params = [...scope.used.values()];
    const grads = E.grad(loss, params);
    const model = E.compileModel({
      inputs: [x, t, ...params],
      outputs: Object.fromEntries([['loss', loss], ...grads.map((g, i) => [`g${i}`, g])]),
    });
    const rng = new E.Rng(4);
    const feeds: Record<string, E.TensorData> = { x: rng.fillNormal(new Float32Array(256)) as Float32Array, t: Float32Array.of(3, 900) };
    for (const p of params) feeds[p.name as string] = store.get(p.name as string)!.data;

    const web = await E.Executable.load(model, { ort: ortWeb });
    const native = await E.Executable.load(model);
    const a = await web.run(feeds);
    const b = await native.run(feeds);
    for (const k of Object.keys(b)) {
      const va = a[k] as Float32Array;
      const vb = b[k] as Float32Array;
      const scale = Math.max(1e-6, ...Array.from(vb, Math.abs));
      for (let i = 0; i < vb.length; i++) assert.ok(Math.abs(va[i] - vb[i]) <= 1e-4 * scale, `${k}[${i}]: web ${va[i]} vs node ${vb[i]}`);
    }
    await web.release();
    await native.release();
  });
});
