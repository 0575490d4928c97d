/**
 * `inspect` on files other tools wrote (test/fixtures/inspect/SOURCES.md): content credentials
 * judged as the C2PA reference implementation's own tests expect, and the generation metadata of
 * each front end as sd-parsers' tests read it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { readTrustFile } from '../../src/cli/credentials.js';
import { InspectReport, inspectImage, makeSigningChain, readCredentials, readMetadata, readSigningCredentials, signImage } from '../../src/index.js';
import { verdict } from '../../src/inspect/index.js';
import { cli } from '../cli/helpers.js';

const dir = path.join(import.meta.dirname, '..', 'fixtures', 'inspect');
const c2pa = (f: string) => path.join(dir, 'c2pa', f);
const gen = (f: string) => path.join(dir, 'generators', f);
const testAnchors = readFileSync(c2pa('test_cert_root_bundle.pem'), 'utf8');

describe('content credentials of files made elsewhere', () => {
  it('keeps integrity apart from trust: an intact test-signed file is untrusted without the anchors and trusted with them', async () => {
    const bytes = readFileSync(c2pa('C.jpg'));
    const plain = await readCredentials(bytes);
    assert.equal(plain.state, 'untrusted', plain.summary);
    assert.equal(plain.integrity, 'intact');
    assert.equal(plain.trust?.trustListGiven, false);
    const trusted = await readCredentials(bytes, { trust: { anchors: testAnchors } });
    assert.equal(trusted.state, 'trusted', trusted.summary);
    assert.equal(trusted.trust?.onTrustList, true);
    assert.equal(trusted.origin?.action, 'c2pa.created');
    assert.equal(trusted.origin?.sourceType, 'algorithmicMedia');
    assert.equal(trusted.declaresGenerativeAI, false, 'algorithmicMedia is not a trained model');
  });

  const tampered: [string, string][] = [
    ['XCA.jpg', 'assertion.dataHash.mismatch'],
    ['E-sig-CA.jpg', 'claimSignature.mismatch'],
    ['E-clm-CAICAI.jpg', 'ingredient.manifest.missing'],
  ];
  for (const [file, code] of tampered) {
    it(`reports ${file} as tampered (${code}), with or without trust anchors`, async () => {
      for (const o of [{}, { trust: { anchors: testAnchors } }]) {
        const r = await readCredentials(readFileSync(c2pa(file)), o);
        assert.equal(r.state, 'invalid', r.summary);
        assert.equal(r.integrity, 'tampered');
        assert.ok(r.codes.includes(code), r.codes.join());
        assert.match(verdict({ file, credentials: r }).summary, /^TAMPERED OR DAMAGED CREDENTIALS/);
      }
    });
  }

  it('says a pre-release manifest and an unknown signing algorithm cannot be verified, not that credentials are absent', async () => {
    const pre = await readCredentials(readFileSync(c2pa('prerelease.jpg')));
    assert.equal(pre.state, 'invalid');
    assert.equal(pre.integrity, 'unverifiable');
    const noAlg = await readCredentials(readFileSync(c2pa('no_alg.jpg')));
    assert.equal(noAlg.state, 'invalid');
    assert.deepEqual(noAlg.codes, ['algorithm.unsupported']);
  });

  it('finds the Firefly creation two manifests deep, in the ingredient of the active manifest', async () => {
    const r = await readCredentials(readFileSync(c2pa('ocsp.jpg')));
    assert.equal(r.integrity, 'intact', r.summary);
    assert.equal(r.chain?.length, 2);
    assert.equal(r.chain?.[0].actions.some((a) => a.action === 'c2pa.created'), false, 'the active manifest records an edit');
    assert.deepEqual(
      { action: r.origin?.action, sourceType: r.origin?.sourceType, softwareAgent: r.origin?.softwareAgent, depth: r.origin?.depth, generative: r.origin?.generative },
      { action: 'c2pa.created', sourceType: 'trainedAlgorithmicMedia', softwareAgent: 'Adobe Firefly', depth: 1, generative: true },
    );
    assert.equal(r.declaresGenerativeAI, true);
  });

  it('reads a real Firefly image made with Gemini as declared AI-generated, signature intact, signer not checked without a trust list', async () => {
    const r = await inspectImage(c2pa('firefly_thirdparty_gemini.png'));
    assert.equal(r.format, 'png');
    assert.equal(r.credentials?.state, 'untrusted');
    assert.equal(r.credentials?.integrity, 'intact');
    assert.equal(r.credentials?.claims?.signer, 'Adobe Firefly C2PA');
    assert.equal(r.credentials?.claims?.timeStamped, true);
    assert.equal(r.credentials?.origin?.model, 'Gemini Flash nano-banana');
    assert.equal(r.metadata?.sourceType?.name, 'trainedAlgorithmicMedia');
    assert.equal(r.verdict?.restsOn, 'credentials');
    assert.match(r.verdict?.summary ?? '', /^declared AI-GENERATED \(trainedAlgorithmicMedia\) by Gemini Flash nano-banana \(claim generator Adobe_Firefly\) via content credentials; signature and hashes intact/);
    assert.doesNotMatch(r.verdict?.summary ?? '', /TAMPERED|FORGED/);
  });

  it('says credentials stored online are not fetched, and names their address from the XMP', async () => {
    const r = await inspectImage(c2pa('cloud.jpg'));
    assert.equal(r.credentials?.state, 'remote', r.credentials?.summary);
    assert.match(r.credentials?.remoteUrl ?? '', /^https:\/\//);
    assert.match(r.credentials?.summary ?? '', /not fetched/);
  });

  it('calls an expired signing certificate a trust question, not tampering (validated by c2pa-rs)', async () => {
    const day = 86_400_000;
    const chain = await makeSigningChain('Expired Lab', { signerValidity: { notBefore: new Date(Date.now() - 400 * day), notAfter: new Date(Date.now() - 2 * day) } });
    const png = await sharp(Buffer.alloc(16 * 16 * 3, 128), { raw: { width: 16, height: 16, channels: 3 } }).png().toBuffer();
    const signed = await signImage(png, await readSigningCredentials(chain), { operation: 'generate', run: 'r', modelHash: '00', scheduler: 'ddim', steps: 1, seed: 0 });
    for (const trust of [undefined, { anchors: chain.root }]) {
      const r = await readCredentials(signed, trust ? { trust } : {});
      assert.ok(r.codes.includes('signingCredential.expired'), `c2pa-rs reports the expiry: ${r.codes.join()}`);
      assert.equal(r.state, 'untrusted', r.summary);
      assert.equal(r.integrity, 'intact');
      assert.ok(r.trust?.problems.some((p) => /expired/.test(p)), r.trust?.problems.join('; '));
      const v = verdict({ file: 'x.png', credentials: r });
      assert.match(v.summary, /^declared AI-GENERATED \(trainedAlgorithmicMedia\) by Diffuse 0\.1\.0.*signature and hashes intact; the signing certificate has expired/);
    }
  });

  it('calls a manifest cut short damaged, not absent', async () => {
    const chain = await makeSigningChain('Cut Lab');
    const png = await sharp(Buffer.alloc(16 * 16 * 3, 90), { raw: { width: 16, height: 16, channels: 3 } }).png().toBuffer();
    const signed = Buffer.from(await signImage(png, await readSigningCredentials(chain), { operation: 'generate', run: 'r', modelHash: '00', scheduler: 'ddim', steps: 1, seed: 0 }));
    const at = signed.indexOf('caBX', 0, 'latin1');
    assert.ok(at > 0, 'the manifest is in a caBX chunk');
    const cut = signed.subarray(0, at + 600);
    const r = await readCredentials(cut);
    assert.equal(r.state, 'invalid', r.summary);
    assert.equal(r.integrity, 'damaged');
    assert.equal((await readCredentials(png)).state, 'absent');
  });
});

describe('generation metadata of files made elsewhere', () => {
  const a1111 = { model: 'realistic_realisticVisionV20_v20', modelHash: 'c0d1994c73', prompt: 'photo of a duck', negativePrompt: 'monochrome', seed: 235284042, sampler: 'UniPC', steps: 15, guidance: 5, size: '512x400' };
  const cases: [string, Record<string, unknown>][] = [
    ['automatic1111_cropped.png', { tool: 'AUTOMATIC1111 Stable Diffusion WebUI', foundIn: 'PNG tEXt "parameters"', ...a1111 }],
    ['automatic1111_cropped.jpg', { tool: 'AUTOMATIC1111 Stable Diffusion WebUI', foundIn: 'EXIF UserComment', ...a1111 }],
    ['text_after_idat.png', { tool: 'AUTOMATIC1111 Stable Diffusion WebUI', foundIn: 'PNG zTXt "parameters"', ...a1111 }],
    ['fooocus1_cropped.png', { tool: 'Fooocus', model: 'juggernautXL_v8Rundiffusion', prompt: 'a smiling goldfish', seed: '6952411511246973023', sampler: 'dpmpp_2m_sde_gpu', scheduler: 'karras', steps: 30, guidance: 4, version: 'Fooocus v2.4.3' }],
    ['img2img_cropped.png', { tool: 'ComfyUI', model: 'v1-5-pruned-emaonly.ckpt', seed: 280823642470253, sampler: 'sample_dpmpp_2m', scheduler: 'normal', steps: 20, guidance: 8 }],
    ['night_evening_day_morning_cropped.png', { tool: 'ComfyUI', model: 'Anything-V3.0.ckpt', seed: 335608130539327, sampler: 'dpmpp_sde', steps: 13, guidance: 8.5 }],
    ['invokeai_imeta1.png', { tool: 'InvokeAI', model: 'juggernautXL', seed: 3293022630, sampler: 'euler', steps: 35, guidance: 8, size: '1024x1024' }],
    ['invokeai_sdmeta1.png', { tool: 'InvokeAI', model: 'deliberateForInvoke_v08', seed: 2980747362, sampler: 'k_lms', steps: 50, guidance: 5, version: '2.3.0', negativePrompt: 'rendering, glowing eyes, skinny' }],
    ['invokeai_dream1.png', { tool: 'InvokeAI', seed: 2980747362, sampler: 'k_lms', steps: 50, guidance: 5, size: '512x768' }],
    ['novelai1_cropped.png', { tool: 'NovelAI', model: 'Stable Diffusion 1D44365E', prompt: 'masterpiece, best quality,  cat, space, icon', seed: 2253955223, sampler: 'k_euler_ancestral', steps: 50, guidance: 10 }],
  ];
  for (const [file, want] of cases) {
    it(`reads ${want.tool} from ${file}`, () => {
      const m = readMetadata(readFileSync(gen(file)));
      assert.equal(m.generators.length, 1, JSON.stringify(m.generators));
      const got = m.generators[0] as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k], v, `${k}: ${String(got[k])}`);
      assert.deepEqual(m.problems, []);
    });
  }

  it('rests the verdict on metadata and says it is declared, not proven', async () => {
    const r = await inspectImage(gen('img2img_cropped.png'));
    assert.equal(r.verdict?.restsOn, 'metadata');
    assert.match(r.verdict?.summary ?? '', /^generation parameters of ComfyUI \(model v1-5-pruned-emaonly\.ckpt, seed 280823642470253, sampler sample_dpmpp_2m, 20 steps\).*declared, not proven/);
  });

  it('says nothing was found in a photograph without credentials or generator metadata, and that absence proves nothing', async () => {
    const r = await inspectImage(c2pa('no_manifest.jpg'));
    assert.equal(r.credentials?.state, 'absent');
    assert.deepEqual(r.metadata?.generators, []);
    assert.equal(r.verdict?.restsOn, 'none');
    assert.match(r.verdict?.summary ?? '', /no signal found: provenance unknown \(absence is not evidence of authenticity/);
  });
});

describe('diffuse inspect without a run', () => {
  it('reports any image folder from file-level signals, with several trust lists (PEM and the C2PA JSON form)', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'diffuse-inspect-any-'));
    try {
      const r = await cli('inspect', path.join(dir, 'c2pa'), '--trust', c2pa('C2PA-TRUST-LIST.json'), '--trust', c2pa('test_cert_root_bundle.pem'), '--json', '--csv', path.join(out, 'r.csv'), '--html', path.join(out, 'r.html'));
      assert.equal(r.code, 0, r.err);
      const reports = new Map(r.out.split('\n').map((l) => JSON.parse(l) as InspectReport).map((x) => [path.basename(x.file), x]));
      assert.equal(reports.get('C.jpg')?.credentials?.state, 'trusted', 'chains to the second bundle');
      const firefly = reports.get('firefly_thirdparty_gemini.png');
      assert.equal(firefly?.credentials?.trust?.trustListGiven, true);
      assert.equal(firefly?.credentials?.trust?.onTrustList, false, "Adobe's 2025 Firefly signer is not on the official list of this date");
      assert.equal(reports.get('XCA.jpg')?.credentials?.integrity, 'tampered');
      assert.equal(firefly?.watermark, undefined, 'no model signals without a run');
      const html = readFileSync(path.join(out, 'r.html'), 'utf8');
      assert.match(html, /File-level signals only/);
      assert.ok(!/<script/i.test(html) && !/(src|href)="http/i.test(html), 'self-contained, no scripts');
      assert.match(html, /data:image\/jpeg;base64,/);
      const csv = readFileSync(path.join(out, 'r.csv'), 'utf8').trim().split('\n');
      assert.equal(csv.length, reports.size + 1);
      const text = await cli('inspect', c2pa('ocsp.jpg'));
      assert.equal(text.code, 0, text.err);
      assert.match(text.out, /origin: c2pa\.created, trainedAlgorithmicMedia .*software Adobe Firefly.*\(in an ingredient's manifest, 1 level back\)/);
      assert.doesNotMatch(text.out, /watermark:|detector:/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('reads the C2PA trust list in JSON as the same certificates as its PEM form', () => {
    const certs = (s: string) => [...s.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END/g)].map((m) => m[1].replace(/\s+/g, '')).sort();
    const fromJson = certs(readTrustFile(c2pa('C2PA-TRUST-LIST.json')));
    assert.equal(fromJson.length, 30);
    assert.deepEqual(fromJson, certs(readFileSync(c2pa('C2PA-TRUST-LIST.pem'), 'utf8')));
  });

  it('says that the model flags need a run, and what a bad trust file is', async () => {
    let r = await cli('inspect', c2pa('C.jpg'), '--key', 'k.json');
    assert.equal(r.code, 1);
    assert.match(r.err, /--key is about a model's watermark or detector: give the model's --run DIR \(or --model DIR\) too/);
    r = await cli('inspect', c2pa('C.jpg'), '--trust', c2pa('C.jpg'));
    assert.equal(r.code, 1);
    assert.match(r.err, /C\.jpg: not a PEM certificate file .* nor a C2PA trust list in JSON/);
    r = await cli('inspect', c2pa('C.jpg'), '--trust-allowed', c2pa('SOURCES.md'));
    assert.equal(r.code, 1);
  });
});
