import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { chacha20Keystream } from '../../src/forensics/chacha20.js';

/** node:crypto's (OpenSSL's) ChaCha20 keystream: its 16-byte IV is the 32-bit block counter, little-endian, then the 96-bit nonce. */
function opensslKeystream(key: Uint8Array, nonce: Uint8Array, length: number, counter = 0): Uint8Array {
  const iv = Buffer.alloc(16);
  iv.writeUInt32LE(counter, 0);
  Buffer.from(nonce).copy(iv, 4);
  return createCipheriv('chacha20', key, iv).update(Buffer.alloc(length));
}

describe('ChaCha20 in TypeScript', () => {
  it("gives OpenSSL's keystream for random keys, nonces, counters and lengths", () => {
    for (let trial = 0; trial < 50; trial++) {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const length = 1 + (randomBytes(2).readUInt16LE(0) % 3000);
      const counter = trial % 3 === 0 ? 0 : randomBytes(2).readUInt16LE(0);
      assert.deepEqual(Buffer.from(chacha20Keystream(key, nonce, length, counter)), opensslKeystream(key, nonce, length, counter), `trial ${trial}: length ${length}, counter ${counter}`);
    }
  });

  it('gives RFC 8439 section 2.3.2\'s block (key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00, counter 1)', () => {
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    const nonce = Uint8Array.from([0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0]);
    const got = Buffer.from(chacha20Keystream(key, nonce, 64, 1)).toString('hex');
    assert.equal(got.slice(0, 32), '10f1e7e4d13b5915500fdd1fa32071c4');
  });

  it('refuses keys and nonces of the wrong size', () => {
    assert.throws(() => chacha20Keystream(new Uint8Array(16), new Uint8Array(12), 8), /32-byte key, got 16/);
    assert.throws(() => chacha20Keystream(new Uint8Array(32), new Uint8Array(8), 8), /12-byte nonce, got 8/);
  });
});
