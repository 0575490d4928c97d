/**
 * CLIP's tokenizer from the files of a model folder's `tokenizer/` (vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json), as every Stable Diffusion 1.x/2.x folder and
 * Hugging Face Optimum's ONNX exports ship it: no tokenizer.json, because diffusers saves
 * CLIP's tokenizer without one.
 *
 * The folder's files become the tokenizer.json that transformers' CLIPTokenizer builds from
 * them (models/clip/tokenization_clip.py), run by @huggingface/tokenizers like any other:
 * byte-level BPE with CLIP's end-of-word mark `</w>`; NFC, runs of whitespace to one space,
 * lower case; words split by CLIP's pattern (contractions, runs of letters, single digits, runs
 * of other symbols), then GPT-2's byte-level split; <|startoftext|> ... <|endoftext|> around
 * the ids. test/fixtures/clip-tokenizer holds CLIP's own vocabulary and the ids transformers
 * gives for prompts of every kind (made by the script there).
 */

/** A special token as tokenizer_config.json and special_tokens_map.json write it: a string or an AddedToken object. */
export type SpecialTokenValue = string | { content?: string } | null | undefined;

/** The text of a special token in either form, or undefined. */
export function specialTokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** CLIP's special tokens, with CLIPTokenizer's defaults. */
export interface ClipSpecialTokens {
  bos: string;
  eos: string;
  unk: string;
  pad: string;
}

/** CLIPTokenizer's defaults, overridden by what the folder's config and special-tokens map say (the map wins, as in transformers). */
export function clipSpecialTokens(config: Record<string, unknown>, map: Record<string, unknown> = {}): ClipSpecialTokens {
  const pick = (key: string, fallback: string) => specialTokenText(map[key]) ?? specialTokenText(config[key]) ?? fallback;
  return { bos: pick('bos_token', '<|startoftext|>'), eos: pick('eos_token', '<|endoftext|>'), unk: pick('unk_token', '<|endoftext|>'), pad: pick('pad_token', '<|endoftext|>') };
}

/** CLIP's word pattern (transformers' and the original CLIP tokenizer's). */
const CLIP_WORDS = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/**
 * The tokenizer.json of CLIP's tokenizer for a vocabulary (token -> id) and its merges (merges.txt's
 * lines after the "#version" header: "a b" pairs in rank order). Throws, naming the token, when
 * a special token is not in the vocabulary.
 */
export function clipTokenizerJson(vocab: Record<string, number>, merges: readonly string[], special: ClipSpecialTokens, source = 'vocab.json'): Record<string, unknown> {
  const id = (token: string, what: string): number => {
    const i = vocab[token];
    if (!Number.isInteger(i)) throw new Error(`${source}: the ${what} token ${JSON.stringify(token)} is not in the vocabulary`);
    return i;
  };
  const bos = id(special.bos, 'start');
  const eos = id(special.eos, 'end');
  // Every special token is matched in the prompt's text before anything else, as transformers
  // registers them: so with SD 2.x's pad token "!", each "!" of a prompt is that token (id 0),
  // never part of a longer piece such as "!!".
  const added = new Map<string, { id: number; content: string; single_word: false; lstrip: false; rstrip: false; normalized: boolean; special: true }>();
  const add = (content: string, what: string, normalized: boolean) => {
    if (!added.has(content)) added.set(content, { id: id(content, what), content, single_word: false, lstrip: false, rstrip: false, normalized, special: true });
  };
  add(special.bos, 'start', true);
  add(special.eos, 'end', false);
  add(special.unk, 'unknown', false);
  add(special.pad, 'padding', false);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...added.values()].sort((a, b) => a.id - b.id),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_WORDS }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: { type: 'RobertaProcessing', sep: [special.eos, eos], cls: [special.bos, bos], trim_offsets: false, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: special.unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map((m) => m.split(' ')),
    },
  };
}

/** merges.txt's pairs: its lines without the "#version" header and blank lines; a line that is not two symbols is an error naming it. */
export function parseMerges(text: string, source = 'merges.txt'): string[] {
  const lines = text.split(/\r?\n/);
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line || (i === 0 && line.startsWith('#version'))) continue;
    if (line.split(' ').length !== 2) throw new Error(`${source}: line ${i + 1} is not a pair of symbols (${JSON.stringify(line.slice(0, 40))})`);
    out.push(line);
  }
  return out;
}
