/** The tiny Stable Diffusion fixture as tests of the watermark and the detector use it. */
import { cpSync } from 'node:fs';
import * as path from 'node:path';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures');

/**
 * The fixture model (test/fixtures/tiny-sd/model) with CLIP's tokenizer and, unless `randomVae`,
 * the autoencoder of make_invertible_vae.py, which gives back the latents it decoded as Stable
 * Diffusion's does on its own images (the fixture's random one does not), copied to `dir`.
 */
export function tinyModel(dir: string, o: { randomVae?: boolean } = {}): string {
  cpSync(path.join(fixtures, 'tiny-sd', 'model'), dir, { recursive: true });
  cpSync(path.join(fixtures, 'clip-tokenizer', 'tokenizer'), path.join(dir, 'tokenizer'), { recursive: true });
  if (!o.randomVae) cpSync(path.join(fixtures, 'tiny-sd', 'invertible-vae'), dir, { recursive: true });
  return dir;
}
