import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { type InspectReport } from '../../src/index.js';
import { changeOnePixel } from '../provenance/tamper.js';
import { cli } from './helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-inspect-'));
after(() => rmSync(root, { recursive: true, force: true }));
const run = path.join(root, 'run');
const c2pa = path.join(root, 'c2pa');
const key = path.join(root, 'key.json');

/** An 8x8 grey PNG with a bright 3x3 square at (x, y). */
async function blob(file: string, x: number, y: number): Promise<void> {
  const px = Buffer.alloc(64, 0);
  for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) px[(y + dy) * 8 + x + dx] = 230 + ((x + y) % 3) * 10;
  await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(file);
}

describe('diffuse keygen --c2pa, signed outputs, detector calibrate and inspect', () => {
  before(async () => {
    for (const dir of ['train', 'real']) mkdirSync(path.join(root, dir), { recursive: true });
    for (let i = 0; i < 36; i++) await blob(path.join(root, 'train', `${i}.png`), i % 6, Math.floor(i / 6));
    for (let i = 0; i < 60; i++) await blob(path.join(root, 'real', `${i}.png`), (i * 5) % 6, (i * 7) % 6);
    const r = await cli('train', '--data', path.join(root, 'train'), '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '40', '--batch', '8', '--sample-every', '0', '--timesteps', '40');
    assert.equal(r.code, 0, r.err);
  });

  it('makes a local certificate chain, and refuses to overwrite it', async () => {
    let r = await cli('keygen', '--c2pa', '--out', c2pa, '--name', 'Test Lab');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /self-signed: other C2PA validators report its credentials as valid but untrusted/);
    assert.deepEqual(readdirSync(c2pa).sort(), ['c2pa-cert.pem', 'c2pa-key.pem', 'c2pa-root.pem']);
    assert.equal(statSync(path.join(c2pa, 'c2pa-key.pem')).mode & 0o777, 0o600);
    r = await cli('keygen', '--c2pa', '--out', c2pa);
    assert.equal(r.code, 1);
    assert.match(r.err, /c2pa-key\.pem.* exist; pass --force/);
  });

  it('signs what sample and img2img write, and says once when it does not', async () => {
    let r = await cli('sample', '--run', run, '--count', '2', '--steps', '4', '--out', path.join(root, 'plain.png'));
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err.match(/the images are unsigned/g)?.length, 1);
    r = await cli('keygen', '--out', key);
    assert.equal(r.code, 0, r.err);
    r = await cli('sample', '--run', run, '--count', '3', '--steps', '4', '--out', path.join(root, 'grid.png'), '--images', path.join(root, 'samples'), '--key', key, '--payload', '9', '--c2pa', c2pa);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /signed 4 PNG file\(s\) with content credentials \(\d+ bytes added/);
    r = await cli('img2img', '--run', run, '--image', path.join(root, 'real', '0.png'), '--count', '1', '--steps', '4', '--out', path.join(root, 'edited.png'), '--c2pa', c2pa);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /the input recorded as an ingredient/);
    r = await cli('sample', '--run', run, '--steps', '2', '--out', path.join(root, 'x.png'), '--c2pa', path.join(root, 'nowhere'));
    assert.equal(r.code, 1);
    assert.match(r.err, /nowhere\/c2pa-key\.pem: no such file \(make one with diffuse keygen --c2pa/);
    assert.ok(!existsSync(path.join(root, 'x.png')), 'nothing written when the credentials are missing');
  });

  it('calibrates the detector and inspects a folder: every signal, bad files on their own line', async () => {
    let r = await cli('detector', 'calibrate', '--run', run, '--real', path.join(root, 'real'), '--count', '60');
    assert.equal(r.code, 0, r.err);
    assert.ok(existsSync(path.join(run, 'detector.json')));
    const dir = path.join(root, 'case');
    mkdirSync(dir);
    copyFileSync(path.join(root, 'samples', '0000.png'), path.join(dir, 'a-signed.png'));
    writeFileSync(path.join(dir, 'b-tampered.png'), changeOnePixel(readFileSync(path.join(root, 'samples', '0001.png'))));
    copyFileSync(path.join(root, 'real', '3.png'), path.join(dir, 'c-real.png'));
    copyFileSync(path.join(root, 'grid.png'), path.join(dir, 'd-grid.png'));
    writeFileSync(path.join(dir, 'e-corrupt.png'), 'not an image');
    r = await cli('inspect', dir, '--run', run, '--key', key, '--trust', path.join(c2pa, 'c2pa-root.pem'), '--steps', '4', '--json', '--csv', path.join(root, 'case.csv'), '--html', path.join(root, 'case.html'), '--heatmaps', path.join(root, 'heat'));
    assert.equal(r.code, 0, r.err);
    const reports = r.out.trim().split('\n').map((l) => JSON.parse(l) as InspectReport);
    assert.deepEqual(reports.map((x) => path.basename(x.file)), ['a-signed.png', 'b-tampered.png', 'c-real.png', 'd-grid.png', 'e-corrupt.png']);
    const [signed, bad, real, grid, corrupt] = reports;
    assert.equal(signed.credentials?.state, 'trusted');
    assert.equal(signed.credentials?.claims?.diffuse?.watermarkPayload, 9);
    assert.equal(signed.watermark?.status, 'checked');
    assert.equal(signed.detector?.status, 'checked');
    assert.equal(signed.verdict?.restsOn, 'credentials');
    // 64 values of x_T carry 2 positions per payload bit: no bit can be certain, and the verdict says so.
    assert.match(signed.verdict!.summary, /^declared AI-GENERATED \(trainedAlgorithmicMedia\) by Diffuse 0\.1\.0 via content credentials; signature and hashes intact; signer on your trust list; Diffuse watermark present \(payload 9, 32 bits uncertain\)/);
    assert.equal(bad.credentials?.state, 'invalid');
    assert.ok(bad.credentials?.codes.includes('assertion.dataHash.mismatch'));
    assert.match(bad.verdict!.summary, /^TAMPERED OR DAMAGED CREDENTIALS/);
    assert.equal(bad.credentials?.integrity, 'tampered');
    assert.equal(bad.detector?.status, 'checked', 'the changed file still decodes and is scored');
    assert.equal(real.credentials?.state, 'absent');
    assert.match(real.credentials!.summary, /absence is not evidence either way/);
    assert.ok(real.detector?.status === 'checked' && real.detector.probability >= 0 && real.detector.probability <= 1);
    assert.ok(real.detector?.status === 'checked' && existsSync(real.detector.heatMap!), 'heat map written');
    assert.equal(grid.detector?.status, 'skipped');
    assert.match(grid.detector?.status === 'skipped' ? grid.detector.reason : '', /model takes 8x8: a score would be meaningless \(pass --resize/);
    assert.match(corrupt.error!, /cannot decode image/);
    const csv = readFileSync(path.join(root, 'case.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 6, 'header and one row per image');
    assert.match(csv[0], /^file,error,format,width,height,verdict,rests_on,credentials/);
    const html = readFileSync(path.join(root, 'case.html'), 'utf8');
    assert.equal(html.match(/<section>/g)?.length, 5);
    assert.ok(!/<script/i.test(html) && !/(src|href)="http/i.test(html), 'self-contained, no scripts');
    assert.match(html, /data:image\/png;base64,/);

    r = await cli('inspect', path.join(dir, 'e-corrupt.png'), '--run', run);
    assert.equal(r.code, 1, 'nothing could be inspected');
    assert.match(r.err, /no image could be inspected/);
    r = await cli('inspect', path.join(dir, 'c-real.png'), '--run', run, '--trust', path.join(root, 'missing.pem'));
    assert.equal(r.code, 1);
    assert.match(r.err, /missing\.pem: no such trust file/);
    r = await cli('inspect', path.join(dir, 'c-real.png'), '--run', run);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /watermark: +not checked: no watermark key given/);
    assert.match(r.out, /detector: +probability [\d.]+% that it is a sample of this model/);
    r = await cli('inspect', path.join(dir, 'a-signed.png'), '--run', run, '--key', key, '--steps', '4', '--max-rotation', '2');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /watermark: .*4 inversion steps, turns up to 2 degrees searched\)/);
    r = await cli('inspect', path.join(dir, 'a-signed.png'), '--run', run, '--key', key, '--steps', '4', '--geometric', '--json');
    assert.equal(r.code, 0, r.err);
    const geo = JSON.parse(r.out) as { watermark: { geometric?: boolean; inversionSteps: number } };
    assert.equal(geo.watermark.geometric, true);
    assert.equal(geo.watermark.inversionSteps, 4);
    // A folder with the search: several images in work at once, each report what it is alone, in file order.
    r = await cli('inspect', dir, '--run', run, '--key', key, '--steps', '4', '--geometric', '--json');
    assert.equal(r.code, 0, r.err);
    const together = r.out.trim().split('\n').map((l) => JSON.parse(l) as InspectReport);
    assert.deepEqual(together.map((x) => path.basename(x.file)), ['a-signed.png', 'b-tampered.png', 'c-real.png', 'd-grid.png', 'e-corrupt.png']);
    assert.deepEqual(together[0].watermark, geo.watermark);
    r = await cli('inspect', path.join(dir, 'c-real.png'), '--run', run, '--key', key, '--steps', '4', '--geometric', '--threads', '1', '--json');
    assert.equal(r.code, 0, r.err);
    const alone = JSON.parse(r.out) as InspectReport;
    assert.deepEqual(together[2].watermark, alone.watermark);
    assert.deepEqual(together[2].detector, alone.detector);
    assert.equal(together[1].credentials?.state, 'invalid', 'the tampered manifest is read beside the other images');
    r = await cli('inspect', dir, '--run', run, '--key', key, '--geometric', '--threads', '0');
    assert.equal(r.code, 1);
    assert.match(r.err, /--threads must be an integer >= 1 <= 256, got '0'/);
    r = await cli('inspect', path.join(dir, 'a-signed.png'), '--run', run, '--key', key, '--geometric', '--max-rotation', '3');
    assert.equal(r.code, 1);
    assert.match(r.err, /choose --geometric or --max-rotation/);
    r = await cli('inspect', path.join(dir, 'a-signed.png'), '--run', run, '--max-rotation', '46');
    assert.equal(r.code, 1);
    assert.match(r.err, /--max-rotation must be an integer >= 0 <= 45, got '46'/);
  });
});
