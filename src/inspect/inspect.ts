/**
 * An analyst's report on one image, from any source. File-level signals need no model:
 *
 * - Content credentials (C2PA): what the file declares about itself (who made it, with which
 *   tool, whether by generative AI), whether the declaration is intact, and whether its signer is
 *   one the analyst trusts. Absence means unknown provenance.
 * - Metadata: generation parameters that Stable Diffusion front ends and NovelAI write, the IPTC
 *   digital source type in XMP, EXIF software and camera. Declared, not proven: anyone can write
 *   or strip it.
 *
 * - Open watermark: the invisible mark the Stable Diffusion code bases write (invisible-watermark's
 *   dwtDct; SD 1.x, SD 2.x, SDXL), read from the pixels with the reference decoder's arithmetic.
 *
 * With a Diffuse run (`pipe`), two model signals are added for images of the model's size:
 * - Watermark: whether this generator, with this key, made the image (a p-value).
 * - Detector: whether the image looks like a sample of this model (a calibrated probability).
 */
import { DataError } from '../data/errors.js';
import { MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, readRegularFile } from '../data/safe-file.js';
import { readImage } from '../data/read-image.js';
import { DetectorCalibration, DetectorProfile, chooseProfile, detectSynthetic } from '../forensics/synthetic.js';
import { estimateJpegQuality } from '../forensics/jpeg-quality.js';
import { detectWatermark } from '../forensics/detect.js';
import { describeMap, isMoved } from '../forensics/geometry-search.js';
import { MIN_PIXELS, readOpenWatermark } from '../forensics/invisible-watermark.js';
import type { Convention } from '../forensics/invisible-watermark.js';
import type { WatermarkKey } from '../forensics/key.js';
import type { SearchThreads } from '../forensics/geometry-threads.js';
import { MetadataReport, addHiddenMetadata, readMetadata } from '../metadata/read.js';
import type { DiffusionPipeline } from '../pipelines/index.js';
import { CredentialReport, TrustSettings, containerFormat, readCredentials } from '../provenance/index.js';

/** The report on one image. Field names are stable (docs/INSPECT.md). */
export interface InspectReport {
  file: string;
  /** 'png', 'jpeg', 'webp', ... from the file's first bytes, else what the decoder says. */
  format?: string;
  width?: number;
  height?: number;
  /** Set when the image could not be inspected at all (unreadable file); the other fields are then absent. */
  error?: string;
  credentials?: CredentialReport;
  /** Generation parameters, source type, software and camera the file's metadata declares. */
  metadata?: MetadataReport;
  /** The invisible watermark of the Stable Diffusion code bases (dwtDct). */
  openWatermark?: OpenWatermarkSignal;
  /** Diffuse's watermark: present only when a run was given. */
  watermark?: WatermarkSignal;
  detector?: DetectorSignal;
  verdict?: Verdict;
}

export type WatermarkSignal =
  | { status: 'checked'; detected: boolean; pValue: number; log10P: number; fpr: number; payload?: number; inversionSteps: number; maxRotation?: number; rotation?: number; geometric?: boolean; found?: string }
  | { status: 'skipped'; reason: string };

export type OpenWatermarkSignal =
  | {
      status: 'checked';
      /** The best reading's corrected p-value is below `alpha`. */
      found: boolean;
      /** The message that the best reading matches: sd1 | sd2 | sdxl, and in words. */
      mark: 'sd1' | 'sd2' | 'sdxl';
      name: string;
      /** How the encoder was called (8-bit or float image, BGR or RGB order), and in words. */
      convention: Convention;
      conventionWords: string;
      matched: number;
      bits: number;
      /** One-sided binomial p-value of `matched` of `bits`. */
      pValue: number;
      /** pValue times the readings tried (`tested`): what the decision uses. */
      correctedP: number;
      tested: number;
      alpha: number;
    }
  | { status: 'skipped'; reason: string };

export type DetectorSignal =
  | { status: 'checked'; score: number; probability: number; flagged: boolean; profile: DetectorProfile; heatMap?: string }
  | { status: 'skipped'; reason: string };

export interface Verdict {
  /** One line for a person. */
  summary: string;
  /** The signal the summary rests on. */
  restsOn: 'credentials' | 'watermark' | 'novelai-signature' | 'open-watermark' | 'metadata' | 'detector' | 'none';
}

