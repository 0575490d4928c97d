/** The test page's script: diffuse/browser as a web developer would use it, on an export served at /models/x/. */
import * as ort from 'onnxruntime-web';
import { SamplingPipeline, openExportedModel, urlModelFiles } from '../../src/browser/index.js';

ort.env.wasm.wasmPaths = '/ort/';
const w = window as unknown as { generate: (seed: number) => Promise<number[]>; ready: boolean };
w.generate = async (seed: number) => {
  const { manifest, network, codec } = await openExportedModel(urlModelFiles('/models/x/', ort));
  const pipe = new SamplingPipeline(manifest.run, network, codec);
  const { data } = await pipe.generate({ count: 2, seed, steps: 5, scheduler: 'ddim', eta: 0 });
  await network.release();
  await codec?.release();
  return Array.from(data);
};
w.ready = true;
