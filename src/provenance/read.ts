/**
 * Reading and validating content credentials with the C2PA reference implementation (c2pa-rs,
 * as @contentauth/c2pa-wasm): the signature, the data hash against the file's bytes, and the
 * signer's chain against the analyst's trust anchors. c2pa-ts, which Diffuse signs with, makes
 * no trust decision; the reference implementation does.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { JPEG, PNG } from '@trustnxt/c2pa-ts/asset';
import { DIFFUSE_ASSERTION, GenerationRecord, imageFormat } from './sign.js';

type C2paWasm = typeof import('@contentauth/c2pa-wasm');
let wasm: Promise<C2paWasm> | undefined;

/** Loads the wasm module once (about 9 MB, compiled on first use). */
function c2pa(): Promise<C2paWasm> {
  wasm ??= (async () => {
    const mod = await import('@contentauth/c2pa-wasm');
    const file = createRequire(import.meta.url).resolve('@contentauth/c2pa-wasm/c2pa.wasm');
    mod.initSync({ module: readFileSync(file) });
    return mod;
  })();
  return wasm;
}

/**
 * What the credentials say: 'absent' (no manifest: unknown provenance, not evidence of anything),
 * 'trusted' (valid, signed by a certificate that chains to a trust anchor given), 'untrusted'
 * (valid, but the signer is not on the trust list: anyone can make such a certificate),
 * 'invalid' (a manifest that fails validation: the file changed after signing, a bad signature,
 * or a manifest that cannot be parsed).
 */
export type CredentialState = 'absent' | 'trusted' | 'untrusted' | 'invalid';

export interface CredentialReport {
  state: CredentialState;
  /** Validation codes of failures (e.g. assertion.dataHash.mismatch) and the trust outcome. */
  codes: string[];
  /** One line for a person. */
  summary: string;
  /** Claims of the active manifest, when one could be read. */
  claims?: {
    generator?: string;
    signer?: string;
    issuer?: string;
    signedAt?: string;
    actions: { action: string; digitalSourceType?: string; softwareAgent?: string }[];
    ingredients: string[];
    /** Diffuse's own record, when the manifest has one. */
    diffuse?: Partial<GenerationRecord>;
  };
}

/**
 * The wasm reader is asked one file at a time: callers may inspect several images at once, and
 * one wasm instance's async calls are not documented as safe to interleave.
 */
let readerQueue: Promise<unknown> = Promise.resolve();

/** Validates the credentials in an image file's bytes; `trustAnchors` is PEM text of trusted root certificates. */
export function readCredentials(bytes: Uint8Array, o: { trustAnchors?: string } = {}): Promise<CredentialReport> {
  const turn = readerQueue.then(() => readOne(bytes, o));
  readerQueue = turn.catch(() => undefined);
  return turn;
}

async function readOne(bytes: Uint8Array, o: { trustAnchors?: string }): Promise<CredentialReport> {
  const format = imageFormat(bytes);
  if (!format) return { state: 'absent', codes: [], summary: 'no content credentials (only PNG and JPEG are read)' };
  const mod = await c2pa();
  const settings = o.trustAnchors
    ? { verify: { verify_trust: true }, trust: { trust_anchors: o.trustAnchors } }
    : { verify: { verify_trust: false } };
  let reader: Awaited<ReturnType<C2paWasm['WasmReader']['fromBytes']>>;
  try {
    reader = await mod.WasmReader.fromBytes(format, bytes, JSON.stringify(settings));
  } catch (e) {
    const msg = String((e as Error)?.message ?? e).split('\n')[0];
    // c2pa-rs reports a manifest box it cannot parse as not found: look for the box ourselves.
    if (!hasManifestBox(bytes, format)) return { state: 'absent', codes: [], summary: 'no content credentials: provenance unknown (absence is not evidence that the image is fake)' };
    return { state: 'invalid', codes: ['manifest.unreadable'], summary: `content credentials present but unreadable (damaged or malformed manifest: ${msg})` };
  }
  try {
    const store = JSON.parse(reader.json()) as ManifestStoreJson;
    return report(store, Boolean(o.trustAnchors));
  } finally {
    reader.free();
  }
}

