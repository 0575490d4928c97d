/**
 * The studio page: Forward (the closed form q(x_t | x_0) on a slider) and Generate (the run's
 * denoiser in onnxruntime-web, steered by Diffuse's own schedulers, watched step by step).
 * Bundled by esbuild from src/ when `diffuse studio` starts.
 */
import * as ort from 'onnxruntime-web';
import { TorchGenerator } from '../../diffusion/random.js';
import { SCHEDULER_DEFAULTS, schedulerTables } from '../../samplers/common.js';
import type { SchedulerConfig } from '../../samplers/common.js';
import { runReverseProcess } from '../../samplers/loop.js';
import { SCHEDULER_NAMES, SchedulerName, makeScheduler } from '../../samplers/registry.js';
import type { StudioInfo } from '../info.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Draws a [C, H, W] image in [-1, 1] onto a canvas, scaled up. */
function draw(canvas: HTMLCanvasElement, data: ArrayLike<number>, [c, h, w]: [number, number, number], scale = 6): void {
  canvas.width = w * scale;
  canvas.height = h * scale;
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = Math.round((Math.max(-1, Math.min(1, data[Math.min(k, c - 1) * h * w + i])) + 1) * 127.5);
    img.data[4 * i + 3] = 255;
  }
  const tmp = document.createElement('canvas');
  tmp.width = w;
  tmp.height = h;
  (tmp.getContext('2d') as CanvasRenderingContext2D).putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, 0, 0, w * scale, h * scale);
}

/** alpha_bar(t) of a schedule, as Diffuse's schedulers compute it. */
function alphaBars(config: Partial<SchedulerConfig>): Float32Array {
  return schedulerTables({ ...SCHEDULER_DEFAULTS, ...config }).alphasCumprod;
}

/** alpha_bar(t) and log-SNR(t) of the schedules, the current t marked. */
function plot(canvas: HTMLCanvasElement, curves: { name: string; ab: Float32Array; colour: string }[], t: number): void {
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
  const [W, H] = [canvas.width, canvas.height];
  ctx.clearRect(0, 0, W, H);
  ctx.font = '12px sans-serif';
  const T = curves[0].ab.length;
  for (const [row, what] of ['alpha_bar(t)', 'log-SNR(t)'].entries()) {
    const top = row * (H / 2) + 16;
    const height = H / 2 - 30;
    ctx.fillStyle = '#333';
    ctx.fillText(what, 4, top - 4);
    for (const c of curves) {
      const ys = Array.from(c.ab, (a) => (row === 0 ? a : Math.log(a / (1 - a))));
      const [lo, hi] = row === 0 ? [0, 1] : [-12, 12];
      ctx.strokeStyle = c.colour;
      ctx.beginPath();
      ys.forEach((y, i) => {
        const px = (i / (T - 1)) * (W - 10) + 5;
        const py = top + height * (1 - (Math.max(lo, Math.min(hi, y)) - lo) / (hi - lo));
        if (i === 0) ctx.moveTo(px, py);
        else ctx.lineTo(px, py);
      });
      ctx.stroke();
    }
  }
  ctx.strokeStyle = '#c00';
  const x = (t / (T - 1)) * (W - 10) + 5;
  ctx.beginPath();
  ctx.moveTo(x, 0);
  ctx.lineTo(x, H);
  ctx.stroke();
  curves.forEach((c, i) => {
    ctx.fillStyle = c.colour;
    ctx.fillText(c.name, W - 260, 14 + 14 * i);
  });
}

