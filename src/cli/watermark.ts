/**
 * `diffuse keygen` (a secret watermark key) and `diffuse watermark detect` (one line per image:
 * p-value, decision, payload).
 */
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { ensureWritable, readImage } from '../data/index.js';
import { writeFileAtomic } from '../engine/index.js';
import { MAX_PAYLOAD, PAYLOAD_BITS, PAYLOAD_BIT_CHOICES, WatermarkDetection, payloadBitsOf, WatermarkKey, describeMap, describePayload, detectWatermark, readPayload, generateKey, isMoved, readKey } from '../forensics/index.js';
import { StableDiffusionPipeline } from '../latent/index.js';
import { DiffusionPipeline } from '../pipelines/index.js';
import { CREDENTIAL_FILES, makeSigningChain } from '../provenance/index.js';
import { readRunConfig } from '../run/run.js';
import { runImageShape } from '../run/autoencoder.js';
import type { Command, Flag, FlagValues } from './flags.js';
import { UsageError, num, oneOf } from './flags.js';
import { ProgressLine } from './progress.js';

/** Images checked together by `watermark detect`: one inversion batch, and enough searches to keep every core busy. */
const CHUNK = 16;

/** The arrays one after another. */
function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/** --key and --payload of the commands that make images (sample, img2img, inpaint). */
export const WATERMARK_FLAGS: Record<string, Flag> = {
  key: { type: 'string', description: 'watermark the images with this key (diffuse keygen): Gaussian Shading in the initial noise' },
  payload: { type: 'string', description: "with --key: an id written into the watermark (which user or job made the images), of up to the key's payload bits (32 unless keygen --payload-bits said fewer)", default: '0' },
};

/**
 * The watermark flags, checked: the key and the payload. What a watermark asks of the sampler
 * (eta 0, no stochastic scheduler) is the sampling plan's to say (pipelines/sampling-plan.ts).
 */
export function watermarkFlags(v: FlagValues): { key?: WatermarkKey; payload: number } {
  const key = v.key === undefined ? undefined : readKey(String(v.key));
  const payload = num(v, 'payload', { int: true, min: 0, max: MAX_PAYLOAD }) as number;
  if (!key && v.payload !== '0' && v.payload !== undefined) throw new UsageError('--payload needs --key (the watermark that carries it)');
  const bits = key ? payloadBitsOf(key) : PAYLOAD_BITS;
  if (payload > 2 ** bits - 1) throw new UsageError(bits === 0 ? `--payload: ${v.key} carries no payload (made with --payload-bits 0); leave --payload out` : `--payload: ${v.key} carries ${bits} payload bits, so the payload must be in 0..${2 ** bits - 1}, got ${payload}`);
  return { key, payload };
}

export const commandKeygen: Command = {
  summary: 'make a secret watermark key (a small JSON file), or with --c2pa a local signing certificate for content credentials',
  usage: 'diffuse keygen --out key.json [--payload-bits 32] [--force] | diffuse keygen --c2pa --out DIR [--name "My Lab"] [--force]',
  options: {
    out: { type: 'string', description: 'where to write the key (with --c2pa: a folder)' },
    'payload-bits': { type: 'string', description: `payload bits the key's marks carry: ${PAYLOAD_BIT_CHOICES.join(', ')}. Fewer bits make the mark easier to find and its payload easier to read on small latent grids (8 suits a 4x16x16 latent; docs/WATERMARK.md); 0 carries none`, default: '32' },
    c2pa: { type: 'boolean', description: 'make an ES256 certificate chain (root + signer) for content credentials instead' },
    name: { type: 'string', description: "with --c2pa: the signer's name in the certificates", default: 'Diffuse local signer' },
    force: { type: 'boolean', description: 'overwrite an existing file (images made with the old key can no longer be recognised)' },
  },
  async run(v) {
    if (!v.out) throw new UsageError(v.c2pa ? '--out DIR is required' : '--out FILE is required');
    const out = String(v.out);
    if (v.c2pa) return writeC2paCredentials(out, String(v.name), Boolean(v.force));
    if (existsSync(out) && !v.force) throw new UsageError(`${out} exists; a new key there would orphan the images made with the old one (pass --force to replace it)`);
    await ensureWritable(out);
    const payloadBits = num(v, 'payload-bits', { int: true, min: 0, max: 32 }) as number;
    if (!(PAYLOAD_BIT_CHOICES as readonly number[]).includes(payloadBits)) throw new UsageError(`--payload-bits must be one of ${PAYLOAD_BIT_CHOICES.join(', ')} (each bit owns whole groups of the 32 the test ranks within), got ${payloadBits}`);
    await writeFileAtomic(out, JSON.stringify(generateKey('gaussian-shading', { payloadBits }), null, 2) + '\n');
    await chmod(out, 0o600);
    process.stderr.write(
      `wrote ${out}: a Gaussian Shading watermark key (32 random bytes; ${payloadBits ? `a payload of ${payloadBits} bits` : 'no payload'}). Keep it secret: whoever has it can detect and forge the watermark.\n` +
        `Use it with 'diffuse sample --run DIR (or --model DIR) --key ${out} --payload ID' and 'diffuse watermark detect IMAGE --run DIR (or --model DIR) --key ${out}'.\n`,
    );
  },
};

