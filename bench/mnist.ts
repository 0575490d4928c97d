/**
 * MNIST training throughput, images per second: Diffuse's training loop (batch
 * preparation + one compiled step) against PyTorch's step on the same U-Net
 * config (bench/unet_torch.py) in each PyTorch build of torch-python.ts (the
 * --python one, PyTorch 2.x, is the anchor), interleaved in rounds so all see the same load.
 *
 *   npm run bench:mnist [-- --python /tmp/venv/bin/python --batch 64 --steps 12 --rounds 2 --preset mnist --no-variants]
 *
 * Unless --no-variants, each round also runs Diffuse on ONNX Runtime's plain convolution kernels
 * (DIFFUSE_ORT_NCHWC=0), the baseline of the blocked ones, in the same rounds.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RunConfig, TRAIN_DEFAULTS, unetPreset } from '../src/index.js';
import { BatchMaker, diffusionLoss } from '../src/train/index.js';
import { ParamStore, TrainStep } from '../src/engine/index.js';
import { loadMnist } from '../src/data/index.js';
import { torchPythons } from './torch-python.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};

async function child(batch: number, steps: number, preset: string): Promise<void> {
  const model = unetPreset(preset);
  const config: RunConfig = {
    format: 'diffuse-run-1',
    data: { source: 'mnist', flip: false },
    model,
    schedule: TRAIN_DEFAULTS.schedule,
    predictionType: 'epsilon',
    lossWeighting: 'mse',
    minSnrGamma: 5,
    batchSize: batch,
    lr: 1e-3,
    warmupSteps: 0,
    weightDecay: 0,
    clipGradNorm: 1,
    emaDecay: 0.999,
    seed: 0,
  };
  const data = loadMnist('train', 10_000);
  const batches = new BatchMaker(data, config);
  const shape = [batch, 1, 28, 28];
  const step = await TrainStep.create({
    store: new ParamStore(0),
    batch: { x: { shape }, t: { shape: [batch] }, target: { shape }, w: { shape: [batch] } },
    loss: diffusionLoss(config),
    optimizer: { lr: 1e-3, clipGradNorm: 1, emaDecay: 0.999 },
  });
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    await step.run(batches.make(s));
    times.push(performance.now() - t0);
  }
  console.log(JSON.stringify({ times }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  if (args[0] === '--child') return child(Number(args[1]), Number(args[2]), args[3]);
  const batch = Number(opt('batch', '64'));
  const steps = Number(opt('steps', '12'));
  const rounds = Number(opt('rounds', '2'));
  const preset = opt('preset', 'mnist');
  const variants = !args.includes('--no-variants');
  const model = unetPreset(preset);
  const cfg = JSON.stringify({ ...model, imageSize: 28, inChannels: 1, outChannels: 1 });
  const torches = torchPythons();
  if (!torches.length) console.log('PyTorch not found (give --python PATH, a Python with PyTorch 2.x; or apt-get install python3-torch): reporting Diffuse alone.');
  for (const t of torches) console.log(`${t.label}: ${t.config}`);
  const d: number[] = [];
  const plain: number[] = [];
  const t: number[][] = torches.map(() => []);
  const diffuse = (env: Record<string, string>) => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'mnist.ts'), '--child', String(batch), String(steps), preset], { encoding: 'utf8', env: { ...process.env, ...env } });
    return (JSON.parse(out.trim().split('\n').pop() as string).times as number[]).slice(2);
  };
  for (let r = 0; r < rounds; r++) {
    d.push(...diffuse({}));
    // The same loop on ONNX Runtime's plain convolution kernels (RuntimeOptions.blockedConv).
    if (variants) plain.push(...diffuse({ DIFFUSE_ORT_NCHWC: '0' }));
    torches.forEach((tp, k) => {
      const o = execFileSync(tp.python, [path.join(here, 'unet_torch.py'), 'train', String(batch), String(steps), cfg], { encoding: 'utf8' });
      t[k].push(...(JSON.parse(o.trim().split('\n').pop() as string).times_ms as number[]).slice(2));
    });
  }
  const dips = (batch / median(d)) * 1000;
  console.log(`MNIST training, preset '${preset}' (28x28x1), batch ${batch}; medians of ${rounds} rounds x ${steps - 2} steps`);
  console.log('| engine | step (ms) | images/s | Diffuse / this (throughput) |');
  console.log('|---|---|---|---|');
  console.log(`| Diffuse | ${median(d).toFixed(0)} | ${dips.toFixed(0)} | |`);
  if (variants) console.log(`| Diffuse, plain convolutions (DIFFUSE_ORT_NCHWC=0) | ${median(plain).toFixed(0)} | ${((batch / median(plain)) * 1000).toFixed(0)} | ${(median(plain) / median(d)).toFixed(2)}x |`);
  torches.forEach((tp, k) => {
    const tips = (batch / median(t[k])) * 1000;
    console.log(`| ${tp.label} | ${median(t[k]).toFixed(0)} | ${tips.toFixed(0)} | ${(dips / tips).toFixed(2)}x |`);
  });
}

await main();
