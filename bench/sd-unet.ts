/**
 * One U-Net step of Stable Diffusion 1.5's architecture at 512x512 (64x64 latents, batch 2: one
 * guided step) with random weights: ONNX Runtime in Node (onnxruntime-node, CPU) against PyTorch
 * on the same network, in the same run, each in its own process so that its peak memory is its own.
 *
 *   npm run bench:sd-unet -- --python /tmp/venv/bin/python [--dir /tmp/diffuse-sd15] [--repeats 3] [--size 64] [--threads 2]
 *
 * Diffuse runs twice: with ONNX Runtime's CPU memory arena (the default) and without it
 * (`cpuMemArena: false`), which trades a little speed for memory.
 *
 * The network is bench/sd15_unet.py's (859,520,964 parameters, as SD 1.5's U-Net); its ONNX
 * export (3.4 GB, Optimum's input names) is made once into --dir by that script, which needs
 * PyTorch (the local wheelhouse's: pip install --no-index --find-links /opt/pypi/files
 * --find-links /opt/wheels torch onnx).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { openComponentFile } from '../src/components/model-folder.js';
import { TorchGenerator } from '../src/diffusion/index.js';
import { flag, has, log } from './args.js';

const repeats = Number(flag('repeats', '3'));
const size = Number(flag('size', '64'));
const threads = Number(flag('threads', '2'));
const batch = 2;

/** The child: load the file, time `repeats` steps after one warm-up, print JSON. */
async function child(file: string): Promise<void> {
  const t0 = performance.now();
  const unet = await openComponentFile(file, { inputs: ['sample', 'timestep', 'encoder_hidden_states'], outputs: ['out_sample'] }, { cpuMemArena: !has('no-arena') });
  const loadSeconds = (performance.now() - t0) / 1000;
  const g = new TorchGenerator(0);
  const feeds = {
    sample: { data: g.randn(batch * 4 * size * size), dims: [batch, 4, size, size] },
    timestep: { data: [981], dims: [] },
    encoder_hidden_states: { data: g.randn(batch * 77 * 768), dims: [batch, 77, 768] },
  };
  const times: number[] = [];
  for (let r = 0; r <= repeats; r++) {
    const s = performance.now();
    await unet.run(feeds, ['out_sample']);
    times.push((performance.now() - s) / 1000);
  }
  const sorted = times.slice(1).sort((a, b) => a - b);
  console.log(JSON.stringify({ loadSeconds, medianSeconds: sorted[Math.floor(sorted.length / 2)], firstSeconds: times[0], peakRssMB: process.resourceUsage().maxRSS / 1024 }));
  await unet.release();
}

async function main(): Promise<void> {
  if (has('child')) return child(flag('child') as string);
  const python = flag('python');
  const dir = path.resolve(flag('dir', '/tmp/diffuse-sd15') as string);
  const file = path.join(dir, 'unet', 'model.onnx');
  const script = path.join(import.meta.dirname, 'sd15_unet.py');
  if (!existsSync(file)) {
    if (!python) throw new Error(`${file} does not exist: give --python PATH (a Python with torch and onnx) to export it`);
    log(`exporting the SD 1.5 U-Net to ${file} (once; 3.4 GB) ...`);
    const r = spawnSync(python, [script, '--export', dir, '--size', String(size)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) throw new Error(`export failed (exit ${r.status})`);
  }
  const rows: { what: string; seconds: number; load?: number; rss: number }[] = [];
  for (const arena of [true, false]) {
    const args = ['--import', 'tsx', import.meta.filename, '--child', file, '--repeats', String(repeats), '--size', String(size), ...(arena ? [] : ['--no-arena'])];
    const node = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (node.status !== 0) throw new Error(`the ONNX Runtime run failed: ${node.stderr.split('\n').slice(-3).join(' ')}`);
    const o = JSON.parse(node.stdout.trim().split('\n').pop() as string) as { loadSeconds: number; medianSeconds: number; peakRssMB: number };
    rows.push({ what: `Diffuse (onnxruntime-node 1.30, CPU${arena ? '' : ', cpuMemArena: false'})`, seconds: o.medianSeconds, load: o.loadSeconds, rss: o.peakRssMB });
  }
  if (python) {
    const t = spawnSync(python, [script, '--time', '--repeats', String(repeats), '--size', String(size), '--threads', String(threads)], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (t.status !== 0) throw new Error(`the PyTorch run failed: ${t.stderr.split('\n').slice(-3).join(' ')}`);
    const p = JSON.parse(t.stdout.trim().split('\n').pop() as string) as { torch: string; threads: number; medianSeconds: number; peakRssMB: number };
    rows.push({ what: `PyTorch ${p.torch} (${p.threads} threads)`, seconds: p.medianSeconds, rss: p.peakRssMB });
  } else log('no --python: the PyTorch row is skipped');
  const base = rows.find((r) => r.what.startsWith('PyTorch'))?.seconds;
  console.log(`One U-Net step, SD 1.5 architecture, ${size * 8}x${size * 8} (latents ${size}x${size}), batch ${batch}, median of ${repeats} after one warm-up:`);
  console.log('| what | seconds per step | vs PyTorch | load, s | peak RSS, MB |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.what} | ${r.seconds.toFixed(2)} | ${base ? `${(r.seconds / base).toFixed(2)}x` : '-'} | ${r.load !== undefined ? r.load.toFixed(1) : '-'} | ${Math.round(r.rss)} |`);
}

await main();
