import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { changeOnePixel } from './tamper.js';
import { GenerationRecord, makeSigningChain, readCredentials, readSigningCredentials, signImage } from '../../src/index.js';

// The validator is the C2PA reference implementation (c2pa-rs as @contentauth/c2pa-wasm), independent of c2pa-ts, which signs.
const raw = Buffer.from(Array.from({ length: 28 * 28 }, (_, i) => (i * 7) % 256));
const png = () => sharp(raw, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
const jpeg = () => sharp(raw, { raw: { width: 28, height: 28, channels: 1 } }).jpeg({ quality: 90 }).toBuffer();
const record: GenerationRecord = { operation: 'generate', run: 'mnist', modelHash: 'ab'.repeat(32), scheduler: 'ddim', steps: 50, seed: 3, eta: 0, watermarkPayload: 77, index: 0 };

describe('content credentials', async () => {
  const chain = await makeSigningChain('Test Lab');
  const other = await makeSigningChain('Someone Else');
  const credentials = await readSigningCredentials(chain);

  for (const [name, make] of [['PNG', png], ['JPEG', jpeg]] as const) {
    it(`signs a ${name} that the reference implementation validates, trusts only with the root, and rejects after a change`, async () => {
      const original = await make();
      const signed = await signImage(original, credentials, record);
      const added = signed.length - original.length;
      assert.ok(added > 1000 && added < 4000, `bytes added: ${added}`);
      // The pixels are the file's own, untouched.
      assert.deepEqual(await sharp(signed).raw().toBuffer(), await sharp(original).raw().toBuffer());

      const trusted = await readCredentials(signed, { trustAnchors: chain.root });
      assert.equal(trusted.state, 'trusted', trusted.summary);
      assert.ok(trusted.codes.includes('signingCredential.trusted'));
      assert.equal(trusted.claims?.signer, 'Test Lab');
      assert.deepEqual(trusted.claims?.actions, [{ action: 'c2pa.created', digitalSourceType: 'http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia', softwareAgent: 'Diffuse 0.1.0' }]);
      assert.deepEqual(trusted.claims?.diffuse, record);

      assert.equal((await readCredentials(signed)).state, 'untrusted', 'no trust list: valid but untrusted');
      const stranger = await readCredentials(signed, { trustAnchors: other.root });
      assert.equal(stranger.state, 'untrusted', stranger.summary);
      assert.ok(stranger.codes.includes('signingCredential.untrusted'), stranger.codes.join());

      // One pixel changed, the manifest kept: for PNG the image data is re-compressed (the file still decodes);
      // for JPEG one byte of the entropy-coded data near the end is changed.
      let tampered: Buffer = Buffer.from(signed);
      if (name === 'PNG') tampered = changeOnePixel(signed);
      else tampered[tampered.length - 20] ^= 0x01;
      if (name === 'PNG') {
        const before = await sharp(signed).raw().toBuffer();
        assert.equal((await sharp(tampered).raw().toBuffer()).filter((v, i) => v !== before[i]).length, 1, 'exactly one sample differs');
      }
      const bad = await readCredentials(tampered, { trustAnchors: chain.root });
      assert.equal(bad.state, 'invalid', bad.summary);
      assert.ok(bad.codes.includes('assertion.dataHash.mismatch'), bad.codes.join());

      assert.equal((await readCredentials(original)).state, 'absent');
    });
  }

  it('records an edit with its input as an ingredient, and never a key', async () => {
    const signed = await signImage(await png(), credentials, { ...record, operation: 'img2img', strength: 0.6, watermarkPayload: undefined }, { title: 'input.png', format: 'image/png' });
    const r = await readCredentials(signed, { trustAnchors: chain.root });
    assert.equal(r.state, 'trusted', r.summary);
    assert.equal(r.claims?.actions[0].action, 'c2pa.edited');
    assert.deepEqual(r.claims?.ingredients, ['input.png']);
    assert.equal(r.claims?.diffuse?.strength, 0.6);
    const text = Buffer.from(signed).toString('latin1');
    assert.ok(!text.includes('PRIVATE KEY') && !/secret/i.test(text), 'no key material in the file');
  });

  it('calls a damaged manifest invalid, not absent', async () => {
    const signed = Buffer.from(await signImage(await png(), credentials, record));
    // Inside the manifest's JUMBF boxes (the caBX chunk follows IHDR and pHYs), past the box headers.
    const at = signed.indexOf(Buffer.from('caBX')) + 300;
    signed[at] ^= 0xff;
    const r = await readCredentials(signed);
    assert.equal(r.state, 'invalid', r.summary);
  });

  it('refuses a key that does not belong to the certificate, and files that are not PEM', async () => {
    await assert.rejects(readSigningCredentials({ key: other.key, certificate: chain.certificate }), /private key does not match the certificate/);
    await assert.rejects(readSigningCredentials({ key: 'nonsense', certificate: chain.certificate }), /not a PKCS#8 P-256 private key/);
    await assert.rejects(readSigningCredentials({ key: chain.key, certificate: 'nonsense' }), /certificate file (is not PEM|holds no certificate)/);
  });
});
