/**
 * The Generate tab for a model folder: StableDiffusionPipeline (the code `diffuse sample --model`,
 * `img2img --model` and `inpaint --model` run) over the folder's networks in onnxruntime-web. Each
 * step draws the latents x_t (their first three channels); the decoder runs once, at the end.
 */
import { StableDiffusionPipeline } from '../../latent/stable-diffusion.js';
import type { LatentGenerateOptions, LatentImageBatch, LatentStepInfo } from '../../latent/stable-diffusion.js';
import { SCHEDULER_NAMES, SchedulerName } from '../../samplers/registry.js';
import type { ModelStudioInfo } from '../info.js';
import { $ } from './dom.js';
import { drawImage, drawMask } from './draw.js';
import { decodeDropped, dropZone } from './dropped-file.js';
import { servedModelFiles } from './model-files.js';
import { attachBrush } from './brush.js';
import { Backend, offerBackends } from './network.js';

/** What tests and benchmarks read from the page. */
interface StudioHooks {
  studioReady?: boolean;
  studioLast?: number[];
  studioBackend?: Backend;
  studioStepMs?: number[];
  studioMask?: number[];
}
const hooks = window as unknown as StudioHooks;

type Mode = 'generate' | 'img2img' | 'inpaint';

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
  $('generate-intro').textContent = `The reverse process in your browser, in the latent space of ${info.run}: its networks in onnxruntime-web, Diffuse's own StableDiffusionPipeline and schedulers.`;
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

  // ---- the backend: wasm by default; WebGPU offered where the browser has an adapter ----
  const backendPick = $<HTMLSelectElement>('backend');
  const gpu = await offerBackends(backendPick);
  let pipe: StableDiffusionPipeline | undefined;
  const load = async (backend: Backend) => {
    button.disabled = true;
    hooks.studioReady = false;
    await pipe?.release();
    pipe = undefined;
    status.textContent = `loading the model's networks (${backend}: onnxruntime-web compiles them)...`;
    const started = performance.now();
    pipe = await StableDiffusionPipeline.fromFiles(servedModelFiles(info, backend));
    // Without shader-f16, onnxruntime-web's float16 kernels fail to compile on the GPU and a run reads garbage: refused before one.
    if (backend === 'webgpu' && pipe.usesFloat16 && !gpu.f16) {
      await pipe.release();
      pipe = undefined;
      throw new Error(`this model is float16, and the WebGPU adapter (${gpu.name}) has no float16 shaders (shader-f16): use wasm`);
    }
    const notes = pipe.notes.length ? ` (${pipe.notes.join('; ')})` : '';
    status.textContent = `model loaded (${backend}) in ${((performance.now() - started) / 1000).toFixed(1)} s${notes}`;
    hooks.studioBackend = backend;
    button.disabled = false;
    hooks.studioReady = true;
  };
  backendPick.addEventListener('change', () => void load(backendPick.value as Backend).catch((e: Error) => (status.textContent = `error: ${e.message}`)));

  // ---- prompts: the tokenizer's warnings (unknown pieces, a prompt cut at 77 tokens) ----
  const warn = () => {
    if (!pipe) return;
    const tokenizer = pipe.tokenizer;
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
  const run = async (): Promise<LatentImageBatch> => {
    if (!pipe) throw new Error('the model is not loaded yet');
    const p = pipe;
    const m = mode.value as Mode;
    const { width, height } = size();
    const named = schedulerPick.value as SchedulerName | '';
    let last = performance.now();
    hooks.studioStepMs = [];
    const o: LatentGenerateOptions = {
      prompt: $<HTMLInputElement>('prompt').value,
      negativePrompt: $<HTMLInputElement>('negative').value,
      guidance: Number($<HTMLInputElement>('guidance').value),
      steps: Number($<HTMLInputElement>('steps').value),
      seed: Number($<HTMLInputElement>('seed').value),
      ...(named ? { scheduler: p.schedulerNamed(named) } : {}),
      onStep: async (s: LatentStepInfo) => {
        const [h, w] = [height / info.vaeScale, width / info.vaeScale];
        drawImage($<HTMLCanvasElement>('gen-xt'), s.latents.map((v) => v / 2.5), [3, h, w], scaleFor(w));
        const now = performance.now();
        hooks.studioStepMs?.push(now - last);
        $('step').textContent = `step ${s.index + 1}/${s.total} (t = ${s.timestep}), ${(now - last).toFixed(0)} ms`;
        last = now;
        // Yield so that the page paints this step.
        await new Promise((r) => setTimeout(r, 0));
      },
    };
    if (m === 'generate') return p.generate({ ...o, width, height });
    if (!source) throw new Error('drop an image to edit first');
    if (source.width !== width || source.height !== height) await useSource(source.file);
    const image = { data: source.data, count: 1, shape: [3, height, width] as const };
    if (m === 'img2img') return p.img2img({ ...o, image, strength: Number($<HTMLInputElement>('strength').value) });
    if (!mask.some((v) => v > 0)) throw new Error('paint the region to generate on the image first (drag over it; shift-drag erases)');
    hooks.studioMask = Array.from(mask);
    return p.inpaint({ ...o, image, mask: { data: mask, shape: [1, height, width] } });
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
  await load('wasm');
}
