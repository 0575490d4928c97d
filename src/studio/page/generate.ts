/**
 * The Generate tab: Diffuse's SamplingPipeline (the same generate, img2img and inpaint code that
 * `diffuse sample`, `img2img` and `inpaint` run) over the run's exported denoiser in
 * onnxruntime-web, with x_t and the x_0 estimate drawn at every step.
 */
import { SamplingPipeline } from '../../pipelines/sampling-pipeline.js';
import type { ImageBatch, SamplingOptions, StepInfo } from '../../pipelines/sampling-pipeline.js';
import { INPAINT_SCHEDULERS, planSampling } from '../../pipelines/sampling-plan.js';
import { SCHEDULER_NAMES, SchedulerName } from '../../samplers/registry.js';
import { BpeTokenizer } from '../../text/tokenizer.js';
import type { RunStudioInfo } from '../info.js';
import { $ } from './dom.js';
import { drawImage, drawMask } from './draw.js';
import { dropZone, readDroppedImage } from './dropped-file.js';
import { attachBrush } from './brush.js';
import { Backend, offerBackends } from './network.js';
import { OpenedExport, openExportedModel } from '../../pipelines/exported-model.js';
import { servedModelFiles } from './model-files.js';

/** What tests and benchmarks read from the page. */
interface StudioHooks {
  studioReady?: boolean;
  studioLast?: number[];
  studioMask?: number[];
  studioBackend?: Backend;
}
const hooks = window as unknown as StudioHooks;

type Mode = 'generate' | 'img2img' | 'inpaint';

