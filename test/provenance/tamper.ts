import { deflateSync, inflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One PNG chunk: length, type, data and CRC. */
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * Changes one pixel of a PNG and keeps every other chunk (a C2PA manifest included) as it was:
 * the IDAT data is inflated, one sample byte changed, deflated again and its CRC rewritten, so the
 * file still decodes and only the content credentials can tell.
 */
export function changeOnePixel(png: Uint8Array, at = 10): Buffer {
  const b = Buffer.from(png);
  const chunks: { type: string; data: Buffer }[] = [];
  for (let i = 8; i < b.length; ) {
    const len = b.readUInt32BE(i);
    chunks.push({ type: b.toString('latin1', i + 4, i + 8), data: b.subarray(i + 8, i + 8 + len) });
    i += 12 + len;
  }
  const idat = Buffer.concat(chunks.filter((c) => c.type === 'IDAT').map((c) => c.data));
  const raw = inflateSync(idat);
  const width = b.readUInt32BE(16);
  // Skip the filter byte of the first scanline: change a sample in the second row.
  const pos = width + 2 + at;
  raw[pos] ^= 0x40;
  const out: Buffer[] = [b.subarray(0, 8)];
  let wroteIdat = false;
  for (const c of chunks) {
    if (c.type === 'IDAT') {
      if (wroteIdat) continue;
      wroteIdat = true;
      c.data = deflateSync(raw);
    }
    const head = Buffer.alloc(8);
    head.writeUInt32BE(c.data.length, 0);
    head.write(c.type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), c.data])), 0);
    out.push(head, c.data, crc);
  }
  return Buffer.concat(out);
}
