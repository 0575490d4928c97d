/**
 * The page's onnxruntime-web backends: wasm (CPU) everywhere, WebGPU where the browser has an
 * adapter (and, for float16 models, float16 shaders).
 */
/** Which onnxruntime-web backend runs the model: 'wasm' (CPU, default) or 'webgpu'. */
export type Backend = 'wasm' | 'webgpu';

/** What the browser's WebGPU adapter is: whether there is one, a software fallback or a real GPU, and whether it has float16 shaders. */
export interface WebGpuAdapterInfo {
  available: boolean;
  software: boolean;
  name: string;
  /** The shader-f16 feature, which onnxruntime-web's float16 kernels need. */
  f16: boolean;
}

/** Whether the browser offers a WebGPU adapter, and what it is. */
export async function webgpuAdapter(): Promise<WebGpuAdapterInfo> {
  type Adapter = { info?: { vendor?: string; architecture?: string; description?: string; isFallbackAdapter?: boolean }; features?: { has(name: string): boolean } };
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<Adapter | null> } }).gpu;
  if (!gpu) return { available: false, software: false, name: 'this browser has no WebGPU', f16: false };
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return { available: false, software: false, name: 'no WebGPU adapter', f16: false };
    const i = adapter.info ?? {};
    const name = [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') || 'unnamed adapter';
    const software = Boolean(i.isFallbackAdapter) || /swiftshader|llvmpipe|software/i.test(name);
    return { available: true, software, name, f16: Boolean(adapter.features?.has('shader-f16')) };
  } catch {
    return { available: false, software: false, name: 'WebGPU adapter request failed', f16: false };
  }
}

/** Fills a backend picker: wasm (the default), and WebGPU, named, where the browser has an adapter (marked when it is a software one). */
export async function offerBackends(pick: HTMLSelectElement): Promise<WebGpuAdapterInfo> {
  const gpu = await webgpuAdapter();
  pick.append(new Option('wasm (CPU)', 'wasm'));
  const gpuOption = new Option(gpu.available ? `WebGPU (${gpu.name}${gpu.software ? ', a software adapter: slower than wasm' : ''})` : `WebGPU (${gpu.name})`, 'webgpu');
  gpuOption.disabled = !gpu.available;
  pick.append(gpuOption);
  return gpu;
}
