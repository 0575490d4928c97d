/**
 * The signals an image file carries whatever made it, with no model: content credentials (C2PA),
 * metadata (generation parameters, IPTC source types, EXIF), and on its pixels the Stable
 * Diffusion invisible mark and metadata hidden in the low bits with NovelAI's signature (those on
 * the inspector's threads: pixel-signals.ts). It loads no model code.
 */
import { createHash } from 'node:crypto';
import { DataError } from '../data/errors.js';
import { quickHeader } from '../data/image-header.js';
import { MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, readRegularFile } from '../data/safe-file.js';
import { mergeHiddenMetadata, novelaiTextComment, readMetadata } from '../metadata/read.js';
import { TrustSettings, containerFormat, readCredentials } from '../provenance/index.js';
import type { ThreadPool } from '../threads/pool.js';
import { PixelRequest, PixelSignals, pixelSignals } from './pixel-signals.js';
import type { InspectReport } from './report.js';

/** Options of the file-level checks. */
export interface FileOptions {
  /** PEM text of trusted root certificates for content credentials. */
  trustAnchors?: string;
  /** Trust lists for content credentials (anchors, allowed list, key usages). */
  trust?: TrustSettings;
  /** The largest file read (bytes; default 100 MB). */
  maxBytes?: number;
  /** The most pixels an image may declare before it is decoded (default 50 million). */
  maxPixels?: number;
  /** Skip the checks that decode the pixels (the open watermark, hidden metadata): credentials and metadata only. */
  metadataOnly?: boolean;
  /** Threads that run the pixel checks (default: this thread). */
  pixelThreads?: ThreadPool<PixelRequest, PixelSignals>;
  /** The SHA-256 (hex) the file's bytes must have (a scan's job: the content it was enqueued with); otherwise the report's error says the file changed. */
  sha256?: string;
}

/**
 * The file-level signals of one image file (content credentials, metadata, and unless
 * `metadataOnly` the checks on its pixels), without a verdict. Never throws for a bad file: the
 * report's `error` says what is wrong.
 */
export async function inspectFile(file: string, o: FileOptions = {}): Promise<InspectReport> {
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(file, o.maxBytes ?? MAX_IMAGE_BYTES);
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
    return { file, error: e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message };
  }
  if (o.sha256 !== undefined && createHash('sha256').update(bytes).digest('hex') !== o.sha256) return { file, error: 'the file changed since it was enqueued (its SHA-256 differs)' };
  const report: InspectReport = { file, format: formatName(bytes) };
  let hasAlpha = false;
  try {
    // The header only: nothing is decoded here (PNG and JPEG read directly, other formats by sharp).
    const meta = quickHeader(bytes) ?? (await (await import('sharp')).default(bytes).metadata());
    report.width = meta.width;
    report.height = meta.height;
    hasAlpha = Boolean(meta.hasAlpha);
    if ('format' in meta) report.format ??= String(meta.format);
  } catch {
    if (!bytes.length) return { ...report, error: 'an empty file' };
    return { ...report, error: 'cannot decode image (not a PNG, JPEG, WebP, GIF, TIFF or AVIF file, or truncated)' };
  }
  report.metadata = readMetadata(bytes);
  try {
    report.credentials = await readCredentials(bytes, { trustAnchors: o.trustAnchors, trust: o.trust, remoteUrl: report.metadata.remoteManifest, remoteChecked: true });
  } catch (e) {
    report.credentials = { state: 'invalid', integrity: 'damaged', codes: ['manifest.unreadable'], summary: `content credentials could not be read: ${(e as Error).message.split('\n')[0]}` };
  }
  if (!o.metadataOnly) {
    const maxPixels = o.maxPixels ?? MAX_IMAGE_PIXELS;
    if ((report.width ?? 0) * (report.height ?? 0) > maxPixels) {
      report.openWatermark = { status: 'skipped', reason: `the image declares ${report.width}x${report.height} pixels, over the ${(maxPixels / 1e6).toFixed(0)}-megapixel decoding limit; not decoded` };
    } else {
      const request: PixelRequest = { bytes, maxPixels, hasAlpha, textComment: novelaiTextComment(report.metadata) };
      // On a thread, the file's bytes are moved there (this thread is done with them).
      const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
      const px = o.pixelThreads ? await o.pixelThreads.run(request, own ? [bytes.buffer as ArrayBuffer] : []) : await pixelSignals(request);
      report.openWatermark = px.openWatermark;
      if (px.hidden) mergeHiddenMetadata(report.metadata, px.hidden);
    }
  }
  return report;
}

function formatName(bytes: Uint8Array): string | undefined {
  return containerFormat(bytes)?.replace('image/', '');
}

