/** A watermark key file on disk (Node): read and checked. */
import { existsSync } from 'node:fs';
import { DataError } from '../data/errors.js';
import { readSettingsFile } from '../data/safe-file.js';
import { WatermarkKey, validateKey } from './key.js';

/** Reads and checks a key file. */
export function readKey(file: string): WatermarkKey {
  if (!existsSync(file)) throw new Error(`${file}: no such key file (make one with 'diffuse keygen --out ${file}')`);
  let json: unknown;
  try {
    json = JSON.parse(readSettingsFile(file));
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new Error(`${file}: not a Diffuse watermark key (not valid JSON); the key file is corrupt`);
  }
  return validateKey(json, file);
}
