/** A pretrained tokenizer's files read from disk (Node): a tokenizer.json, or a model folder's `tokenizer/`. */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { HuggingFaceTokenizer, TOKENIZER_FILE_NAMES } from './hf-tokenizer.js';
import type { TokenizerFileName } from './hf-tokenizer.js';

/** Reads tokenizer.json, and tokenizer_config.json from the same folder if it is there. */
export function readTokenizerFile(file: string, maxLength?: number): HuggingFaceTokenizer {
  if (!existsSync(file)) throw new Error(`${file}: no such tokenizer file (give the pretrained encoder's tokenizer.json)`);
  const dir = path.dirname(file);
  const config = path.join(dir, 'tokenizer_config.json');
  const texts = { 'tokenizer.json': readFileSync(file, 'utf8'), ...(existsSync(config) ? { 'tokenizer_config.json': readFileSync(config, 'utf8') } : {}) };
  return HuggingFaceTokenizer.fromTexts(texts, (name) => (name === 'tokenizer.json' ? file : path.join(dir, name)), maxLength);
}

/** The tokenizer of a model folder's `tokenizer/` (see HuggingFaceTokenizer.fromTexts). */
export function readTokenizerFolder(dir: string, maxLength?: number): HuggingFaceTokenizer {
  const texts: Partial<Record<TokenizerFileName, string>> = {};
  for (const name of TOKENIZER_FILE_NAMES) if (existsSync(path.join(dir, name))) texts[name] = readFileSync(path.join(dir, name), 'utf8');
  return HuggingFaceTokenizer.fromTexts(texts, (name) => path.join(dir, name), maxLength);
}
