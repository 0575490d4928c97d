/**
 * Watermark keys: 32 secret bytes from node:crypto, in a small JSON file that holds no model and
 * no image. The key drives ChaCha20 (RFC 8439), whose keystream chooses the signs of x_T.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { DataError } from '../data/errors.js';
import { readSettingsFile } from '../data/safe-file.js';

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
  return { format: KEY_FORMAT, scheme, secret: randomBytes(32).toString('base64'), created: new Date().toISOString() };
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
  if (typeof k.secret !== 'string' || Buffer.from(k.secret, 'base64').length !== 32) throw new Error(`${source}: the secret is not 32 bytes of base64; the key file is corrupt`);
  return k as WatermarkKey;
}

/** Reads and checks a key file. */
export function readKey(file: string): WatermarkKey {
  if (!existsSync(file)) throw new Error(`${file}: no such key file (make one with 'diffuse keygen --out ${file}')`);
  let json: unknown;
  try {
    json = JSON.parse(readSettingsFile(file));
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new Error(`${file}: not a Diffuse watermark key (not valid JSON); the key file is corrupt`);
  }
  return validateKey(json, file);
}

/** `bits` keystream bits (0/1) of ChaCha20 under the key, for one nonce (a 32-bit integer). */
export function keystreamBits(key: WatermarkKey, nonce: number, bits: number): Uint8Array {
  const iv = Buffer.alloc(16); // node's chacha20 IV: a 32-bit block counter, then the 96-bit nonce
  iv.writeUInt32LE(nonce >>> 0, 4);
  const cipher = createCipheriv('chacha20', Buffer.from(key.secret, 'base64'), iv);
  const bytes = cipher.update(Buffer.alloc(Math.ceil(bits / 8)));
  const out = new Uint8Array(bits);
  for (let i = 0; i < bits; i++) out[i] = (bytes[i >> 3] >> (i & 7)) & 1;
  return out;
}
