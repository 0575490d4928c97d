import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BOS, BpeTokenizer, EOS, PAD, UNK, readTokenizerFile, splitWords } from '../../src/text/index.js';

describe('BPE tokenizer', () => {
  it('splits text into lower-case words of letters and digits', () => {
    assert.deepEqual(splitWords('A Cat-Face, with  Sunglasses! 7 café'), ['a', 'cat', 'face', 'with', 'sunglasses', '7', 'cafe']);
  });

  it('learns the most frequent pair first (Sennrich et al. 2016, the low/lower/newest example)', () => {
    const captions = [...Array(5).fill('low'), ...Array(2).fill('lower'), ...Array(6).fill('newest'), ...Array(3).fill('widest')];
    const tok = BpeTokenizer.train(captions, { vocabSize: 4 + 2 * 10 + 3 });
    // Pair counts: "e s" = 6 + 3 = 9 is the most frequent; then "es t</w>" = 9; then "l o" = 7 ...
    assert.deepEqual(tok.toJSON().merges, [
      ['e', 's'],
      ['es', 't</w>'],
      ['l', 'o'],
    ]);
    assert.deepEqual(tok.pieces('newest'), ['n', 'e', 'w', 'est</w>']);
  });

  it('encodes training words as whole tokens, pads, and round-trips through JSON', () => {
    const captions = ['a red apple', 'a green apple', 'a cat face', 'a red heart'];
    const tok = BpeTokenizer.train(captions);
    const e = tok.encode('a red apple');
    assert.equal(e.ids.length, tok.maxLength);
    assert.equal(tok.maxLength % 8, 0);
    assert.ok(tok.maxLength >= 3 + 2 + 4);
    assert.equal(e.ids[0], BOS);
    // Each of the three words occurs in training captions, so each is one token.
    assert.equal(e.ids[4], EOS);
    assert.ok(e.ids.slice(5).every((id) => id === PAD));
    assert.deepEqual(e.unknownWords, []);
    const back = BpeTokenizer.fromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
    assert.deepEqual(back.encode('a green heart').ids, tok.encode('a green heart').ids);
    assert.equal(tok.vocab[e.ids[2]], 'red</w>');
  });

  it('reports unknown words, unknown characters and truncation instead of dropping them silently', () => {
    const tok = BpeTokenizer.train(['a red apple', 'a green apple'], { maxLength: 12 });
    const e = tok.encode('a red zebra');
    assert.deepEqual(e.unknownWords.map((u) => u.word), ['zebra']);
    assert.deepEqual(e.unknownChars.sort(), ['b', 'z']);
    assert.ok(e.ids.includes(UNK));
    const w = tok.warnings('a red zebra');
    assert.match(w[0], /'zebra' never occurs in the training captions/);
    assert.match(w[1], /'b', 'z'|'z', 'b'/);
    const short = BpeTokenizer.train(['a red apple', 'a green apple', 'a red hat', 'a green hat'], { maxLength: 6 });
    const long = short.encode('a red apple a green apple');
    assert.deepEqual(long.truncated, ['green', 'apple']);
    assert.match(short.warnings('a red apple a green apple').join('\n'), /longer than 4 tokens; dropped: green apple/);
    assert.deepEqual(short.warnings('a green apple'), []);
  });

  it('rejects a damaged tokenizer.json with the field named', () => {
    assert.throws(() => BpeTokenizer.fromJSON({ format: 'x' }, 'run/tokenizer.json'), /run\/tokenizer.json: unknown format 'x'/);
    assert.throws(() => BpeTokenizer.fromJSON({ format: 'diffuse-bpe-1', maxLength: 1, alphabet: [], merges: [], words: [] }), /maxLength must be/);
  });

  it('learns a vocabulary from thousands of captions and covers their words', () => {
    const captions = Array.from({ length: 2000 }, (_, i) => `face number ${i % 97} with ${['red', 'blue', 'green'][i % 3]} hat`);
    const tok = BpeTokenizer.train(captions, { vocabSize: 300 });
    assert.ok(tok.vocabSize <= 300);
    assert.deepEqual(tok.encode('face number 12 with red hat').unknownWords, []);
  });
});

describe("the tokenizer in Hugging Face's format", () => {
  it('gives the same ids through @huggingface/tokenizers as through Diffuse, and loads back', async () => {
    const { Tokenizer } = await import('@huggingface/tokenizers');
    const captions = ['a handwritten digit seven', 'the digit 7', 'a photo of a sneaker', 'red apple', 'waving hand: medium skin tone', 'Café crème'];
    const tok = BpeTokenizer.train(captions, { vocabSize: 80 });
    const hf = new Tokenizer(tok.toHuggingFace() as never, tok.huggingFaceConfig() as never);
    for (const prompt of ['a handwritten digit seven', 'The Digit 7!', 'a zebra', 'crème brûlée', 'HAND-waving, 77', '', 'x']) {
      const ours = tok.encode(prompt).ids;
      const theirs = hf.encode(prompt).ids;
      // tokenizers.js leaves padding to the caller; Diffuse always pads to maxLength.
      assert.deepEqual(ours.slice(0, theirs.length), theirs, `"${prompt}"`);
      assert.ok(ours.slice(theirs.length).every((id) => id === PAD), `"${prompt}": the rest is padding`);
    }
    const back = BpeTokenizer.fromHuggingFace(JSON.parse(JSON.stringify(tok.toHuggingFace())), tok.huggingFaceConfig());
    assert.deepEqual(back.toJSON(), tok.toJSON());
    assert.deepEqual(back.warnings('a zebra'), tok.warnings('a zebra'));
    assert.throws(() => BpeTokenizer.fromHuggingFace({ model: { type: 'WordPiece' } }, {}, 'clip/tokenizer.json'), /clip\/tokenizer\.json: not a tokenizer that Diffuse trains/);
  });
});

describe("a pretrained encoder's own tokenizer (HuggingFaceTokenizer)", () => {
  it('encodes as the tokenizer it was saved from: special tokens, padding to maxLength, cut with the end token kept', async () => {
    const { HuggingFaceTokenizer } = await import('../../src/text/index.js');
    const tok = BpeTokenizer.train(['a red apple', 'a green apple', 'a cat face', 'a red heart']);
    const hf = new HuggingFaceTokenizer(tok.toHuggingFace() as never, {}, undefined, 'tok.json');
    assert.equal(hf.maxLength, tok.maxLength);
    assert.equal(hf.vocabSize, tok.vocabSize);
    const prompts = ['a red apple', 'A cat face!', 'a zebra', ''];
    assert.deepEqual(hf.encodeBatch(prompts), tok.encodeBatch(prompts));
    const long = Array(40).fill('apple').join(' ');
    const ids = Array.from(new HuggingFaceTokenizer(tok.toHuggingFace() as never, {}, 6).encodeBatch([long]), Number);
    assert.deepEqual(ids, [BOS, ids[1], ids[1], ids[1], ids[1], EOS]);
    assert.match(new HuggingFaceTokenizer(tok.toHuggingFace() as never, {}, 6).warnings(long).join(), /longer than 6 tokens and was cut/);
    assert.throws(() => new HuggingFaceTokenizer({ version: '1.0' } as never, {}, 8, 'x.json'), /x\.json: not a Hugging Face tokenizer\.json/);
    assert.throws(() => readTokenizerFile('/nonexistent/tokenizer.json'), /no such tokenizer file/);
    assert.equal(UNK, 3);
  });
});
