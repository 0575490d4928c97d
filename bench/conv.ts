/**
 * One 3x3 convolution and its gradients, ONNX Runtime (through Diffuse's engine) against PyTorch on
 * the same shapes and 2 threads: the kernels a training step spends most of its time in
 * (bench:profile). Forward with the weight as a graph input (as in training) and baked in as a
 * constant (as in inference, where ONNX Runtime pre-packs it); the backward pass as Diffuse's
 * autodiff builds it (input gradient as a flipped convolution, weight gradient as an im2col GEMM),
 * and each gradient alone (each graph also runs the forward convolution it needs: dx's does not,
 * ONNX Runtime drops it as unused; dW's needs only x and g, so neither does). The forward, dx and
 * backward graphs run twice: on the blocked (NCHWc) kernels, as training does where the CPU has
 * them, and on the plain kernel (RuntimeOptions.blockedConv: false), the baseline, in the same run.
 *
 *   npm run bench:conv -- [--python /tmp/venv/bin/python] [--repeats 12] [--weight-grad im2col|swapped]
 *
 * --weight-grad picks the weight gradient's formulation (convOptions.weightGrad), to compare them.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Program, Rng, conv2d, convOptions, grad, input, mul, sum } from '../src/engine/index.js';
import { flag, log } from './args.js';
import { torchPythons } from './torch-python.js';

const repeats = Number(flag('repeats', '12'));
convOptions.weightGrad = (flag('weight-grad', convOptions.weightGrad) as typeof convOptions.weightGrad);
const shapes: [string, number, number, number, number][] = [
  ['mnist preset, level 1', 64, 32, 28, 32],
  ['mnist preset, level 2', 64, 64, 14, 64],
  ['reference U-Net, level 1', 32, 64, 32, 64],
  ['reference U-Net, level 2', 32, 128, 16, 128],
];
const median = (xs: number[]) => [...xs.slice(2)].sort((a, b) => a - b)[Math.floor((xs.length - 2) / 2)];
const torch = torchPythons()[0];
if (torch) log(`${torch.label}: ${torch.config}`);
else log('no PyTorch (--python PATH): Diffuse alone');
const rng = new Rng(0);

async function time(p: Program, feeds: Record<string, { data: Float32Array; shape: number[] }>): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await p.run(feeds);
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

const T = torch?.label ?? 'PyTorch';
console.log(`| shape (N, C, H=W, O), 3x3 | ORT forward, weight as input | the same, plain kernel | ORT forward, weight constant | ${T} forward | ORT dx alone | the same, plain kernel | ORT dW alone | ORT backward (dx, dW) | the same, plain kernel | ${T} backward | forward ratio | backward ratio |`);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const [what, n, c, h, o] of shapes) {
  const x = { data: rng.fillNormal(new Float32Array(n * c * h * h)) as Float32Array, shape: [n, c, h, h] };
  const w = { data: rng.fillNormal(new Float32Array(o * c * 9)) as Float32Array, shape: [o, c, 3, 3] };
  const g = { data: rng.fillNormal(new Float32Array(n * o * h * h)) as Float32Array, shape: [n, o, h, h] };
  const fwdInput = new Program(({ x, w }) => ({ y: conv2d(x, w, undefined, { padding: 1 }) }));
  // The weight as a named graph input that is never fed: Program bakes it in as a constant.
  const fwdConst = new Program(({ x }) => ({ y: conv2d(x, input('w', w.shape), undefined, { padding: 1 }) }), { weights: new Map([['w', w.data]]) });
  const bwd = new Program(({ x, w, g }) => {
    const y = conv2d(x, w, undefined, { padding: 1 });
    const [dx, dw] = grad(sum(mul(y, g)), [x, w]);
    return { dx, dw };
  });
  const only = (which: 0 | 1, opts: { blockedConv?: boolean } = {}) =>
    new Program(({ x, w, g }) => {
      const y = conv2d(x, w, undefined, { padding: 1 });
      return { d: grad(sum(mul(y, g)), [x, w])[which] };
    }, opts);
  const fi = await time(fwdInput, { x, w });
  const bx = await time(only(0), { x, w, g });
  const bw = await time(only(1), { x, w, g });
  const fc = await time(fwdConst, { x });
  const b = await time(bwd, { x, w, g });
  // The same graphs on ONNX Runtime's plain convolution kernel (RuntimeOptions.blockedConv).
  const plain = { blockedConv: false };
  const pfi = await time(new Program(({ x, w }) => ({ y: conv2d(x, w, undefined, { padding: 1 }) }), plain), { x, w });
  const pbx = await time(only(0, plain), { x, w, g });
  const pb = await time(new Program(({ x, w, g }) => {
    const y = conv2d(x, w, undefined, { padding: 1 });
    const [dx, dw] = grad(sum(mul(y, g)), [x, w]);
    return { dx, dw };
  }, plain), { x, w, g });
  let tf = NaN;
  let tb = NaN;
  if (torch) {
    const r = JSON.parse(execFileSync(torch.python, [path.join(import.meta.dirname, 'conv_torch.py'), String(n), String(c), String(h), String(o), String(repeats)], { encoding: 'utf8' }).trim().split('\n').pop() as string);
    tf = median(r.forward_ms);
    tb = median(r.backward_ms);
  }
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  console.log(`| ${what}: ${n}, ${c}, ${h}, ${o} | ${ms(fi)} | ${ms(pfi)} | ${ms(fc)} | ${ms(tf)} | ${ms(bx)} | ${ms(pbx)} | ${ms(bw)} | ${ms(b)} | ${ms(pb)} | ${ms(tb)} | ${(fi / tf).toFixed(2)}x the time | ${(b / tb).toFixed(2)}x the time |`);
}
