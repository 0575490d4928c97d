/**
 * The run's exported denoiser (model.onnx) in onnxruntime-web, as a ConditionedNetwork: the same
 * interface that RunNetwork gives SamplingPipeline in Node, so that the page runs Diffuse's own
 * generate, img2img and inpaint. The export has batch size 1 (static ONNX shapes), so a batch of
 * n images (2n under guidance) is n evaluations.
 */
import * as ort from 'onnxruntime-web';
import type { ConditionedNetwork } from '../../pipelines/guidance.js';
import type { LatentCodec } from '../../run/autoencoder.js';
import type { RunConfig } from '../../run/config.js';
import type { Feeds } from '../../run/run.js';
import type { TextTokenizer } from '../../text/tokenizer.js';

/** Which onnxruntime-web backend runs the model: 'wasm' (CPU, default) or 'webgpu'. */
export type Backend = 'wasm' | 'webgpu';

export class BrowserNetwork implements ConditionedNetwork {
  readonly shape: [number, number, number];
  readonly text?: { feeds(prompts: readonly string[]): Promise<Feeds> };

  private constructor(
    readonly config: RunConfig,
    private readonly session: ort.InferenceSession,
    tokenizer?: TextTokenizer,
  ) {
    const m = config.model;
    this.shape = [m.inChannels, m.imageSize, m.imageSize];
    if (tokenizer) {
      const L = tokenizer.maxLength;
      this.text = { feeds: async (prompts) => ({ ids: { data: tokenizer.encodeBatch(prompts), shape: [prompts.length, L] } }) };
    }
  }

  /** Creates the onnxruntime-web session for model.onnx (served at `url`). */
  static async load(url: string, config: RunConfig, backend: Backend, tokenizer?: TextTokenizer): Promise<BrowserNetwork> {
    const session = await ort.InferenceSession.create(url, { executionProviders: [backend] });
    return new BrowserNetwork(config, session, tokenizer);
  }

  async run(x: Float32Array, t: number, n: number, conditions: Feeds): Promise<Float32Array> {
    const per = this.shape[0] * this.shape[1] * this.shape[2];
    const out = new Float32Array(n * per);
    for (let k = 0; k < n; k++) {
      const feeds: Record<string, ort.Tensor> = {
        x: new ort.Tensor('float32', x.subarray(k * per, (k + 1) * per), [1, ...this.shape]),
        t: new ort.Tensor('float32', Float32Array.of(t), [1]),
      };
      for (const [name, f] of Object.entries(conditions)) {
        const size = f.data.length / f.shape[0];
        const row = f.data.subarray(k * size, (k + 1) * size);
        feeds[name] = row instanceof BigInt64Array ? new ort.Tensor('int64', row, [1, ...f.shape.slice(1)]) : new ort.Tensor('float32', Float32Array.from(row as ArrayLike<number>), [1, ...f.shape.slice(1)]);
      }
      const result = await this.session.run(feeds);
      out.set(result.out.data as Float32Array, k * per);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * A latent run's autoencoder in onnxruntime-web (the export's vae_encoder.onnx and vae_decoder.onnx,
 * batch 1): the LatentCodec that SamplingPipeline takes in Node, so that the page runs the same
 * latent generate, img2img and inpaint. Latents are the posterior's mean times the scaling factor.
 */
export class BrowserCodec implements LatentCodec {
  private constructor(
    readonly imageShape: [number, number, number],
    readonly latentShape: [number, number, number],
    private readonly scalingFactor: number,
    private readonly encoder: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession,
  ) {}

  static async load(urls: { encoder: string; decoder: string }, imageShape: [number, number, number], latent: { scalingFactor: number; latentShape: [number, number, number] }, backend: Backend): Promise<BrowserCodec> {
    const [encoder, decoder] = await Promise.all([urls.encoder, urls.decoder].map((u) => ort.InferenceSession.create(u, { executionProviders: [backend] })));
    return new BrowserCodec(imageShape, latent.latentShape, latent.scalingFactor, encoder, decoder);
  }

  async encode(images: Float32Array, n: number): Promise<Float32Array> {
    const per = this.imageShape.reduce((a, b) => a * b, 1);
    const lper = this.latentShape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n * lper);
    for (let k = 0; k < n; k++) {
      const r = await this.encoder.run({ x: new ort.Tensor('float32', images.slice(k * per, (k + 1) * per), [1, ...this.imageShape]) });
      // moments: the mean's channels, then the log-variance's.
      const mean = (r.moments.data as Float32Array).subarray(0, lper);
      for (let i = 0; i < lper; i++) out[k * lper + i] = mean[i] * this.scalingFactor;
    }
    return out;
  }

  async decode(latents: Float32Array, n: number): Promise<Float32Array> {
    const per = this.imageShape.reduce((a, b) => a * b, 1);
    const lper = this.latentShape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n * per);
    for (let k = 0; k < n; k++) {
      const z = latents.slice(k * lper, (k + 1) * lper).map((v) => v / this.scalingFactor);
      const r = await this.decoder.run({ z: new ort.Tensor('float32', z, [1, ...this.latentShape]) });
      out.set(r.sample.data as Float32Array, k * per);
    }
    return out;
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release()]);
  }
}

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
