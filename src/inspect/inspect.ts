/**
 * An analyst's report on one image: three independent signals, each with what it can and cannot
 * say, and a verdict line that names the signal it rests on.
 *
 * - Content credentials (C2PA): what the file declares about itself, and whether the declaration
 *   is intact and signed by someone the analyst trusts. Absence means unknown provenance.
 * - Watermark: whether this generator, with this key, made the image (a p-value).
 * - Detector: whether the image looks like a sample of this model (a calibrated probability).
 */
import { readFile } from 'node:fs/promises';
import { readImage } from '../data/read-image.js';
import { DetectorCalibration, DetectorProfile, chooseProfile, detectSynthetic } from '../forensics/synthetic.js';
import { estimateJpegQuality } from '../forensics/jpeg-quality.js';
import { detectWatermark } from '../forensics/detect.js';
import { describeMap, isMoved } from '../forensics/geometry-search.js';
import type { WatermarkKey } from '../forensics/key.js';
import type { SearchThreads } from '../forensics/geometry-threads.js';
import type { DiffusionPipeline } from '../pipelines/index.js';
import { CredentialReport, TRAINED_ALGORITHMIC_MEDIA, imageFormat, readCredentials } from '../provenance/index.js';

/** The report on one image. Field names are stable (docs/INSPECT.md). */
export interface InspectReport {
  file: string;
  /** 'png', 'jpeg', or what the file's first bytes say. */
  format?: string;
  width?: number;
  height?: number;
  /** Set when the image could not be inspected at all (unreadable file); the other fields are then absent. */
  error?: string;
  credentials?: CredentialReport;
  watermark?: WatermarkSignal;
  detector?: DetectorSignal;
  verdict?: Verdict;
}

export type WatermarkSignal =
  | { status: 'checked'; detected: boolean; pValue: number; log10P: number; fpr: number; payload?: number; inversionSteps: number; maxRotation?: number; rotation?: number; geometric?: boolean; found?: string }
  | { status: 'skipped'; reason: string };

export type DetectorSignal =
  | { status: 'checked'; score: number; probability: number; flagged: boolean; profile: DetectorProfile; heatMap?: string }
  | { status: 'skipped'; reason: string };

export interface Verdict {
  /** One line for a person. */
  summary: string;
  /** The signal the summary rests on. */
  restsOn: 'credentials' | 'watermark' | 'detector' | 'none';
}

export interface InspectOptions {
  pipe: DiffusionPipeline;
  /** The watermark key; without it the watermark is not checked. */
  key?: WatermarkKey;
  /** The detector calibration (the run's detector.json); without it the detector is skipped. */
  calibration?: DetectorCalibration;
  /** Why there is no calibration, for the report. */
  calibrationMissing?: string;
  /** PEM text of trusted root certificates for content credentials. */
  trustAnchors?: string;
  /** DDIM inversion steps of the watermark check (default 50). */
  inversionSteps?: number;
  /** False-positive rate of the watermark decision (default 0.01). */
  fpr?: number;
  /** Also look for the watermark with the image turned back by up to this many degrees (default 0). */
  maxRotation?: number;
  /** Also look for the watermark after a turn by any angle or a crop enlarged back to size (default off). */
  geometric?: boolean;
  /** Threads the geometric search runs on (default: this thread); see SearchThreads. */
  searchThreads?: SearchThreads;
  /** Resize images of another size to the model's (explicit: scores are then less reliable). */
  resize?: boolean;
  /** Text-conditional runs: the prompt to invert with (default empty). */
  prompt?: string;
  /** Called with the heat map ([H, W], mean |eps|) so the caller can keep or write it; returns the file it went to, if any. */
  saveHeatMap?: (file: string, map: Float32Array, shape: [number, number]) => Promise<string | undefined>;
  onStep?: (what: string) => void;
}

