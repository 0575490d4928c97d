/**
 * What a file declares in its metadata: generation parameters of Stable Diffusion front ends and
 * NovelAI, the IPTC digital source type in XMP, the software and camera in EXIF. EXIF, XMP and
 * IPTC are parsed by ExifReader (synchronously: it then inflates nothing); PNG text chunks by
 * src/metadata/png-text.ts, with bounded inflation.
 *
 * Metadata is a declaration, not evidence: anyone can write it, and most services strip it.
 */
import ExifReader from 'exifreader';
import { describeSourceType, isGenerativeSource } from '../provenance/source-type.js';
import { GenerationInfo, TextFields, parseGenerators } from './generators.js';
import { NovelAiSignature, verifyNovelAiSignature } from './novelai.js';
import { readPngText } from './png-text.js';
import { readStealthText } from './stealth.js';

export interface MetadataReport {
  /** Generator records found (A1111, ComfyUI, InvokeAI, Fooocus, NovelAI). */
  generators: GenerationInfo[];
  /** The IPTC digital source type the XMP declares. */
  sourceType?: { uri: string; name: string; words: string; generative: boolean; foundIn: string };
  /** EXIF Software or XMP CreatorTool. */
  software?: string;
  /** EXIF Make and Model. */
  camera?: string;
  /** EXIF ImageDescription or XMP dc:description, when it is not a generator record. */
  description?: string;
  /** A remote manifest's address (XMP dcterms:provenance). */
  remoteManifest?: string;
  /** Metadata hidden in the pixels' low bits (NovelAI; an AUTOMATIC1111 extension). */
  hidden?: { channel: 'alpha' | 'rgb'; compressed: boolean; fields: string[]; problem?: string };
  /** NovelAI's signature over the pixels and its record, when the record carries one. */
  novelaiSignature?: NovelAiSignature;
  /** The text chunk's NovelAI record with its signature, kept for the check over the pixels. */
  novelaiComment?: string;
  /** The names of the text fields found, for the record. */
  fields: string[];
  /** What could not be read. */
  problems: string[];
}

type Tag = { value?: unknown; description?: unknown };
type Tags = Record<string, Record<string, Tag | undefined> | undefined>;

