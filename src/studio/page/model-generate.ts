/**
 * The Generate tab for a model folder: StableDiffusionPipeline (the code `diffuse sample --model`,
 * `img2img --model` and `inpaint --model` run) over the folder's networks in onnxruntime-web, or,
 * for a model the browser cannot hold, on the studio's server in Node (server-pipeline.ts). Each
 * step draws the latents x_t (their first three channels); the decoder runs once, at the end.
 */
import { StableDiffusionPipeline, readModelTokenizer } from '../../latent/stable-diffusion.js';
import type { LatentGenerateOptions } from '../../latent/stable-diffusion.js';
import { SCHEDULER_NAMES, SchedulerName } from '../../samplers/registry.js';
import type { ModelStudioInfo } from '../info.js';
import { $ } from './dom.js';
import { drawImage, drawMask } from './draw.js';
import { decodeDropped, dropZone } from './dropped-file.js';
import { servedModelFiles } from './model-files.js';
import { attachBrush } from './brush.js';
import { Backend, offerBackends } from './network.js';
import { floatsToBase64, generateOnServer } from './server-pipeline.js';

/** What tests and benchmarks read from the page. */
interface StudioHooks {
  studioReady?: boolean;
  studioLast?: number[];
  studioBackend?: ModelBackend;
  studioStepMs?: number[];
  studioMask?: number[];
}
const hooks = window as unknown as StudioHooks;

type Mode = 'generate' | 'img2img' | 'inpaint';
/** Where the networks run: in the page (onnxruntime-web) or on the studio's server (onnxruntime-node). */
type ModelBackend = Backend | 'server';

/** A dropped image at width x height, [3, h, w] in [-1, 1]: stretched to the size if it has another, and said so. */
async function droppedAt(file: File, width: number, height: number): Promise<{ ok: true; data: Float32Array; note: string } | { ok: false; problem: string }> {
  const decoded = await decodeDropped(file);
  if (!decoded.ok) return decoded;
  const { bitmap } = decoded;
  const note = bitmap.width === width && bitmap.height === height ? '' : `resized from ${bitmap.width}x${bitmap.height} to ${width}x${height}`;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d') as OffscreenCanvasRenderingContext2D;
  ctx.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const px = ctx.getImageData(0, 0, width, height).data;
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let k = 0; k < 3; k++) data[k * plane + i] = px[4 * i + k] / 127.5 - 1;
  return { ok: true, data, note };
}

/** Screen pixels per image pixel: small models' images drawn larger, large ones at their size. */
const scaleFor = (side: number) => Math.max(1, Math.floor(256 / side));

