/**
 * Reading and judging content credentials with the C2PA reference implementation (c2pa-rs, as
 * @contentauth/c2pa-wasm), for files from any issuer: ChatGPT, Adobe Firefly, Google, cameras,
 * and Diffuse itself.
 *
 * Two questions are kept apart, as C2PA's validation codes keep them apart:
 * - integrity: is the manifest intact and bound to these bytes? A failed claim signature, a data
 *   hash that no longer matches, or an assertion or ingredient whose hash fails means the file or
 *   its manifest changed after signing: tampering.
 * - trust: who signed it, and does the analyst trust them? An expired or not-yet-valid
 *   certificate, a signer on no trust list, or a time-stamp that cannot be trusted is a question
 *   about the signer, not evidence of tampering. Certificates expire; genuine manifests stay
 *   genuine.
 *
 * Then the history: the active manifest and, through each ingredient's manifest, every earlier
 * one, with their actions; the first `c2pa.created` action of the lineage says how the image came
 * to be (its IPTC digital source type: trainedAlgorithmicMedia for generative AI).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pngChunks } from '../data/png-chunks.js';
import { DIFFUSE_ASSERTION, GenerationRecord } from './record.js';
import { describeSourceType, isGenerativeSource } from './source-type.js';

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
 * The overall state: 'absent' (no manifest: unknown provenance, not evidence of anything);
 * 'trusted' (intact, signed by a certificate that chains to a trust anchor given and valid);
 * 'untrusted' (intact, but the signer is not trusted: on no list given, expired, revoked...;
 * `trust` says why); 'invalid' (tampered with, or damaged so that it cannot be checked:
 * `integrity` says which); 'remote' (the file points to credentials stored online, which Diffuse
 * does not fetch).
 */
export type CredentialState = 'absent' | 'trusted' | 'untrusted' | 'invalid' | 'remote';

/** Whether the manifest and the file are as signed. */
export type Integrity = 'intact' | 'tampered' | 'damaged' | 'unverifiable';

/** One action of a manifest. */
export interface ActionClaim {
  action: string;
  /** The IPTC digital source type URI, from the action or (Adobe) its parameters. */
  digitalSourceType?: string;
  softwareAgent?: string;
  /** A model or service the action names in its parameters (Adobe: com.adobe.details / modelVersion). */
  model?: string;
}

/** What one manifest claims. */
export interface ManifestClaims {
  label?: string;
  generator?: string;
  signer?: string;
  issuer?: string;
  /** The signing time: from the trusted time-stamp when there is one, else the signer's claim. */
  signedAt?: string;
  /** Whether signedAt comes from a time-stamp that validated. */
  timeStamped?: boolean;
  actions: ActionClaim[];
  ingredients: string[];
  /** Diffuse's own record, when the manifest has one. */
  diffuse?: Partial<GenerationRecord>;
  /** 0 for the active manifest, 1 for its ingredients' manifests, and so on. */
  depth: number;
  /** The ingredient (title and relationship) through which this manifest was reached. */
  via?: string;
}

/** How the image came to be, as the credentials declare it. */
export interface DeclaredOrigin {
  /** The action that declares it (c2pa.created, or another action that names a source type). */
  action: string;
  /** IPTC short name, e.g. trainedAlgorithmicMedia. */
  sourceType?: string;
  /** The source type in words. */
  sourceWords?: string;
  /** Generative AI, wholly or in part. */
  generative: boolean;
  softwareAgent?: string;
  model?: string;
  /** Who made and signed the manifest that holds the action. */
  generator?: string;
  signer?: string;
  /** How deep in the history (0: the active manifest). */
  depth: number;
}

export interface CredentialReport {
  state: CredentialState;
  /** Present when a manifest was found. */
  integrity?: Integrity;
  /** The signer's standing, when integrity held: problems are in words ('certificate expired', ...). */
  trust?: { trustListGiven: boolean; onTrustList: boolean; problems: string[] };
  /** C2PA validation codes of failures and of the trust outcome. */
  codes: string[];
  /** One line for a person. */
  summary: string;
  /** Claims of the active manifest, when one could be read. */
  claims?: ManifestClaims;
  /** Every manifest of the history: the active one first, then its ingredients' manifests (depth first). */
  chain?: ManifestClaims[];
  /** The first creation the history declares (or, without one, an action that names a source type). */
  origin?: DeclaredOrigin;
  /** Whether any manifest in the history declares generative AI. */
  declaresGenerativeAI?: boolean;
  /** The remote manifest's address, for state 'remote' when the file names it. */
  remoteUrl?: string;
}