/** Reads the metadata of an image file's bytes. Never throws: what cannot be read is listed in `problems`. */
export function readMetadata(bytes: Uint8Array): MetadataReport {
  const fields = new Map<string, { text: string; foundIn: string }>();
  const problems: string[] = [];
  for (const t of readPngText(bytes)) {
    if (t.problem) problems.push(`PNG ${t.chunk} "${t.keyword}": ${t.problem}`);
    if (!fields.has(t.keyword)) fields.set(t.keyword, { text: t.text, foundIn: `PNG ${t.chunk} "${t.keyword}"` });
  }
  let tags: Tags = {};
  try {
    tags = ExifReader.load(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { expanded: true }) as unknown as Tags;
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (!/Invalid image format|No Exif data/i.test(msg)) problems.push(`EXIF/XMP: ${msg.split('\n')[0]}`);
  }
  const exif = tags.exif ?? {};
  const xmp = tags.xmp ?? {};
  const text = (t: Tag | undefined): string | undefined => {
    if (!t) return undefined;
    const v = t.description ?? t.value;
    if (typeof v === 'string') return v.trim() || undefined;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return (v as string[]).join(' ').trim() || undefined;
    return undefined;
  };
  const userComment = decodeUserComment(exif.UserComment?.value);
  if (userComment) fields.set('UserComment', { text: userComment, foundIn: 'EXIF UserComment' });
  const software = text(exif.Software) ?? text(xmp.CreatorTool);
  if (software && !fields.has('Software')) fields.set('Software', { text: software, foundIn: exif.Software ? 'EXIF Software' : 'XMP CreatorTool' });
  const generators = parseGenerators(fields as TextFields);

  const report: MetadataReport = { generators, fields: [...fields.keys()], problems };
  const comment = fields.get('Comment');
  if (comment && /signed_hash/.test(comment.text)) report.novelaiComment = comment.text;
  const dst = text(xmp.DigitalSourceType);
  const st = describeSourceType(dst);
  if (dst && st) report.sourceType = { uri: dst, name: st.name, words: st.words, generative: isGenerativeSource(dst), foundIn: 'XMP Iptc4xmpExt:DigitalSourceType' };
  if (software) report.software = software;
  const camera = [text(exif.Make), text(exif.Model)].filter(Boolean).join(' ');
  if (camera) report.camera = camera;
  const description = text(exif.ImageDescription) ?? text(xmp.description);
  if (description && !generators.some((g) => g.prompt === description)) report.description = description;
  const provenance = text(xmp.provenance);
  if (provenance && /^https?:\/\//.test(provenance)) report.remoteManifest = provenance;
  return report;
}

/**
 * EXIF UserComment: an 8-byte character code, then the text. AUTOMATIC1111 writes "UNICODE" and
 * UTF-16 in big-endian order (piexif); other tools use little-endian: the order is read from the
 * text itself (ASCII characters have a zero high byte).
 */
export function decodeUserComment(v: unknown): string | undefined {
  if (!Array.isArray(v) || v.length < 8) return undefined;
  const b = Buffer.from(v as number[]);
  const code = b.subarray(0, 8).toString('latin1').replace(/\0+$/, '');
  const body = b.subarray(8);
  let s: string;
  if (code === 'UNICODE') {
    let evenZeros = 0;
    let oddZeros = 0;
    for (let i = 0; i + 1 < body.length; i += 2) {
      if (body[i] === 0) evenZeros++;
      if (body[i + 1] === 0) oddZeros++;
    }
    const le = oddZeros > evenZeros;
    const even = body.subarray(0, body.length - (body.length % 2));
    s = le ? even.toString('utf16le') : Buffer.from(even).swap16().toString('utf16le');
  } else if (code === 'ASCII' || code === '') s = body.toString('utf8');
  else return undefined;
  s = s.replace(/\0+$/, '').trim();
  return s || undefined;
}

/** What the pixels hide: a stealth copy of a generation record, and NovelAI's signature. */
export interface HiddenMetadata {
  hidden?: NonNullable<MetadataReport['hidden']>;
  /** Generator records parsed from the hidden copy. */
  generators: GenerationInfo[];
  novelaiSignature?: NovelAiSignature;
  problems: string[];
}

/**
 * Reads what 8-bit pixels (H x W x channels) hide: a stealth copy of the generation record
 * (parsed like the text chunks) and NovelAI's signature, checked over the RGB bytes (the hidden
 * copy's record first, else `textComment`, the text chunk's NovelAI record).
 */
export function readHiddenMetadata(px: Uint8Array, width: number, height: number, channels: 3 | 4, textComment?: string): HiddenMetadata {
  const out: HiddenMetadata = { generators: [], problems: [] };
  const hidden = readStealthText(px, width, height, channels);
  const where = hidden ? `${hidden.channel === 'alpha' ? 'alpha channel' : 'RGB'} low bits (stealth_${hidden.channel === 'alpha' ? 'png' : 'rgb'}${hidden.compressed ? 'comp' : 'info'})` : '';
  let hiddenComment: string | undefined;
  if (hidden) {
    const fields = new Map<string, { text: string; foundIn: string }>();
    let parsed: unknown;
    try {
      parsed = JSON.parse(hidden.text);
    } catch {
      parsed = undefined;
    }
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
        if (typeof v === 'string') fields.set(k, { text: v, foundIn: `${where} "${k}"` });
        else if (v && typeof v === 'object') fields.set(k, { text: JSON.stringify(v), foundIn: `${where} "${k}"` });
      }
    } else if (hidden.text) fields.set('parameters', { text: hidden.text, foundIn: where });
    out.hidden = { channel: hidden.channel, compressed: hidden.compressed, fields: [...fields.keys()], ...(hidden.problem ? { problem: hidden.problem } : {}) };
    if (hidden.problem) out.problems.push(`${where}: ${hidden.problem}`);
    out.generators = parseGenerators(fields);
    if (fields.get('Software')?.text.startsWith('NovelAI')) hiddenComment = fields.get('Comment')?.text;
  }
  const comment = hiddenComment ?? textComment;
  if (comment && /signed_hash/.test(comment)) {
    // The signed bytes are the RGB ones, row by row: drop the alpha channel when there is one.
    let rgb = px;
    if (channels === 4) {
      rgb = new Uint8Array(width * height * 3);
      for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) rgb.set(px.subarray(j, j + 3), i);
    }
    out.novelaiSignature = verifyNovelAiSignature(comment, rgb, hiddenComment ? `${where} "Comment"` : 'PNG text "Comment"');
  }
  return out;
}

/** Adds what the pixels hide to a metadata report (the hidden copy's generators when the text chunks named none). */
export function mergeHiddenMetadata(m: MetadataReport, h: HiddenMetadata): void {
  if (h.hidden) m.hidden = h.hidden;
  if (!m.generators.length) m.generators.push(...h.generators);
  if (h.novelaiSignature) m.novelaiSignature = h.novelaiSignature;
  m.problems.push(...h.problems);
}

/** The text chunk's NovelAI record, when the file's metadata names NovelAI: what a signature is checked against without a hidden copy. */
export function novelaiTextComment(m: MetadataReport): string | undefined {
  return m.generators.some((g) => g.tool === 'NovelAI') ? m.novelaiComment : undefined;
}