export interface InspectOptions {
  /** The model of a Diffuse run: adds the watermark and detector signals. Without it, file-level signals only. */
  pipe?: DiffusionPipeline;
  /** The watermark key; without it the watermark is not checked. */
  key?: WatermarkKey;
  /** The detector calibration (the run's detector.json); without it the detector is skipped. */
  calibration?: DetectorCalibration;
  /** Why there is no calibration, for the report. */
  calibrationMissing?: string;
  /** PEM text of trusted root certificates for content credentials. */
  trustAnchors?: string;
  /** Trust lists for content credentials (anchors, allowed list, key usages). */
  trust?: TrustSettings;
  /** The largest file read (bytes; default 100 MB). */
  maxBytes?: number;
  /** The most pixels an image may declare before it is decoded (default 50 million). */
  maxPixels?: number;
  /** Skip the checks that decode the pixels (the open watermark): credentials and metadata only. */
  metadataOnly?: boolean;
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
export async function inspectImage(file: string, o: InspectOptions = {}): Promise<InspectReport> {
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(file, o.maxBytes ?? MAX_IMAGE_BYTES);
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
    return { file, error: e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message };
  }
  const report: InspectReport = { file, format: formatName(bytes) };
  const { default: sharp } = await import('sharp');
  try {
    // The header only: nothing is decoded here.
    const meta = await sharp(bytes).metadata();
    report.width = meta.width;
    report.height = meta.height;
    report.format ??= meta.format;
  } catch {
    if (!bytes.length) return { ...report, error: 'an empty file' };
    return { ...report, error: 'cannot decode image (not a PNG, JPEG, WebP, GIF, TIFF or AVIF file, or truncated)' };
  }
  report.metadata = readMetadata(bytes);
  try {
    report.credentials = await readCredentials(bytes, { trustAnchors: o.trustAnchors, trust: o.trust, remoteUrl: report.metadata.remoteManifest });
  } catch (e) {
    report.credentials = { state: 'invalid', integrity: 'damaged', codes: ['manifest.unreadable'], summary: `content credentials could not be read: ${(e as Error).message.split('\n')[0]}` };
  }
  if (!o.metadataOnly) await addPixelSignals(bytes, report, o.maxPixels ?? MAX_IMAGE_PIXELS);
  if (o.pipe) await addModelSignals(report, bytes, file, o.pipe, o);
  report.verdict = verdict(report);
  return report;
}

/**
 * The checks that need the pixels, from one decoding (8-bit, as stored: no ICC conversion, as the
 * reference tools read them): the Stable Diffusion invisible mark, metadata hidden in the low
 * bits (NovelAI, an AUTOMATIC1111 extension), and NovelAI's signature over the pixels.
 */
async function addPixelSignals(bytes: Buffer, r: InspectReport, maxPixels: number): Promise<void> {
  const pixels = (r.width ?? 0) * (r.height ?? 0);
  if (pixels > maxPixels) {
    r.openWatermark = { status: 'skipped', reason: `the image declares ${r.width}x${r.height} pixels, over the ${(maxPixels / 1e6).toFixed(0)}-megapixel decoding limit; not decoded` };
    return;
  }
  const { default: sharp } = await import('sharp');
  let raw: { data: Buffer; info: { width: number; height: number } };
  let hasAlpha = false;
  try {
    // ignoreIcc: the pixels as stored, as the reference decoders (cv2.imread, PIL) read them.
    const img = sharp(bytes, { limitInputPixels: maxPixels, ignoreIcc: true });
    hasAlpha = Boolean((await img.metadata()).hasAlpha);
    raw = await img.ensureAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    r.openWatermark = { status: 'skipped', reason: `the pixels could not be decoded (${(e as Error).message.split('\n')[0]})` };
    return;
  }
  const { width, height } = raw.info;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgb[i] = raw.data[j];
    rgb[i + 1] = raw.data[j + 1];
    rgb[i + 2] = raw.data[j + 2];
  }
  if (pixels < MIN_PIXELS) r.openWatermark = { status: 'skipped', reason: `the image has fewer than 256x256 pixels, the smallest the mark's reference decoder reads` };
  else {
    const w = readOpenWatermark(rgb, width, height);
    r.openWatermark = w
      ? { status: 'checked', found: w.found, mark: w.best.mark, name: w.best.name, convention: w.best.convention, conventionWords: w.best.conventionWords, matched: w.best.matched, bits: w.best.bits, pValue: w.best.pValue, correctedP: w.correctedP, tested: w.tested, alpha: w.alpha }
      : { status: 'skipped', reason: 'the image is too small for the mark' };
  }
  if (r.metadata) addHiddenMetadata(r.metadata, raw.data, rgb, width, height, hasAlpha);
}