/** Inspects one image file. Never throws for a bad file: the report's `error` says what is wrong. */
export async function inspectImage(file: string, o: InspectOptions): Promise<InspectReport> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { file, error: code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a folder, not an image' : `cannot read (${code ?? (e as Error).message})` };
  }
  const report: InspectReport = { file, format: formatName(bytes) };
  const { default: sharp } = await import('sharp');
  try {
    const meta = await sharp(bytes).metadata();
    report.width = meta.width;
    report.height = meta.height;
    report.format ??= meta.format;
  } catch {
    return { ...report, error: `cannot decode image (not a PNG, JPEG, WebP, GIF, TIFF or AVIF file, or truncated)` };
  }
  try {
    report.credentials = await readCredentials(bytes, { trustAnchors: o.trustAnchors });
  } catch (e) {
    report.credentials = { state: 'invalid', codes: ['manifest.unreadable'], summary: `content credentials could not be read: ${(e as Error).message.split('\n')[0]}` };
  }
  const [c, h] = o.pipe.imageShape;
  let image: { data: Float32Array; shape: [number, number, number] } | undefined;
  let skip: string | undefined;
  try {
    image = await readImage(file, { channels: c as 1 | 3, size: h, resize: o.resize, convert: true });
  } catch (e) {
    skip = (e as Error).message.replace(`${file} `, '').replace(`${file}: `, '');
    if (/takes \d+x\d+/.test(skip)) skip = `the image is ${report.width}x${report.height} but the model takes ${h}x${h}: a score would be meaningless (pass --resize to resize it explicitly; scores are then less reliable)`;
  }
  if (!image) {
    report.watermark = { status: 'skipped', reason: skip ?? 'image unreadable' };
    report.detector = { status: 'skipped', reason: skip ?? 'image unreadable' };
  } else {
    const batch = { data: image.data, count: 1, shape: image.shape };
    if (o.key) {
      const steps = o.inversionSteps ?? 50;
      const [d] = await detectWatermark(batch, o.pipe, o.key, {
        steps,
        fpr: o.fpr ?? 0.01,
        maxRotation: o.maxRotation ?? 0,
        geometric: o.geometric ?? false,
        threads: o.searchThreads ?? 1,
        ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
        onStep: (i, total) => o.onStep?.(`watermark: inverting, step ${i + 1}/${total}`),
      });
      const turned = {
        ...(o.maxRotation ? { maxRotation: o.maxRotation, ...(d.detected ? { rotation: d.rotation } : {}) } : {}),
        ...(o.geometric ? { geometric: true, ...(d.detected && isMoved(d.map) ? { found: describeMap(d.map) } : {}) } : {}),
      };
      report.watermark = { status: 'checked', detected: d.detected, pValue: d.pValue, log10P: d.log10P, fpr: d.fpr, inversionSteps: steps, ...(d.detected ? { payload: d.payload } : {}), ...turned };
    } else report.watermark = { status: 'skipped', reason: 'no watermark key given (--key)' };
    if (o.calibration) {
      o.onStep?.('detector');
      const profile = chooseProfile(o.calibration, report.format === 'jpeg' ? estimateJpegQuality(bytes) : undefined);
      const [d] = await detectSynthetic(batch, o.pipe, o.calibration, { profile });
      report.detector = { status: 'checked', score: d.score, probability: d.probability, flagged: d.flagged, profile };
      const saved = await o.saveHeatMap?.(file, d.heatMap, [image.shape[1], image.shape[2]]);
      if (saved) report.detector.heatMap = saved;
    } else report.detector = { status: 'skipped', reason: o.calibrationMissing ?? 'no detector calibration' };
  }
  report.verdict = verdict(report);
  return report;
}

function formatName(bytes: Uint8Array): string | undefined {
  const f = imageFormat(bytes);
  return f === 'image/png' ? 'png' : f === 'image/jpeg' ? 'jpeg' : undefined;
}

/** The verdict: the strongest positive signal first (trusted credentials, watermark, untrusted credentials, detector). */
export function verdict(r: InspectReport): Verdict {
  const cr = r.credentials;
  const generated = cr?.claims?.actions.some((a) => a.digitalSourceType === TRAINED_ALGORITHMIC_MEDIA);
  const wm = r.watermark?.status === 'checked' ? r.watermark : undefined;
  const det = r.detector?.status === 'checked' ? r.detector : undefined;
  const pct = (p: number) => `${(100 * p).toFixed(p > 0.995 || p < 0.005 ? 1 : 0)}%`;
  const detLine = det ? `; the detector ${det.flagged ? 'flags it' : 'does not flag it'} (probability ${pct(det.probability)})` : '';
  const wmLine = wm ? `; watermark ${wm.detected ? `present (payload ${wm.payload})` : 'not found'}` : '';
  if (cr?.state === 'invalid') {
    return { restsOn: 'credentials', summary: `TAMPERED OR FORGED CREDENTIALS: the file's content credentials fail validation (${cr.codes.filter((c) => !c.startsWith('signingCredential.trusted')).join(', ') || 'unreadable'}); what they claim cannot be relied on${wmLine}${detLine}` };
  }
  if (cr?.state === 'trusted') {
    return { restsOn: 'credentials', summary: `${generated ? 'GENERATED' : 'DECLARED'}: trusted content credentials from "${cr.claims?.signer ?? 'unknown signer'}" declare ${generated ? 'it was made by a trained model' : `actions ${cr.claims?.actions.map((a) => a.action).join(', ') || 'none'}`}${wmLine}${detLine}` };
  }
  if (wm?.detected) {
    return { restsOn: 'watermark', summary: `GENERATED by this model with this key: watermark found (payload ${wm.payload}, p = ${formatP(wm.pValue, wm.log10P)}; false positives at most ${pct(wm.fpr)})${detLine}` };
  }
  if (cr?.state === 'untrusted') {
    return { restsOn: 'credentials', summary: `DECLARED ${generated ? 'GENERATED' : 'PROVENANCE'} by an untrusted signer ("${cr.claims?.signer ?? 'unknown'}"): the declaration is intact but anyone can make such a certificate${wmLine}${detLine}` };
  }
  if (det?.flagged) {
    return { restsOn: 'detector', summary: `LIKELY A SAMPLE OF THIS MODEL: the detector flags it (probability ${pct(det.probability)}; about 1% of real images are flagged too); no credentials${wm ? ', no watermark' : ''}` };
  }
  const checked = [wm ? 'watermark' : '', det ? 'detector' : ''].filter(Boolean);
  return {
    restsOn: 'none',
    summary: `NO EVIDENCE that this model made it${checked.length ? ` (${checked.join(' and ')} negative${det ? `, probability ${pct(det.probability)}` : ''})` : ' (no signal could be checked)'}; provenance unknown: no content credentials. Other generators are not covered.`,
  };
}

/** A p-value for people: the number, or 1e-N where it underflows. */
export function formatP(p: number, log10P: number): string {
  return p > 0 ? p.toExponential(2) : `1e${Math.floor(log10P)}`;
}