async function main(): Promise<void> {
  const info = (await (await fetch('/studio.json')).json()) as StudioInfo;
  const [c, h, w] = info.shape;
  const per = c * h * w;
  $('title').textContent = `Diffuse studio: ${info.run}`;
  for (const tab of ['forward', 'generate']) $(`tab-${tab}`).addEventListener('click', () => {
    for (const t of ['forward', 'generate']) $(`panel-${t}`).hidden = t !== tab;
  });

  // ---- Forward: x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps ----
  const runAb = alphaBars(info.schedulerConfig);
  const T = runAb.length;
  const noise = new TorchGenerator(0).randn(per);
  const slider = $<HTMLInputElement>('t');
  slider.max = String(T - 1);
  const pick = $<HTMLSelectElement>('image');
  info.images.forEach((_, i) => pick.append(new Option(`image ${i}`, String(i))));
  const others: { name: string; config: Partial<SchedulerConfig>; colour: string }[] = [
    { name: 'linear', config: { betaSchedule: 'linear', betaStart: 0.0001, betaEnd: 0.02 }, colour: '#888' },
    { name: 'cosine', config: { betaSchedule: 'squaredcos_cap_v2' }, colour: '#2a7' },
  ];
  const forward = () => {
    const t = Number(slider.value);
    const x0 = info.images[Number(pick.value)];
    const a = runAb[t];
    const xt = x0.map((v, i) => Math.sqrt(a) * v + Math.sqrt(1 - a) * noise[i]);
    draw($<HTMLCanvasElement>('x0'), x0, info.shape);
    draw($<HTMLCanvasElement>('xt'), xt, info.shape);
    draw($<HTMLCanvasElement>('noise'), noise.map((v) => v / 3), info.shape);
    $('forward-info').textContent = `t = ${t}   alpha_bar(t) = ${a.toFixed(4)}   log-SNR(t) = ${Math.log(a / (1 - a)).toFixed(2)}`;
    const shown = ($<HTMLInputElement>('compare').checked ? others : []).map((o) => ({ name: o.name, ab: alphaBars({ ...info.schedulerConfig, ...o.config }), colour: o.colour }));
    plot($<HTMLCanvasElement>('plot'), [{ name: `this run (${info.schedulerConfig.betaSchedule})`, ab: runAb, colour: '#13c' }, ...shown], t);
  };
  for (const el of [slider, pick, $('compare')]) el.addEventListener('input', forward);
  forward();

  // ---- Generate: the denoiser in onnxruntime-web ----
  const schedulerPick = $<HTMLSelectElement>('scheduler');
  for (const s of SCHEDULER_NAMES) schedulerPick.append(new Option(s, s));
  schedulerPick.value = 'ddim';
  $<HTMLInputElement>('eta').value = String(info.defaultEta);
  const status = $('status');
  if (info.conditioning !== 'none') {
    status.textContent = `This run is ${info.conditioning}-conditional: the studio generates from unconditional runs for now (use diffuse sample).`;
    return;
  }
  ort.env.wasm.wasmPaths = '/ort/';
  status.textContent = 'loading the model (compiling onnxruntime-web)...';
  const started = performance.now();
  const session = await ort.InferenceSession.create('/model/model.onnx', { executionProviders: ['wasm'] });
  status.textContent = `model loaded in ${((performance.now() - started) / 1000).toFixed(1)} s`;
  const button = $<HTMLButtonElement>('generate');
  button.disabled = false;
  const generate = async (): Promise<Float32Array> => {
    const kind = schedulerPick.value as SchedulerName;
    const steps = Number($<HTMLInputElement>('steps').value);
    const seed = Number($<HTMLInputElement>('seed').value);
    const eta = Number($<HTMLInputElement>('eta').value);
    const scheduler = makeScheduler(kind, { ...info.schedulerConfig, ...(info.spacing[kind] ? { timestepSpacing: info.spacing[kind] } : {}) });
    let last = performance.now();
    const x = await runReverseProcess({
      denoise: async (input, t) => {
        const out = await session.run({ x: new ort.Tensor('float32', input, [1, c, h, w]), t: new ort.Tensor('float32', Float32Array.of(t), [1]) });
        return out.out.data as Float32Array;
      },
      scheduler,
      count: 1,
      shape: info.shape,
      steps,
      eta,
      generator: new TorchGenerator(seed),
      onStep: async (i, t, sample, x0, total) => {
        draw($<HTMLCanvasElement>('gen-xt'), sample, info.shape);
        draw($<HTMLCanvasElement>('gen-x0'), x0, info.shape);
        const now = performance.now();
        $('step').textContent = `step ${i + 1}/${total} (t = ${+t.toFixed(2)}), ${(now - last).toFixed(0)} ms`;
        last = now;
        // Yield so that the page can paint this step; a macrotask, not a frame, so steps do not wait for the display.
        await new Promise((r) => setTimeout(r, 0));
      },
    });
    return x;
  };
  button.addEventListener('click', () => {
    button.disabled = true;
    const t0 = performance.now();
    generate()
      .then((x) => {
        (window as unknown as { studioLast: number[] }).studioLast = Array.from(x);
        status.textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      })
      .catch((e: Error) => (status.textContent = `error: ${e.message}`))
      .finally(() => (button.disabled = false));
  });
  (window as unknown as { studioReady: boolean }).studioReady = true;
}

main().catch((e: Error) => {
  const s = document.getElementById('status');
  if (s) s.textContent = `error: ${e.message}`;
});
