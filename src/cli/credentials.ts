/**
 * Content credentials on what the CLI writes: the flags `sample`, `img2img` and `inpaint` share,
 * and signing each PNG they wrote.
 */
import { existsSync } from 'node:fs';
import { readSettingsFile } from '../data/safe-file.js';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileAtomic } from '../engine/index.js';
import { GenerationRecord, IngredientRecord, SigningCredentials, TrustSettings, loadSigningCredentials, signImage } from '../provenance/index.js';
import type { Flag, FlagValues } from './flags.js';
import { UsageError } from './flags.js';

export const CREDENTIAL_FLAGS: Record<string, Flag> = {
  c2pa: { type: 'string', description: 'sign the PNGs written with content credentials (C2PA) from this folder (diffuse keygen --c2pa; default: $DIFFUSE_C2PA)' },
  'c2pa-key': { type: 'string', description: 'or: your own PKCS#8 PEM private key (P-256) ...' },
  'c2pa-cert': { type: 'string', description: '... and its PEM certificate (chain after it, root optional)' },
};

/** The signing credentials the flags name, or undefined (and a note, once) when there are none. */
export async function openCredentials(v: FlagValues, say: (msg: string) => void): Promise<SigningCredentials | undefined> {
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

/**
 * A trust-anchor file for reading content credentials (diffuse inspect --trust): PEM certificates
 * (your own root, or C2PA-TRUST-LIST.pem), or the C2PA trust list in its JSON form (a "LoTE" list
 * of trusted entities, C2PA-TRUST-LIST.json), whose certificates in service are taken as PEM.
 */
export function readTrustFile(file: string): string {
  if (!existsSync(file)) throw new UsageError(`${file}: no such trust file (a PEM file of root certificates, or the C2PA trust list's JSON)`);
  const text = readSettingsFile(file);
  if (text.trimStart().startsWith('{')) return trustListJsonToPem(file, text);
  if (!/-----BEGIN CERTIFICATE-----/.test(text)) throw new UsageError(`${file}: not a PEM certificate file (no BEGIN CERTIFICATE block) nor a C2PA trust list in JSON`);
  return text;
}

/** The certificates of a C2PA trust list in JSON (LoTE: TrustedEntitiesList, services in status ".../trusted") as PEM. */
export function trustListJsonToPem(file: string, text: string): string {
  type Service = { ServiceInformation?: { ServiceStatus?: string; ServiceDigitalIdentity?: { X509Certificates?: { val?: unknown }[] } } };
  type Entity = { TrustedEntityServices?: Service[] };
  let list: Entity[] | undefined;
  try {
    list = (JSON.parse(text) as { LoTE?: { TrustedEntitiesList?: Entity[] } }).LoTE?.TrustedEntitiesList;
  } catch {
    throw new UsageError(`${file}: not valid JSON`);
  }
  if (!Array.isArray(list)) throw new UsageError(`${file}: JSON, but not a C2PA trust list (no LoTE.TrustedEntitiesList)`);
  const pems: string[] = [];
  for (const entity of list) {
    for (const service of entity.TrustedEntityServices ?? []) {
      const info = service.ServiceInformation;
      // Withdrawn services stay listed with another status: only those in service are trusted.
      if (!info?.ServiceStatus?.endsWith('/trusted')) continue;
      for (const c of info.ServiceDigitalIdentity?.X509Certificates ?? []) {
        if (typeof c.val !== 'string' || !/^[A-Za-z0-9+/=\s]+$/.test(c.val)) continue;
        const b64 = c.val.replace(/\s+/g, '');
        pems.push(`-----BEGIN CERTIFICATE-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----`);
      }
    }
  }
  if (!pems.length) throw new UsageError(`${file}: a C2PA trust list with no certificate in service`);
  return `${pems.join('\n')}\n`;
}

/**
 * The trust settings of `inspect`: several anchor bundles (--trust, joined), allowed lists
 * (--trust-allowed: PEM certificates or base64 SHA-256 hashes, the two forms the C2PA and its
 * interim trust list publish) and the accepted key usages (--trust-config, the lists' store.cfg).
 */
export function readTrustSettings(anchorFiles: readonly string[], allowedFiles: readonly string[], configFile?: string): TrustSettings | undefined {
  const anchors = anchorFiles.map(readTrustFile).join('\n');
  const allowed = allowedFiles
    .map((f) => {
      if (!existsSync(f)) throw new UsageError(`${f}: no such allowed-list file`);
      const text = readSettingsFile(f);
      const hashes = text.split(/\r?\n/).filter((l) => l.trim() && !l.startsWith('//') && !l.startsWith('#'));
      if (!/-----BEGIN CERTIFICATE-----/.test(text) && !hashes.every((l) => /^[A-Za-z0-9+/=_-]{40,}$/.test(l.trim()))) {
        throw new UsageError(`${f}: not an allowed list (PEM certificates, or base64 SHA-256 hashes one per line)`);
      }
      return text;
    })
    .join('\n');
  let config: string | undefined;
  if (configFile !== undefined) {
    if (!existsSync(configFile)) throw new UsageError(`${configFile}: no such trust configuration file`);
    config = readSettingsFile(configFile);
    if (!/^\s*\d+(\.\d+)+\s*$/m.test(config)) throw new UsageError(`${configFile}: not a list of key-usage OIDs (one per line, like the trust list's store.cfg)`);
  }
  if (!anchors && !allowed) return config ? { config } : undefined;
  return { ...(anchors ? { anchors } : {}), ...(allowed ? { allowed } : {}), ...(config ? { config } : {}) };
}