/** Trust settings for reading: PEM anchors, an allowed list of end-entity certificates, extended key usages. */
export interface TrustSettings {
  /** PEM text of trusted root (and intermediate) certificates: the C2PA trust list, or your own. */
  anchors?: string;
  /** PEM certificates or base64 SHA-256 hashes of end-entity certificates trusted as they are (the C2PA allowed list). */
  allowed?: string;
  /** Extended key usage OIDs accepted, one per line (the C2PA trust list's store.cfg). */
  config?: string;
}

/**
 * The wasm reader is asked one file at a time: callers may inspect several images at once, and
 * one wasm instance's async calls are not documented as safe to interleave.
 */
let readerQueue: Promise<unknown> = Promise.resolve();

/**
 * Validates the credentials in an image file's bytes. `trustAnchors` (PEM) is kept for callers of
 * the first version; `trust` takes the full settings. `remoteUrl` and `remoteChecked`: the remote
 * manifest address the caller found in the XMP, and that it looked (so the bytes need no scan).
 */
export function readCredentials(bytes: Uint8Array, o: { trustAnchors?: string; trust?: TrustSettings; remoteUrl?: string; remoteChecked?: boolean } = {}): Promise<CredentialReport> {
  const trust: TrustSettings = { ...o.trust, ...(o.trustAnchors ? { anchors: [o.trust?.anchors, o.trustAnchors].filter(Boolean).join('\n') } : {}) };
  const turn = readerQueue.then(() => readOne(bytes, trust, o.remoteUrl, o.remoteChecked ?? false));
  readerQueue = turn.catch(() => undefined);
  return turn;
}

/** The media type c2pa-rs needs, from the file's first bytes. */
export function containerFormat(b: Uint8Array): string | undefined {
  const at = (i: number, s: string) => [...s].every((c, k) => b[i + k] === c.charCodeAt(0));
  if (b[0] === 0x89 && at(1, 'PNG')) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (at(0, 'RIFF') && at(8, 'WEBP')) return 'image/webp';
  if (at(0, 'GIF8')) return 'image/gif';
  if ((at(0, 'II') && b[2] === 42) || (at(0, 'MM') && b[3] === 42)) return 'image/tiff';
  if (at(4, 'ftyp')) {
    const brand = String.fromCharCode(...b.subarray(8, 12));
    if (brand === 'avif' || brand === 'avis') return 'image/avif';
    if (['heic', 'heix', 'mif1', 'msf1', 'heim', 'heis'].includes(brand)) return 'image/heic';
  }
  return undefined;
}

/**
 * Whether the bytes hold a C2PA manifest store at all, found where each container keeps it (a PNG
 * `caBX` chunk, a JPEG APP11 segment before the image data, a WebP `C2PA` chunk; elsewhere a
 * JUMBF description box whose type begins 'c2pa' anywhere in the file). Found even when the store
 * is cut short, which c2pa-rs reports as "not found": a damaged manifest must not read as an
 * absent one.
 */
export function hasManifestStore(bytes: Uint8Array): boolean {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = containerFormat(b);
  if (format === 'image/png') {
    // A caBX chunk cut off by the end of the file still counts: a damaged store.
    for (const c of pngChunks(b, 1_000_000)) if (c.type === 'caBX') return true;
    return false;
  }
  if (format === 'image/jpeg') {
    for (let pos = 2; pos + 4 <= b.length; ) {
      if (b[pos] !== 0xff) break; // not a marker: fall back to the scan below
      const marker = b[pos + 1];
      if (marker === 0xff) {
        pos++;
        continue;
      }
      if (marker === 0xda || marker === 0xd9) return false; // image data (or the end): C2PA lives in APP11 before it
      const len = b.readUInt16BE(pos + 2);
      if (marker === 0xeb && b.subarray(pos + 4, pos + 2 + len).indexOf('c2pa', 0, 'latin1') >= 0) return true;
      pos += 2 + len;
    }
  }
  if (format === 'image/webp') {
    for (let pos = 12; pos + 8 <= b.length; ) {
      if (b.toString('latin1', pos, pos + 4) === 'C2PA') return true;
      pos += 8 + b.readUInt32LE(pos + 4) + (b.readUInt32LE(pos + 4) & 1);
    }
    return false;
  }
  return b.indexOf('jumdc2pa', 0, 'latin1') >= 0;
}