/** Whether the file holds a C2PA manifest box at all (found with c2pa-ts's container parsers). */
function hasManifestBox(bytes: Uint8Array, format: 'image/png' | 'image/jpeg'): boolean {
  try {
    const asset = format === 'image/png' ? new PNG(bytes) : new JPEG(bytes);
    return asset.getManifestJUMBF() !== undefined;
  } catch {
    return false;
  }
}

interface ManifestStoreJson {
  active_manifest?: string;
  manifests?: Record<string, ManifestJson>;
  validation_status?: { code: string; explanation?: string }[];
  validation_state?: string;
  validation_results?: { activeManifest?: { success?: { code: string }[]; failure?: { code: string; explanation?: string }[]; informational?: { code: string }[] } };
}
interface ManifestJson {
  claim_generator?: string;
  claim_generator_info?: { name?: string; version?: string }[];
  signature_info?: { issuer?: string; common_name?: string; time?: string; cert_serial_number?: string };
  assertions?: { label: string; data: unknown }[];
  ingredients?: { title?: string }[];
}

function report(store: ManifestStoreJson, trustGiven: boolean): CredentialReport {
  const m = store.active_manifest ? store.manifests?.[store.active_manifest] : undefined;
  const failures = store.validation_results?.activeManifest?.failure ?? store.validation_status ?? [];
  const successes = store.validation_results?.activeManifest?.success ?? [];
  const codes = [...new Set([...failures.map((f) => f.code), ...successes.map((s) => s.code).filter((c) => c.startsWith('signingCredential'))])];
  const untrusted = failures.some((f) => f.code === 'signingCredential.untrusted');
  const hardFailures = failures.filter((f) => f.code !== 'signingCredential.untrusted');
  const claims = m ? claimsOf(m) : undefined;
  if (!m) return { state: 'invalid', codes, summary: 'content credentials present but no active manifest', claims };
  const who = claims?.signer ? ` signed by "${claims.signer}"` : '';
  if (hardFailures.length) {
    return { state: 'invalid', codes, summary: `content credentials INVALID${who}: ${hardFailures.map((f) => f.code + (f.explanation ? ` (${f.explanation})` : '')).join('; ')}`, claims };
  }
  if (store.validation_state === 'Trusted' && trustGiven && !untrusted) return { state: 'trusted', codes, summary: `valid content credentials${who}, trusted (chains to a given trust anchor)`, claims };
  return {
    state: 'untrusted',
    codes,
    summary: `valid content credentials${who}, but the signer is not trusted${trustGiven ? ' (not on the given trust list)' : ' (no trust list given: --trust root.pem)'}: anyone can make such a certificate`,
    claims,
  };
}

function claimsOf(m: ManifestJson): NonNullable<CredentialReport['claims']> {
  const actions: NonNullable<CredentialReport['claims']>['actions'] = [];
  let diffuse: Partial<GenerationRecord> | undefined;
  for (const a of m.assertions ?? []) {
    if (a.label.startsWith('c2pa.actions')) {
      for (const act of (a.data as { actions?: { action: string; digitalSourceType?: string; softwareAgent?: { name?: string; version?: string } | string }[] }).actions ?? []) {
        const agent = typeof act.softwareAgent === 'string' ? act.softwareAgent : act.softwareAgent ? [act.softwareAgent.name, act.softwareAgent.version].filter(Boolean).join(' ') : undefined;
        actions.push({ action: act.action, digitalSourceType: act.digitalSourceType, softwareAgent: agent });
      }
    }
    if (a.label === DIFFUSE_ASSERTION) diffuse = a.data as Partial<GenerationRecord>;
  }
  const gen = m.claim_generator_info?.[0];
  return {
    generator: m.claim_generator ?? (gen ? [gen.name, gen.version].filter(Boolean).join(' ') : undefined),
    signer: m.signature_info?.common_name,
    issuer: m.signature_info?.issuer,
    signedAt: m.signature_info?.time,
    actions,
    ingredients: (m.ingredients ?? []).map((i) => i.title ?? '(untitled)'),
    diffuse,
  };
}