export async function setupGenerate(info: RunStudioInfo): Promise<void> {
  const [, h, w] = info.shape;
  const status = $('status');
  const button = $<HTMLButtonElement>('generate');
  const mode = $<HTMLSelectElement>('mode');
  const schedulerPick = $<HTMLSelectElement>('scheduler');
  const eta = $<HTMLInputElement>('eta');
  for (const s of SCHEDULER_NAMES) schedulerPick.append(new Option(s, s));
  schedulerPick.value = 'ddim';
  eta.value = String(planSampling(info.config).eta);

  // ---- conditioning: a class, or a prompt and a negative prompt; classifier-free guidance ----
  $('cond-class-row').hidden = info.conditioning !== 'class';
  $('cond-text-row').hidden = info.conditioning !== 'text';
  $('guidance-row').hidden = info.conditioning === 'none';
  if (info.conditioning === 'class') {
    const pick = $<HTMLSelectElement>('cond-class');
    pick.append(new Option('none (the unconditional model)', ''));
    const K = info.config.model.numClasses as number;
    for (let k = 0; k < K; k++) pick.append(new Option(info.config.classNames?.[k] ? `${k}: ${info.config.classNames[k]}` : String(k), String(k)));
    pick.value = '0';
  }
  let tokenizer: BpeTokenizer | undefined;
  if (info.conditioning === 'text') {
    const [json, config] = await Promise.all(['/model/tokenizer/tokenizer.json', '/model/tokenizer/tokenizer_config.json'].map(async (u) => (await fetch(u)).json() as Promise<Record<string, unknown>>));
    // Words the training captions never had are warned of for a tokenizer Diffuse trained; a frozen encoder's own tokenizer (CLIP's, say) knows its words.
    const trained = info.config.text?.encoder.kind === 'transformer' || Array.isArray(config.diffuse_training_words);
    if (trained) tokenizer = BpeTokenizer.fromHuggingFace(json, config);
    const warn = () => {
      if (!tokenizer) return;
      const words = [$<HTMLInputElement>('prompt').value, $<HTMLInputElement>('negative').value].flatMap((p) => (tokenizer as BpeTokenizer).warnings(p));
      $('prompt-warnings').textContent = words.join('; ');
    };
    for (const id of ['prompt', 'negative']) $(id).addEventListener('input', warn);
  }

  // ---- the backend: wasm by default; WebGPU offered where the browser has an adapter ----
  const backendPick = $<HTMLSelectElement>('backend');
  await offerBackends(backendPick);
  let pipe: SamplingPipeline | undefined;
  let opened: OpenedExport | undefined;
  // A latent run's steps are latents: drawn as their first three channels, as the model folder's are.
  const stepShape: [number, number, number] = info.latent ? [3, info.latent.latentShape[1], info.latent.latentShape[2]] : info.shape;
  const stepScale = info.latent ? 1 / 2.5 : 1;
  const load = async (backend: Backend) => {
    button.disabled = true;
    hooks.studioReady = false;
    await opened?.network.release();
    await opened?.codec?.release();
    status.textContent = `loading the model (${backend}: compiling onnxruntime-web)...`;
    const started = performance.now();
    // The export's U-Net (and autoencoder) through the same loader as DiffusionPipeline.fromPretrained in Node.
    opened = await openExportedModel(servedModelFiles(info, backend));
    pipe = new SamplingPipeline(info.config, opened.network, opened.codec);
    status.textContent = `model loaded (${backend}) in ${((performance.now() - started) / 1000).toFixed(1)} s`;
    hooks.studioBackend = backend;
    button.disabled = false;
    hooks.studioReady = true;
  };
  backendPick.addEventListener('change', () => void load(backendPick.value as Backend).catch((e: Error) => (status.textContent = `error: ${e.message}`)));

  // ---- img2img and inpainting: a source image and a brush-drawn mask ----
  const sources: { name: string; data: Float32Array }[] = info.images.map((x, i) => ({ name: `data set image ${i}`, data: Float32Array.from(x) }));
  const sourcePick = $<HTMLSelectElement>('source');
  sources.forEach((s, i) => sourcePick.append(new Option(s.name, String(i))));
  const canvas = $<HTMLCanvasElement>('source-canvas');
  const mask = new Float32Array(h * w);
  const redraw = () => {
    drawImage(canvas, sources[Number(sourcePick.value)].data, info.shape, 8);
    if (mode.value === 'inpaint') drawMask(canvas, mask, h, w);
  };
  attachBrush(canvas, { active: () => mode.value === 'inpaint', mask: () => mask, size: () => [h, w], radius: () => Number($<HTMLInputElement>('brush').value), redraw });
  sourcePick.addEventListener('input', redraw);
  dropZone($('edit-drop'), (file) => {
    void readDroppedImage(file, info.shape).then((r) => {
      $('edit-drop-status').textContent = r.ok ? `${file.name}${r.note ? `: ${r.note}` : ''}` : r.problem;
      $('edit-drop-status').className = r.ok ? 'ok' : 'problem';
      if (!r.ok) return;
      sources.push({ name: file.name, data: r.data });
      sourcePick.append(new Option(file.name, String(sources.length - 1)));
      sourcePick.value = String(sources.length - 1);
      redraw();
    });
  });
  const showMode = () => {
    const m = mode.value as Mode;
    $('edit').hidden = m === 'generate';
    $('strength-row').hidden = m !== 'img2img';
    $('mask-row').hidden = m !== 'inpaint';
    // The plan's rules (as diffuse inpaint's): RePaint steps with DDIM or DDPM and adds the posterior's noise (eta 1).
    for (const o of Array.from(schedulerPick.options)) o.disabled = m === 'inpaint' && !INPAINT_SCHEDULERS.includes(o.value as SchedulerName);
    if (m === 'inpaint' && schedulerPick.selectedOptions[0]?.disabled) schedulerPick.value = 'ddim';
    eta.value = String(planSampling(info.config, { operation: m, scheduler: schedulerPick.value }).eta);
    redraw();
  };
  mode.addEventListener('input', showMode);
  showMode();

  // ---- one run of the reverse process, drawn step by step ----
  const options = (): SamplingOptions => {
    let last = performance.now();
    const o: SamplingOptions = {
      count: 1,
      scheduler: schedulerPick.value as SchedulerName,
      steps: Number($<HTMLInputElement>('steps').value),
      eta: Number(eta.value),
      seed: Number($<HTMLInputElement>('seed').value),
      onStep: async (s: StepInfo) => {
        drawImage($<HTMLCanvasElement>('gen-xt'), stepScale === 1 ? s.sample : s.sample.map((v) => v * stepScale), stepShape);
        drawImage($<HTMLCanvasElement>('gen-x0'), stepScale === 1 ? s.predOriginal : s.predOriginal.map((v) => v * stepScale), stepShape);
        const now = performance.now();
        $('step').textContent = `step ${s.index + 1}/${s.total} (t = ${+s.timestep.toFixed(2)}), ${(now - last).toFixed(0)} ms`;
        last = now;
        // Yield so that the page paints this step: a macrotask, not an animation frame, so steps do not wait for the display.
        await new Promise((r) => setTimeout(r, 0));
      },
    };
    if (info.conditioning !== 'none') o.guidance = Number($<HTMLInputElement>('guidance').value);
    if (info.conditioning === 'class' && $<HTMLSelectElement>('cond-class').value !== '') o.classLabel = Number($<HTMLSelectElement>('cond-class').value);
    if (info.conditioning === 'text') {
      o.prompt = $<HTMLInputElement>('prompt').value;
      const negative = $<HTMLInputElement>('negative').value;
      if (negative) o.negativePrompt = negative;
    }
    return o;
  };
  const run = async (): Promise<ImageBatch> => {
    if (!pipe) throw new Error('the model is not loaded yet');
    const m = mode.value as Mode;
    const o = options();
    const image = sources[Number(sourcePick.value)].data;
    if (m === 'img2img') return pipe.img2img({ ...o, image, strength: Number($<HTMLInputElement>('strength').value) });
    if (m === 'inpaint') {
      if (!mask.some((v) => v > 0)) throw new Error('paint the region to generate on the image first (drag over it; shift-drag erases)');
      hooks.studioMask = Array.from(mask);
      return pipe.inpaint({ ...o, image, mask });
    }
    return pipe.generate(o);
  };
  button.addEventListener('click', () => {
    button.disabled = true;
    const t0 = performance.now();
    run()
      .then((x) => {
        drawImage($<HTMLCanvasElement>('gen-x0'), x.data, info.shape);
        hooks.studioLast = Array.from(x.data);
        status.textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      })
      .catch((e: Error) => (status.textContent = `error: ${e.message}`))
      .finally(() => (button.disabled = false));
  });
  await load('wasm');
}
