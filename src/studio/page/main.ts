/**
 * The studio page: Forward (the closed form q(x_t | x_0) on a slider), Generate (the run's
 * denoiser in onnxruntime-web, steered by Diffuse's own pipeline and schedulers, watched step by
 * step; img2img and inpainting) and Inspect (the server's analyst's report on a dropped image).
 * Bundled by esbuild from src/ when `diffuse studio` starts.
 */
import * as ort from 'onnxruntime-web';
import type { StudioInfo } from '../info.js';
import { $ } from './dom.js';
import { setupForward } from './forward.js';
import { setupGenerate } from './generate.js';
import { setupModelGenerate } from './model-generate.js';
import { setupInspect } from './inspect.js';

const TABS = ['forward', 'generate', 'inspect'] as const;

async function main(): Promise<void> {
  const info = (await (await fetch('/studio.json')).json()) as StudioInfo;
  $('title').textContent = `Diffuse studio: ${info.run}`;
  for (const tab of TABS) {
    $(`tab-${tab}`).addEventListener('click', () => {
      for (const t of TABS) {
        $(`panel-${t}`).hidden = t !== tab;
        $(`tab-${t}`).classList.toggle('active', t === tab);
      }
    });
  }
  ort.env.wasm.wasmPaths = '/ort/';
  setupInspect(info);
  if (info.kind === 'run' && !info.latent) {
    setupForward(info);
    await setupGenerate(info);
    return;
  }
  // A latent model (a latent run, or a model folder): the forward process runs on latents, which the Forward tab does not show; the page opens on Generate.
  $('tab-forward').hidden = true;
  $('tab-generate').click();
  if (info.kind === 'run') {
    $('gen-xt-caption').textContent = 'the latents x_t (channels 1-3)';
    $('gen-x0-caption').textContent = 'the x_0 estimate, in latents (the image when done)';
    await setupGenerate(info);
    return;
  }
  await setupModelGenerate(info);
}

main().catch((e: Error) => {
  const s = document.getElementById('status');
  if (s) s.textContent = `error: ${e.message}`;
});
