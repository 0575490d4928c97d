/**
 * CLIP's tokenizer from a Stable Diffusion folder's files (vocab.json, merges.txt, the configs)
 * against the reference: the ids transformers' CLIPTokenizer gives for the same files and prompts,
 * and the tokenizer.json it builds (test/fixtures/clip-tokenizer, made by the script there).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { clipSpecialTokens, clipTokenizerJson, parseMerges, readTokenizerFolder } from '../../src/text/index.js';

const dir = path.join(import.meta.dirname, '..', 'fixtures', 'clip-tokenizer');
const folder = path.join(dir, 'tokenizer');
const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as {
  vocabSize: number;
  merges: number;
  structure: Record<string, unknown> & { model: Record<string, unknown> };
  cases: { prompt: string; ids: number[]; padded: number[]; paddedBang: number[] }[];
};
const tmp = mkdtempSync(path.join(tmpdir(), 'diffuse-clip-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of the fixture folder with some files replaced. */
function copyFolder(name: string, replace: Record<string, string>): string {
  const out = mkdtempSync(path.join(tmp, `${name}-`));
  for (const f of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (f in replace) writeFileSync(path.join(out, f), replace[f]);
    else copyFileSync(path.join(folder, f), path.join(out, f));
  }
  return out;
}

describe("CLIP's tokenizer from a model folder", () => {
  const tok = readTokenizerFolder(folder);

  it('builds the tokenizer.json that transformers builds from the same files', () => {
    const cfg = JSON.parse(readFileSync(path.join(folder, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const vocab = JSON.parse(readFileSync(path.join(folder, 'vocab.json'), 'utf8')) as Record<string, number>;
    const merges = parseMerges(readFileSync(path.join(folder, 'merges.txt'), 'utf8'));
    const built = clipTokenizerJson(vocab, merges, clipSpecialTokens(cfg));
    const { vocab: v, merges: m, ...model } = built.model as Record<string, unknown>;
    assert.equal(Object.keys(v as object).length, expected.vocabSize);
    assert.equal((m as unknown[]).length, expected.merges);
    assert.deepEqual({ ...built, model }, expected.structure);
  });

  it('gives the reference ids for every prompt, padded to 77 as diffusers asks (SD 1.x: padded with <|endoftext|>)', () => {
    assert.equal(tok.maxLength, 77);
    assert.equal(tok.vocabSize, expected.vocabSize);
    const got = tok.encodeBatch(expected.cases.map((c) => c.prompt));
    expected.cases.forEach((c, i) => assert.deepEqual([...got.subarray(i * 77, (i + 1) * 77)].map(Number), c.padded, JSON.stringify(c.prompt)));
  });

  it('gives the unpadded reference ids, beyond 77 tokens too', () => {
    const long = readTokenizerFolder(folder, 256);
    for (const c of expected.cases) {
      const ids = [...long.encodeBatch([c.prompt])].map(Number);
      assert.deepEqual(ids.slice(0, c.ids.length), c.ids, JSON.stringify(c.prompt));
      assert.ok(ids.slice(c.ids.length).every((x) => x === 49407));
    }
  });

  it('pads with the folder\'s pad token ("!" in SD 2.x folders, as an AddedToken object)', () => {
    const bang = readTokenizerFolder(copyFolder('bang', { 'special_tokens_map.json': JSON.stringify({ pad_token: { content: '!', lstrip: false } }) }));
    const got = bang.encodeBatch(expected.cases.map((c) => c.prompt));
    expected.cases.forEach((c, i) => assert.deepEqual([...got.subarray(i * 77, (i + 1) * 77)].map(Number), c.paddedBang, JSON.stringify(c.prompt)));
  });

  it('says when a prompt was cut', () => {
    const long = expected.cases.find((c) => c.ids.length > 77)!;
    assert.deepEqual(tok.warnings(long.prompt), ['the prompt is longer than 77 tokens and was cut']);
    assert.deepEqual(tok.warnings('a photo of a cat'), []);
  });

  it('refuses bad folders in one line naming the file', () => {
    assert.throws(() => readTokenizerFolder(tmp), /no tokenizer\.json, nor vocab\.json and merges\.txt/);
    assert.throws(() => readTokenizerFolder(copyFolder('t5', { 'tokenizer_config.json': JSON.stringify({ tokenizer_class: 'T5Tokenizer' }) })), /a T5Tokenizer without tokenizer\.json is not supported/);
    assert.throws(() => readTokenizerFolder(copyFolder('badmerge', { 'merges.txt': '#version: 0.2\ni n\nthree symbols here\n' })), /merges\.txt: line 3 is not a pair of symbols/);
    assert.throws(() => readTokenizerFolder(copyFolder('nobos', { 'vocab.json': JSON.stringify({ a: 0, '<|endoftext|>': 1 }) })), /the start token "<\|startoftext\|>" is not in the vocabulary/);
    assert.throws(() => readTokenizerFolder(copyFolder('badjson', { 'vocab.json': '{"a": ' })), /vocab\.json: not valid JSON/);
  });
});
