/**
 * Engine benchmark: the reference U-Net (32x32x3, 1.59M parameters) at batch 32,
 * float32. Times the forward pass and one training step (forward + backward +
 * AdamW) for Diffuse and for PyTorch (bench/unet_torch.py, 2 threads): the build
 * --python names (PyTorch 2.x, the anchor; see torch-python.ts) and Debian's
 * python3-torch when present, interleaved in rounds so that all see the same
 * machine load, and reports medians, ratios, GFLOP/s and peak RSS.
 * Then times the training step under each conv-gradient formulation.
 *
 *   npm run bench:engine [-- --python /tmp/venv/bin/python --batch 32 --steps 8 --rounds 2 --no-torch --no-variants --memory-pattern --plain-conv]
 *
 * --memory-pattern adds rows with ONNX Runtime's memory pattern on (DIFFUSE_ORT_MEMPATTERN=1), and
 * --plain-conv rows on its plain convolution kernels instead of the blocked ones (DIFFUSE_ORT_NCHWC=0),
 * in the same rounds.
 *
 * Each measurement runs in a child process so that peak RSS is its own.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REFERENCE_UNET, unet } from '../src/index.js';
import { ParamScope, ParamStore, Program, Rng, TrainStep, convOptions, countFlops, input, mseLoss } from '../src/engine/index.js';
import { torchPythons } from './torch-python.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};

interface Sample {
  times: number[];
  maxRssMB: number;
}

async function child(mode: 'forward' | 'train', batch: number, steps: number, variant: string): Promise<void> {
  const [inputGrad, weightGrad] = variant.split(',') as [typeof convOptions.inputGrad, typeof convOptions.weightGrad];
  convOptions.inputGrad = inputGrad;
  convOptions.weightGrad = weightGrad;
  const store = new ParamStore(0);
  const rng = new Rng(1);
  const shape = [batch, 3, 32, 32];
  const x = rng.fillNormal(new Float32Array(batch * 3 * 32 * 32)) as Float32Array;
  const eps = rng.fillNormal(new Float32Array(batch * 3 * 32 * 32)) as Float32Array;
  const t = Float32Array.from({ length: batch }, () => Math.floor(rng.uniform() * 1000));
  const times: number[] = [];
  if (mode === 'forward') {
    unet(new ParamScope(store), REFERENCE_UNET, input('x', shape), input('t', [batch])); // create weights
    const program = new Program(({ x, t }) => ({ y: unet(new ParamScope(store), REFERENCE_UNET, x, t) }), { weights: store.values() });
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      await program.run({ x: { data: x, shape }, t: { data: t, shape: [batch] } });
      times.push(performance.now() - t0);
    }
  } else {
    const step = await TrainStep.create({
      store,
      batch: { x: { shape }, t: { shape: [batch] }, eps: { shape } },
      loss: (s, b) => mseLoss(unet(s, REFERENCE_UNET, b.x, b.t), b.eps),
      optimizer: { lr: 1e-4 },
    });
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      await step.run({ x, t, eps });
      times.push(performance.now() - t0);
    }
  }
  const sample: Sample = { times, maxRssMB: process.resourceUsage().maxRSS / 1024 };
  process.stdout.write(JSON.stringify(sample) + '\n');
}

function runDiffuse(mode: string, batch: number, steps: number, variant = 'flipped,im2col', env: Record<string, string> = {}): Sample {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'engine.ts'), '--child', mode, String(batch), String(steps), variant], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    env: { ...process.env, ...env },
  });
  return JSON.parse(out.trim().split('\n').pop() as string);
}

function runTorch(python: string, mode: string, batch: number, steps: number): Sample {
  const out = execFileSync(python, [path.join(here, 'unet_torch.py'), mode, String(batch), String(steps)], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop() as string);
  return { times: r.times_ms, maxRssMB: r.max_rss_mb };
}

/** Median of the steady-state samples (the first two runs warm up allocators and caches). */
function median(samples: Sample[]): number {
  const all = samples.flatMap((s) => s.times.slice(2)).sort((a, b) => a - b);
  return all[Math.floor(all.length / 2)];
}
const peak = (samples: Sample[]) => Math.max(...samples.map((s) => s.maxRssMB));
const fmt = (v: number, d = 0) => v.toFixed(d);

