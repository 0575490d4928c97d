import { describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';
import { assertGrad, refConv2d } from './gradcheck.js';

const positive = (_i: number, n: number, rng: E.Rng) => Float64Array.from({ length: n }, () => 0.5 + rng.uniform() * 2);

describe('gradients against central finite differences (float64)', () => {
  const cases: Record<string, Parameters<typeof assertGrad>[1]> = {
    add_broadcast: { shapes: [[2, 3, 4], [3, 1]], f: E.add },
    sub_broadcast: { shapes: [[4], [2, 3, 4]], f: E.sub },
    mul_broadcast: { shapes: [[2, 1, 4], [3, 1]], f: E.mul },
    div: { shapes: [[2, 3], [2, 3]], f: E.div, init: (i, n, rng) => (i === 1 ? positive(i, n, rng) : Float64Array.from({ length: n }, () => rng.normal())) },
    scalar_operands: { shapes: [[5]], f: (x) => E.sub(2, E.mul(E.div(x, 3), 4)) },
    neg: { shapes: [[6]], f: E.neg },
    exp: { shapes: [[6]], f: E.exp },
    log: { shapes: [[6]], f: E.log, init: positive },
    sqrt: { shapes: [[6]], f: E.sqrt, init: positive },
    pow: { shapes: [[6]], f: (x) => E.pow(x, 2.5), init: positive },
    sin: { shapes: [[6]], f: E.sin },
    cos: { shapes: [[6]], f: E.cos },
    tanh: { shapes: [[6]], f: E.tanh },
    sigmoid: { shapes: [[6]], f: E.sigmoid },
    silu: { shapes: [[2, 8]], f: E.silu },
    abs: { shapes: [[2, 8]], f: E.abs },
    sum_axes: { shapes: [[2, 3, 4]], f: (x) => E.sum(x, [0, 2]) },
    sum_keepdims: { shapes: [[2, 3, 4]], f: (x) => E.sum(x, [1], true) },
    mean: { shapes: [[3, 5]], f: (x) => E.mean(x, [1]) },
    reshape: { shapes: [[2, 6]], f: (x) => E.mul(E.reshape(x, [3, -1]), E.constant([1, 2, 3], [3, 1], 'float64')) },
    transpose: { shapes: [[2, 3, 4]], f: (x) => E.transpose(x, [2, 0, 1]) },
    expand: { shapes: [[3, 1]], f: (x) => E.expand(x, [2, 3, 4]) },
    concat: { shapes: [[2, 3], [2, 2]], f: (a, b) => E.concat([a, b, a], 1) },
    slice: { shapes: [[4, 6]], f: (x) => E.slice(x, 1, 1, 5) },
    pad: { shapes: [[2, 3]], f: (x) => E.pad(x, [1, 0], [2, 1]) },
    flip: { shapes: [[3, 4]], f: (x) => E.flip(x, [0, 1]) },
    gather_repeated_rows: { shapes: [[5, 3]], f: (t) => E.gather(t, E.constant([4, 1, 1, 0, 4, 4], [2, 3], 'int64')) },
    matmul: { shapes: [[3, 4], [4, 2]], f: E.matmul },
    matmul_batched_broadcast: { shapes: [[2, 3, 4], [4, 5]], f: E.matmul },
    matmul_batch_broadcast_both: { shapes: [[2, 1, 3, 4], [3, 4, 2]], f: E.matmul },
    linear: { shapes: [[2, 3, 4], [5, 4], [5]], f: E.linear },
    softmax: { shapes: [[3, 7]], f: E.softmax },
    normalize: { shapes: [[2, 3, 8]], f: (x) => E.normalize(x, 2) },
    layer_norm: { shapes: [[4, 6], [6], [6]], f: (x, w, b) => E.layerNorm(x, w, b) },
    group_norm: { shapes: [[2, 4, 3, 3], [4], [4]], f: (x, w, b) => E.groupNorm(x, 2, w, b) },
    upsample: { shapes: [[1, 2, 2, 3]], f: (x) => E.upsampleNearest(x, 2) },
    avg_pool: { shapes: [[1, 2, 4, 4]], f: (x) => E.avgPool(x, 2) },
    mse: { shapes: [[3, 4], [3, 4]], f: E.mseLoss },
    attention: {
      shapes: [[2, 5, 4], [2, 5, 4], [2, 5, 4]],
      f: (q, k, v) => E.matmul(E.softmax(E.mul(E.matmul(q, E.transposeLast(k)), 0.5)), v),
    },
    log_softmax: { shapes: [[3, 5]], f: E.logSoftmax },
    cross_entropy: { shapes: [[4, 3]], f: (x) => E.crossEntropy(x, E.constant([1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, 0.5, 0], [4, 3], 'float64')) },
    dropout: { shapes: [[2, 3, 4, 5]], f: (x) => E.dropout(x, 0.3, E.constant(17, [], 'float64')) },
    shared_subexpression: { shapes: [[4]], f: (x) => { const e = E.exp(x); return E.mul(e, E.add(e, x)); } },
  };
  for (const [name, c] of Object.entries(cases)) it(name, () => assertGrad(name, c));
});

describe('conv and erf gradients against a float64 reference (float32 kernels only)', () => {
  type ConvOpts = { stride?: number; padding?: number; dilation?: number; groups?: number };
  const convCase = (xs: number[], ws: number[], o: ConvOpts, bias = true) => ({
    shapes: bias ? [xs, ws, [ws[0]]] : [xs, ws],
    f: (x: E.Tensor, w: E.Tensor, b?: E.Tensor) => E.conv2d(x, w, b, o),
    reference: (x: Float64Array, w: Float64Array, b?: Float64Array) => refConv2d(x, xs, w, ws, b, o),
    h: 1e-4,
  });
  const variants: Record<string, [number[], number[], ConvOpts]> = {
    '3x3 pad 1': [[2, 3, 5, 5], [4, 3, 3, 3], { padding: 1 }],
    '3x3 stride 2 pad 1': [[2, 3, 6, 6], [4, 3, 3, 3], { stride: 2, padding: 1 }],
    '3x3 stride 2 odd size': [[1, 2, 7, 7], [3, 2, 3, 3], { stride: 2, padding: 1 }],
    '1x1': [[2, 4, 3, 3], [5, 4, 1, 1], {}],
    'groups 2': [[1, 4, 5, 5], [6, 2, 3, 3], { groups: 2, padding: 1 }],
    'depthwise': [[1, 3, 4, 4], [3, 1, 3, 3], { groups: 3, padding: 1 }],
    'dilation 2': [[1, 2, 7, 7], [2, 2, 3, 3], { dilation: 2, padding: 2 }],
    'no padding': [[1, 2, 5, 5], [3, 2, 3, 3], {}],
  };
  for (const mode of ['flipped', 'transpose'] as const) {
    for (const wmode of ['im2col', 'swapped'] as const) {
      for (const [name, [xs, ws, o]] of Object.entries(variants)) {
        it(`conv2d ${name} (input grad: ${mode}, weight grad: ${wmode})`, async () => {
          E.convOptions.inputGrad = mode;
          E.convOptions.weightGrad = wmode;
          try {
            await assertGrad(name, convCase(xs, ws, o));
          } finally {
            E.convOptions.inputGrad = 'flipped';
            E.convOptions.weightGrad = 'im2col';
          }
        });
      }
    }
  }
  it('upsampleNearest (Resize)', () =>
    assertGrad('upsample', {
      shapes: [[2, 3, 3, 4]],
      f: (x) => E.upsampleNearest(x, 2),
      reference: (x) => {
        const out = new Float64Array(2 * 3 * 6 * 8);
        for (let i = 0; i < out.length; i++) {
          const xx = i % 8, yy = Math.floor(i / 8) % 6, nc = Math.floor(i / 48);
          out[i] = x[nc * 12 + Math.floor(yy / 2) * 4 + Math.floor(xx / 2)];
        }
        return out;
      },
    }));
  it('gelu (erf)', () =>
    assertGrad('gelu', {
      shapes: [[12]],
      f: E.gelu,
      h: 1e-4,
      reference: (x) => x.map((v) => 0.5 * v * (1 + erf64(v / Math.SQRT2))),
    }));
});

/** erf to ~1e-15 by its Maclaurin series (|x| < 3) and continued fraction beyond. */
function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax;
    let s = ax;
    for (let n = 1; n < 100; n++) {
      term *= (-ax * ax) / n;
      s += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * s);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f));
}
