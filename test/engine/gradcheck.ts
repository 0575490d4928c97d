/**
 * Gradient checking: autodiff gradients against central finite differences.
 *
 * The scalar checked is L = sum(f(x...) * r) with a fixed random r, so every
 * output element matters. In float64 the finite differences run through the
 * engine itself; ops ONNX Runtime only has in float32 (Conv, ConvTranspose,
 * Erf) are checked against finite differences of an independent float64
 * reference written in plain TypeScript.
 */
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.js';

export function randn(n: number, rng: E.Rng, scale = 1): Float64Array {
  return rng.fillNormal(new Float64Array(n), scale) as Float64Array;
}

export interface GradCase {
  shapes: number[][];
  f: (...xs: E.Tensor[]) => E.Tensor;
  /** Values for each input (default: standard normal). */
  init?: (i: number, n: number, rng: E.Rng) => Float64Array;
  /** Float64 reference forward for ops without float64 kernels; returns flat output. */
  reference?: (...xs: Float64Array[]) => Float64Array;
  tol?: number;
  h?: number;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Returns the max relative error over directional and per-element checks. */
export async function gradCheck(c: GradCase, seed = 1): Promise<number> {
  const rng = new E.Rng(seed);
  const dtype: E.DType = c.reference ? 'float32' : 'float64';
  const values = c.shapes.map((s, i) => (c.init ? c.init(i, E.sizeOf(s), rng) : randn(E.sizeOf(s), rng)));
  // Probe output shape.
  const probe = c.f(...c.shapes.map((s, i) => E.input(`x${i}`, s, dtype)));
  const r = randn(probe.size, rng);
  const program = new E.Program((ins) => {
    const xs = c.shapes.map((_, i) => ins[`x${i}`]);
    const y = c.f(...xs);
    const loss = E.sum(E.mul(y, E.constant(r, y.shape, dtype)));
    const gs = E.grad(loss, xs);
    return Object.fromEntries([['loss', loss], ...gs.map((g, i) => [`g${i}`, g])]);
  });
  const feed = (vals: Float64Array[]) =>
    Object.fromEntries(vals.map((v, i) => [`x${i}`, { data: dtype === 'float64' ? v : Float32Array.from(v), shape: c.shapes[i] }]));
  const out = await program.run(feed(values));
  if (c.reference) {
    // The forward value itself must match the reference, not just its derivative.
    const want = dot(c.reference(...values), r);
    const got = out.loss.data[0] as number;
    const err = Math.abs(got - want) / Math.max(1, Math.abs(want));
    if (err > 1e-4) throw new Error(`forward value ${got} differs from the float64 reference ${want}`);
  }
  const grads = c.shapes.map((_, i) => Float64Array.from(out[`g${i}`].data as ArrayLike<number>));

  const lossAt = async (vals: Float64Array[]): Promise<number> => {
    if (c.reference) return dot(c.reference(...vals), r);
    return (await program.run(feed(vals))).loss.data[0] as number;
  };
  const h = c.h ?? 1e-5;
  let worst = 0;
  const compare = (analytic: number, numeric: number) => {
    const err = Math.abs(analytic - numeric) / Math.max(1e-3, Math.abs(analytic), Math.abs(numeric));
    worst = Math.max(worst, err);
  };
  // Three random directions through all inputs at once.
  for (let k = 0; k < 3; k++) {
    const dirs = values.map((v) => randn(v.length, rng));
    const plus = values.map((v, i) => v.map((x, j) => x + h * dirs[i][j]));
    const minus = values.map((v, i) => v.map((x, j) => x - h * dirs[i][j]));
    const numeric = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * h);
    const analytic = grads.reduce((s, g, i) => s + dot(g, dirs[i]), 0);
    compare(analytic, numeric);
  }
  // Every element of small inputs.
  for (let i = 0; i < values.length; i++) {
    if (values[i].length > 40) continue;
    for (let j = 0; j < values[i].length; j++) {
      const plus = values.map((v) => v.slice());
      const minus = values.map((v) => v.slice());
      plus[i][j] += h;
      minus[i][j] -= h;
      compare(grads[i][j], ((await lossAt(plus)) - (await lossAt(minus))) / (2 * h));
    }
  }
  await program.release();
  return worst;
}

export async function assertGrad(name: string, c: GradCase): Promise<void> {
  const tol = c.tol ?? (c.reference ? 2e-3 : 1e-6);
  const err = await gradCheck(c);
  assert.ok(err < tol, `${name}: gradient relative error ${err.toExponential(2)} exceeds ${tol}`);
}

/** Plain float64 NCHW convolution (the independent reference). */
export function refConv2d(
  x: Float64Array,
  xs: number[],
  w: Float64Array,
  ws: number[],
  b: Float64Array | undefined,
  o: { stride?: number; padding?: number; dilation?: number; groups?: number } = {},
): Float64Array {
  const [n, c, h, wd] = xs;
  const [oc, cg, kh, kw] = ws;
  const s = o.stride ?? 1;
  const p = o.padding ?? 0;
  const d = o.dilation ?? 1;
  const g = o.groups ?? 1;
  const ho = Math.floor((h + 2 * p - d * (kh - 1) - 1) / s) + 1;
  const wo = Math.floor((wd + 2 * p - d * (kw - 1) - 1) / s) + 1;
  const og = oc / g;
  const out = new Float64Array(n * oc * ho * wo);
  for (let ni = 0; ni < n; ni++)
    for (let co = 0; co < oc; co++) {
      const grp = Math.floor(co / og);
      for (let yi = 0; yi < ho; yi++)
        for (let xi = 0; xi < wo; xi++) {
          let acc = b ? b[co] : 0;
          for (let ci = 0; ci < cg; ci++)
            for (let ky = 0; ky < kh; ky++)
              for (let kx = 0; kx < kw; kx++) {
                const iy = yi * s - p + ky * d;
                const ix = xi * s - p + kx * d;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                const cin = grp * cg + ci;
                acc += x[((ni * c + cin) * h + iy) * wd + ix] * w[((co * cg + ci) * kh + ky) * kw + kx];
              }
          out[((ni * oc + co) * ho + yi) * wo + xi] = acc;
        }
    }
  return out;
}
