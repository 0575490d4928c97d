/**
 * Watermark keys: 32 secret bytes from the platform's cryptographic random source, in a small
 * JSON file that holds no model and no image (key-file.ts reads one in Node). The key drives
 * ChaCha20 (RFC 8439), whose keystream chooses the signs of x_T. Node-free: a web page draws the
 * same signs.
 */
import { chacha20Keystream } from './chacha20.js';

export const KEY_FORMAT = 'diffuse-watermark-key-1';
export const SCHEMES = ['gaussian-shading'] as const;
export type WatermarkScheme = (typeof SCHEMES)[number];

export interface WatermarkKey {
  format: typeof KEY_FORMAT;
  scheme: WatermarkScheme;
  /** 32 bytes, base64. */
  secret: string;
  created: string;
}

/** A new key from the operating system's random source. */
export function generateKey(scheme: WatermarkScheme = 'gaussian-shading'): WatermarkKey {
  const secret = globalThis.crypto.getRandomValues(new Uint8Array(32));
  return { format: KEY_FORMAT, scheme, secret: btoa(String.fromCharCode(...secret)), created: new Date().toISOString() };
}

/** A key's 32 secret bytes (undefined where the secret is not base64 of 32 bytes). */
function secretBytes(secret: unknown): Uint8Array | undefined {
  if (typeof secret !== 'string') return undefined;
  try {
    const bytes = Uint8Array.from(atob(secret), (c) => c.charCodeAt(0));
    return bytes.length === 32 ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/** Checks a parsed key; `source` names the file in the one-line error. */
export function validateKey(json: unknown, source = 'key'): WatermarkKey {
  const k = json as Partial<WatermarkKey> | null;
  if (!k || typeof k !== 'object' || k.format !== KEY_FORMAT) {
    throw new Error(`${source}: not a Diffuse watermark key (expected "format": "${KEY_FORMAT}"; make one with 'diffuse keygen --out key.json')`);
  }
  if (!SCHEMES.includes(k.scheme as WatermarkScheme)) {
    // The field comes from a file: name it without calling anything on it (an object's toString can be anything).
    const what = typeof k.scheme === 'string' ? `a key for the ${JSON.stringify(k.scheme.slice(0, 40))} scheme` : `a key whose "scheme" is ${k.scheme === undefined ? 'missing' : `a ${k.scheme === null ? 'null' : Array.isArray(k.scheme) ? 'list' : typeof k.scheme}, not a name`}`;
    throw new Error(`${source}: ${what}, which this version does not know (known: ${SCHEMES.join(', ')})`);
  }
  if (!secretBytes(k.secret)) throw new Error(`${source}: the secret is not 32 bytes of base64; the key file is corrupt`);
  return k as WatermarkKey;
}

/** `bits` keystream bits (0/1) of ChaCha20 under the key, for one nonce (a 32-bit integer). */
export function keystreamBits(key: WatermarkKey, nonce: number, bits: number): Uint8Array {
  // The 96-bit nonce: the 32-bit nonce little-endian, then zeros; the block counter starts at 0.
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setUint32(0, nonce >>> 0, true);
  const bytes = chacha20Keystream(secretBytes(key.secret) as Uint8Array, iv, Math.ceil(bits / 8));
  const out = new Uint8Array(bits);
  for (let i = 0; i < bits; i++) out[i] = (bytes[i >> 3] >> (i & 7)) & 1;
  return out;
}
