/**
 * NovelAI's hidden record and signature, and AUTOMATIC1111's stealth copy, on files written by
 * the reference writers (test/fixtures/make_novelai_fixtures.py runs NovelAI's own writer and
 * verifier; automatic1111_stealth.png is from sd-parsers' test resources).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { inspectImage } from '../../src/index.js';
import { parsePyJson, pythonFloatRepr, pythonJsonDumps, readStealthText, verifyNovelAiSignature } from '../../src/metadata/index.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures');
const nai = (f: string) => path.join(fixtures, 'novelai', f);
const testKey = JSON.parse(readFileSync(nai('test-key.json'), 'utf8')) as { publicKey: string; unsignedRecord: string };

async function pixels(file: string): Promise<{ rgba: Buffer; rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(file).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const rgb = new Uint8Array(info.width * info.height * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) rgb.set(data.subarray(j, j + 3), i);
  return { rgba: data, rgb, width: info.width, height: info.height };
}

describe('NovelAI: the hidden record and its signature', () => {
  it("serialises a record exactly as Python's json.dumps did when it was signed", () => {
    assert.equal(pythonJsonDumps(parsePyJson(testKey.unsignedRecord)), testKey.unsignedRecord);
    // Python's own output: python3 -c "print([repr(v) for v in [5.0, 1e-05, 0.0001, 1e16, 1e15, 0.1, 123456789.125, -2.5e-07, 1.7976931348623157e308, 5e-324, 0.30000000000000004, -0.0, 12345678901234567890.0, 1.5e-4, 2.0**60]])"
    const values = [5.0, 1e-5, 0.0001, 1e16, 1e15, 0.1, 123456789.125, -2.5e-7, 1.7976931348623157e308, 5e-324, 0.30000000000000004, -0.0, 12345678901234567890.0, 1.5e-4, 2 ** 60];
    const python = ['5.0', '1e-05', '0.0001', '1e+16', '1000000000000000.0', '0.1', '123456789.125', '-2.5e-07', '1.7976931348623157e+308', '5e-324', '0.30000000000000004', '-0.0', '1.2345678901234567e+19', '0.00015', '1.152921504606847e+18'];
    assert.deepEqual(values.map(pythonFloatRepr), python);
    assert.equal(pythonJsonDumps(parsePyJson('{"a":"\\u00e9\\n\\u007f\\ud83d\\ude00","b":[1,2.50,{"c":null}],"a":true}')), '{"a": true, "b": [1, 2.5, {"c": null}]}');
    assert.throws(() => parsePyJson('{"a": 1,}'), /bad JSON/);
  });

  it('reads the alpha-channel copy and verifies its signature with the key that signed it, and only that key', async () => {
    const p = await pixels(nai('novelai-signed.png'));
    const hidden = readStealthText(p.rgba, p.width, p.height, 4);
    assert.equal(hidden?.channel, 'alpha');
    assert.equal(hidden?.compressed, true);
    const record = JSON.parse(hidden!.text) as Record<string, string>;
    assert.equal(record.Software, 'NovelAI');
    const signed = verifyNovelAiSignature(record.Comment, p.rgb, 'alpha', testKey.publicKey);
    assert.equal(signed.status, 'valid', signed.detail);
    assert.equal(signed.key, 'the key given');
    assert.equal(verifyNovelAiSignature(record.Comment, p.rgb, 'alpha').status, 'invalid', "NovelAI's own key did not sign the test file");
    const t = await pixels(nai('novelai-tampered.png'));
    assert.equal(verifyNovelAiSignature(record.Comment, t.rgb, 'alpha', testKey.publicKey).status, 'invalid', 'one changed pixel breaks it');
    const noSig = verifyNovelAiSignature('{"prompt": "x"}', p.rgb, 'text', testKey.publicKey);
    assert.equal(noSig.status, 'unreadable');
  });

  it("reports the record and says the signature does not verify with NovelAI's key", async () => {
    const r = await inspectImage(nai('novelai-signed.png'));
    assert.deepEqual(r.metadata?.hidden?.fields, ['Description', 'Software', 'Source', 'Generation time', 'Comment']);
    assert.equal(r.metadata?.novelaiSignature?.status, 'invalid');
    assert.equal(r.metadata?.generators[0]?.tool, 'NovelAI');
    assert.equal(r.metadata?.generators[0]?.seed, 3609416449);
    assert.match(r.verdict?.summary ?? '', /NovelAI's signature does NOT verify with NovelAI's key/);
  });

  it("reads AUTOMATIC1111's stealth copy as sd-parsers' tests expect", async () => {
    const r = await inspectImage(path.join(fixtures, 'inspect', 'generators', 'automatic1111_stealth.png'));
    assert.equal(r.metadata?.hidden?.channel, 'alpha');
    const g = r.metadata?.generators[0];
    assert.deepEqual(
      { tool: g?.tool, model: g?.model, modelHash: g?.modelHash, prompt: g?.prompt, negativePrompt: g?.negativePrompt, seed: g?.seed, sampler: g?.sampler, scheduler: g?.scheduler, steps: g?.steps, guidance: g?.guidance, size: g?.size, version: g?.version },
      { tool: 'AUTOMATIC1111 Stable Diffusion WebUI', model: 'realisticVisionV51_v51VAE', modelHash: '15012c538f', prompt: 'a circle', negativePrompt: 'a square', seed: 2015833630, sampler: 'Euler', scheduler: 'Automatic', steps: 20, guidance: 7, size: '64x64', version: 'v1.9.4-169-ga30b19dd' },
    );
  });
});
