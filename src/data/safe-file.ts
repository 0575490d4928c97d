/**
 * Reading files that may be hostile: only regular files, never more than a size limit, and image
 * dimensions checked from the header before anything is decoded.
 *
 * A folder handed to `inspect` can hold a FIFO (`mkfifo f/b.png`: reading it blocks for ever) or a
 * link to a device (`ln -s /dev/zero z.png`: reading it never ends), and a small PNG can declare
 * 16000x16000 pixels (a decompression bomb). Each is refused here with one line, and the caller
 * goes on with the next file.
 */
import { closeSync, constants, fstatSync, openSync, promises as fs, readSync } from 'node:fs';
import { DataError } from './errors.js';

/** The largest image file read by default (bytes). */
export const MAX_IMAGE_BYTES = 100 * 1024 * 1024;

/** The most pixels an image may declare before it is decoded (sharp's `limitInputPixels`). */
export const MAX_IMAGE_PIXELS = 50_000_000;

/** What a non-regular file is, for the error line. */
function kindOf(st: { isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean; isDirectory(): boolean }): string {
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a folder';
  return 'not a regular file';
}

/**
 * Reads a regular file of at most `maxBytes`. Opening with O_NONBLOCK keeps a FIFO from blocking
 * the open itself; the type is then checked on the open descriptor (no race with a swapped path),
 * and the read stops at the limit even if the file grows meanwhile.
 */
export async function readRegularFile(
  file: string,
  maxBytes = MAX_IMAGE_BYTES,
  /** How the error lines name what was expected (default: an image file among others, skipped). */
  o: { what?: string; limitFor?: string; skipped?: boolean } = {},
): Promise<Buffer> {
  const what = o.what ?? 'an image file';
  const tail = o.skipped === false ? '' : '; skipped';
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? `${file}: no such file` : code === 'EISDIR' ? `${file}: a folder, not ${what}` : code === 'EACCES' ? `${file}: permission denied` : `${file}: cannot open (${code ?? (e as Error).message})`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new DataError(`${file}: ${kindOf(st)}, not ${what}${tail}`);
    if (st.size > maxBytes) throw new DataError(`${file}: ${st.size} bytes, over the ${maxBytes}-byte limit for ${o.limitFor ?? 'one image'}${tail}`);
    const out = Buffer.alloc(st.size);
    let got = 0;
    while (got < out.length) {
      const { bytesRead } = await handle.read(out, got, out.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === out.length ? out : out.subarray(0, got);
  } finally {
    await handle.close();
  }
}

/** The largest settings file (config.json, a key, a calibration) read by readSettingsFile. */
export const MAX_SETTINGS_BYTES = 16 * 1024 * 1024;

/**
 * Reads a small text file that must be a regular file (a run's config.json, a key, a detector
 * calibration) synchronously, as readRegularFile does: a FIFO or a device in its place is refused
 * in one line instead of blocking or reading for ever.
 */
export function readSettingsFile(file: string, maxBytes = MAX_SETTINGS_BYTES): string {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? `${file}: no such file` : code === 'EACCES' ? `${file}: permission denied` : `${file}: cannot open (${code ?? (e as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new DataError(`${file}: ${kindOf(st)}, not a settings file`);
    if (st.size > maxBytes) throw new DataError(`${file}: ${st.size} bytes, over the ${maxBytes}-byte limit for a settings file`);
    const out = Buffer.alloc(st.size);
    let got = 0;
    while (got < out.length) {
      const n = readSync(fd, out, got, out.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return out.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** A settings file (readSettingsFile) parsed as JSON; text that is not JSON is an error naming the file. */
export function readSettingsJson(file: string, maxBytes = MAX_SETTINGS_BYTES): unknown {
  const text = readSettingsFile(file, maxBytes);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** Throws a DataError when `file` is not a regular file of at most `maxBytes` (for readers that take a path). */
export async function checkRegularFile(file: string, maxBytes = MAX_IMAGE_BYTES): Promise<void> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${code ?? (e as Error).message})`);
  }
  if (!st.isFile()) throw new DataError(`${file}: ${kindOf(st)}, not an image file`);
  if (st.size > maxBytes) throw new DataError(`${file}: ${st.size} bytes, over the ${maxBytes}-byte limit for one image`);
}

/** Refuses an image whose header declares more than `maxPixels` before anything decodes it. */
export function checkPixels(file: string, width: number | undefined, height: number | undefined, maxPixels = MAX_IMAGE_PIXELS): void {
  if (width === undefined || height === undefined) return;
  if (width * height > maxPixels) {
    throw new DataError(`${file}: the header declares ${width}x${height} pixels (${((width * height) / 1e6).toFixed(0)} megapixels), over the ${(maxPixels / 1e6).toFixed(0)}-megapixel decoding limit; not decoded`);
  }
}