export async function setupModelGenerate(info: ModelStudioInfo): Promise<void> {
  const status = $('status');
  const button = $<HTMLButtonElement>('generate');
  const mode = $<HTMLSelectElement>('mode');
  const schedulerPick = $<HTMLSelectElement>('scheduler');
  const widthBox = $<HTMLInputElement>('width');
  const heightBox = $<HTMLInputElement>('height');
  $('generate-intro').textContent = `The reverse process in the latent space of ${info.run}: its networks in your browser (onnxruntime-web) or on the studio's server (onnxruntime-node), run by Diffuse's own StableDiffusionPipeline and schedulers.`;
  $('gen-xt-caption').textContent = 'the latents x_t (channels 1-3)';
  $('gen-x0-caption').textContent = 'the image (decoded when done)';
  for (const id of ['eta-row', 'cond-class-row']) $(id).hidden = true;
  for (const id of ['cond-text-row', 'guidance-row', 'size-row']) $(id).hidden = false;
  $<HTMLInputElement>('guidance').value = '7.5';
  widthBox.value = heightBox.value = String(info.defaultSize);
  schedulerPick.append(new Option(`the folder's (${info.scheduler})`, ''));
  for (const s of SCHEDULER_NAMES) schedulerPick.append(new Option(s, s));
  schedulerPick.value = '';
  // An inpainting U-Net only inpaints; img2img is for ordinary ones.
  for (const o of Array.from(mode.options)) o.disabled = info.inpainting ? o.value !== 'inpaint' : false;
  mode.options[2].textContent = 'inpaint';
  if (info.inpainting) mode.value = 'inpaint';

  // ---- the backend: the browser (wasm, or WebGPU where there is an adapter), or the studio's server ----
  const backendPick = $<HTMLSelectElement>('backend');
  const gpu = await offerBackends(backendPick);
  backendPick.append(new Option('server: this machine, onnxruntime-node', 'server'));
  // Measured: SD 1.5's U-Net (1.7 GB in float16) runs out of 32-bit WebAssembly's memory (docs/BENCHMARKS.md).
  const tooLarge = info.unetBytes > 1e9;
  let pipe: StableDiffusionPipeline | undefined;
  let backend: ModelBackend = tooLarge ? 'server' : 'wasm';
  backendPick.value = backend;
  const load = async (chosen: ModelBackend) => {
    button.disabled = true;
    hooks.studioReady = false;
    await pipe?.release();
    pipe = undefined;
    backend = chosen;
    if (chosen === 'server') {
      status.textContent = `the model runs on the studio's server (onnxruntime-node on this machine)${tooLarge ? `: its U-Net is ${(info.unetBytes / 1e9).toFixed(1)} GB, more than the browser's WebAssembly can hold` : ''}`;
    } else {
      status.textContent = `loading the model's networks (${chosen}: onnxruntime-web compiles them)...`;
      const started = performance.now();
      pipe = await StableDiffusionPipeline.fromFiles(servedModelFiles(info, chosen));
      // Without shader-f16, onnxruntime-web's float16 kernels fail to compile on the GPU and a run reads garbage: refused before one.
      if (chosen === 'webgpu' && pipe.usesFloat16 && !gpu.f16) {
        await pipe.release();
        pipe = undefined;
        throw new Error(`this model is float16, and the WebGPU adapter (${gpu.name}) has no float16 shaders (shader-f16): use wasm`);
      }
      const notes = pipe.notes.length ? ` (${pipe.notes.join('; ')})` : '';
      status.textContent = `model loaded (${chosen}) in ${((performance.now() - started) / 1000).toFixed(1)} s${notes}`;
    }
    hooks.studioBackend = chosen;
    button.disabled = false;
    hooks.studioReady = true;
  };
  backendPick.addEventListener('change', () => void load(backendPick.value as ModelBackend).catch((e: Error) => (status.textContent = `error: ${e.message}`)));

  // ---- prompts: the folder's tokenizer, read in the page whatever the backend, warns of unknown pieces and prompts cut at 77 tokens ----
  const tokenizer = await readModelTokenizer(servedModelFiles(info, 'wasm'));
  const warn = () => {
    $('prompt-warnings').textContent = [$<HTMLInputElement>('prompt').value, $<HTMLInputElement>('negative').value].flatMap((p) => tokenizer.warnings(p)).join('; ');
  };
  for (const id of ['prompt', 'negative']) $(id).addEventListener('input', warn);

  // ---- img2img and inpainting: a dropped source image and a brush-drawn mask at the chosen size ----
  const size = () => ({ width: Number(widthBox.value), height: Number(heightBox.value) });
  let source: { file: File; data: Float32Array; width: number; height: number } | undefined;
  let mask = new Float32Array(0);
  const canvas = $<HTMLCanvasElement>('source-canvas');
  const redraw = () => {
    if (!source) {
      canvas.width = canvas.height = 0;
      return;
    }
    drawImage(canvas, source.data, [3, source.height, source.width], scaleFor(source.width));
    if (mode.value === 'inpaint') drawMask(canvas, mask, source.height, source.width);
  };
  const useSource = async (file: File) => {
    const { width, height } = size();
    const r = await droppedAt(file, width, height);
    $('edit-drop-status').textContent = r.ok ? `${file.name}${r.note ? `: ${r.note}` : ''}` : r.problem;
    $('edit-drop-status').className = r.ok ? 'ok' : 'problem';
    if (!r.ok) return;
    source = { file, data: r.data, width, height };
    mask = new Float32Array(width * height);
    redraw();
  };
  dropZone($('edit-drop'), (file) => void useSource(file));
  // A new size re-reads the source at that size (and clears the mask).
  for (const box of [widthBox, heightBox]) box.addEventListener('change', () => void (source && useSource(source.file)));
  $('source').parentElement?.setAttribute('hidden', '');
  attachBrush(canvas, {
    active: () => mode.value === 'inpaint' && source !== undefined,
    mask: () => mask,
    size: () => [source?.height ?? 0, source?.width ?? 0],
    // The box's radius is for a 32-pixel image; larger images get a proportionally larger brush.
    radius: () => Number($<HTMLInputElement>('brush').value) * Math.max(1, (source?.width ?? 0) / 32),
    redraw,
  });
  const showMode = () => {
    const m = mode.value as Mode;
    $('edit').hidden = m === 'generate';
    $('strength-row').hidden = m !== 'img2img';
    $('mask-row').hidden = m !== 'inpaint';
    redraw();
  };
  mode.addEventListener('input', showMode);
  showMode();

  // ---- one run of the reverse process, drawn step by step ----
  const run = async (): Promise<{ data: Float32Array; shape: [number, number, number] }> => {
    const m = mode.value as Mode;
    const { width, height } = size();
    const named = schedulerPick.value as SchedulerName | '';
    let last = performance.now();
    hooks.studioStepMs = [];
    const onStep = async (s: { index: number; total: number; timestep: number; latents: Float32Array }) => {
      const [h, w] = [height / info.vaeScale, width / info.vaeScale];
      drawImage($<HTMLCanvasElement>('gen-xt'), s.latents.map((v) => v / 2.5), [3, h, w], scaleFor(w));
      const now = performance.now();
      hooks.studioStepMs?.push(now - last);
      $('step').textContent = `step ${s.index + 1}/${s.total} (t = ${s.timestep}), ${(now - last).toFixed(0)} ms`;
      last = now;
      // Yield so that the page paints this step.
      await new Promise((r) => setTimeout(r, 0));
    };
    const settings = {
      prompt: $<HTMLInputElement>('prompt').value,
      negativePrompt: $<HTMLInputElement>('negative').value,
      guidance: Number($<HTMLInputElement>('guidance').value),
      steps: Number($<HTMLInputElement>('steps').value),
      seed: Number($<HTMLInputElement>('seed').value),
    };
    let edit: { image: Float32Array; mask?: Float32Array } | undefined;
    if (m !== 'generate') {
      if (!source) throw new Error('drop an image to edit first');
      if (source.width !== width || source.height !== height) await useSource(source.file);
      if (m === 'inpaint' && !mask.some((v) => v > 0)) throw new Error('paint the region to generate on the image first (drag over it; shift-drag erases)');
      edit = { image: source.data, ...(m === 'inpaint' ? { mask } : {}) };
      if (m === 'inpaint') hooks.studioMask = Array.from(mask);
    }
    const strength = Number($<HTMLInputElement>('strength').value);
    if (backend === 'server') {
      return generateOnServer(
        { mode: m, ...settings, width, height, scheduler: named, ...(m === 'img2img' ? { strength } : {}), ...(edit ? { image: floatsToBase64(edit.image) } : {}), ...(edit?.mask ? { mask: floatsToBase64(edit.mask) } : {}) },
        onStep,
      );
    }
    if (!pipe) throw new Error('the model is not loaded yet');
    const o: LatentGenerateOptions = { ...settings, ...(named ? { scheduler: pipe.schedulerNamed(named) } : {}), onStep };
    if (!edit) return pipe.generate({ ...o, width, height });
    const image = { data: edit.image, count: 1, shape: [3, height, width] as const };
    if (m === 'img2img') return pipe.img2img({ ...o, image, strength });
    return pipe.inpaint({ ...o, image, mask: { data: edit.mask as Float32Array, shape: [1, height, width] } });
  };
  button.addEventListener('click', () => {
    button.disabled = true;
    const t0 = performance.now();
    run()
      .then((x) => {
        drawImage($<HTMLCanvasElement>('gen-x0'), x.data, x.shape, scaleFor(x.shape[2]));
        hooks.studioLast = Array.from(x.data);
        status.textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      })
      .catch((e: Error) => (status.textContent = `error: ${e.message}`))
      .finally(() => (button.disabled = false));
  });
  await load(backend);
}
