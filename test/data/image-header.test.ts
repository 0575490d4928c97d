/** Image dimensions read from the first bytes agree with sharp's metadata() on real and made files. */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { quickHeader } from '../../src/data/index.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures');

describe('quickHeader', () => {
  it("gives sharp's width, height and alpha for every PNG and JPEG fixture and for made ones", async () => {
    const files = ['inspect/c2pa', 'inspect/generators', 'invisible-watermark', 'novelai'].flatMap((d) => readdirSync(path.join(fixtures, d)).filter((f) => /\.(png|jpe?g)$/i.test(f)).map((f) => readFileSync(path.join(fixtures, d, f))));
    const made = await Promise.all([
      sharp({ create: { width: 31, height: 17, channels: 4, background: '#00ff0080' } }).png().toBuffer(),
      sharp({ create: { width: 31, height: 17, channels: 3, background: '#336699' } }).png({ palette: true }).toBuffer(),
      sharp({ create: { width: 40, height: 9, channels: 3, background: '#336699' } }).jpeg({ progressive: true }).toBuffer(),
      sharp({ create: { width: 40, height: 9, channels: 3, background: '#336699' } }).grayscale().png().toBuffer(),
    ]);
    let checked = 0;
    for (const b of [...files, ...made]) {
      const m = await sharp(b).metadata();
      const q = quickHeader(b);
      assert.ok(q, 'read');
      assert.deepEqual(q, { width: m.width, height: m.height, hasAlpha: Boolean(m.hasAlpha) });
      checked++;
    }
    assert.ok(checked > 30, `${checked} files`);
    assert.equal(quickHeader(Buffer.from('RIFF....WEBP')), undefined);
    assert.equal(quickHeader(Buffer.from([0xff, 0xd8, 0xff])), undefined, 'a cut JPEG: ask sharp');
  });
});