async function main(): Promise<void> {
  if (args[0] === '--child') {
    await child(args[1] as 'forward' | 'train', Number(args[2]), Number(args[3]), args[4]);
    return;
  }
  const batch = opt('batch', 32);
  const steps = opt('steps', 8);
  const rounds = opt('rounds', 2);
  const torches = torchPythons();
  if (!flag('no-torch') && !torches.length) console.log('PyTorch not found (give --python PATH, a Python with PyTorch 2.x; or apt-get install python3-torch): reporting Diffuse alone.\n');
  for (const t of torches) console.log(`${t.label}: ${t.config}`);
  const gflop = countFlops([unet(new ParamScope(new ParamStore(0)), REFERENCE_UNET, input('x', [batch, 3, 32, 32]), input('t', [batch]))]) / 1e9;
  console.log(`Reference U-Net, batch ${batch}, 32x32x3, float32; ${gflop.toFixed(2)} GFLOP per forward pass.`);
  console.log(`${rounds} rounds x ${steps} runs each, interleaved; medians exclude each process's first 2 runs.\n`);

  // Diffuse again under other runtime settings, in the same rounds (rows after the main ones).
  const extras: { label: string; env: Record<string, string> }[] = [
    ...(flag('memory-pattern') ? [{ label: "ONNX Runtime's memory pattern on", env: { DIFFUSE_ORT_MEMPATTERN: '1' } }] : []),
    ...(flag('plain-conv') ? [{ label: 'plain convolution kernels', env: { DIFFUSE_ORT_NCHWC: '0' } }] : []),
  ];
  const res: Record<string, { d: Sample[]; t: Sample[][]; extra: Sample[][] }> = {
    forward: { d: [], t: torches.map(() => []), extra: extras.map(() => []) },
    train: { d: [], t: torches.map(() => []), extra: extras.map(() => []) },
  };
  for (let r = 0; r < rounds; r++) {
    for (const mode of ['forward', 'train'] as const) {
      res[mode].d.push(runDiffuse(mode, batch, steps));
      extras.forEach((x, k) => res[mode].extra[k].push(runDiffuse(mode, batch, steps, undefined, x.env)));
      torches.forEach((t, k) => res[mode].t[k].push(runTorch(t.python, mode, batch, steps)));
    }
  }
  // Ratios are against the first build (the anchor).
  const rows: string[][] = [['measurement', 'Diffuse', ...torches.map((t) => t.label), ...torches.map((t) => `Diffuse / ${t.label}`), 'Diffuse GFLOP/s']];
  const timeRow = (what: string, mode: 'forward' | 'train', samples: Sample[], withFlops: boolean) => {
    const d = median(samples);
    const ts = res[mode].t.map(median);
    // A training step is about 3x the forward FLOPs (forward, input and weight gradients).
    const flops = mode === 'forward' ? gflop : 3 * gflop;
    rows.push([what, fmt(d), ...ts.map((t) => fmt(t)), ...ts.map((t) => `${(d / t).toFixed(2)}x time (${(t / d).toFixed(2)}x faster)`), withFlops ? fmt((flops / d) * 1000) : '']);
  };
  const rssRow = (what: string, mode: 'forward' | 'train', samples: Sample[]) => {
    const pd = peak(samples);
    const pt = res[mode].t.map(peak);
    rows.push([what, fmt(pd), ...pt.map((p) => fmt(p)), ...pt.map((p) => `${(pd / p).toFixed(2)}x`), '']);
  };
  const name = (mode: 'forward' | 'train') => (mode === 'forward' ? 'forward' : 'training step');
  for (const mode of ['forward', 'train'] as const) timeRow(`${name(mode)} (ms)`, mode, res[mode].d, true);
  for (const mode of ['train', 'forward'] as const) rssRow(`peak RSS, ${mode === 'train' ? 'training' : 'forward'} (MB)`, mode, res[mode].d);
  extras.forEach((x, k) => {
    for (const mode of ['forward', 'train'] as const) {
      timeRow(`${name(mode)} (ms), ${x.label}`, mode, res[mode].extra[k], false);
      rssRow(`peak RSS, ${mode === 'train' ? 'training' : 'forward'} (MB), ${x.label}`, mode, res[mode].extra[k]);
    }
  });
  printTable(rows);
  if (torches.length) console.log(`\nTargets against ${torches[0].label}: training step <= 1.0x its time, forward >= 1.3x faster, peak RSS while training <= 1.3x.`);

  if (!flag('no-variants')) {
    console.log('\nConv gradient formulations (training step, Diffuse only):');
    const vrows = [['input grad', 'weight grad', 'step (ms)', 'peak RSS (MB)']];
    for (const v of ['flipped,im2col', 'transpose,im2col', 'flipped,swapped', 'transpose,swapped']) {
      const s = [runDiffuse('train', batch, Math.max(4, steps - 2), v)];
      vrows.push([...v.split(','), fmt(median(s)), fmt(peak(s))]);
    }
    printTable(vrows);
    console.log(`(default: input grad '${convOptions.inputGrad}', weight grad '${convOptions.weightGrad}')`);
  }
}

function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  console.log(line(rows[0]));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const r of rows.slice(1)) console.log(line(r));
}

await main();