/** `diffuse keygen --c2pa`: the chain's three PEM files in a folder, the key readable by the owner only. */
async function writeC2paCredentials(dir: string, name: string, force: boolean): Promise<void> {
  const files = Object.values(CREDENTIAL_FILES).map((f) => path.join(dir, f));
  const existing = files.filter((f) => existsSync(f));
  if (existing.length && !force) throw new UsageError(`${existing.join(', ')} exist; pass --force to replace them (credentials already in signed images stay valid)`);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new UsageError(`${dir} is a file; --c2pa --out takes a folder`);
  await mkdir(dir, { recursive: false }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw new UsageError(`cannot make the folder ${dir}: ${e.code === 'ENOENT' ? 'its parent does not exist' : e.message}`);
  });
  const chain = await makeSigningChain(name);
  const [key, cert, root] = files;
  await writeFileAtomic(key, chain.key);
  await chmod(key, 0o600);
  await writeFileAtomic(cert, chain.certificate);
  await writeFileAtomic(root, chain.root);
  process.stderr.write(
    `wrote ${key} (private: keep it secret), ${cert} (the signer) and ${root} (its root).\n` +
      `Sign outputs with 'diffuse sample ... --c2pa ${dir}' (or set DIFFUSE_C2PA=${dir}).\n` +
      `This chain is self-signed: other C2PA validators report its credentials as valid but untrusted. ` +
      `Checks that should trust it take the root: 'diffuse inspect IMAGE --trust ${root}'. For credentials others trust, use a certificate from a CA on the C2PA trust list (--c2pa-key, --c2pa-cert).\n`,
  );
}

