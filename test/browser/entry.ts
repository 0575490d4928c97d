/** The test page's script: diffuse/browser as a web developer would use it, on an export served at /models/x/. */
import * as ort from 'onnxruntime-web';
import { SamplingPipeline, StableDiffusionPipeline, gaussianShading, openExportedModel, urlModelFiles, validateKey } from '../../src/browser/index.js';

ort.env.wasm.wasmPaths = '/ort/';
const w = window as unknown as { generate: (seed: number, key?: unknown) => Promise<number[]>; ready: boolean };
w.generate = async (seed: number, key?: unknown) => {
  const { manifest, network, codec } = await openExportedModel(urlModelFiles('/models/x/', ort));
  const pipe = new SamplingPipeline(manifest.run, network, codec);
  const watermark = key === undefined ? {} : { watermark: gaussianShading(validateKey(key), 77) };
  const { data } = await pipe.generate({ count: 2, seed, steps: 5, scheduler: 'ddim', eta: 0, ...watermark });
  await network.release();
  await codec?.release();
  return Array.from(data);
};
/** A Stable Diffusion folder served at /models/sd/ (its U-Net's weights in model.onnx_data). */
(window as unknown as { generateSd: (prompt: string, seed: number) => Promise<number[]> }).generateSd = async (prompt, seed) => {
  const pipe = await StableDiffusionPipeline.fromFiles(urlModelFiles('/models/sd/', ort));
  const { data } = await pipe.generate({ prompt, seed, steps: 4, guidance: 5 });
  await pipe.release();
  return Array.from(data);
};
w.ready = true;
