/**
 * Captions: generated from class labels (MNIST, Fashion-MNIST), or read from
 * text files beside images and JSON-lines manifests.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DataError } from './errors.js';

/** Caption templates per built-in set; `{name}` is the class name, `{label}` the class index. */
export const CAPTION_TEMPLATES: Record<string, readonly string[]> = {
  mnist: ['a handwritten digit {name}', 'the digit {label}', 'a handwritten {label}', 'the number {name}'],
  'fashion-mnist': ['a {name}', 'a photo of a {name}', 'a grey {name}', 'a picture of a {name}'],
};

const fill = (template: string, name: string, label: number) => template.replaceAll('{name}', name).replaceAll('{label}', String(label));

/** One caption per image, cycling through the set's templates. */
export function captionsFromLabels(set: string, labels: Int32Array, classNames: readonly string[]): string[] {
  const templates = CAPTION_TEMPLATES[set] ?? ['{name}'];
  return Array.from(labels, (l, i) => fill(templates[i % templates.length], classNames[l], l));
}

/** The prompt that names class k (the set's first template): what adherence is measured with. */
export function classPrompt(set: string, classNames: readonly string[], k: number): string {
  return fill((CAPTION_TEMPLATES[set] ?? ['{name}'])[0], classNames[k], k);
}

/** The manifest name a folder may hold (as Hugging Face's imagefolder): one {"file_name", "text"} object per line. */
export const CAPTION_MANIFEST = 'metadata.jsonl';

/**
 * Captions of a folder's images: from metadata.jsonl if present, else from `img.txt`
 * beside each `img.png`. Every image needs one; the error names the first without.
 */
export function readFolderCaptions(folder: string, files: readonly string[]): string[] {
  const manifest = path.join(folder, CAPTION_MANIFEST);
  if (existsSync(manifest)) {
    const byFile = new Map<string, string>();
    readFileSync(manifest, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (!line.trim()) return;
        let row: { file_name?: unknown; text?: unknown };
        try {
          row = JSON.parse(line) as typeof row;
        } catch (e) {
          throw new DataError(`${manifest}:${i + 1}: not valid JSON (${(e as Error).message})`);
        }
        if (typeof row.file_name !== 'string' || typeof row.text !== 'string') {
          throw new DataError(`${manifest}:${i + 1}: needs string fields "file_name" and "text"`);
        }
        byFile.set(path.normalize(row.file_name), row.text);
      });
    return files.map((f) => {
      const rel = path.normalize(path.relative(folder, f));
      const text = byFile.get(rel);
      if (text === undefined) throw new DataError(`${manifest}: no caption for ${rel}; add a line {"file_name": "${rel}", "text": "..."}`);
      return text;
    });
  }
  return files.map((f) => {
    const txt = f.slice(0, f.length - path.extname(f).length) + '.txt';
    if (!existsSync(txt)) {
      throw new DataError(`${f}: no caption (expected ${path.basename(txt)} beside it, or a ${CAPTION_MANIFEST} in ${folder})`);
    }
    return readFileSync(txt, 'utf8').trim();
  });
}
