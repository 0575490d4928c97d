/**
 * A byte-pair-encoding tokenizer (Sennrich et al. 2016), trained on a data set's
 * captions and saved with the model as tokenizer.json.
 *
 * Text is lower-cased and split into words of letters and digits; each word is a
 * sequence of characters whose last one carries the end-of-word mark `</w>`.
 * Training merges the most frequent adjacent pair of symbols, again and again;
 * encoding replays the merges in the order they were learnt. A word the training
 * captions never contained still encodes (as smaller pieces), but the model has
 * never seen it: `encode` reports it, so that a user learns why a prompt is ignored.
 *
 * A run saves it as Hugging Face's tokenizer.json (a BPE model with the `</w>` suffix, as CLIP's
 * tokenizer has, NFKD + strip accents + lowercase, split on non-letters/digits, <bos> ... <eos>
 * padded to a fixed length), loadable by @huggingface/tokenizers and transformers.js, beside a
 * tokenizer_config.json that also lists the training words (for the warnings).
 */

export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
export const UNK = 3;
const SPECIALS = ['<pad>', '<bos>', '<eos>', '<unk>'];
const EOW = '</w>';

export interface TokenizerJSON {
  format: 'diffuse-bpe-1';
  /** Token ids per prompt, <bos> and <eos> included. */
  maxLength: number;
  /** Single characters, in id order after the specials; each also exists with </w>. */
  alphabet: string[];
  /** Learnt merges in order: the pair [a, b] becomes the symbol a + b. */
  merges: [string, string][];
  /** Every word of the training captions (to report words the model never saw). */
  words: string[];
}

/** The fields of Hugging Face's tokenizer.json that Diffuse writes and reads. */
export interface HuggingFaceTokenizerJSON {
  version: string;
  truncation: { direction: string; max_length: number; strategy: string; stride: number };
  padding: { strategy: { Fixed: number }; direction: string; pad_to_multiple_of: null; pad_id: number; pad_type_id: number; pad_token: string };
  added_tokens: { id: number; content: string; single_word: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean; special: boolean }[];
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: {
    type: string;
    dropout: null;
    unk_token: string;
    continuing_subword_prefix: null;
    end_of_word_suffix: string;
    fuse_unk: boolean;
    byte_fallback: boolean;
    vocab: Record<string, number>;
    merges: (string | [string, string])[];
  };
}

export interface Encoded {
  /** maxLength ids: <bos> tokens <eos> <pad>... */
  ids: number[];
  /** Words that were not in the training captions, with the pieces they were read as. */
  unknownWords: { word: string; pieces: string[] }[];
  /** Characters with no token (read as <unk>). */
  unknownChars: string[];
  /** Words cut off because the prompt is longer than maxLength tokens. */
  truncated: string[];
}

/** Lower-case words of letters and digits: the units the tokenizer sees. */
export function splitWords(text: string): string[] {
  return text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0);
}

const symbolsOf = (word: string): string[] => {
  const chars = [...word];
  chars[chars.length - 1] += EOW;
  return chars;
};

/** The two Hugging Face files a tokenizer is saved as. */
export interface TokenizerFiles {
  tokenizer: object;
  config: object;
}

/** What the text conditioning needs of a tokenizer: fixed-length int64 ids, warnings, and its files. */
export interface TextTokenizer {
  /** Token ids per prompt, special tokens and padding included. */
  readonly maxLength: number;
  readonly vocabSize: number;
  /** Token ids of many prompts as one int64 [N, maxLength] block. */
  encodeBatch(texts: readonly string[]): BigInt64Array;
  /** Human-readable warnings for a prompt (empty when nothing was lost). */
  warnings(text: string): string[];
  /** tokenizer.json and tokenizer_config.json, as a run folder keeps them. */
  files(): TokenizerFiles;
}

export class BpeTokenizer implements TextTokenizer {
  /** Token strings by id. */
  readonly vocab: readonly string[];
  private readonly ids: Map<string, number>;
  private readonly ranks: Map<string, number>;
  private readonly known: Set<string>;
  private readonly cache = new Map<string, string[]>();

  private constructor(readonly json: TokenizerJSON) {
    const vocab = [...SPECIALS];
    for (const c of json.alphabet) vocab.push(c, c + EOW);
    for (const [a, b] of json.merges) vocab.push(a + b);
    this.vocab = vocab;
    this.ids = new Map(vocab.map((t, i) => [t, i]));
    this.ranks = new Map(json.merges.map(([a, b], i) => [`${a} ${b}`, i]));
    this.known = new Set(json.words);
  }