export const commandWatermark: Command = {
  summary: "detect Diffuse's watermark in images (DDIM inversion with the model that made them, a run or a Stable Diffusion folder; a p-value per image)",
  usage: 'diffuse watermark detect IMAGE... --run DIR | --model DIR --key key.json [--steps 50] [--fpr 0.01] [--max-rotation 0 | --geometric [--threads N]] [--json]',
  positionals: true,
  options: {
    run: { type: 'string', description: 'the run folder of the model that made the images' },
    model: { type: 'string', description: 'or the model folder that made them with diffuse sample --model --key: a Stable Diffusion folder (ONNX components) or a Diffuse export' },
    width: { type: 'string', description: 'with --model: resize each image to this width first (the size it was made at)' },
    height: { type: 'string', description: 'with --model: and this height' },
    key: { type: 'string', description: 'the watermark key (diffuse keygen)' },
    steps: { type: 'string', description: 'DDIM inversion steps (fewer: faster, less accurate)', default: '50' },
    fpr: { type: 'string', description: 'false-positive rate of the decision', default: '0.01' },
    'max-rotation': { type: 'string', description: 'also look for the mark with the image turned back by up to this many degrees (0-45; for photos or scans turned a little; the p-value pays for the search)', default: '0' },
    geometric: { type: 'boolean', description: 'also look for the mark after a turn by any angle or a crop enlarged back to size (about 1 s more per unmarked image and core; the p-value pays for the search); on a latent run the image itself is moved back and inverted again: 119 turns, and crops of images up to about 100 px a side, about 10 s per unmarked 64 px image' },
    threads: { type: 'string', description: "threads of --geometric's search (default: one per core)" },
    prompt: { type: 'string', description: 'text-conditional runs and --model: the prompt to invert with (the empty prompt works without knowing the one used)', default: '' },
    resize: { type: 'boolean', description: "resize images of another size to the model's (the result is then less reliable)" },
    json: { type: 'boolean', description: 'one JSON object per image on stdout' },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  },
  async run(v, positionals) {
    const [sub, ...files] = positionals;
    if (sub !== 'detect') throw new UsageError(`unknown subcommand '${sub ?? ''}' (use: diffuse watermark detect IMAGE... --run DIR --key key.json)`);
    if (files.length === 0) throw new UsageError('give one or more images to check');
    if (v.run !== undefined && v.model !== undefined) throw new UsageError('give --run or --model, not both');
    if (!v.run && !v.model) throw new UsageError('--run DIR or --model DIR is required: the model that made the images');
    if (!v.key) throw new UsageError('--key FILE is required (the key the images were watermarked with)');
    const key = readKey(String(v.key));
    if (v.model) return detectWithModel(v, files, key);
    if (v.width !== undefined || v.height !== undefined) throw new UsageError('--width and --height apply with --model (a run takes images of its own size; --resize resizes to it)');
    const config = readRunConfig(String(v.run));
    const steps = num(v, 'steps', { int: true, min: 1 }) as number;
    const fpr = num(v, 'fpr', { min: 1e-12, max: 0.5 }) as number;
    const maxRotation = num(v, 'max-rotation', { int: true, min: 0, max: 45 }) as number;
    const geometric = Boolean(v.geometric);
    if (geometric && maxRotation > 0) throw new UsageError('choose --geometric or --max-rotation: the geometric search already covers every turn');
    const threads = num(v, 'threads', { int: true, min: 1, max: 256 });
    const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
    const [channels, size] = runImageShape(String(v.run), config);
    if (config.latent && maxRotation > 0) throw new UsageError('a latent run is searched for turns with --geometric (any angle; about 120 inversions per image), not --max-rotation');
    const pipe = await DiffusionPipeline.fromRun(String(v.run), { device });
    const bar = new ProgressLine();
    let failed = 0;
    try {
      // Images are checked CHUNK at a time: one inversion for the chunk, and the geometric search
      // spread over the cores; the lines come in the order of the files all the same.
      for (let at = 0; at < files.length; at += CHUNK) {
        const names = files.slice(at, at + CHUNK);
        const out: { line: string; record: Record<string, unknown> }[] = new Array(names.length);
        const fail = (k: number, e: unknown) => {
          // One bad file does not stop the others.
          failed++;
          const msg = (e as Error).message.split('\n')[0];
          out[k] = { line: `${names[k]}: error: ${msg}`, record: { file: names[k], error: msg } };
        };
        const read: { k: number; data: Float32Array }[] = [];
        for (const [k, file] of names.entries()) {
          try {
            read.push({ k, data: (await readImage(file, { channels: channels as 1 | 3, size, resize: Boolean(v.resize) })).data });
          } catch (e) {
            fail(k, e);
          }
        }
        const what = files.length === 1 ? files[0] : `images ${at + 1}-${at + names.length} of ${files.length}`;
        const shape: [number, number, number] = [channels, size, size];
        try {
          const found = read.length === 0 ? [] : await detectWatermark({ data: concat(read.map((r) => r.data)), count: read.length, shape }, pipe, key, {
            steps,
            fpr,
            maxRotation,
            geometric,
            ...(threads !== undefined ? { threads } : {}),
            ...(config.text ? { prompt: String(v.prompt) } : {}),
            onStep: (i, total) => bar.update(i + 1 === total && geometric ? `${what}: searching turns and crops` : `${what}: inverting, step ${i + 1}/${total}`),
          });
          found.forEach((d, n) => (out[read[n].k] = detectionLine(names[read[n].k], d, { inversionSteps: steps, maxRotation, rotation: d.rotation, geometric, map: d.map })));
        } catch (e) {
          for (const { k } of read) fail(k, e);
        }
        for (const { line, record } of out) {
          if (v.json) console.log(JSON.stringify(record));
          else bar.say(line);
        }
      }
    } finally {
      bar.done();
      await pipe.release();
    }
    if (failed === files.length) throw new Error(`no image could be checked (${failed} error${failed > 1 ? 's' : ''} above)`);
  },
};

