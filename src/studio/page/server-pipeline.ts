/**
 * The Generate tab's "server" backend for a model folder: the settings go to the studio's own
 * server (POST /api/generate), which runs the folder's StableDiffusionPipeline in Node, and the
 * answer streams back one JSON line per step (the latents) and then the image. For models whose
 * U-Net does not fit the browser's 32-bit WebAssembly (Stable Diffusion's).
 */
import type { GenerateLine, GenerateRequest } from '../generate-route.js';

/** Base64 of a Float32Array's bytes (little-endian, as every browser's typed arrays are). */
export function floatsToBase64(x: Float32Array): string {
  const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

export function base64ToFloats(b64: string): Float32Array {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

/** A step as the server reports it. */
export interface ServerStep {
  index: number;
  total: number;
  timestep: number;
  latents: Float32Array;
}

/** Runs one request on the server; resolves with the image ([3, H, W] in [-1, 1]) or rejects with the server's words. */
export async function generateOnServer(request: GenerateRequest, onStep: (s: ServerStep) => Promise<void> | void): Promise<{ data: Float32Array; shape: [number, number, number] }> {
  const res = await fetch('/api/generate', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(request) });
  if (!res.ok || !res.body) {
    const said = (await res.json().catch(() => ({}))) as { error?: string };
    throw new Error(said.error ?? `the server answered ${res.status}`);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (value) pending += value;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const l = JSON.parse(pending.slice(0, nl)) as GenerateLine;
      pending = pending.slice(nl + 1);
      if ('error' in l) throw new Error(l.error);
      if ('done' in l) return { data: base64ToFloats(l.image), shape: l.shape };
      await onStep({ index: l.step, total: l.total, timestep: l.timestep, latents: base64ToFloats(l.latents) });
    }
    if (done) throw new Error('the server ended the answer before the image');
  }
}
