/**
 * Where a training step's time goes: ONNX Runtime's own profiler on the compiled training step
 * (forward, backward and optimizer in one graph) of the `mnist` preset (or --reference: the engine
 * bench's reference U-Net), summed by operator type over the steady steps.
 *
 *   npm run bench:profile [-- --reference --batch 32 --steps 8]
 *
 * The engine writes the profile when DIFFUSE_ORT_PROFILE names a file prefix (src/engine/runtime.ts).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { REFERENCE_UNET, unet, unetPreset } from '../src/index.js';
import { ParamStore, Rng, TrainStep, mseLoss, ParamScope } from '../src/engine/index.js';
import { flag, has, log } from './args.js';

const reference = has('reference');
const batch = Number(flag('batch', reference ? '32' : '64'));
const steps = Number(flag('steps', '8'));
const dir = mkdtempSync(path.join(tmpdir(), 'diffuse-profile-'));
process.env.DIFFUSE_ORT_PROFILE = path.join(dir, 'step');

const cfg = reference ? REFERENCE_UNET : { ...unetPreset('mnist'), imageSize: 28, inChannels: 1, outChannels: 1 };
const shape = [batch, cfg.inChannels, cfg.imageSize, cfg.imageSize];
const rng = new Rng(1);
const x = rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))) as Float32Array;
const eps = rng.fillNormal(new Float32Array(x.length)) as Float32Array;
const t = Float32Array.from({ length: batch }, () => Math.floor(rng.uniform() * 1000));
const step = await TrainStep.create({
  store: new ParamStore(0),
  batch: { x: { shape }, t: { shape: [batch] }, eps: { shape } },
  loss: (s: ParamScope, b) => mseLoss(unet(s, cfg, b.x, b.t), b.eps),
  optimizer: { lr: 1e-4 },
});
const wall: number[] = [];
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  await step.run({ x, t, eps });
  wall.push(performance.now() - t0);
}
await step.release();

interface Event {
  cat: string;
  name: string;
  dur: number;
  ts: number;
  args?: { op_name?: string; output_size?: string; activation_size?: string; parameter_size?: string; input_type_shape?: Record<string, number[]>[] };
}
/**
 * A kernel's row: its operator, with the three kinds of Conv apart: blocked (the engine names
 * nodes of ONNX Runtime's NCHWc domain after it), the depthwise one-hot convolution that gathers
 * the weight gradient's patches (a weight of [C * kH * kW, 1, kH, kW] on more than one channel), and plain.
 */
function kind(k: Event): string {
  const op = k.args?.op_name ?? '?';
  if (op !== 'Conv') return op;
  if (k.name.startsWith('com.microsoft.nchwc.')) return 'Conv, blocked (forward and input gradients)';
  const [x, w] = (k.args?.input_type_shape ?? []).map((s) => Object.values(s)[0]);
  if (x && w && w[1] === 1 && x[1] > 1 && w[0] === x[1] * w[2] * w[3]) return 'Conv, im2col patches (weight gradients)';
  return 'Conv, plain';
}
const file = readdirSync(dir).find((f) => f.endsWith('.json'));
if (!file) throw new Error(`no profile in ${dir}`);
const events = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as Event[];
const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
// The first two runs warm up (allocations, kernel choices): count the rest.
const steady = runs.slice(2);
const from = steady[0]?.ts ?? 0;
const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= from);
const byOp = new Map<string, { us: number; n: number }>();
for (const k of kernels) {
  const op = kind(k);
  const o = byOp.get(op) ?? { us: 0, n: 0 };
  o.us += k.dur;
  o.n++;
  byOp.set(op, o);
}
const total = [...byOp.values()].reduce((a, o) => a + o.us, 0);
const runUs = steady.reduce((a, r) => a + r.dur, 0);
const perStep = (us: number) => us / 1000 / Math.max(1, steady.length);
log(`${reference ? 'reference U-Net (32x32x3)' : "'mnist' preset (28x28x1)"}, batch ${batch}: ${steady.length} steady steps of ${steps}; wall ${(wall.slice(2).reduce((a, b) => a + b, 0) / Math.max(1, wall.length - 2)).toFixed(0)} ms per step`);
console.log(`| operator | ms per step | share of kernel time | calls per step |`);
console.log('|---|---|---|---|');
for (const [op, o] of [...byOp.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, 16)) console.log(`| ${op} | ${perStep(o.us).toFixed(1)} | ${((100 * o.us) / total).toFixed(1)}% | ${(o.n / Math.max(1, steady.length)).toFixed(0)} |`);
console.log(`\nKernels ${perStep(total).toFixed(0)} ms of the session's ${perStep(runUs).toFixed(0)} ms per step (the rest: ONNX Runtime between kernels, copies, allocation).`);
rmSync(dir, { recursive: true, force: true });
