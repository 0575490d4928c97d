/** The test page's script: diffuse/browser as a web developer would use it, on an export served at /models/x/. */
import * as ort from 'onnxruntime-web';
import { SamplingPipeline, gaussianShading, openExportedModel, urlModelFiles, validateKey } from '../../src/browser/index.js';

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
w.ready = true;
