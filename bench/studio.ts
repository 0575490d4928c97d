/**
 * The studio's generation in Chromium (onnxruntime-web, wasm) against `diffuse sample`'s
 * (onnxruntime-node) for the same image, steps and scheduler, measured in the same run; and the
 * time from opening the page to the first image.
 *
 * With --webgpu, also onnxruntime-web's WebGPU backend on the adapter Chromium offers (on a machine
 * without a GPU: SwiftShader, a software adapter, behind --enable-unsafe-webgpu).
 *
 *   npm run bench:studio -- --run runs/mnist [--steps 20] [--scheduler dpm++2m] [--repeats 3] [--webgpu]
 */
import type { Page } from 'playwright-core';
import { DiffusionPipeline, SchedulerName } from '../src/index.js';
import { startStudio } from '../src/studio/studio.js';
import { WEBGPU_FLAGS, launchChromium } from '../test/studio/browser.js';
import { flag, log, runFlag } from './args.js';

const run = runFlag('npm run bench:studio -- --run DIR [--steps 20] [--scheduler dpm++2m] [--repeats 3] [--webgpu]');
const steps = Number(flag('steps', '20'));
const scheduler = (flag('scheduler') ?? 'dpm++2m') as SchedulerName;
const repeats = Number(flag('repeats', '3'));
const webgpu = process.argv.includes('--webgpu');

const pipe = await DiffusionPipeline.fromRun(run);
await pipe.generate({ count: 1, steps, scheduler, seed: 0 }); // compile once
const native: number[] = [];
for (let r = 0; r < repeats; r++) {
  const t = performance.now();
  await pipe.generate({ count: 1, steps, scheduler, seed: r });
  native.push(performance.now() - t);
}
await pipe.release();

const studio = await startStudio({ run, port: 0 });
// The same browser and switches as the studio's tests.
const browser = await launchChromium(webgpu ? WEBGPU_FLAGS : []);
const page = await browser.newPage();
const opened = performance.now();
await page.goto(studio.url);
await page.waitForFunction(() => (window as unknown as { studioReady?: boolean }).studioReady === true, null, { timeout: 120_000 });
const ready = performance.now() - opened;
await page.click('#tab-generate');
await page.fill('#steps', String(steps));
await page.selectOption('#scheduler', scheduler);
/** Times `n` generations in the page (seeds 0..n-1), after one that is not counted. */
async function timeInPage(page: Page, n: number, onFirst?: () => void): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r < n + 1; r++) {
    await page.fill('#seed', String(r));
    await page.evaluate(() => delete (window as unknown as { studioLast?: number[] }).studioLast);
    const t = performance.now();
    await page.click('#generate');
    await page.waitForFunction(() => Array.isArray((window as unknown as { studioLast?: number[] }).studioLast), null, { timeout: 600_000 });
    if (r === 0) onFirst?.();
    else out.push(performance.now() - t);
  }
  return out;
}
let firstImage = 0;
const web = await timeInPage(page, repeats, () => (firstImage = performance.now() - opened));
let gpu: { times: number[]; adapter: string } | undefined;
if (webgpu) {
  const adapter = (await page.$eval('#backend option[value=webgpu]', (o) => ((o as HTMLOptionElement).disabled ? '' : (o.textContent ?? '')))) || '';
  if (adapter) {
    await page.selectOption('#backend', 'webgpu');
    await page.waitForFunction(() => (window as unknown as { studioBackend?: string; studioReady?: boolean }).studioBackend === 'webgpu' && (window as unknown as { studioReady?: boolean }).studioReady === true, null, { timeout: 120_000 });
    gpu = { times: await timeInPage(page, repeats), adapter };
  } else log('WebGPU: the browser offers no adapter; not measured');
}
await browser.close();
await studio.stop();
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
// V8 first runs wasm with its baseline compiler and optimises hot functions as they run, so the
// browser's first generations are slower than later ones: the table gives all runs and the later half.
const later = (a: number[]) => a.slice(Math.floor(a.length / 2));
log(`native ${native.map((v) => v.toFixed(0)).join(', ')} ms; browser ${web.map((v) => v.toFixed(0)).join(', ')} ms`);
console.log(`Studio on ${run}, ${scheduler} ${steps} steps, one image, ${repeats} runs after one not counted:`);
console.log(`| | median of all runs | ratio | median of the later ${later(web).length} | ratio |`);
console.log(`|---|---|---|---|---|`);
const row = (what: string, t: number[]) => console.log(`| ${what} | ${median(t).toFixed(0)} ms | ${(median(t) / median(native)).toFixed(1)}x | ${median(later(t)).toFixed(0)} ms | ${(median(later(t)) / median(later(native))).toFixed(1)}x |`);
row('diffuse sample (onnxruntime-node)', native);
row('studio (onnxruntime-web, wasm, Chromium)', web);
if (gpu) row(`studio (onnxruntime-web, ${gpu.adapter})`, gpu.times);
console.log(`\nPage opened to model ready: ${(ready / 1000).toFixed(1)} s; to the first image: ${(firstImage / 1000).toFixed(1)} s (the first image includes one click and its drawing at every step).`);