/** The line and JSON record of one image's result. */
function detectionLine(file: string, d: WatermarkDetection, extra: Record<string, unknown>): { line: string; record: Record<string, unknown> } {
  const p = d.pValue > 0 ? d.pValue.toExponential(2) : `1e${Math.floor(d.log10P)}`;
  const meanConfidence = d.bitConfidence.length ? d.bitConfidence.reduce((a, b) => a + b, 0) / d.bitConfidence.length : null;
  // Read only for a detection: the payload's reliability is a fit (14 ms), and a clean image has no payload.
  const reading = d.detected ? readPayload(d) : undefined;
  const turned = d.detected && isMoved(d.map) ? `, found ${describeMap(d.map)}` : '';
  return {
    line: `${file}: ${d.detected ? 'WATERMARKED' : 'not detected'} (p = ${p}, at FPR ${d.fpr})${reading ? `, ${describePayload(reading)}${turned}` : ''}`,
    record: { file, detected: d.detected, pValue: d.pValue, log10P: d.log10P, fpr: d.fpr, payload: d.detected && d.payloadBits ? d.payload : null, payloadBits: d.payloadBits, payloadReliability: reading?.reliability ?? null, uncertainBits: reading?.uncertainBits ?? null, payloadVoteAgreement: meanConfidence, agreement: d.agreement, maxAgreement: d.maxAgreement, positions: d.positions, ...extra },
  };
}

/**
 * `watermark detect --model DIR`: each image inverted on its own (images may differ in size)
 * through the folder's encoder and DDIM with its U-Net. The mark lives on the latent grid of the
 * size the image was made at, so images are read at their own size (sides multiples of 8), or
 * resized to --width x --height when given.
 */
async function detectWithModel(v: FlagValues, files: string[], key: WatermarkKey): Promise<void> {
  for (const flag of ['max-rotation', 'geometric', 'threads', 'resize'] as const) {
    if (v[flag] !== undefined && v[flag] !== '0' && v[flag] !== false) throw new UsageError(`--${flag} applies to --run (a Stable Diffusion image is checked as it is, at its own size; --width and --height resize it; the library's detectWatermark searches turns with geometric, at about 120 inversions of the folder's U-Net per image)`);
  }
  const steps = num(v, 'steps', { int: true, min: 1 }) as number;
  const fpr = num(v, 'fpr', { min: 1e-12, max: 0.5 }) as number;
  const width = num(v, 'width', { int: true, min: 8 });
  const height = num(v, 'height', { int: true, min: 8 });
  if ((width === undefined) !== (height === undefined)) throw new UsageError('give both --width and --height, or neither (images keep their size)');
  if ((width ?? 0) % 8 || (height ?? 0) % 8) throw new UsageError(`--width and --height must be multiples of 8 (the autoencoder's factor), got ${width}x${height}`);
  const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
  const pipe = await StableDiffusionPipeline.fromPretrained(String(v.model), { device });
  const bar = new ProgressLine();
  let failed = 0;
  try {
    for (const note of pipe.notes) bar.say(`note: ${note}`);
    for (const file of files) {
      let result: { line: string; record: Record<string, unknown> };
      try {
        const image = await readImage(file, { channels: 3, convert: true, ...(width && height ? { resizeTo: [width, height] as [number, number] } : {}) });
        const [, h, w] = image.shape;
        if (h % 8 || w % 8) throw new Error(`is ${w}x${h}; images a Stable Diffusion folder makes have sides that are multiples of 8, so this one was resized or cropped since (give --width and --height of the size it was made at to resize it back)`);
        const [d] = await detectWatermark({ data: image.data, count: 1, shape: image.shape }, pipe, key, {
          steps,
          fpr,
          prompt: String(v.prompt),
          onStep: (i, total) => bar.update(`${file}: inverting, step ${i + 1}/${total}`),
        });
        result = detectionLine(file, d, { inversionSteps: steps, width: w, height: h });
      } catch (e) {
        // One bad file does not stop the others.
        failed++;
        const msg = (e as Error).message.split('\n')[0].replace(`${file}: `, '').replace(`${file} `, '');
        result = { line: `${file}: error: ${msg}`, record: { file, error: msg } };
      }
      if (v.json) console.log(JSON.stringify(result.record));
      else bar.say(result.line);
    }
  } finally {
    bar.done();
    await pipe.release();
  }
  if (failed === files.length) throw new Error(`no image could be checked (${failed} error${failed > 1 ? 's' : ''} above)`);
}