const NO_MANIFEST = 'no content credentials: provenance unknown (absence is not evidence either way: anyone can strip them)';

async function readOne(bytes: Uint8Array, trust: TrustSettings, remoteUrl: string | undefined, remoteChecked: boolean): Promise<CredentialReport> {
  const format = containerFormat(bytes);
  const present = hasManifestStore(bytes);
  if (!format) return present ? damaged('a manifest store in a file whose format could not be recognised') : { state: 'absent', codes: [], summary: NO_MANIFEST };
  // No store in the file: nothing for the reference implementation to validate (and most files
  // have none, so the wasm reader is spared them). A remote reference is said as such.
  if (!present && remoteUrl) return remote(remoteUrl);
  // A remote reference lives in the XMP; callers that read it already (inspect) say so, others get a scan.
  if (!present && (remoteChecked || Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf('dcterms:provenance', 0, 'latin1') < 0)) return { state: 'absent', codes: [], summary: NO_MANIFEST };
  const mod = await c2pa();
  const trustGiven = Boolean(trust.anchors || trust.allowed);
  const settings = {
    verify: { verify_trust: trustGiven, remote_manifest_fetch: false, ocsp_fetch: false },
    ...(trustGiven ? { trust: { ...(trust.anchors ? { trust_anchors: trust.anchors } : {}), ...(trust.allowed ? { allowed_list: trust.allowed } : {}), ...(trust.config ? { trust_config: trust.config } : {}) } } : {}),
  };
  let reader: Awaited<ReturnType<C2paWasm['WasmReader']['fromBytes']>>;
  try {
    reader = await mod.WasmReader.fromBytes(format, bytes, JSON.stringify(settings));
  } catch (e) {
    const msg = String((e as Error)?.message ?? e).split('\n')[0];
    if (/RemoteManifest/.test(msg)) return remote(remoteUrl);
    if (/JumbfNotFound|ProvenanceMissing|UnsupportedType/.test(msg) && !present) return { state: 'absent', codes: [], summary: NO_MANIFEST };
    if (/Prerelease/.test(msg)) return { ...damaged('a manifest in a pre-release format (before C2PA 1.0) that cannot be validated'), integrity: 'unverifiable', codes: ['manifest.prerelease'] };
    if (/UnknownAlgorithm|AlgorithmUnsupported/i.test(msg)) return { ...damaged('the manifest is signed with an unknown or unsupported algorithm, so its signature cannot be checked'), integrity: 'unverifiable', codes: ['algorithm.unsupported'] };
    return damaged(`the manifest store is damaged or truncated (${msg})`);
  }
  try {
    return judge(JSON.parse(reader.json()) as ManifestStoreJson, trustGiven);
  } finally {
    reader.free();
  }
}

function remote(remoteUrl: string | undefined): CredentialReport {
  return {
    state: 'remote',
    codes: ['manifest.inaccessible'],
    summary: `the file points to content credentials stored online${remoteUrl ? ` (${remoteUrl})` : ''}; not fetched (Diffuse reads nothing from the network): check them at the address with a C2PA validator`,
    ...(remoteUrl ? { remoteUrl } : {}),
  };
}

function damaged(why: string): CredentialReport {
  return { state: 'invalid', integrity: 'damaged', codes: ['manifest.unreadable'], summary: `content credentials present but INVALID (damaged): ${why}; what they claim cannot be relied on` };
}

interface StatusJson {
  code: string;
  explanation?: string;
}
interface ManifestStoreJson {
  active_manifest?: string;
  manifests?: Record<string, ManifestJson>;
  validation_status?: StatusJson[];
  validation_state?: string;
  validation_results?: {
    activeManifest?: { success?: StatusJson[]; failure?: StatusJson[]; informational?: StatusJson[] };
    ingredientDeltas?: { ingredientAssertionURI?: string; validationDeltas?: { failure?: StatusJson[]; informational?: StatusJson[] } }[];
  };
}
interface IngredientJson {
  title?: string;
  relationship?: string;
  active_manifest?: string;
}
interface ManifestJson {
  label?: string;
  claim_generator?: string;
  claim_generator_info?: { name?: string; version?: string }[];
  signature_info?: { issuer?: string; common_name?: string; time?: string; cert_serial_number?: string };
  assertions?: { label: string; data: unknown }[];
  ingredients?: IngredientJson[];
}

