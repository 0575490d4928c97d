import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';

/** A convolution, its input gradient and its weight and bias gradients, on fed weights (as in training). */
function convAndGrads(opts: { stride?: number; padding?: number; dilation?: number }) {
  return ({ x, w, b, g }: Record<string, E.Tensor>) => {
    const y = E.conv2d(x, w, b, opts);
    const [dx, dw, db] = E.grad(E.sum(E.mul(y, g)), [x, w, b]);
    return { y, dx, dw, db };
  };
}

function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}

describe('blocked (NCHWc) convolutions', () => {
  it('emit ReorderInput, a blocked Conv and ReorderOutput for fed weights only, with the domain declared', () => {
    const x = E.input('x', [2, 16, 5, 5]);
    const w = E.input('w', [16, 16, 3, 3]);
    const y = E.conv2d(x, w, undefined, { padding: 1 });
    const fed = E.compileModel({ inputs: [x, w], outputs: { y }, convBlock: 16 });
    assert.deepEqual(E.modelOpTypes(fed.bytes), ['ReorderInput', 'Reshape', 'Transpose', 'Reshape', 'Conv', 'ReorderOutput']);
    assert.match(new TextDecoder('latin1').decode(fed.bytes), /com\.microsoft\.nchwc/);
    // A baked weight is ONNX Runtime's to block (at load); channels that do not fill whole blocks, and float64, stay plain.
    const baked = E.compileModel({ inputs: [x], outputs: { y }, initializers: new Map([['w', new Float32Array(16 * 16 * 9)]]), convBlock: 16 });
    assert.deepEqual(E.modelOpTypes(baked.bytes), ['Conv']);
    const x12 = E.input('x', [2, 12, 5, 5]);
    const w12 = E.input('w', [16, 12, 3, 3]);
    assert.deepEqual(E.modelOpTypes(E.compileModel({ inputs: [x12, w12], outputs: { y: E.conv2d(x12, w12) }, convBlock: 16 }).bytes), ['Conv']);
    const x64 = E.input('x', [2, 16, 5, 5], 'float64');
    const w64 = E.input('w', [16, 16, 3, 3], 'float64');
    assert.deepEqual(E.modelOpTypes(E.compileModel({ inputs: [x64, w64], outputs: { y: E.conv2d(x64, w64) }, convBlock: 16 }).bytes), ['Conv']);
    // Without a block (the default: a model that must run anywhere), plain.
    assert.deepEqual(E.modelOpTypes(E.compileModel({ inputs: [x, w], outputs: { y } }).bytes), ['Conv']);
  });

  it('give the plain kernels\' values and gradients on this machine (3x3, strided, 1x1, dilated)', async () => {
    const block = await E.cpuConvBlock();
    // onnxruntime-node's CPU provider has blocked kernels on x86-64 with AVX2 (block 8) or AVX-512
    // (16): there the comparison below must be of the blocked kernel, not plain against plain.
    if (process.arch === 'x64') assert.ok(block === 8 || block === 16, `no blocked kernels found on x86-64 (block ${block}; is DIFFUSE_ORT_NCHWC=0 set?)`);
    else assert.ok(block === 0 || block === 8 || block === 16, `block ${block}`);
    const rng = new E.Rng(3);
    const cases: [string, number, number, number, number, number, { stride?: number; padding?: number; dilation?: number }][] = [
      ['3x3', 2, 32, 9, 16, 3, { padding: 1 }],
      ['3x3, stride 2', 2, 16, 8, 32, 3, { stride: 2, padding: 1 }],
      ['1x1', 3, 16, 6, 16, 1, {}],
      ['3x3, dilation 2', 2, 16, 9, 16, 3, { padding: 2, dilation: 2 }],
    ];
    for (const [what, n, c, h, o, k, opts] of cases) {
      const ho = Math.floor((h + 2 * (opts.padding ?? 0) - (opts.dilation ?? 1) * (k - 1) - 1) / (opts.stride ?? 1)) + 1;
      const feeds = {
        x: { data: rng.fillNormal(new Float32Array(n * c * h * h)) as Float32Array, shape: [n, c, h, h] },
        w: { data: rng.fillNormal(new Float32Array(o * c * k * k)) as Float32Array, shape: [o, c, k, k] },
        b: { data: rng.fillNormal(new Float32Array(o)) as Float32Array, shape: [o] },
        g: { data: rng.fillNormal(new Float32Array(n * o * ho * ho)) as Float32Array, shape: [n, o, ho, ho] },
      };
      const blocked = new E.Program(convAndGrads(opts));
      const plain = new E.Program(convAndGrads(opts), { blockedConv: false });
      const a = await blocked.run(feeds);
      const b = await plain.run(feeds);
      for (const name of ['y', 'dx', 'dw', 'db']) {
        const err = maxRelError(a[name].data as Float32Array, b[name].data as Float32Array);
        // The blocked kernel sums the same products in another order: float32 rounding, no more.
        assert.ok(err < 1e-5, `${what}: ${name} differs by ${err} (relative to its largest value)`);
        assert.ok(!Array.from(a[name].data as Float32Array).every((v) => v === 0), `${what}: ${name} is all zeros`);
      }
      await blocked.release();
      await plain.release();
    }
  });
});
