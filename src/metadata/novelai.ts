/**
 * NovelAI's signature on its images: the `signed_hash` field of the generation record (the
 * `Comment` JSON) is an Ed25519 signature, by NovelAI's key, over the image's RGB bytes (row by
 * row, the alpha channel left out) followed by the record without `signed_hash`, serialised as
 * Python's `json.dumps` writes it (NovelAI/novelai-image-metadata, nai_sig.py). A valid signature
 * says NovelAI's service made these exact pixels; any change of a pixel breaks it.
 *
 * Python's serialisation is reproduced here: keys in their order, ', ' and ': ' separators,
 * non-ASCII as \uXXXX, and numbers as Python prints them (5.0 stays 5.0, 1e-05 stays 1e-05), which
 * is why the record is parsed into a tree that keeps each number's kind.
 */
import { createPublicKey, verify } from 'node:crypto';

/** NovelAI's public verification key (base64 of the raw Ed25519 key), from nai_sig.py. */
export const NOVELAI_PUBLIC_KEY = 'Y2JcQAOhLwzwSDUJPNgL04nS0Tbqm7cSRc4xk0vRMic=';

/** A JSON value that remembers what Python needs to print it again: object key order, int or float. */
export type PyJson = { t: 'obj'; entries: [string, PyJson][] } | { t: 'arr'; items: PyJson[] } | { t: 'str'; v: string } | { t: 'int'; v: bigint } | { t: 'float'; v: number } | { t: 'bool'; v: boolean } | { t: 'null' };

/** Parses JSON text into a PyJson tree (as Python's json.loads would see it); throws on bad JSON. */
export function parsePyJson(text: string): PyJson {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (what: string): never => {
    throw new Error(`bad JSON at ${i}: ${what}`);
  };
  const value = (depth: number): PyJson => {
    if (depth > 200) fail('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: [string, PyJson][] = [];
      ws();
      if (text[i] === '}') return i++, { t: 'obj', entries };
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const k = str();
        ws();
        if (text[i++] !== ':') fail("expected ':'");
        const v = value(depth + 1);
        // Python's dict keeps the first position of a repeated key and the last value.
        const at = entries.findIndex((e) => e[0] === k);
        if (at >= 0) entries[at][1] = v;
        else entries.push([k, v]);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return i++, { t: 'obj', entries };
        else fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const items: PyJson[] = [];
      ws();
      if (text[i] === ']') return i++, { t: 'arr', items };
      for (;;) {
        items.push(value(depth + 1));
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return i++, { t: 'arr', items };
        else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return { t: 'str', v: str() };
    if (text.startsWith('true', i)) return (i += 4), { t: 'bool', v: true };
    if (text.startsWith('false', i)) return (i += 5), { t: 'bool', v: false };
    if (text.startsWith('null', i)) return (i += 4), { t: 'null' };
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail('unexpected character');
    i += m[0].length;
    return m[2] || m[3] ? { t: 'float', v: Number(m[0]) } : { t: 'int', v: BigInt(m[0]) };
  };
  const str = (): string => {
    const start = i;
    i++;
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text[i++];
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = text[i++];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) out += simple[e];
      else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i, i + 4))) {
        out += String.fromCharCode(parseInt(text.slice(i, i + 4), 16));
        i += 4;
      } else fail(`bad escape in the string at ${start}`);
    }
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('text after the value');
  return v;
}

/** Python's repr of a float (shortest round-trip digits; exponent form below 1e-4 or from 1e16). */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e');
  const exp = Number(expText);
  const sign = mant.startsWith('-') ? '-' : '';
  const digits = mant.replace('-', '').replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const whole = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${whole}.${frac || '0'}`;
}

/** Python's json.dumps with its defaults (ensure_ascii, ', ' and ': ' separators). */
export function pythonJsonDumps(v: PyJson): string {
  switch (v.t) {
    case 'obj':
      return `{${v.entries.map(([k, x]) => `${pyString(k)}: ${pythonJsonDumps(x)}`).join(', ')}}`;
    case 'arr':
      return `[${v.items.map(pythonJsonDumps).join(', ')}]`;
    case 'str':
      return pyString(v.v);
    case 'int':
      return v.v.toString();
    case 'float':
      return pythonFloatRepr(v.v);
    case 'bool':
      return v.v ? 'true' : 'false';
    case 'null':
      return 'null';
  }
}

function pyString(s: string): string {
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s[k];
    const code = s.charCodeAt(k);
    const named: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };
    if (named[c]) out += named[c];
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += c;
  }
  return `${out}"`;
}

/** The outcome of checking a NovelAI signature. */
export interface NovelAiSignature {
  /** valid: the key signed these pixels and this record; invalid: it did not (pixels or record changed); unreadable: the record or signature is malformed. */
  status: 'valid' | 'invalid' | 'unreadable';
  /** 'NovelAI' for NovelAI's published key, else 'the key given'. */
  key: string;
  /** Where the signed record was found. */
  foundIn: string;
  detail?: string;
}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * Verifies the `signed_hash` in a NovelAI generation record (the `Comment` JSON text, possibly
 * wrapping another `Comment` as NovelAI's alpha copy does) against the image's RGB bytes.
 */
export function verifyNovelAiSignature(commentText: string, rgb: Uint8Array, foundIn: string, publicKey = NOVELAI_PUBLIC_KEY): NovelAiSignature {
  const key = publicKey === NOVELAI_PUBLIC_KEY ? 'NovelAI' : 'the key given';
  let record: PyJson;
  try {
    record = parsePyJson(commentText);
    const inner = record.t === 'obj' ? record.entries.find(([k]) => k === 'Comment')?.[1] : undefined;
    if (inner?.t === 'str') record = parsePyJson(inner.v);
  } catch (e) {
    return { status: 'unreadable', key, foundIn, detail: `the record is not JSON (${(e as Error).message})` };
  }
  if (record.t !== 'obj') return { status: 'unreadable', key, foundIn, detail: 'the record is not a JSON object' };
  const sig = record.entries.find(([k]) => k === 'signed_hash')?.[1];
  if (sig?.t !== 'str') return { status: 'unreadable', key, foundIn, detail: 'no signed_hash in the record' };
  const signature = Buffer.from(sig.v, 'base64');
  if (signature.length !== 64) return { status: 'unreadable', key, foundIn, detail: 'the signature is not 64 bytes' };
  const unsigned: PyJson = { t: 'obj', entries: record.entries.filter(([k]) => k !== 'signed_hash') };
  const message = Buffer.concat([Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), Buffer.from(pythonJsonDumps(unsigned), 'utf8')]);
  const spki = Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(publicKey, 'base64')]);
  const ok = verify(null, message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature);
  return { status: ok ? 'valid' : 'invalid', key, foundIn };
}
