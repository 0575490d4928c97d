import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { InspectReport, readKey } from '../../src/index.js';
import { Studio, startStudio } from '../../src/studio/studio.js';
import { cli } from '../cli/helpers.js';
import { Hooks, openStudio } from './browser.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-inspect-'));
const run = path.join(root, 'run');
const c2pa = path.join(root, 'c2pa');
const key = path.join(root, 'key.json');
let studio: Studio;
after(async () => {
  await studio?.stop();
  rmSync(root, { recursive: true, force: true });
});

type Answer = { report: InspectReport; html: string } | { error: string };

describe('diffuse studio: the Inspect tab', () => {
  before(async () => {
    // Eight 8x8 images: a bright 3x3 square at eight places.
    mkdirSync(path.join(root, 'data'));
    for (let k = 0; k < 8; k++) {
      const px = Buffer.alloc(64, 0);
      for (let i = 0; i < 9; i++) px[((k % 4) + Math.floor(i / 3)) * 8 + (k >> 1) + (i % 3)] = 240;
      await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(root, 'data', `${k}.png`));
    }
    for (const args of [
      ['train', '--data', path.join(root, 'data'), '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '20', '--batch', '4', '--sample-every', '0', '--timesteps', '100'],
      ['keygen', '--out', key],
      ['keygen', '--c2pa', '--out', c2pa],
      ['sample', '--run', run, '--count', '1', '--steps', '4', '--out', path.join(root, 'grid.png'), '--images', path.join(root, 'samples'), '--key', key, '--payload', '9', '--c2pa', c2pa],
    ]) {
      const r = await cli(...args);
      assert.equal(r.code, 0, `${args[0]}: ${r.err}`);
    }
    studio = await startStudio({ run, port: 0, inspect: { key: readKey(key), trustAnchors: readFileSync(path.join(c2pa, 'c2pa-root.pem'), 'utf8') } });
  });

  it('shows the report diffuse inspect makes for a dropped image, and says what is wrong with other files', async () => {
    const { browser, page, errors } = await openStudio(studio.url);
    try {
      await page.click('#tab-inspect');
      assert.match((await page.textContent('#inspect-checks')) ?? '', /content credentials against your trust anchors; the watermark with your key; no detector \(no detector\.json/);
      const drop = async (name: string, mimeType: string, buffer: Buffer): Promise<Answer | undefined> => {
        await page.evaluate(() => {
          delete (window as unknown as Hooks).studioInspect;
          (document.getElementById('inspect-drop-status') as HTMLElement).textContent = '';
        });
        await page.setInputFiles('#inspect-drop-file', { name, mimeType, buffer });
        await page.waitForFunction(() => (window as unknown as Hooks).studioInspect !== undefined || document.getElementById('inspect-drop-status')?.className === 'problem', null, { timeout: 60_000 });
        // A wrong-size image is still sent (its credentials can be read): wait for its answer too.
        if ((await page.getAttribute('#inspect-drop-status', 'class')) === 'problem' && mimeType.startsWith('image/')) await page.waitForFunction(() => (window as unknown as Hooks).studioInspect !== undefined, null, { timeout: 60_000 });
        return page.evaluate(() => (window as unknown as Hooks).studioInspect as Answer | undefined);
      };

      const signed = await drop('sample.png', 'image/png', readFileSync(path.join(root, 'samples', '0000.png')));
      assert.ok(signed && 'report' in signed, JSON.stringify(signed));
      assert.equal(signed.report.file, 'sample.png');
      assert.equal(signed.report.credentials?.state, 'trusted');
      assert.equal(signed.report.credentials?.claims?.diffuse?.watermarkPayload, 9);
      assert.equal(signed.report.watermark?.status, 'checked');
      assert.equal(signed.report.detector?.status, 'skipped');
      assert.equal(signed.report.verdict?.restsOn, 'credentials');
      assert.match(signed.html, /<h1>Diffuse inspect report<\/h1>/);
      assert.equal(await page.isVisible('#inspect-report'), true);
      assert.match((await page.getAttribute('#inspect-report', 'srcdoc')) ?? '', /sample\.png/);
      assert.equal(await page.getAttribute('#inspect-report', 'sandbox'), '', 'the report runs no scripts');

      // Not an image: said next to the drop zone, nothing sent.
      assert.equal(await drop('notes.txt', 'text/plain', Buffer.from('hello')), undefined);
      assert.match((await page.textContent('#inspect-drop-status')) ?? '', /notes\.txt is not an image the page can read/);
      // The wrong size: said next to the drop zone; the server reads its credentials and scores nothing.
      const grid = await drop('grid.png', 'image/png', await sharp({ create: { width: 16, height: 8, channels: 3, background: '#000' } }).png().toBuffer());
      assert.match((await page.textContent('#inspect-drop-status')) ?? '', /grid\.png is 16x8; this model takes 8x8: its credentials are read, the watermark and detector cannot score it/);
      assert.ok(grid && 'report' in grid);
      assert.equal(grid.report.credentials?.state, 'absent');
      assert.equal(grid.report.watermark?.status, 'skipped');
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });

  it('passes --geometric on to the check: the report says the search ran', async () => {
    const geometric = await startStudio({ run, port: 0, inspect: { key: readKey(key), geometric: true } });
    try {
      const r = await fetch(`${geometric.url}api/inspect`, { method: 'POST', headers: { 'X-File-Name': '0000.png' }, body: readFileSync(path.join(root, 'samples', '0000.png')) });
      assert.equal(r.status, 200);
      const { report } = (await r.json()) as { report: InspectReport };
      assert.equal(report.watermark?.status, 'checked', JSON.stringify(report.watermark));
      assert.equal(report.watermark?.status === 'checked' && report.watermark.geometric, true);
    } finally {
      await geometric.stop();
    }
  });

  it('answers only the studio page: other origins, other methods and empty bodies are refused in words', async () => {
    const url = `${studio.url}api/inspect`;
    let r = await fetch(url, { method: 'POST', headers: { Origin: 'http://evil.example' }, body: Buffer.from('x') });
    assert.equal(r.status, 403);
    assert.match(((await r.json()) as { error: string }).error, /requests from http:\/\/evil\.example are refused/);
    r = await fetch(url);
    assert.equal(r.status, 405);
    r = await fetch(url, { method: 'POST', body: Buffer.alloc(0) });
    assert.equal(r.status, 400);
    // A corrupt file is a report with an error, not a failure of the server; the name cannot climb out of the temporary folder.
    r = await fetch(url, { method: 'POST', headers: { 'X-File-Name': encodeURIComponent('../../etc/x.png') }, body: Buffer.from('not an image') });
    assert.equal(r.status, 200);
    const a = (await r.json()) as { report: InspectReport };
    assert.equal(a.report.file, 'x.png');
    assert.match(a.report.error ?? '', /cannot decode image/);
  });
});