/**
 * Failure codes that concern the signer and time, not the bytes: trust questions. Everything
 * else that fails (claimSignature.mismatch, assertion.dataHash.mismatch, assertion.hashedURI.mismatch,
 * ingredient.manifest.missing, claim.malformed, ...) is an integrity failure.
 */
const TRUST_CODES: Record<string, string> = {
  'signingCredential.untrusted': 'the signer is on no trust list given',
  'signingCredential.expired': 'the signing certificate has expired (and no trusted time-stamp shows it was valid when it signed)',
  'signingCredential.notYetValid': 'the signing certificate is not yet valid',
  'signingCredential.invalid': 'the signing certificate is not acceptable for C2PA signing (its key usage or chain does not validate)',
  'signingCredential.ocsp.revoked': 'the signing certificate has been REVOKED by its issuer',
  'signingCredential.ocsp.unknown': "the certificate's revocation status is unknown",
  'signingCredential.ocsp.inaccessible': "the certificate's revocation status could not be checked",
  'claimSignature.outsideValidity': "it was signed outside the certificate's validity period",
  'timeStamp.untrusted': 'its time-stamp authority is not trusted',
  'timeStamp.outsideValidity': "its time-stamp lies outside the certificate's validity",
  'timeStamp.malformed': 'its time-stamp is malformed',
  'algorithm.deprecated': 'it uses a deprecated signing algorithm',
};

function isTrustCode(code: string): boolean {
  return code in TRUST_CODES || code.startsWith('cawg.') || code.startsWith('signingCredential.ocsp');
}

function judge(store: ManifestStoreJson, trustGiven: boolean): CredentialReport {
  const active = store.active_manifest ? store.manifests?.[store.active_manifest] : undefined;
  const results = store.validation_results;
  const failures = [...(results?.activeManifest?.failure ?? store.validation_status ?? []), ...(results?.ingredientDeltas ?? []).flatMap((d) => d.validationDeltas?.failure ?? [])];
  const successes = results?.activeManifest?.success ?? [];
  const codes = [...new Set([...failures.map((f) => f.code), ...successes.map((s) => s.code).filter((c) => c.startsWith('signingCredential'))])];
  if (!active) return { ...damaged('a manifest store without an active manifest'), codes };
  const timeStamped = successes.some((s) => s.code === 'timeStamp.validated');
  const chain = walkChain(store, store.active_manifest as string, timeStamped);
  const claims = chain[0];
  const origin = originOf(chain);
  const declaresGenerativeAI = chain.some((m) => m.actions.some((a) => isGenerativeSource(a.digitalSourceType)));
  const base = { codes, claims, chain, ...(origin ? { origin } : {}), declaresGenerativeAI };
  const who = claims.signer ? ` signed by "${claims.signer}"${claims.issuer ? ` (${claims.issuer})` : ''}` : '';
  const when = claims.signedAt ? `${claims.timeStamped ? ', time-stamped' : ', signer says'} ${claims.signedAt}` : '';

  const integrityFailures = failures.filter((f) => !isTrustCode(f.code));
  if (integrityFailures.length) {
    const list = [...new Set(integrityFailures.map((f) => f.code))];
    return {
      ...base,
      state: 'invalid',
      integrity: 'tampered',
      summary: `content credentials${who} FAIL their integrity check (${list.join(', ')}): the file or its manifest changed after signing; what they claim cannot be relied on`,
    };
  }
  const problems = [...new Set(failures.map((f) => f.code))].map((c) => TRUST_CODES[c] ?? (c.startsWith('cawg.') ? `an identity assertion could not be verified (${c})` : c));
  const onTrustList = trustGiven && store.validation_state === 'Trusted' && !failures.some((f) => f.code === 'signingCredential.untrusted');
  const trust = { trustListGiven: trustGiven, onTrustList, problems };
  if (onTrustList && problems.length === 0) {
    return { ...base, state: 'trusted', integrity: 'intact', trust, summary: `valid content credentials${who}${when}: signature and hashes intact, and the signer chains to your trust list` };
  }
  if (!trustGiven) problems.push('no trust list given (--trust), so the signer was not checked against one');
  return {
    ...base,
    state: 'untrusted',
    integrity: 'intact',
    trust,
    summary: `content credentials${who}${when}: signature and hashes intact (not tampered with); trust not established: ${problems.join('; ')}`,
  };
}