  get maxLength(): number {
    return this.json.maxLength;
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  /**
   * Learns merges from captions until the vocabulary has `vocabSize` tokens or no pair
   * occurs twice. `maxLength` defaults to the longest caption's length in tokens plus
   * room for a few more (prompts at sampling time may be longer), a multiple of 8.
   */
  static train(captions: readonly string[], opts: { vocabSize?: number; maxLength?: number } = {}): BpeTokenizer {
    const counts = new Map<string, number>();
    for (const c of captions) for (const w of splitWords(c)) counts.set(w, (counts.get(w) ?? 0) + 1);
    const words = [...counts.keys()].sort();
    const alphabet = [...new Set(words.flatMap((w) => [...w]))].sort();
    const target = opts.vocabSize ?? 1000;
    // Each word as its current symbols, with its frequency.
    const pieces = words.map((w) => ({ symbols: symbolsOf(w), count: counts.get(w) as number }));
    const merges: [string, string][] = [];
    while (SPECIALS.length + 2 * alphabet.length + merges.length < target) {
      const pairs = new Map<string, number>();
      for (const { symbols, count } of pieces) {
        for (let i = 0; i + 1 < symbols.length; i++) {
          const key = `${symbols[i]} ${symbols[i + 1]}`;
          pairs.set(key, (pairs.get(key) ?? 0) + count);
        }
      }
      let best = '';
      let bestCount = 1;
      // Ties go to the lexicographically smallest pair, so training is deterministic.
      for (const [key, n] of pairs) if (n > bestCount || (n === bestCount && n > 1 && key < best)) [best, bestCount] = [key, n];
      if (!best) break;
      const [a, b] = best.split(' ');
      merges.push([a, b]);
      for (const p of pieces) p.symbols = mergePair(p.symbols, a, b);
    }
    const json: TokenizerJSON = { format: 'diffuse-bpe-1', maxLength: opts.maxLength ?? 2, alphabet, merges, words };
    if (opts.maxLength === undefined) {
      const t = new BpeTokenizer(json);
      let longest = 0;
      for (const c of new Set(captions)) longest = Math.max(longest, splitWords(c).reduce((n, w) => n + t.pieces(w).length, 0));
      json.maxLength = 8 * Math.ceil((longest + 2 + 4) / 8);
    }
    return new BpeTokenizer(json);
  }

  /** Reads tokenizer.json's contents, checking its fields. */
  static fromJSON(j: unknown, source = 'tokenizer.json'): BpeTokenizer {
    const t = j as TokenizerJSON;
    const bad = (what: string) => new Error(`${source}: ${what}`);
    if (!t || t.format !== 'diffuse-bpe-1') throw bad(`unknown format '${String(t?.format)}' (expected diffuse-bpe-1)`);
    if (!Number.isInteger(t.maxLength) || t.maxLength < 2) throw bad(`maxLength must be an integer >= 2, got ${t.maxLength}`);
    if (!Array.isArray(t.alphabet) || !Array.isArray(t.merges) || !Array.isArray(t.words)) throw bad('needs alphabet, merges and words arrays');
    return new BpeTokenizer(t);
  }

  toJSON(): TokenizerJSON {
    return this.json;
  }

  /** Hugging Face's tokenizer.json for this tokenizer (the same ids for prompts that fit in maxLength). */
  toHuggingFace(): HuggingFaceTokenizerJSON {
    const special = (id: number) => ({ id, content: SPECIALS[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    const tok = (name: string) => ({ SpecialToken: { id: name, type_id: 0 } });
    const L = this.maxLength;
    return {
      version: '1.0',
      truncation: { direction: 'Right', max_length: L, strategy: 'LongestFirst', stride: 0 },
      padding: { strategy: { Fixed: L }, direction: 'Right', pad_to_multiple_of: null, pad_id: PAD, pad_type_id: 0, pad_token: SPECIALS[PAD] },
      added_tokens: SPECIALS.map((_, id) => special(id)),
      normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKD' }, { type: 'StripAccents' }, { type: 'Lowercase' }] },
      pre_tokenizer: { type: 'Split', pattern: { Regex: '[^\\p{L}\\p{N}]+' }, behavior: 'Removed', invert: false },
      post_processor: {
        type: 'TemplateProcessing',
        single: [tok('<bos>'), { Sequence: { id: 'A', type_id: 0 } }, tok('<eos>')],
        pair: [tok('<bos>'), { Sequence: { id: 'A', type_id: 0 } }, tok('<eos>'), { Sequence: { id: 'B', type_id: 1 } }, tok('<eos>')],
        special_tokens: Object.fromEntries([BOS, EOS].map((id) => [SPECIALS[id], { id: SPECIALS[id], ids: [id], tokens: [SPECIALS[id]] }])),
      },
      decoder: { type: 'BPEDecoder', suffix: EOW },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: SPECIALS[UNK],
        continuing_subword_prefix: null,
        end_of_word_suffix: EOW,
        fuse_unk: false,
        byte_fallback: false,
        vocab: Object.fromEntries(this.vocab.map((t, i) => [t, i])),
        merges: this.json.merges.map(([a, b]) => `${a} ${b}`),
      },
    };
  }

  files(): TokenizerFiles {
    return { tokenizer: this.toHuggingFace(), config: this.huggingFaceConfig() };
  }

  /** Hugging Face's tokenizer_config.json: the special tokens, and the training words that the warnings need. */
  huggingFaceConfig(): Record<string, unknown> {
    return {
      tokenizer_class: 'PreTrainedTokenizerFast',
      model_max_length: this.maxLength,
      bos_token: SPECIALS[BOS],
      eos_token: SPECIALS[EOS],
      pad_token: SPECIALS[PAD],
      unk_token: SPECIALS[UNK],
      diffuse_training_words: this.json.words,
    };
  }

  /**
   * A Diffuse BPE tokenizer from the Hugging Face files it was saved as (`config`:
   * tokenizer_config.json, whose training words enable the unknown-word warnings).
   */
  static fromHuggingFace(j: unknown, config: Record<string, unknown> = {}, source = 'tokenizer.json'): BpeTokenizer {
    const t = j as Partial<HuggingFaceTokenizerJSON>;
    const bad = (what: string) => new Error(`${source}: ${what}`);
    const m = t?.model;
    if (!m || m.type !== 'BPE' || m.end_of_word_suffix !== EOW) throw bad(`not a tokenizer that Diffuse trains (a BPE model with the '${EOW}' suffix); a pretrained encoder's tokenizer goes with --text-encoder`);
    const byId: string[] = [];
    for (const [token, id] of Object.entries(m.vocab ?? {})) byId[id] = token;
    const alphabet: string[] = [];
    for (let id = SPECIALS.length; id < byId.length && !byId[id]?.endsWith(EOW) && [...(byId[id] ?? '')].length === 1; id += 2) alphabet.push(byId[id]);
    const merges = (m.merges ?? []).map((s) => (Array.isArray(s) ? s : s.split(' ')) as [string, string]);
    const L = t.padding?.strategy && typeof t.padding.strategy === 'object' ? t.padding.strategy.Fixed : undefined;
    const words = Array.isArray(config.diffuse_training_words) ? (config.diffuse_training_words as string[]) : [];
    const tok = BpeTokenizer.fromJSON({ format: 'diffuse-bpe-1', maxLength: L ?? Number(config.model_max_length), alphabet, merges, words }, source);
    if (tok.vocab.some((v) => m.vocab?.[v] !== tok.vocab.lastIndexOf(v))) throw bad('its vocabulary is not laid out as Diffuse lays it out (specials, alphabet, merges)');
    return tok;
  }

  /** The BPE pieces of one (lower-case) word. */
  pieces(word: string): string[] {
    let p = this.cache.get(word);
    if (!p) {
      p = applyMerges(symbolsOf(word), this.ranks);
      this.cache.set(word, p);
    }
    return p;
  }

  /** <bos> pieces... <eos>, padded with <pad> to maxLength; what could not be represented is reported. */
  encode(text: string): Encoded {
    const ids = [BOS];
    const unknownWords: Encoded['unknownWords'] = [];
    const unknownChars = new Set<string>();
    const truncated: string[] = [];
    for (const word of splitWords(text)) {
      const pieces = this.pieces(word);
      if (!this.known.has(word)) unknownWords.push({ word, pieces: pieces.map((s) => s.replace(EOW, '')) });
      if (truncated.length || ids.length + pieces.length > this.maxLength - 1) {
        truncated.push(word);
        continue;
      }
      for (const s of pieces) {
        const id = this.ids.get(s);
        if (id === undefined) unknownChars.add(s.replace(EOW, ''));
        ids.push(id ?? UNK);
      }
    }
    ids.push(EOS);
    while (ids.length < this.maxLength) ids.push(PAD);
    return { ids, unknownWords, unknownChars: [...unknownChars], truncated };
  }

  /** Token ids of many prompts as one int64 [N, maxLength] block. */
  encodeBatch(texts: readonly string[]): BigInt64Array {
    return idBlock(texts.map((t) => this.encode(t).ids), this.maxLength);
  }

  /** Human-readable warnings for a prompt (empty when every word was in the training captions). */
  warnings(text: string): string[] {
    const e = this.encode(text);
    const out = e.unknownWords.map(
      (u) => `'${u.word}' never occurs in the training captions, so the model has not learnt it (read as ${u.pieces.join(' + ')})`,
    );
    if (e.unknownChars.length) out.push(`characters ${e.unknownChars.map((c) => `'${c}'`).join(', ')} have no token and are read as <unk>`);
    if (e.truncated.length) out.push(`the prompt is longer than ${this.maxLength - 2} tokens; dropped: ${e.truncated.join(' ')}`);
    return out;
  }
}

/** Rows of maxLength token ids as one int64 [N, maxLength] block (what the encoders' graphs take). */
export function idBlock(rows: readonly (readonly number[])[], maxLength: number): BigInt64Array {
  const out = new BigInt64Array(rows.length * maxLength);
  rows.forEach((ids, k) => ids.forEach((id, i) => (out[k * maxLength + i] = BigInt(id))));
  return out;
}

function mergePair(symbols: string[], a: string, b: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
      out.push(a + b);
      i++;
    } else out.push(symbols[i]);
  }
  return out;
}

/** Replays merges: repeatedly merge the adjacent pair that was learnt first. */
function applyMerges(symbols: string[], ranks: ReadonlyMap<string, number>): string[] {
  let s = symbols;
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < s.length; i++) {
      const r = ranks.get(`${s[i]} ${s[i + 1]}`);
      if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
    }
    if (best < 0) return s;
    s = mergePair(s, s[best], s[best + 1]);
  }
}
