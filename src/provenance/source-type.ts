/**
 * IPTC's digital source types (https://cv.iptc.org/newscodes/digitalsourcetype/): the vocabulary
 * that content credentials (`digitalSourceType` of an action) and XMP
 * (`Iptc4xmpExt:DigitalSourceType`) use to say how an image came to be.
 */

const PREFIXES = ['http://cv.iptc.org/newscodes/digitalsourcetype/', 'https://cv.iptc.org/newscodes/digitalsourcetype/'];

/** What a source type means for an analyst: made by a trained model, partly so, by other software, or a capture. */
export type SourceKind = 'generated' | 'composite-generated' | 'algorithmic' | 'capture' | 'other';

/** The short names an analyst meets most, with what each means. */
const TERMS: Record<string, { kind: SourceKind; words: string }> = {
  trainedAlgorithmicMedia: { kind: 'generated', words: 'made by a trained model (generative AI)' },
  compositeWithTrainedAlgorithmicMedia: { kind: 'composite-generated', words: 'a composite that includes generative-AI content' },
  algorithmicallyEnhanced: { kind: 'other', words: 'a capture enhanced by an algorithm' },
  algorithmicMedia: { kind: 'algorithmic', words: 'made by an algorithm without a trained model' },
  digitalCapture: { kind: 'capture', words: 'a digital capture (camera)' },
  computationalCapture: { kind: 'capture', words: 'a computational capture (phone camera processing)' },
  negativeFilm: { kind: 'capture', words: 'a scan of a negative' },
  positiveFilm: { kind: 'capture', words: 'a scan of a slide' },
  print: { kind: 'capture', words: 'a scan of a print' },
  screenCapture: { kind: 'other', words: 'a screenshot' },
  composite: { kind: 'other', words: 'a composite' },
  compositeCapture: { kind: 'capture', words: 'a composite of captures' },
  compositeSynthetic: { kind: 'other', words: 'a composite with synthetic elements' },
  digitalArt: { kind: 'other', words: 'digital art made by a person' },
  virtualRecording: { kind: 'other', words: 'a recording of a virtual event' },
  dataDrivenMedia: { kind: 'other', words: 'media driven by data' },
};

/** A source type's short name ("trainedAlgorithmicMedia") from its URI or name; undefined for none. */
export function sourceTypeName(uri: string | undefined): string | undefined {
  if (!uri) return undefined;
  for (const p of PREFIXES) if (uri.startsWith(p)) return uri.slice(p.length);
  return uri;
}

/** What a source type means; unknown terms are 'other', named as they are. */
export function describeSourceType(uri: string | undefined): { name: string; kind: SourceKind; words: string } | undefined {
  const name = sourceTypeName(uri);
  if (!name) return undefined;
  const t = TERMS[name];
  return t ? { name, ...t } : { name, kind: 'other', words: name };
}

/** Whether the source type declares generative AI (wholly or in part). */
export function isGenerativeSource(uri: string | undefined): boolean {
  const k = describeSourceType(uri)?.kind;
  return k === 'generated' || k === 'composite-generated';
}
