/**
 * Noto emoji (npm `emoji-datasource-google`, images Apache-2.0) captioned with
 * emojibase's English labels ("cat face", "waving hand: medium skin tone"):
 * 3,786 images, skin-tone variants included, composited on white.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type { ImageDataset } from './dataset.js';
import { decodeImages } from './dataset.js';
import { DataError } from './errors.js';

const require = createRequire(import.meta.url);

interface EmojiEntry {
  name: string;
  unified: string;
  image: string;
  has_img_google: boolean;
  skin_variations?: Record<string, { unified: string; image: string; has_img_google: boolean }>;
}
interface EmojibaseEntry {
  label: string;
  hexcode: string;
  skins?: EmojibaseEntry[];
}

function packageFile(pkg: string, file: string): string {
  try {
    return path.join(path.dirname(require.resolve(`${pkg}/package.json`)), file);
  } catch {
    throw new DataError(`the npm package '${pkg}' is not installed (emoji data); run 'npm ci' in the Diffuse folder`);
  }
}

/** Simple prompts for preview grids: colours and shapes a small model can learn. */
export const EMOJI_PREVIEW_PROMPTS = ['red apple', 'green apple', 'red heart', 'blue heart', 'yellow heart', 'grinning face', 'cat face', 'thumbs up dark skin tone'];

/** Every Google emoji image with its caption (emojibase label, else the Unicode name), in emoji-data's order. */
export function emojiCatalogue(): { file: string; caption: string }[] {
  const entries = JSON.parse(readFileSync(packageFile('emoji-datasource-google', 'emoji.json'), 'utf8')) as EmojiEntry[];
  const labels = JSON.parse(readFileSync(packageFile('emojibase-data', 'en/data.json'), 'utf8')) as EmojibaseEntry[];
  const byHex = new Map<string, string>();
  for (const e of labels) {
    byHex.set(e.hexcode, e.label);
    for (const s of e.skins ?? []) byHex.set(s.hexcode, s.label);
  }
  const dir = packageFile('emoji-datasource-google', 'img/google/64');
  const out: { file: string; caption: string }[] = [];
  const add = (unified: string, image: string, fallback: string) => {
    const label = byHex.get(unified) ?? byHex.get(unified.replace(/-FE0F/g, '')) ?? fallback.toLowerCase();
    out.push({ file: path.join(dir, image), caption: label.replace(/[:,]/g, '') });
  };
  for (const e of entries) {
    if (e.has_img_google) add(e.unified, e.image, e.name);
    for (const v of Object.values(e.skin_variations ?? {})) if (v.has_img_google) add(v.unified, v.image, e.name);
  }
  return out;
}

/** The emoji set at size x size (default 32), RGB on white, with captions. */
export async function loadEmoji(opts: { size?: number; limit?: number } = {}): Promise<ImageDataset> {
  const items = emojiCatalogue().slice(0, opts.limit ?? Infinity);
  const { images, channels, height, width } = await decodeImages(
    items.map((i) => i.file),
    { size: opts.size ?? 32, channels: 3 },
  );
  return { name: 'emoji', images, count: items.length, channels, height, width, captions: items.map((i) => i.caption) };
}
