/**
 * The reader of the Stable Diffusion code bases' invisible mark against the reference decoder
 * (ShieldMnt/invisible-watermark) on real photographs marked as each code base marks them
 * (test/fixtures/invisible-watermark/SOURCES.md).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { inspectImage } from '../../src/index.js';
import { CONVENTIONS, OPEN_MARKS, allBlockBits, binomialTail, blockBits, meanScores, readOpenWatermark } from '../../src/forensics/index.js';

const dir = path.join(import.meta.dirname, '..', 'fixtures', 'invisible-watermark');
const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as { sdxlBits: number[]; files: Record<string, Record<string, Record<string, number[]>>> };

async function rgb(file: string): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(path.join(dir, file)).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

describe('the Stable Diffusion invisible watermark (dwtDct)', () => {
  it("reads every saved file, in every convention and message length, exactly as the reference decoder", async () => {
    for (const [file, byConvention] of Object.entries(expected.files)) {
      const img = await rgb(file);
      for (const c of CONVENTIONS) {
        // The default (float64 estimate, blocks near a boundary again in float32), every block in
        // float32 (margin Infinity), and the estimate alone (margin 0) all read the reference's bits.
        for (const margin of [undefined, Infinity, 0]) {
          const blocks = blockBits(img.data, img.width, img.height, c, { margin });
          for (const n of ['136', '32', '48']) assert.deepEqual([...meanScores(blocks, Number(n))], byConvention[c][n], `${file} ${c} ${n} margin ${margin}`);
        }
      }
    }
  });

  it('computes again, in float32, the blocks whose float64 estimate lies near a boundary, and only those', () => {
    // Noise puts about 1 block in 900 within 0.01 of a multiple of 18.
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24) & 255;
    const w = 512;
    const h = 512;
    const px = Uint8Array.from({ length: w * h * 3 }, rnd);
    const stats = { rechecked: 0 };
    const bits = allBlockBits(px, w, h, 3, { stats });
    assert.ok(stats.rechecked > 0 && stats.rechecked < 100, `rechecked ${stats.rechecked} of ${2 * 64 * 64}`);
    const exact = allBlockBits(px, w, h, 3, { margin: Infinity });
    for (const c of CONVENTIONS) assert.deepEqual(bits[c], exact[c], c);
  });

  it('knows the three messages as the code bases write them', () => {
    assert.deepEqual(OPEN_MARKS.find((m) => m.id === 'sdxl')?.bits, expected.sdxlBits);
    assert.equal(OPEN_MARKS.find((m) => m.id === 'sd1')?.bits.length, 136);
    assert.equal(OPEN_MARKS.find((m) => m.id === 'sd2')?.bits.length, 32);
  });

  const marked: [string, string, string][] = [];
  for (const carrier of ['iw-original', 'c2pa-P1000827']) {
    marked.push([`${carrier}-sd1.png`, 'sd1', 'bgr'], [`${carrier}-sd2.png`, 'sd2', 'bgr'], [`${carrier}-sdxl-diffusers.png`, 'sdxl', 'f32-rgb'], [`${carrier}-sdxl-sgm.png`, 'sdxl', 'f32-bgr']);
  }
  for (const [file, mark, convention] of marked) {
    it(`finds the ${mark} mark in ${file} (${convention})`, async () => {
      const img = await rgb(file);
      const r = readOpenWatermark(img.data, img.width, img.height);
      assert.ok(r?.found, JSON.stringify(r?.best));
      assert.equal(r.best.mark, mark);
      assert.ok(r.best.convention.endsWith(convention), r.best.convention);
      assert.equal(r.tested, 9);
    });
  }

  it('finds nothing in the unmarked photographs', async () => {
    for (const file of ['iw-original-clean.png', 'c2pa-P1000827-clean.png']) {
      const img = await rgb(file);
      const r = readOpenWatermark(img.data, img.width, img.height);
      assert.equal(r?.found, false, JSON.stringify(r?.best));
    }
  });

  it("reports the SDXL mark as diffusers writes it, which an 8-bit BGR reader (Stability's own detector) reads at chance", async () => {
    const img = await rgb('iw-original-sdxl-diffusers.png');
    const sdxl = OPEN_MARKS.find((m) => m.id === 'sdxl')!;
    const bitsIn = (c: (typeof CONVENTIONS)[number]) => [...meanScores(blockBits(img.data, img.width, img.height, c), 48)].filter((s, i) => (s * 255 > 127 ? 1 : 0) === sdxl.bits[i]).length;
    assert.ok(bitsIn('f32-rgb') >= 46, `f32-rgb ${bitsIn('f32-rgb')}`);
    assert.ok(bitsIn('u8-bgr') <= 32, `u8-bgr ${bitsIn('u8-bgr')}`);
    const r = await inspectImage(path.join(dir, 'iw-original-sdxl-diffusers.png'));
    assert.equal(r.openWatermark?.status, 'checked');
    assert.equal(r.verdict?.restsOn, 'open-watermark');
    assert.match(r.verdict?.summary ?? '', /^SDXL \(48-bit 0xB3EC907BB19E\) invisible watermark: 47\/48 bits \(float image, RGB order: diffusers\)/);
  });

  it('computes the binomial tail exactly (against sums of binomial coefficients in BigInt)', () => {
    const exact = (k: number, n: number) => {
      let c = 1n;
      let sum = 0n;
      for (let j = 0; j <= n; j++) {
        if (j >= k) sum += c;
        c = (c * BigInt(n - j)) / BigInt(j + 1);
      }
      return Number((sum * 10n ** 30n) / 2n ** BigInt(n)) / 1e30;
    };
    for (const [k, n] of [[29, 32], [47, 48], [120, 136], [24, 48], [0, 48], [48, 48], [87, 136]]) {
      const want = exact(k, n);
      assert.ok(Math.abs(binomialTail(k, n) - want) <= 1e-12 * Math.max(want, 1e-300) + 1e-30, `${k}/${n}: ${binomialTail(k, n)} vs ${want}`);
    }
  });
});
