/**
 * The benches' folder of real-world-like files: 1.0-1.9 megapixel JPEG and PNG files made once from
 * the real photographs in test/fixtures/inspect/c2pa, with one file in ten a real file carrying
 * content credentials, copied as it is (bench:inspect and bench:scan read the same folders).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';

const fixtures = path.resolve(import.meta.dirname, '..', 'test', 'fixtures', 'inspect', 'c2pa');

/**
 * Makes `dir` with `count` files unless it already holds that many: half JPEG (quality 85), half
 * PNG. `distinct`: no copies of the signed files (every file's content differs), for benches of
 * scans, which inspect each content once.
 */
export async function makeImageFolder(dir: string, count: number, o: { distinct?: boolean } = {}): Promise<void> {
  if (existsSync(dir) && readdirSync(dir).length >= count) return;
  mkdirSync(dir, { recursive: true });
  const signed = ['firefly_thirdparty_gemini.png', 'ocsp.jpg', 'C.jpg', 'XCA.jpg'];
  const photos = readdirSync(fixtures).filter((f) => /\.(jpe?g|png)$/i.test(f));
  for (let i = 0; i < count; i++) {
    const out = path.join(dir, `img-${String(i).padStart(4, '0')}`);
    if (i % 10 === 0 && !o.distinct) {
      // One in ten: a real file with content credentials, as it is.
      const f = signed[(i / 10) % signed.length];
      execFileSync('cp', [path.join(fixtures, f), `${out}${path.extname(f)}`]);
      continue;
    }
    const src = photos[i % photos.length];
    const width = 1200 + ((i * 37) % 500); // 1200-1699 px wide: 1.0-1.9 megapixels at 3:2 to 4:3
    const img = sharp(path.join(fixtures, src)).resize(width).flatten({ background: '#ffffff' });
    if (i % 2) await img.jpeg({ quality: 85 }).toFile(`${out}.jpg`);
    else await img.png({ compressionLevel: 6 }).toFile(`${out}.png`);
  }
}
