/**
 * What a scan asks of the workers, and the ids that follow from it. Two parts:
 * - Settings travel in Redis: how to inspect (the options of `diffuse inspect` that are not
 *   secrets: inversion steps, searches, trust lists of public certificates).
 * - Requirements never carry a secret: the Diffuse version, the SHA-256 of the model's weights and
 *   a fingerprint of the watermark key. Each set of requirements has its own queue, so a worker
 *   only ever sees jobs it can run; it says which scans it leaves to other workers.
 */
import { createHash } from 'node:crypto';
import type { WatermarkKey } from '../forensics/key.js';
import type { TrustSettings } from '../provenance/index.js';
import { DIFFUSE_VERSION } from '../provenance/record.js';

/** How each image of a scan is inspected (InspectorOptions without the secrets and the machine's own choices). */
export interface ScanSettings {
  metadataOnly?: boolean;
  trust?: TrustSettings;
  inversionSteps?: number;
  fpr?: number;
  maxRotation?: number;
  geometric?: boolean;
  resize?: boolean;
  prompt?: string;
}

/** What a worker must have to run a scan's jobs. */
export interface Requirements {
  version: string;
  /** SHA-256 of the run's weights (DiffusionPipeline.modelHash); null: file-level inspection only. */
  model: string | null;
  /** keyFingerprint of the watermark key; null: the watermark is not checked (or, generating, not written). */
  key: string | null;
  /** Generation only: signerFingerprint of the certificate the images are signed with; null: unsigned. */
  signer?: string | null;
}

/** A name for the key that reveals nothing of it: a hash of its secret under a fixed label. */
export function keyFingerprint(key: WatermarkKey): string {
  return createHash('sha256').update('diffuse watermark key fingerprint\0').update(Buffer.from(key.secret, 'base64')).digest('hex').slice(0, 16);
}

/** This version's requirements for a model hash and key. */
export function requirementsOf(model: string | null, key: WatermarkKey | undefined): Requirements {
  return { version: DIFFUSE_VERSION, model, key: key ? keyFingerprint(key) : null };
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** JSON with sorted keys: the same settings always hash the same. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** What a queue's jobs do: inspect images (scans) or make them (generation). */
export type JobKind = 'scan' | 'generate';

/** The BullMQ queue of one kind of job under one set of requirements. */
export function queueName(r: Requirements, kind: JobKind = 'scan'): string {
  return `${kind}-${sha(canonical(r)).slice(0, 16)}`;
}

/** The id of settings under requirements: the part of a job's id that is not the image. */
export function settingsId(s: object, r: Requirements): string {
  return sha(canonical({ s, r })).slice(0, 16);
}

/** A job's id: one per image content and settings, so the same image enqueued twice is one job. */
export function jobId(sid: string, contentSha256: string): string {
  return `${sid}-${contentSha256}`;
}

/** What a scan's requirements lack on a worker, in words ('' when it can run them). */
export function requirementsMismatch(scan: Requirements, worker: Requirements): string {
  const out: string[] = [];
  if (scan.version !== worker.version) out.push(`Diffuse ${scan.version} (this worker runs ${worker.version})`);
  if (scan.model !== worker.model) out.push(scan.model ? `the model with weights SHA-256 ${scan.model.slice(0, 12)}... (${worker.model ? `this worker has ${worker.model.slice(0, 12)}...` : 'this worker has no --run'})` : `no model (this worker has --run ${worker.model?.slice(0, 12)}...)`);
  if (scan.key !== worker.key) out.push(scan.key ? `the watermark key with fingerprint ${scan.key} (${worker.key ? `this worker's is ${worker.key}` : 'this worker has no --key'})` : `no watermark key (this worker has --key ${worker.key})`);
  if (scan.signer !== undefined && scan.signer !== (worker.signer ?? null)) out.push(scan.signer ? `the signing certificate with fingerprint ${scan.signer} (${worker.signer ? `this worker's is ${worker.signer}` : 'this worker has no --c2pa'})` : `unsigned images (this worker has --c2pa ${worker.signer})`);
  return out.join('; ');
}
