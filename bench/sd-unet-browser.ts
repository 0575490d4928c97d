/**
 * One U-Net step of Stable Diffusion 1.5's architecture at 512x512 (64x64 latents, batch 2: one
 * guided step) in the browser: onnxruntime-web in headless Chromium (wasm; WebGPU with --webgpu),
 * the engine of `diffuse studio --model`, against onnxruntime-node on the same file in the same run.
 * Peak memory is the largest sum of the resident sets of Chromium's processes while the page loads
 * and runs the network (sampled every 100 ms from /proc), and Node's maxRSS for onnxruntime-node.
 *
 *   npm run bench:sd-unet-browser -- --python /tmp/venv/bin/python [--dir DIR] [--half] [--external] [--repeats 2] [--size 64] [--batch 2] [--webgpu] [--optimization all] [--lean]
 *
 * The network is bench/sd15_unet.py's with random weights (859,520,964 parameters), exported once
 * into --dir (with --half: float16 weights and inputs, 1.7 GB, as Optimum's --dtype fp16, in one
 * file or with --external in model.onnx_data beside the graph; without: float32, 3.4 GB, which
 * 32-bit WebAssembly cannot hold).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { TorchGenerator } from '../src/diffusion/index.js';
import { openComponentFile } from '../src/components/model-folder.js';
import { Route, fileRoute, serveRoutes } from '../src/studio/server.js';
import { WEBGPU_FLAGS, launchChromium } from '../test/studio/browser.js';
import { flag, has, log } from './args.js';

const half = has('half');
const external = has('external');
const dir = path.resolve(flag('dir', half ? `/tmp/diffuse-sd15-fp16${external ? '-external' : ''}` : '/tmp/diffuse-sd15') as string);
const repeats = Number(flag('repeats', '2'));
const size = Number(flag('size', '64'));
/** 2: one guided step (the negative and the positive prompt); 1: an unguided step (SD-Turbo's). */
const batch = Number(flag('batch', '2'));
const file = path.join(dir, 'unet', 'model.onnx');
/** onnxruntime-web's graph optimisation level ('all', 'extended', 'basic', 'disabled'): constant folding of float16 weights' casts doubles them in memory. */
const optimization = flag('optimization', 'all') as string;
/** --lean: without onnxruntime's CPU memory arena and memory pattern (each value's memory freed when its last reader is done). */
const lean = has('lean');

/** The page: onnxruntime-web's bundle, the session for /unet/model.onnx, `repeats` timed steps after one warm-up. */
const PAGE = (backend: string, optimization: string) => `<!doctype html><meta charset="utf-8"><title>SD U-Net</title><link rel="icon" href="data:,"><script type="module">
import * as ort from '/ort/ort.all.bundle.min.mjs';
ort.env.wasm.wasmPaths = '/ort/';
const out = (window.result = { phase: 'loading' });
try {
  if ('${backend}' === 'webgpu') {
    // onnxruntime-web's float16 kernels need the adapter's shader-f16 feature; without it they fail to compile and the run reads garbage.
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) throw new Error('no WebGPU adapter');
    if (${half} && !adapter.features.has('shader-f16')) throw new Error('the WebGPU adapter has no shader-f16 (float16 shaders)');
  }
  const t0 = performance.now();
  const extra = ${JSON.stringify(readdirSync(path.join(dir, 'unet')).filter((f) => f !== 'model.onnx'))}.map((f) => ({ path: f, data: '/unet/' + f }));
  const s = await ort.InferenceSession.create('/unet/model.onnx', { executionProviders: ['${backend}'], graphOptimizationLevel: '${optimization}', ${lean ? 'enableCpuMemArena: false, enableMemPattern: false, ' : ''}...(extra.length ? { externalData: extra } : {}) });
  out.loadSeconds = (performance.now() - t0) / 1000;
  out.phase = 'running';
  const types = Object.fromEntries(s.inputMetadata.map((m) => [m.name, m.type]));
  const rand = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.8);
  const tensor = (name, values, dims) => new ort.Tensor(types[name], types[name] === 'float16' ? Float16Array.from(values) : values, dims);
  const feeds = {
    sample: tensor('sample', rand(${batch * 4 * size * size}), [${batch}, 4, ${size}, ${size}]),
    timestep: tensor('timestep', Float32Array.of(981), []),
    encoder_hidden_states: tensor('encoder_hidden_states', rand(${batch * 77 * 768}), [${batch}, 77, 768]),
  };
  const times = [];
  for (let r = 0; r <= ${repeats}; r++) {
    const t = performance.now();
    await s.run(feeds);
    times.push((performance.now() - t) / 1000);
  }
  out.firstSeconds = times[0];
  out.times = times.slice(1);
  out.phase = 'done';
} catch (e) {
  out.phase = 'failed';
  out.error = String(e && e.message ? e.message : e).split('\\n')[0];
}
</script>`;

/** The summed resident set of a process and its descendants, in MB (Linux /proc). */
function treeRssMB(pid: number): number {
  const children = new Map<number, number[]>();
  for (const p of readdirSync('/proc').filter((f) => /^\d+$/.test(f))) {
    try {
      const ppid = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(p)]);
    } catch {
      // The process ended while we looked.
    }
  }
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop() as number;
    try {
      total += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    } catch {
      // Gone.
    }
    stack.push(...(children.get(p) ?? []));
  }
  return total;
}