/** The active manifest and every manifest reached through ingredients, depth first, each once. */
function walkChain(store: ManifestStoreJson, activeLabel: string, activeTimeStamped: boolean): ManifestClaims[] {
  const out: ManifestClaims[] = [];
  const seen = new Set<string>();
  const visit = (label: string, depth: number, via?: string) => {
    const m = store.manifests?.[label];
    if (!m || seen.has(label) || depth > 64) return;
    seen.add(label);
    out.push({ ...claimsOf(m, depth, via), label, ...(depth === 0 && activeTimeStamped ? { timeStamped: true } : {}) });
    // Parents first: the lineage of the image before other ingredients.
    const ings = [...(m.ingredients ?? [])].sort((a, b) => Number(b.relationship === 'parentOf') - Number(a.relationship === 'parentOf'));
    for (const ing of ings) if (ing.active_manifest) visit(ing.active_manifest, depth + 1, `${ing.title ?? '(untitled)'} (${ing.relationship ?? 'ingredient'})`);
  };
  visit(activeLabel, 0);
  return out;
}

function claimsOf(m: ManifestJson, depth: number, via?: string): ManifestClaims {
  const actions: ActionClaim[] = [];
  let diffuse: Partial<GenerationRecord> | undefined;
  for (const a of m.assertions ?? []) {
    if (a.label.startsWith('c2pa.actions')) {
      type ActionJson = { action: string; digitalSourceType?: string; softwareAgent?: { name?: string; version?: string } | string; parameters?: Record<string, unknown> };
      for (const act of (a.data as { actions?: ActionJson[] }).actions ?? []) {
        const agent = typeof act.softwareAgent === 'string' ? act.softwareAgent : act.softwareAgent ? [act.softwareAgent.name, act.softwareAgent.version].filter(Boolean).join(' ') : undefined;
        const p = act.parameters ?? {};
        const str = (k: string) => (typeof p[k] === 'string' ? (p[k] as string) : undefined);
        const model = [str('com.adobe.details'), str('com.adobe.modelVersion')].filter(Boolean).join(' ') || undefined;
        const sourceType = act.digitalSourceType ?? str('com.adobe.digitalSourceType') ?? str('digitalSourceType');
        actions.push({ action: act.action, ...(sourceType ? { digitalSourceType: sourceType } : {}), ...(agent ? { softwareAgent: agent } : {}), ...(model ? { model } : {}) });
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
    depth,
    ...(via ? { via } : {}),
  };
}

/**
 * The declared origin: the c2pa.created action deepest in the history (the first creation; its
 * later manifests record edits), else the deepest action that names a source type.
 */
function originOf(chain: readonly ManifestClaims[]): DeclaredOrigin | undefined {
  const pick = (test: (a: ActionClaim) => boolean) => {
    let best: { m: ManifestClaims; a: ActionClaim } | undefined;
    for (const m of chain) for (const a of m.actions) if (test(a) && (!best || m.depth > best.m.depth)) best = { m, a };
    return best;
  };
  const found = pick((a) => a.action === 'c2pa.created') ?? pick((a) => a.digitalSourceType !== undefined);
  if (!found) return undefined;
  const { m, a } = found;
  const st = describeSourceType(a.digitalSourceType);
  return {
    action: a.action,
    ...(st ? { sourceType: st.name, sourceWords: st.words } : {}),
    generative: isGenerativeSource(a.digitalSourceType),
    ...(a.softwareAgent ? { softwareAgent: a.softwareAgent } : {}),
    ...(a.model ? { model: a.model } : {}),
    ...(m.generator ? { generator: m.generator } : {}),
    ...(m.signer ? { signer: m.signer } : {}),
    depth: m.depth,
  };
}
