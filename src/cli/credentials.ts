/**
 * Content credentials on what the CLI writes: the flags `sample`, `img2img` and `inpaint` share,
 * and signing each PNG they wrote.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileAtomic } from '../engine/index.js';
import { GenerationRecord, IngredientRecord, SigningCredentials, loadSigningCredentials, signImage } from '../provenance/index.js';
import type { Flag } from './flags.js';
import { UsageError } from './flags.js';

export const CREDENTIAL_FLAGS: Record<string, Flag> = {
  c2pa: { type: 'string', description: 'sign the PNGs written with content credentials (C2PA) from this folder (diffuse keygen --c2pa; default: $DIFFUSE_C2PA)' },
  'c2pa-key': { type: 'string', description: 'or: your own PKCS#8 PEM private key (P-256) ...' },
  'c2pa-cert': { type: 'string', description: '... and its PEM certificate (chain after it, root optional)' },
};

/** The signing credentials the flags name, or undefined (and a note, once) when there are none. */
export async function openCredentials(v: Record<string, string | boolean | undefined>, say: (msg: string) => void): Promise<SigningCredentials | undefined> {
  const key = v['c2pa-key'] === undefined ? undefined : String(v['c2pa-key']);
  const certificate = v['c2pa-cert'] === undefined ? undefined : String(v['c2pa-cert']);
  if ((key === undefined) !== (certificate === undefined)) throw new UsageError('--c2pa-key and --c2pa-cert go together');
  const dir = v.c2pa !== undefined ? String(v.c2pa) : key ? undefined : process.env.DIFFUSE_C2PA || undefined;
  if (!dir && !key) {
    say('note: the images are unsigned (no content credentials); make a signing key with diffuse keygen --c2pa --out DIR and pass --c2pa DIR');
    return undefined;
  }
  try {
    return await loadSigningCredentials({ dir, key, certificate });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Signs PNG files in place (atomically); returns the bytes the manifest added to the first, for the report. */
export async function signFiles(files: readonly string[], credentials: SigningCredentials, record: (file: string, i: number) => GenerationRecord, ingredient?: IngredientRecord): Promise<number> {
  let added = 0;
  for (const [i, file] of files.entries()) {
    const bytes = await readFile(file);
    const signed = await signImage(bytes, credentials, record(file, i), ingredient);
    if (i === 0) added = signed.length - bytes.length;
    await writeFileAtomic(file, signed);
  }
  return added;
}

/** The run folder's own name: the record names the model, not the user's directory layout. */
export function runName(runDir: string): string {
  return path.basename(path.resolve(runDir));
}

/** The condition of image k (or of a whole grid: the distinct values, joined) as the record stores it. */
export function conditionRecord(
  c: { prompt?: string | readonly string[]; negativePrompt?: string | readonly string[]; classLabel?: number | string | readonly (number | string)[]; guidance?: number },
  k: number | 'grid',
): Pick<GenerationRecord, 'prompt' | 'negativePrompt' | 'classLabel' | 'guidance'> {
  const pick = <T>(v: T | readonly T[] | undefined): string | undefined => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return String(v);
    return k === 'grid' ? [...new Set((v as readonly T[]).map(String))].join(' | ') : String((v as readonly T[])[k]);
  };
  return { prompt: pick(c.prompt), negativePrompt: pick(c.negativePrompt), classLabel: pick(c.classLabel), guidance: c.guidance };
}

/** A PEM file of root certificates to trust when reading content credentials (diffuse inspect --trust). */
export function readTrustFile(file: string): string {
  if (!existsSync(file)) throw new UsageError(`${file}: no such trust file (a PEM file of root certificates)`);
  const pem = readFileSync(file, 'utf8');
  if (!/-----BEGIN CERTIFICATE-----/.test(pem)) throw new UsageError(`${file}: not a PEM certificate file (no BEGIN CERTIFICATE block)`);
  return pem;
}
