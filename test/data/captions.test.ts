import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadDataset } from '../../src/index.js';
import { DIGIT_NAMES, EMOJI_CATEGORIES, captionsFromLabels, classPrompt, emojiCatalogue, loadEmoji, loadImageFolder, loadMnist } from '../../src/data/index.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-captions-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function png(file: string, grey: number): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: grey, g: grey, b: grey } } }).png().toFile(file);
}

describe('captions', () => {
  it('MNIST and Fashion-MNIST captions name the class in several phrasings', () => {
    const labels = Int32Array.of(7, 7, 7, 7, 3);
    assert.deepEqual(captionsFromLabels('mnist', labels, DIGIT_NAMES), ['a handwritten digit seven', 'the digit 7', 'a handwritten 7', 'the number seven', 'a handwritten digit three']);
    assert.equal(classPrompt('mnist', DIGIT_NAMES, 7), 'a handwritten digit seven');
    const m = loadMnist('train', 10);
    assert.equal(m.captions?.length, 10);
    assert.match(m.captions![0], new RegExp(`${DIGIT_NAMES[m.labels![0]]}|${m.labels![0]}`));
  });

  it('reads img.txt beside each image, and names the first image without one', async () => {
    const dir = path.join(root, 'txt');
    await png(path.join(dir, 'a.png'), 0);
    await png(path.join(dir, 'b.png'), 255);
    writeFileSync(path.join(dir, 'a.txt'), 'a black square\n');
    writeFileSync(path.join(dir, 'b.txt'), 'a white square');
    const d = await loadImageFolder(dir, { captions: true });
    assert.deepEqual(d.captions, ['a black square', 'a white square']);
    await png(path.join(dir, 'c.png'), 128);
    await assert.rejects(loadImageFolder(dir, { captions: true }), /c\.png: no caption \(expected c\.txt beside it, or a metadata\.jsonl in/);
    // Without --text, captions are not needed.
    assert.equal((await loadImageFolder(dir)).captions, undefined);
  });

  it('reads a metadata.jsonl manifest (Hugging Face imagefolder style) and reports bad lines by number', async () => {
    const dir = path.join(root, 'jsonl');
    await png(path.join(dir, 'x', 'one.png'), 10);
    await png(path.join(dir, 'two.png'), 200);
    writeFileSync(path.join(dir, 'metadata.jsonl'), '{"file_name": "x/one.png", "text": "dark"}\n\n{"file_name": "two.png", "text": "light"}\n');
    const d = await loadImageFolder(dir, { captions: true });
    // Files are read in sorted order: two.png, then x/one.png.
    assert.deepEqual(d.captions, ['light', 'dark']);
    writeFileSync(path.join(dir, 'metadata.jsonl'), '{"file_name": "x/one.png", "text": "dark"}\n{oops\n');
    await assert.rejects(loadImageFolder(dir, { captions: true }), /metadata\.jsonl:2: not valid JSON/);
    writeFileSync(path.join(dir, 'metadata.jsonl'), '{"file_name": "x/one.png", "caption": "dark"}\n');
    await assert.rejects(loadImageFolder(dir, { captions: true }), /metadata\.jsonl:1: needs string fields "file_name" and "text"/);
    writeFileSync(path.join(dir, 'metadata.jsonl'), '{"file_name": "x/one.png", "text": "dark"}\n');
    await assert.rejects(loadImageFolder(dir, { captions: true }), /no caption for two\.png/);
  });

  it('emoji: 3,781 Noto images with emojibase labels, skin tones as attribute words, nine categories', async () => {
    const all = emojiCatalogue();
    assert.equal(all.length, 3781);
    const captions = new Set(all.map((e) => e.caption));
    for (const c of ['cat face', 'red apple', 'smiling face with sunglasses', 'waving hand medium skin tone']) assert.ok(captions.has(c), c);
    assert.ok(all.slice(0, 50).every((e) => existsSync(e.file)));
    const category = (caption: string) => EMOJI_CATEGORIES[all.find((e) => e.caption === caption)!.category];
    assert.deepEqual(['cat face', 'red apple', 'grinning face', 'waving hand medium skin tone'].map(category), ['Animals & Nature', 'Food & Drink', 'Smileys & Emotion', 'People & Body']);
    const d = await loadEmoji({ size: 16, limit: 3 });
    assert.deepEqual([d.count, d.channels, d.height, d.width], [3, 3, 16, 16]);
    assert.equal(d.captions?.length, 3);
    assert.equal(d.labels?.length, 3);
    assert.equal(d.classNames?.length, 9);
    assert.ok(d.images.every((v) => v >= -1 && v <= 1));
  });

  it('emoji: the held-out split keeps every skin tone of a base emoji on one side, and covers every category', async () => {
    const all = emojiCatalogue();
    const test = all.filter((e) => e.split === 'test');
    assert.equal(test.length, 746);
    // "waving hand" and its five skin tones share a side; so does every base emoji with its variants.
    const side = new Map<string, string>();
    for (const e of all) {
      const base = e.caption.replace(/ (light|medium-light|medium|medium-dark|dark) skin tone.*$/, '');
      if (!e.caption.includes('skin tone')) side.set(base, e.split);
    }
    let checked = 0;
    for (const e of all) {
      const m = /^(.*) (light|medium-light|medium|medium-dark|dark) skin tone$/.exec(e.caption);
      if (m && side.has(m[1])) {
        assert.equal(e.split, side.get(m[1]), e.caption);
        checked++;
      }
    }
    assert.ok(checked > 500, `checked ${checked} variants`);
    assert.deepEqual(new Set(test.map((e) => e.category)).size, 9);
    // The held-out images come in a seeded mixed order: each half (the evaluator's two sides) spans every category in about the same shares.
    const held = await loadDataset('emoji', 'test', { size: 4 });
    assert.equal(held.count, 746);
    const share = (from: number, to: number, c: number) => Array.from(held.labels!.subarray(from, to)).filter((l) => l === c).length / (to - from);
    for (let c = 0; c < 9; c++) assert.ok(share(0, 373, c) > 0 && share(373, 746, c) > 0 && Math.abs(share(0, 373, c) - share(373, 746, c)) < 0.08, `category ${c}: ${share(0, 373, c)} vs ${share(373, 746, c)}`);
    assert.deepEqual((await loadDataset('emoji', 'test', { size: 4, limit: 5 })).images, held.images.subarray(0, 5 * 48), 'the same order on every load');
    const captionsTest = new Set(test.map((e) => e.caption));
    assert.ok(all.filter((e) => e.split === 'train').every((e) => !captionsTest.has(e.caption)), 'no caption on both sides');
  });
});