/** The watermark and detector of a Diffuse run, for images it can score. */
async function addModelSignals(report: InspectReport, bytes: Buffer, file: string, pipe: DiffusionPipeline, o: InspectOptions): Promise<void> {
  const [c, h] = pipe.imageShape;
  let image: { data: Float32Array; shape: [number, number, number] } | undefined;
  let skip: string | undefined;
  const maxPixels = o.maxPixels ?? MAX_IMAGE_PIXELS;
  if ((report.width ?? 0) * (report.height ?? 0) > maxPixels) {
    skip = `the image declares ${report.width}x${report.height} pixels, over the ${(maxPixels / 1e6).toFixed(0)}-megapixel decoding limit; not decoded`;
  } else {
    try {
      image = await readImage(file, { channels: c as 1 | 3, size: h, resize: o.resize, convert: true });
    } catch (e) {
      skip = (e as Error).message.replace(`${file} `, '').replace(`${file}: `, '');
      if (/takes \d+x\d+/.test(skip)) skip = `the image is ${report.width}x${report.height} but the model takes ${h}x${h}: a score would be meaningless (pass --resize to resize it explicitly; scores are then less reliable)`;
    }
  }
  if (!image) {
    report.watermark = { status: 'skipped', reason: skip ?? 'image unreadable' };
    report.detector = { status: 'skipped', reason: skip ?? 'image unreadable' };
    return;
  }
  const batch = { data: image.data, count: 1, shape: image.shape };
  if (o.key) {
    const steps = o.inversionSteps ?? 50;
    const [d] = await detectWatermark(batch, pipe, o.key, {
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
    const [d] = await detectSynthetic(batch, pipe, o.calibration, { profile });
    report.detector = { status: 'checked', score: d.score, probability: d.probability, flagged: d.flagged, profile };
    const saved = await o.saveHeatMap?.(file, d.heatMap, [image.shape[1], image.shape[2]]);
    if (saved) report.detector.heatMap = saved;
  } else report.detector = { status: 'skipped', reason: o.calibrationMissing ?? 'no detector calibration' };
}

function formatName(bytes: Uint8Array): string | undefined {
  return containerFormat(bytes)?.replace('image/', '');
}

/** Who or what the credentials say made the image: "GPT-4o (ChatGPT)", "Adobe Firefly (Gemini Flash)". */
function declaredMaker(cr: CredentialReport): string {
  const o = cr.origin;
  const parts = [o?.softwareAgent, o?.model].filter(Boolean);
  const generator = o?.generator ?? cr.claims?.generator;
  const name = parts.length ? parts.join(', ') : generator;
  // The claim generator is named too when it says something the software agent does not ("Adobe_Firefly" beside "Gemini Flash").
  const firstWord = (x: string) => x.split(/[\s/_]/)[0].toLowerCase();
  const extra = parts.length && generator && !parts.some((p) => firstWord(p as string) === firstWord(generator)) ? ` (claim generator ${generator})` : '';
  return name ? `${name}${extra}` : `an unnamed tool`;
}

/** "signature intact; certificate expired; not on your trust list", for an intact manifest. */
function trustWords(cr: CredentialReport): string {
  const t = cr.trust;
  const bits = ['signature and hashes intact'];
  if (!t) return bits[0];
  if (t.onTrustList) bits.push('signer on your trust list');
  else {
    for (const p of t.problems) if (!/no trust list given|on no trust list given/.test(p)) bits.push(p);
    bits.push(t.trustListGiven ? 'signer not on your trust list' : 'no trust list given (--trust), signer not checked');
  }
  return bits.join('; ');
}

function generationWords(g: NonNullable<InspectReport['metadata']>['generators'][number]): string {
  const fields = [g.model && `model ${g.model}`, g.seed !== undefined && `seed ${g.seed}`, g.sampler && `sampler ${g.sampler}`, g.steps !== undefined && `${g.steps} steps`].filter(Boolean);
  return `${g.tool}${fields.length ? ` (${fields.join(', ')})` : ''}`;
}

/**
 * The verdict: the strongest evidence first. Credentials that fail their integrity check,
 * trusted credentials, Diffuse's watermark, intact credentials of a signer not trusted, generation
 * metadata and XMP source types (declared, unsigned), a remote manifest, then the detector.
 */
export function verdict(r: InspectReport): Verdict {
  const cr = r.credentials;
  const md = r.metadata;
  const wm = r.watermark?.status === 'checked' ? r.watermark : undefined;
  const det = r.detector?.status === 'checked' ? r.detector : undefined;
  const pct = (p: number) => `${(100 * p).toFixed(p > 0.995 || p < 0.005 ? 1 : 0)}%`;
  const detLine = det ? `; this model's detector ${det.flagged ? 'flags it' : 'does not flag it'} (probability ${pct(det.probability)})` : '';
  const wmLine = wm ? `; Diffuse watermark ${wm.detected ? `present (payload ${wm.payload})` : 'not found'}` : '';
  const also = `${wmLine}${detLine}`;
  const declared = (c: CredentialReport) => {
    const o = c.origin;
    if (c.declaresGenerativeAI) return `declared AI-GENERATED${o?.sourceType ? ` (${o.sourceType})` : ''} by ${declaredMaker(c)} via content credentials`;
    if (o?.sourceType) return `declared ${o.sourceWords ?? o.sourceType} (${o.sourceType}) by ${declaredMaker(c)} via content credentials`;
    return `content credentials from "${c.claims?.signer ?? 'an unnamed signer'}" (actions: ${c.claims?.actions.map((a) => a.action).join(', ') || 'none'}; no source type declared)`;
  };
  if (cr?.state === 'invalid') {
    const why = cr.integrity === 'tampered' ? `fail their integrity check (${cr.codes.filter((c) => !c.startsWith('signingCredential')).join(', ')}): the file or its manifest changed after signing` : 'are damaged or cannot be verified';
    return { restsOn: 'credentials', summary: `TAMPERED OR DAMAGED CREDENTIALS: the file's content credentials ${why}; what they claim cannot be relied on${also}` };
  }
  if (cr?.state === 'trusted') return { restsOn: 'credentials', summary: `${declared(cr)}; ${trustWords(cr)}${also}` };
  if (wm?.detected) {
    return { restsOn: 'watermark', summary: `GENERATED by this model with this key: Diffuse watermark found (payload ${wm.payload}, p = ${formatP(wm.pValue, wm.log10P)}; false positives at most ${pct(wm.fpr)})${detLine}` };
  }
  const sig = md?.novelaiSignature;
  if (sig?.status === 'valid' && sig.key === 'NovelAI') {
    return { restsOn: 'novelai-signature', summary: `made by NovelAI: its Ed25519 signature over these exact pixels and the generation record verifies with NovelAI's published key (${sig.foundIn})${also}` };
  }
  if (cr?.state === 'untrusted') return { restsOn: 'credentials', summary: `${declared(cr)}; ${trustWords(cr)}${also}` };
  const ow = r.openWatermark?.status === 'checked' ? r.openWatermark : undefined;
  if (ow?.found) {
    return {
      restsOn: 'open-watermark',
      summary: `${ow.name} invisible watermark: ${ow.matched}/${ow.bits} bits (${ow.conventionWords}), p = ${ow.correctedP.toExponential(1)} over the ${ow.tested} readings tried: made by a Stable Diffusion pipeline that marks its output (anyone can add this open mark; JPEG and resizing remove it)${also}`,
    };
  }
  const gen = md?.generators[0];
  if (gen) {
    const sigWords = sig ? `; NovelAI's signature ${sig.status === 'invalid' ? 'does NOT verify with NovelAI\'s key: the pixels or the record changed after generation, or NovelAI did not sign it' : sig.status === 'valid' ? `verifies with ${sig.key}, not NovelAI's key` : `could not be checked (${sig.detail})`}` : '';
    return { restsOn: 'metadata', summary: `generation parameters of ${generationWords(gen)} in the file's metadata: declared, not proven (anyone can write or strip metadata)${sigWords}${also}` };
  }
  if (md?.sourceType) {
    const st = md.sourceType;
    return { restsOn: 'metadata', summary: `${st.generative ? 'declared AI-GENERATED' : `declared ${st.words}`} (${st.name}) in unsigned XMP metadata: anyone can write or strip it${also}` };
  }
  if (cr?.state === 'remote') return { restsOn: 'credentials', summary: `${cr.summary}${also}` };
  if (det?.flagged) {
    return { restsOn: 'detector', summary: `LIKELY A SAMPLE OF THIS MODEL: the detector flags it (probability ${pct(det.probability)}; about 1% of real images are flagged too); no credentials${wm ? ', no watermark' : ''}` };
  }
  const checked = [wm ? 'Diffuse watermark' : '', det ? 'detector' : ''].filter(Boolean);
  return {
    restsOn: 'none',
    summary: `no signal found: provenance unknown (absence is not evidence of authenticity: credentials and metadata are easily stripped)${checked.length ? `; ${checked.join(' and ')} negative${det ? ` (probability ${pct(det.probability)})` : ''}` : ''}`,
  };
}

/** A p-value for people: the number, or 1e-N where it underflows. */
export function formatP(p: number, log10P: number): string {
  return p > 0 ? p.toExponential(2) : `1e${Math.floor(log10P)}`;
}
