/**
 * The image files that command-line arguments name: files as given, folders listed recursively
 * (sorted), and with `lists` .txt files read as lists of paths (one per line, relative to the
 * list's folder; blank lines and lines starting with # skipped). A path that does not exist is
 * passed on as it is, so that its report says so.
 */
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { listImages } from './dataset.js';
import { readRegularFile } from './safe-file.js';

/** The largest list of paths read (bytes). */
const MAX_LIST_BYTES = 1 << 30;

export async function imagePaths(inputs: readonly string[], o: { lists?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  for (const p of inputs) {
    let dir = false;
    try {
      dir = statSync(p).isDirectory();
    } catch {
      // A missing file is reported on its own line, like any unreadable image.
    }
    if (dir) out.push(...listImages(p));
    else if (o.lists && p.toLowerCase().endsWith('.txt')) {
      const text = (await readRegularFile(p, MAX_LIST_BYTES)).toString('utf8');
      for (const line of text.split(/\r?\n/)) if (line.trim() && !line.startsWith('#')) out.push(path.resolve(path.dirname(p), line.trim()));
    } else out.push(p);
  }
  return out;
}
