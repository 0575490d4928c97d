/**
 * A model folder served by the studio (under /model/) as ModelFiles, for StableDiffusionPipeline
 * or a Diffuse export's SamplingPipeline in the page: configs fetched, networks opened by URL in onnxruntime-web. Only the files the
 * server listed in /studio.json are asked for; any other file of a component's folder (a large
 * model's external weights, model.onnx_data) is handed to onnxruntime-web as external data.
 */
import * as ort from 'onnxruntime-web';
import type { ModelFiles } from '../../components/model-files.js';
import { OnnxComponent } from '../../components/onnx-component.js';
import type { OrtModule } from '../../engine/runtime.js';
import type { ModelStudioInfo } from '../info.js';
import type { Backend } from './network.js';

export function servedModelFiles(info: Pick<ModelStudioInfo, 'run' | 'files'>, backend: Backend): ModelFiles {
  const url = (...parts: string[]) => `/model/${parts.join('/')}`;
  const listed = (...parts: string[]) => {
    const name = parts.pop() as string;
    return (info.files[parts.join('/')] ?? []).includes(name);
  };
  return {
    where: (...parts) => (parts.length ? url(...parts) : `${info.run} (served at /model/)`),
    exists: async (...parts) => listed(...parts),
    readText: async (...parts) => {
      if (!listed(...parts)) return undefined;
      const res = await fetch(url(...parts));
      if (!res.ok) throw new Error(`${url(...parts)}: the server answered ${res.status}`);
      return res.text();
    },
    open: (component, need) => {
      // Not the configs, nor a Diffuse export's weights.safetensors (its graphs hold their weights).
      const externalData = (info.files[component] ?? []).filter((f) => f !== 'model.onnx' && !/\.(json|safetensors)$/.test(f)).map((f) => ({ path: f, data: url(component, f) }));
      return OnnxComponent.create(ort as unknown as OrtModule, url(component, 'model.onnx'), url(component, 'model.onnx'), need, { executionProviders: [backend], ...(externalData.length ? { externalData } : {}) });
    },
  };
}
