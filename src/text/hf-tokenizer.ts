/**
 * A pretrained encoder's own tokenizer: Hugging Face's tokenizer.json (with tokenizer_config.json
 * beside it when there is one), or a model folder's `tokenizer/` of CLIP's files (vocab.json and
 * merges.txt, clip-tokenizer.ts), run by @huggingface/tokenizers, so that a frozen ONNX encoder
 * (`diffuse train --text-encoder enc.onnx --tokenizer tokenizer.json`, a Stable Diffusion
 * folder's text encoder) receives the token ids it was trained on. Prompts are encoded with the
 * special tokens, cut to maxLength and padded. Node-free: the files are given as text
 * (fromTexts); tokenizer-folder.ts reads them from disk, the studio page fetches them.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { clipSpecialTokens, clipTokenizerJson, parseMerges, specialTokenText } from './clip-tokenizer.js';
import { idBlock } from './tokenizer.js';
import type { TextTokenizer, TokenizerFiles } from './tokenizer.js';

/** The files of a tokenizer folder that are read, by name. */
export type TokenizerFileName = 'tokenizer.json' | 'tokenizer_config.json' | 'vocab.json' | 'merges.txt' | 'special_tokens_map.json';
/** The names of TokenizerFileName, in the order they are looked for. */
export const TOKENIZER_FILE_NAMES: readonly TokenizerFileName[] = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'special_tokens_map.json'];

const parseJson = (text: string, file: string): Record<string, unknown> => {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: not a JSON object`);
  return v as Record<string, unknown>;
};

export class HuggingFaceTokenizer implements TextTokenizer {
  readonly maxLength: number;
  readonly vocabSize: number;
  private readonly hf: Tokenizer;
  private readonly padId: number;
  private readonly unkId?: number;

  /**
   * @param json tokenizer.json's contents; @param config tokenizer_config.json's ({} if none);
   * @param maxLength tokens per prompt (default: the file's truncation or padding length, else model_max_length).
   */
  constructor(
    private readonly json: Record<string, unknown>,
    private readonly config: Record<string, unknown>,
    maxLength?: number,
    source = 'tokenizer.json',
  ) {
    if (!json || typeof json !== 'object' || !json.model) throw new Error(`${source}: not a Hugging Face tokenizer.json (no "model")`);
    try {
      this.hf = new Tokenizer(json, config);
    } catch (e) {
      throw new Error(`${source}: @huggingface/tokenizers cannot load it (${(e as Error).message.split('\n')[0]})`);
    }
    const trunc = (json.truncation as { max_length?: number } | null)?.max_length;
    const fixed = ((json.padding as { strategy?: { Fixed?: number } } | null)?.strategy as { Fixed?: number } | undefined)?.Fixed;
    const modelMax = Number(config.model_max_length);
    const L = maxLength ?? trunc ?? fixed ?? (modelMax > 0 && modelMax < 1e5 ? modelMax : undefined);
    if (!Number.isInteger(L) || (L as number) < 2) throw new Error(`${source}: says no prompt length; give the encoder's (e.g. 77 for CLIP)`);
    this.maxLength = L as number;
    this.vocabSize = this.hf.get_vocab(true).size;
    const padToken = (json.padding as { pad_token?: string } | null)?.pad_token ?? specialTokenText(config.pad_token);
    this.padId = (json.padding as { pad_id?: number } | null)?.pad_id ?? (padToken !== undefined ? this.hf.token_to_id(padToken) : undefined) ?? 0;
    const unk = (json.model as { unk_token?: string }).unk_token ?? specialTokenText(config.unk_token);
    this.unkId = unk === undefined ? undefined : this.hf.token_to_id(unk);
  }

  /**
   * The tokenizer of a folder's files, given as text (a missing file is undefined): its
   * tokenizer.json when there is one, else CLIP's tokenizer from vocab.json and merges.txt (what
   * diffusers and Optimum write for Stable Diffusion), with the special tokens of
   * tokenizer_config.json and special_tokens_map.json. `where(name)` names a file in errors.
   */
  static fromTexts(files: Partial<Record<TokenizerFileName, string>>, where: (name: TokenizerFileName) => string, maxLength?: number): HuggingFaceTokenizer {
    const json = (name: TokenizerFileName): Record<string, unknown> => (files[name] === undefined ? {} : parseJson(files[name] as string, where(name)));
    if (files['tokenizer.json'] !== undefined) return new HuggingFaceTokenizer(json('tokenizer.json'), json('tokenizer_config.json'), maxLength, where('tokenizer.json'));
    const folder = where('tokenizer.json').replace(/[/\\]?tokenizer\.json$/, '') || '.';
    if (files['vocab.json'] === undefined || files['merges.txt'] === undefined) throw new Error(`${folder}: no tokenizer.json, nor vocab.json and merges.txt`);
    const config = json('tokenizer_config.json');
    const map = json('special_tokens_map.json');
    const cls = typeof config.tokenizer_class === 'string' ? config.tokenizer_class : 'CLIPTokenizer';
    if (!/^CLIPTokenizer(Fast)?$/.test(cls)) throw new Error(`${where('tokenizer_config.json')}: a ${cls} without tokenizer.json is not supported (CLIP's vocab.json and merges.txt are; for others, give the folder a tokenizer.json)`);
    const vocab = json('vocab.json');
    for (const [token, id] of Object.entries(vocab)) if (!Number.isInteger(id)) throw new Error(`${where('vocab.json')}: the id of ${JSON.stringify(token)} is not a whole number`);
    const special = clipSpecialTokens(config, map);
    const tokenizer = clipTokenizerJson(vocab as Record<string, number>, parseMerges(files['merges.txt'], where('merges.txt')), special, where('vocab.json'));
    return new HuggingFaceTokenizer(tokenizer, { ...config, pad_token: special.pad, unk_token: special.unk }, maxLength, folder);
  }

  private encode(text: string): { ids: number[]; truncated: boolean; unknown: number } {
    const all = this.hf.encode(text).ids;
    const truncated = all.length > this.maxLength;
    // Keep the last token (the end-of-text token of the post-processor) when cutting, as CLIP's tokenizer does.
    const ids = truncated ? [...all.slice(0, this.maxLength - 1), all[all.length - 1]] : [...all];
    while (ids.length < this.maxLength) ids.push(this.padId);
    // Unknown pieces among the prompt's own tokens (CLIP's unknown token is also its end token).
    const unknown = this.unkId === undefined ? 0 : this.hf.encode(text, { add_special_tokens: false }).ids.filter((i: number) => i === this.unkId).length;
    return { ids, truncated, unknown };
  }

  encodeBatch(texts: readonly string[]): BigInt64Array {
    return idBlock(texts.map((t) => this.encode(t).ids), this.maxLength);
  }

  warnings(text: string): string[] {
    const e = this.encode(text);
    const out: string[] = [];
    if (e.unknown) out.push(`${e.unknown} piece(s) have no token and are read as the unknown token`);
    if (e.truncated) out.push(`the prompt is longer than ${this.maxLength} tokens and was cut`);
    return out;
  }

  files(): TokenizerFiles {
    return { tokenizer: this.json, config: this.config };
  }
}
