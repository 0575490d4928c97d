/**
 * ChaCha20's keystream (RFC 8439, section 2.3-2.4) in plain TypeScript, so that the watermark's
 * signs are drawn the same in Node and in a browser. Each 64-byte block is the quarter-round
 * function applied 20 times (10 column and 10 diagonal rounds) to the state
 *
 *   "expa" "nd 3" "2-by" "te k" | key (8 words) | counter | nonce (3 words)
 *
 * plus the state itself, serialised little-endian. Checked against node:crypto's (OpenSSL's)
 * chacha20 in test/forensics/chacha20.test.ts.
 */

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];

const rotl = (x: number, n: number) => (x << n) | (x >>> (32 - n));

/** One block (64 bytes) of ChaCha20 for a 32-byte key, a 12-byte nonce and a block counter. */
function block(key: Uint32Array, counter: number, nonce: Uint32Array, out: Uint8Array): void {
  const s = new Uint32Array(16);
  s.set(SIGMA, 0);
  s.set(key, 4);
  s[12] = counter >>> 0;
  s.set(nonce, 13);
  const x = Uint32Array.from(s);
  const quarter = (a: number, b: number, c: number, d: number) => {
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 16);
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 12);
    x[a] += x[b]; x[d] = rotl(x[d] ^ x[a], 8);
    x[c] += x[d]; x[b] = rotl(x[b] ^ x[c], 7);
  };
  for (let round = 0; round < 10; round++) {
    quarter(0, 4, 8, 12);
    quarter(1, 5, 9, 13);
    quarter(2, 6, 10, 14);
    quarter(3, 7, 11, 15);
    quarter(0, 5, 10, 15);
    quarter(1, 6, 11, 12);
    quarter(2, 7, 8, 13);
    quarter(3, 4, 9, 14);
  }
  const view = new DataView(out.buffer, out.byteOffset, 64);
  for (let i = 0; i < 16; i++) view.setUint32(4 * i, (x[i] + s[i]) >>> 0, true);
}

const words = (bytes: Uint8Array) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Uint32Array.from({ length: bytes.byteLength / 4 }, (_, i) => view.getUint32(4 * i, true));
};

/** `length` bytes of ChaCha20's keystream: key 32 bytes, nonce 12 bytes, starting at block `counter`. */
export function chacha20Keystream(key: Uint8Array, nonce: Uint8Array, length: number, counter = 0): Uint8Array {
  if (key.length !== 32) throw new Error(`ChaCha20 takes a 32-byte key, got ${key.length} bytes`);
  if (nonce.length !== 12) throw new Error(`ChaCha20 takes a 12-byte nonce, got ${nonce.length} bytes`);
  const k = words(key);
  const n = words(nonce);
  const out = new Uint8Array(Math.ceil(length / 64) * 64);
  for (let b = 0; b * 64 < length; b++) block(k, counter + b, n, out.subarray(b * 64, b * 64 + 64));
  return out.subarray(0, length);
}
