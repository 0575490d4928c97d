/**
 * A model folder served by the studio (under /model/) as ModelFiles, for StableDiffusionPipeline
 * or a Diffuse export's SamplingPipeline in the page: urlModelFiles over /model/, with whether a
 * file exists answered by the listing in /studio.json (only listed files are asked for), and any
 * other file of a component's folder than the graph and its configs (a large model's external
 * weights, model.onnx_data) handed to onnxruntime-web as external data.
 */
import * as ort from 'onnxruntime-web';
import type { ModelFiles } from '../../components/model-files.js';
import { urlModelFiles } from '../../components/url-files.js';
import type { ModelStudioInfo } from '../info.js';
import type { Backend } from './network.js';

export function servedModelFiles(info: Pick<ModelStudioInfo, 'run' | 'files'>, backend: Backend): ModelFiles {
  const listed = (...parts: string[]) => {
    const name = parts.pop() as string;
    return (info.files[parts.join('/')] ?? []).includes(name);
  };
  const files = urlModelFiles('/model/', ort, {
    sessionOptions: { executionProviders: [backend] },
    // Not the configs, nor a Diffuse export's weights.safetensors (its graphs hold their weights).
    externalData: async (component) => (info.files[component] ?? []).filter((f) => f !== 'model.onnx' && !/\.(json|safetensors)$/.test(f)),
  });
  return {
    ...files,
    where: (...parts) => (parts.length ? files.where(...parts) : `${info.run} (served at /model/)`),
    // The listing answers: no request for a file the server does not serve.
    exists: async (...parts) => listed(...parts),
    readText: async (...parts) => (listed(...parts) ? files.readText(...parts) : undefined),
  };
}
