/**
 * Watermark keys: 32 secret bytes from the platform's cryptographic random source, in a small
 * JSON file that holds no model and no image (key-file.ts reads one in Node). The key drives
 * ChaCha20 (RFC 8439), whose keystream chooses the signs of x_T. Node-free: a web page draws the
 * same signs.
 */
import { chacha20Keystream } from './chacha20.js';

/** The format of a key with a 32-bit payload, which every version of Diffuse reads. */
export const KEY_FORMAT = 'diffuse-watermark-key-1';
/**
 * The format of a key with fewer payload bits ("payloadBits"): a version that predates it refuses
 * the key by its format, rather than testing images for the wrong pattern.
 */
export const KEY_FORMAT_2 = 'diffuse-watermark-key-2';
export const SCHEMES = ['gaussian-shading'] as const;
export type WatermarkScheme = (typeof SCHEMES)[number];
/**
 * How many payload bits a key may carry: divisors of 32, so that each bit's positions are whole
 * groups of the 32 the test ranks within. 0 is no payload: the test is one-sided and strongest.
 */
export const PAYLOAD_BIT_CHOICES = [0, 1, 2, 4, 8, 16, 32] as const;

export interface WatermarkKey {
  format: typeof KEY_FORMAT | typeof KEY_FORMAT_2;
  scheme: WatermarkScheme;
  /** 32 bytes, base64. */
  secret: string;
  created: string;
  /**
   * Payload bits the mark carries (format 2; a format-1 key carries 32). Fewer bits leave each
   * more positions, so small latent grids detect the mark more often and read the payload right
   * more often (docs/WATERMARK.md).
   */
  payloadBits?: number;
}

/** Options of generateKey. */
export interface KeyOptions {
  /** Payload bits (one of PAYLOAD_BIT_CHOICES; default 32, a format-1 key). */
  payloadBits?: number;
}

/** A new key from the operating system's random source. */
export function generateKey(scheme: WatermarkScheme = 'gaussian-shading', o: KeyOptions = {}): WatermarkKey {
  const bits = o.payloadBits ?? 32;
  if (!(PAYLOAD_BIT_CHOICES as readonly number[]).includes(bits)) throw new Error(`a watermark key carries ${PAYLOAD_BIT_CHOICES.join(', ')} payload bits, not ${o.payloadBits}`);
  const secret = btoa(String.fromCharCode(...globalThis.crypto.getRandomValues(new Uint8Array(32))));
  const created = new Date().toISOString();
  return bits === 32 ? { format: KEY_FORMAT, scheme, secret, created } : { format: KEY_FORMAT_2, scheme, secret, created, payloadBits: bits };
}

/** The payload bits a key's marks carry. */
export const payloadBitsOf = (key: WatermarkKey): number => key.payloadBits ?? 32;

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
  if (!k || typeof k !== 'object' || (k.format !== KEY_FORMAT && k.format !== KEY_FORMAT_2)) {
    throw new Error(`${source}: not a Diffuse watermark key (expected "format": "${KEY_FORMAT}" or "${KEY_FORMAT_2}"; make one with 'diffuse keygen --out key.json')`);
  }
  if (!SCHEMES.includes(k.scheme as WatermarkScheme)) {
    // The field comes from a file: name it without calling anything on it (an object's toString can be anything).
    const what = typeof k.scheme === 'string' ? `a key for the ${JSON.stringify(k.scheme.slice(0, 40))} scheme` : `a key whose "scheme" is ${k.scheme === undefined ? 'missing' : `a ${k.scheme === null ? 'null' : Array.isArray(k.scheme) ? 'list' : typeof k.scheme}, not a name`}`;
    throw new Error(`${source}: ${what}, which this version does not know (known: ${SCHEMES.join(', ')})`);
  }
  if (!secretBytes(k.secret)) throw new Error(`${source}: the secret is not 32 bytes of base64; the key file is corrupt`);
  if (k.format === KEY_FORMAT && k.payloadBits !== undefined) throw new Error(`${source}: a format-1 key carries 32 payload bits and no "payloadBits"; the key file is corrupt`);
  if (k.format === KEY_FORMAT_2 && !(PAYLOAD_BIT_CHOICES as readonly unknown[]).includes(k.payloadBits)) {
    const got = typeof k.payloadBits === 'number' ? String(k.payloadBits) : k.payloadBits === undefined ? 'missing' : `a ${typeof k.payloadBits}`;
    throw new Error(`${source}: "payloadBits" must be one of ${PAYLOAD_BIT_CHOICES.join(', ')}, got ${got}`);
  }
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
