/**
 * A model folder at a URL as ModelFiles, for a web page: configs fetched, networks opened by URL
 * in the ONNX Runtime module the page gives (onnxruntime-web). A file the server answers 404 for
 * is absent; any other failure is an error naming the URL.
 *
 *   import * as ort from 'onnxruntime-web';
 *   const files = urlModelFiles('/models/emoji-latent/', ort);
 *   const { manifest, network, codec } = await openExportedModel(files);
 */
import type * as Ort from 'onnxruntime-common';
import type { OrtModule } from '../engine/runtime.js';
import type { ModelFiles } from './model-files.js';
import { OnnxComponent } from './onnx-component.js';

export interface UrlFilesOptions {
  /** Session options for every network (default: the wasm execution provider). */
  sessionOptions?: Ort.InferenceSession.SessionOptions;
  /** Names of a component's external weight files beside model.onnx (default: model.onnx_data where the server has it). */
  externalData?: (component: string) => Promise<string[]>;
  /** The fetch to use (default: the page's). */
  fetch?: typeof fetch;
}

/**
 * The model folder at `base` (a URL, absolute or relative to the page) as ModelFiles, its networks
 * run by `ort` (onnxruntime-web's module, or any ONNX Runtime with the same API).
 */
export function urlModelFiles(base: string, ort: { InferenceSession: object; Tensor: object }, o: UrlFilesOptions = {}): ModelFiles {
  const root = base.endsWith('/') ? base : `${base}/`;
  const get = o.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  // Each part is one name inside the folder, escaped; '.', '..' and '' would leave it.
  const url = (...parts: string[]) => {
    for (const p of parts) if (p === '' || p === '.' || p === '..') throw new Error(`${root}: '${p}' is not a file name inside the model folder`);
    return `${root}${parts.map(encodeURIComponent).join('/')}`;
  };
  const exists = async (...parts: string[]) => {
    let res = await get(url(...parts), { method: 'HEAD' });
    // A static host that does not answer HEAD (405, 501): ask with GET and read none of the body.
    if (res.status === 405 || res.status === 501) {
      const stop = new AbortController();
      res = await get(url(...parts), { signal: stop.signal });
      stop.abort();
    }
    if (res.status === 404) return false;
    if (!res.ok) throw new Error(`${url(...parts)}: the server answered ${res.status}`);
    return true;
  };
  return {
    where: (...parts) => (parts.length ? url(...parts) : root),
    exists,
    readText: async (...parts) => {
      const res = await get(url(...parts));
      if (res.status === 404) return undefined;
      if (!res.ok) throw new Error(`${url(...parts)}: the server answered ${res.status}`);
      return res.text();
    },
    open: async (component, need) => {
      const names = o.externalData ? await o.externalData(component) : (await exists(component, 'model.onnx_data')) ? ['model.onnx_data'] : [];
      const externalData = names.map((f) => ({ path: f, data: url(component, f) }));
      const options: Ort.InferenceSession.SessionOptions = { executionProviders: ['wasm'], ...o.sessionOptions, ...(externalData.length ? { externalData } : {}) };
      return OnnxComponent.create(ort as unknown as OrtModule, url(component, 'model.onnx'), url(component, 'model.onnx'), need, options);
    },
  };
}
