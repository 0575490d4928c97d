/**
 * The studio's generation in Chromium (onnxruntime-web, wasm) against `diffuse sample`'s
 * (onnxruntime-node) for the same image, steps and scheduler, measured in the same run; and the
 * time from opening the page to the first image.
 *
 *   npm run bench:studio -- --run runs/mnist [--steps 20] [--scheduler dpm++2m] [--repeats 3]
 */
import { chromium } from 'playwright-core';
import { DiffusionPipeline, SchedulerName } from '../src/index.js';
import { startStudio } from '../src/studio/studio.js';
import { flag, log, runFlag } from './args.js';

const run = runFlag('npm run bench:studio -- --run DIR [--steps 20] [--scheduler dpm++2m] [--repeats 3]');
const steps = Number(flag('steps', '20'));
const scheduler = (flag('scheduler') ?? 'dpm++2m') as SchedulerName;
const repeats = Number(flag('repeats', '3'));

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
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', headless: true, args: ['--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'] });
const page = await browser.newPage();
const opened = performance.now();
await page.goto(studio.url);
await page.waitForFunction(() => (window as unknown as { studioReady?: boolean }).studioReady === true, null, { timeout: 120_000 });
const ready = performance.now() - opened;
await page.click('#tab-generate');
await page.fill('#steps', String(steps));
await page.selectOption('#scheduler', scheduler);
const web: number[] = [];
let firstImage = 0;
for (let r = 0; r < repeats + 1; r++) {
  await page.fill('#seed', String(r));
  await page.evaluate(() => delete (window as unknown as { studioLast?: number[] }).studioLast);
  const t = performance.now();
  await page.click('#generate');
  await page.waitForFunction(() => Array.isArray((window as unknown as { studioLast?: number[] }).studioLast), null, { timeout: 120_000 });
  if (r === 0) firstImage = performance.now() - opened;
  else web.push(performance.now() - t);
}
await browser.close();
await studio.stop();
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
log(`native ${native.map((v) => v.toFixed(0)).join(', ')} ms; browser ${web.map((v) => v.toFixed(0)).join(', ')} ms`);
console.log(`Studio on ${run}, ${scheduler} ${steps} steps, one image, median of ${repeats}:`);
console.log(`| | time per image | ratio |`);
console.log(`|---|---|---|`);
console.log(`| diffuse sample (onnxruntime-node) | ${median(native).toFixed(0)} ms | 1.0 |`);
console.log(`| studio (onnxruntime-web, wasm, Chromium) | ${median(web).toFixed(0)} ms | ${(median(web) / median(native)).toFixed(1)}x |`);
console.log(`\nPage opened to model ready: ${(ready / 1000).toFixed(1)} s; to the first image: ${(firstImage / 1000).toFixed(1)} s (the first image includes one click and its drawing at every step).`);
