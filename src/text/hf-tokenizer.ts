/**
 * A pretrained encoder's own tokenizer: Hugging Face's tokenizer.json (with tokenizer_config.json
 * beside it when there is one), or a model folder's `tokenizer/` of CLIP's files (vocab.json and
 * merges.txt, clip-tokenizer.ts), run by @huggingface/tokenizers, so that a frozen ONNX encoder
 * (`diffuse train --text-encoder enc.onnx --tokenizer tokenizer.json`, a Stable Diffusion
 * folder's text encoder) receives the token ids it was trained on. Prompts are encoded with the
 * special tokens, cut to maxLength and padded.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { clipSpecialTokens, clipTokenizerJson, parseMerges, specialTokenText } from './clip-tokenizer.js';
import { idBlock } from './tokenizer.js';
import type { TextTokenizer, TokenizerFiles } from './tokenizer.js';

const readJson = (file: string): Record<string, unknown> => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
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

  /** Reads tokenizer.json, and tokenizer_config.json from the same folder if it is there. */
  static fromFile(file: string, maxLength?: number): HuggingFaceTokenizer {
    if (!existsSync(file)) throw new Error(`${file}: no such tokenizer file (give the pretrained encoder's tokenizer.json)`);
    const configFile = path.join(path.dirname(file), 'tokenizer_config.json');
    return new HuggingFaceTokenizer(readJson(file), existsSync(configFile) ? readJson(configFile) : {}, maxLength, file);
  }

  /**
   * The tokenizer of a model folder's `tokenizer/`: its tokenizer.json when there is one, else
   * CLIP's tokenizer from vocab.json and merges.txt (what diffusers and Optimum write for Stable
   * Diffusion), with the special tokens of tokenizer_config.json and special_tokens_map.json.
   */
  static fromFolder(dir: string, maxLength?: number): HuggingFaceTokenizer {
    const file = (name: string) => path.join(dir, name);
    if (existsSync(file('tokenizer.json'))) return HuggingFaceTokenizer.fromFile(file('tokenizer.json'), maxLength);
    if (!existsSync(file('vocab.json')) || !existsSync(file('merges.txt'))) throw new Error(`${dir}: no tokenizer.json, nor vocab.json and merges.txt`);
    const config = existsSync(file('tokenizer_config.json')) ? readJson(file('tokenizer_config.json')) : {};
    const map = existsSync(file('special_tokens_map.json')) ? readJson(file('special_tokens_map.json')) : {};
    const cls = typeof config.tokenizer_class === 'string' ? config.tokenizer_class : 'CLIPTokenizer';
    if (!/^CLIPTokenizer(Fast)?$/.test(cls)) throw new Error(`${file('tokenizer_config.json')}: a ${cls} without tokenizer.json is not supported (CLIP's vocab.json and merges.txt are; for others, give the folder a tokenizer.json)`);
    const vocab = readJson(file('vocab.json'));
    for (const [token, id] of Object.entries(vocab)) if (!Number.isInteger(id)) throw new Error(`${file('vocab.json')}: the id of ${JSON.stringify(token)} is not a whole number`);
    const special = clipSpecialTokens(config, map);
    const json = clipTokenizerJson(vocab as Record<string, number>, parseMerges(readFileSync(file('merges.txt'), 'utf8'), file('merges.txt')), special, file('vocab.json'));
    return new HuggingFaceTokenizer(json, { ...config, pad_token: special.pad, unk_token: special.unk }, maxLength, dir);
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
