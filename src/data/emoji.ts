/**
 * Noto emoji (npm `emoji-datasource-google`, images Apache-2.0) captioned with
 * emojibase's English labels ("cat face", "waving hand: medium skin tone"):
 * 3,781 images, skin-tone variants included, composited on white, labelled
 * with emoji-data's category (9 classes: "Smileys & Emotion", "Flags", ...).
 *
 * The held-out split: every fifth base emoji in Unicode's sort order, with all
 * its skin-tone variants (3,035 train, 746 test), so that no held-out image is
 * a recoloured training image. The five "Component" images (bare skin-tone
 * swatches and hair pieces) are no emoji of any category and are left out.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ImageDataset } from './dataset.js';
import { decodeImages } from './decode-images.js';
import { shuffled } from './shuffle.js';
import { FastGenerator } from '../diffusion/index.js';
import { packageDir } from './packages.js';


interface EmojiEntry {
  name: string;
  unified: string;
  image: string;
  category: string;
  sort_order: number;
  has_img_google: boolean;
  skin_variations?: Record<string, { unified: string; image: string; has_img_google: boolean }>;
}
interface EmojibaseEntry {
  label: string;
  hexcode: string;
  skins?: EmojibaseEntry[];
}

function packageFile(pkg: string, file: string): string {
  return path.join(packageDir(pkg), file);
}

/** Simple prompts for preview grids: colours and shapes a small model can learn. */
export const EMOJI_PREVIEW_PROMPTS = ['red apple', 'green apple', 'red heart', 'blue heart', 'yellow heart', 'grinning face', 'cat face', 'thumbs up dark skin tone'];

/** The nine categories of emoji-data, in Unicode's order: the class labels of the emoji set. */
export const EMOJI_CATEGORIES = ['Smileys & Emotion', 'People & Body', 'Animals & Nature', 'Food & Drink', 'Travel & Places', 'Activities', 'Objects', 'Symbols', 'Flags'] as const;

/** One picture of the emoji set. */
export interface EmojiItem {
  file: string;
  caption: string;
  /** Index into EMOJI_CATEGORIES. */
  category: number;
  /** Which side of the held-out split (decided per base emoji, skin tones with it). */
  split: 'train' | 'test';
}

/** Every fifth base emoji (by sort order) is held out. */
const HELD_OUT_EVERY = 5;

/** Every Google emoji image with its caption (emojibase label, else the Unicode name), category and split, in emoji-data's order. */
export function emojiCatalogue(): EmojiItem[] {
  const entries = JSON.parse(readFileSync(packageFile('emoji-datasource-google', 'emoji.json'), 'utf8')) as EmojiEntry[];
  const labels = JSON.parse(readFileSync(packageFile('emojibase-data', 'en/data.json'), 'utf8')) as EmojibaseEntry[];
  const byHex = new Map<string, string>();
  for (const e of labels) {
    byHex.set(e.hexcode, e.label);
    for (const s of e.skins ?? []) byHex.set(s.hexcode, s.label);
  }
  const dir = packageFile('emoji-datasource-google', 'img/google/64');
  const kept = entries.filter((e) => e.has_img_google && EMOJI_CATEGORIES.includes(e.category as (typeof EMOJI_CATEGORIES)[number]));
  const rank = new Map([...kept].sort((a, b) => a.sort_order - b.sort_order).map((e, i) => [e.unified, i]));
  const out: EmojiItem[] = [];
  for (const e of kept) {
    const category = EMOJI_CATEGORIES.indexOf(e.category as (typeof EMOJI_CATEGORIES)[number]);
    const split = (rank.get(e.unified) as number) % HELD_OUT_EVERY === HELD_OUT_EVERY - 1 ? 'test' : 'train';
    const add = (unified: string, image: string) => {
      const label = byHex.get(unified) ?? byHex.get(unified.replace(/-FE0F/g, '')) ?? e.name.toLowerCase();
      out.push({ file: path.join(dir, image), caption: label.replace(/[:,]/g, ''), category, split });
    };
    add(e.unified, e.image);
    for (const v of Object.values(e.skin_variations ?? {})) if (v.has_img_google) add(v.unified, v.image);
  }
  return out;
}

/** One side of the emoji set at size x size (default 32), RGB on white, with captions and category labels. */
export async function loadEmoji(opts: { size?: number; limit?: number; split?: 'train' | 'test' } = {}): Promise<ImageDataset> {
  const side = emojiCatalogue().filter((i) => i.split === (opts.split ?? 'train'));
  // The held-out images in a fixed seeded order: the catalogue runs category by category, and the
  // evaluator compares the first half of the split with the second.
  const items = (opts.split === 'test' ? shuffled(side.length, new FastGenerator(4243)).map((i) => side[i]) : side).slice(0, opts.limit ?? Infinity);
  const { images, channels, height, width } = await decodeImages(
    items.map((i) => i.file),
    { size: opts.size ?? 32, channels: 3 },
  );
  return {
    name: 'emoji',
    images,
    count: items.length,
    channels,
    height,
    width,
    labels: Int32Array.from(items, (i) => i.category),
    classNames: EMOJI_CATEGORIES,
    captions: items.map((i) => i.caption),
  };
}