async function inBrowser(backend: 'wasm' | 'webgpu'): Promise<{ load?: number; seconds?: number; first?: number; peakMB: number; error?: string }> {
  const ortDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
  const routes = new Map<string, Route>([['/', { type: 'text/html; charset=utf-8', body: PAGE(backend, optimization) }]]);
  for (const f of readdirSync(ortDir)) if (/^(ort\.all\.bundle\.min\.mjs|ort-wasm-simd-threaded(\.jsep)?\.(mjs|wasm))$/.test(f)) routes.set(`/ort/${f}`, fileRoute(path.join(ortDir, f)));
  for (const f of readdirSync(path.join(dir, 'unet'))) routes.set(`/unet/${f}`, fileRoute(path.join(dir, 'unet', f)));
  const server = await serveRoutes(routes, { port: 0 });
  const browser = await launchChromium(backend === 'webgpu' ? WEBGPU_FLAGS : []);
  // Chromium's processes are this process's descendants: their sum is the tree's less this process.
  const own = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, treeRssMB(process.pid) - own())), 100);
  try {
    const page = await browser.newPage();
    // The page's errors, each said once (a failing backend repeats them by the thousand).
    const said = new Set<string>();
    page.on('console', (m) => {
      const line = m.text().split('\n')[0];
      if (m.type() !== 'error' || said.has(line) || said.size >= 5) return;
      said.add(line);
      log(`page: ${line}`);
    });
    await page.goto(server.url);
    let crashed = '';
    page.on('crash', () => (crashed = 'the page crashed (out of memory?)'));
    const r = await page
      .waitForFunction(() => ['done', 'failed'].includes((window as unknown as { result?: { phase: string } }).result?.phase ?? ''), null, { timeout: 3_600_000, polling: 1000 })
      .then(() => page.evaluate(() => (window as unknown as { result: { loadSeconds?: number; times?: number[]; firstSeconds?: number; error?: string } }).result))
      .catch((e: Error) => ({ error: crashed || e.message.split('\n')[0] }) as { loadSeconds?: number; times?: number[]; firstSeconds?: number; error?: string });
    const sorted = (r.times ?? []).slice().sort((a, b) => a - b);
    return { load: r.loadSeconds, first: r.firstSeconds, seconds: sorted.length ? sorted[Math.floor(sorted.length / 2)] : undefined, peakMB: peak, error: r.error };
  } finally {
    clearInterval(timer);
    await browser.close();
    await server.close();
  }
}

/** The child: onnxruntime-node on the same file, one warm-up and `repeats` timed steps, JSON on stdout. */
async function nodeChild(): Promise<void> {
  const t0 = performance.now();
  const unet = await openComponentFile(file, { inputs: ['sample', 'timestep', 'encoder_hidden_states'], outputs: ['out_sample'] });
  const load = (performance.now() - t0) / 1000;
  const g = new TorchGenerator(0);
  const feeds = { sample: { data: g.randn(batch * 4 * size * size), dims: [batch, 4, size, size] }, timestep: { data: [981], dims: [] }, encoder_hidden_states: { data: g.randn(batch * 77 * 768), dims: [batch, 77, 768] } };
  const times: number[] = [];
  for (let r = 0; r <= repeats; r++) {
    const t = performance.now();
    await unet.run(feeds, ['out_sample']);
    times.push((performance.now() - t) / 1000);
  }
  const sorted = times.slice(1).sort((a, b) => a - b);
  console.log(JSON.stringify({ load, first: times[0], seconds: sorted[Math.floor(sorted.length / 2)], peakMB: process.resourceUsage().maxRSS / 1024 }));
  await unet.release();
}

async function main(): Promise<void> {
  if (has('child')) return nodeChild();
  if (!existsSync(file)) {
    const python = flag('python');
    if (!python) throw new Error(`${file} does not exist: give --python PATH (a Python with torch and onnx) to export it`);
    log(`exporting the SD 1.5 U-Net${half ? ' in float16' : ''} to ${file} (once) ...`);
    const r = spawnSync(python, [path.join(import.meta.dirname, 'sd15_unet.py'), '--export', dir, ...(half ? ['--half'] : []), ...(external ? ['--external'] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) throw new Error(`export failed (exit ${r.status})`);
  }
  const rows: { what: string; r: { load?: number; seconds?: number; first?: number; peakMB: number; error?: string } }[] = [];
  log('onnxruntime-node ...');
  const node = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', '--dir', dir, '--repeats', String(repeats), '--size', String(size), '--batch', String(batch)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  rows.push({ what: 'onnxruntime-node 1.30 (CPU)', r: node.status === 0 ? JSON.parse(node.stdout.trim().split('\n').pop() as string) : { peakMB: 0, error: node.stderr.split('\n').filter(Boolean).slice(-1)[0] } });
  for (const backend of has('webgpu') ? (['wasm', 'webgpu'] as const) : (['wasm'] as const)) {
    log(`onnxruntime-web, ${backend}, in Chromium ...`);
    rows.push({ what: `onnxruntime-web 1.30 in Chromium (${backend})`, r: await inBrowser(backend) });
  }
  const base = rows[0].r.seconds;
  console.log(`One U-Net step, SD 1.5 architecture${half ? ', float16' : ', float32'} (${path.basename(dir)}; onnxruntime-web's graph optimisation: ${optimization}${lean ? ', no memory arena or pattern' : ''}), ${size * 8}x${size * 8} (latents ${size}x${size}), batch ${batch}, median of ${repeats} after one warm-up:`);
  console.log('| what | seconds per step | vs onnxruntime-node | first step, s | load, s | peak RSS, MB |');
  console.log('|---|---|---|---|---|---|');
  const f = (v: number | undefined, d = 1) => (v === undefined ? '-' : v.toFixed(d));
  for (const { what, r } of rows) console.log(`| ${what} | ${r.error ? `failed: ${r.error}` : f(r.seconds, 2)} | ${r.seconds && base ? `${(r.seconds / base).toFixed(2)}x` : '-'} | ${f(r.first)} | ${f(r.load)} | ${Math.round(r.peakMB)} |`);
}

await main();
