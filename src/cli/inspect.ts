/**
 * `diffuse inspect`: an analyst's report on any image (content credentials, generation metadata;
 * with a Diffuse run also its watermark and detector), and `diffuse detector calibrate`, which
 * fits the detector for a run.
 */
import * as path from 'node:path';
import { BUILTIN_DATASETS, DataError, DatasetName, decodeImages, ensureWritable, imagePaths, listImages, loadDataset } from '../data/index.js';
import { writeFileAtomic } from '../engine/index.js';
import { DEFAULT_DETECTOR_CROP, calibrateAutoencoderDetector, calibrateDetector, calibrationStart, readKey } from '../forensics/index.js';
import { StableDiffusionPipeline } from '../latent/index.js';
import { readImage } from '../data/read-image.js';
import { readRegularFile } from '../data/safe-file.js';
import type { ImageBatch } from '../pipelines/index.js';
import { DETECTOR_FILE, InspectReport, Inspector, csvHeader, csvRow, reportHtml, reportText } from '../inspect/index.js';
import type { ReportPictures } from '../inspect/index.js';
import { DiffusionPipeline } from '../pipelines/index.js';
import { readRunConfig } from '../run/run.js';
import { runImageShape } from '../run/autoencoder.js';
import type { Command, FlagValues } from './flags.js';
import { UsageError, list, modelFlag, num, oneOf } from './flags.js';
import { readTrustSettings } from './credentials.js';
import { ProgressLine } from './progress.js';
import { safeText } from '../inspect/format.js';

export const commandInspect: Command = {
  summary: "an analyst's report on any image: content credentials, generation metadata, the SD invisible mark; with --run, a Diffuse model's watermark and detector",
  // Exit code 0 when it ran, whatever the verdicts (scripts read --json); 1 for bad usage or when no image could be read.
  usage: 'diffuse inspect IMAGE... | FOLDER [--trust anchors.pem|list.json ...] [--trust-allowed allowed.pem] [--trust-config store.cfg] [--json] [--csv out.csv] [--html report.html] [--metadata-only] [--threads N] [--run DIR [--key key.json] [--heatmaps DIR] [--fast] [--max-rotation N | --geometric] [--resize] | --model DIR [--key key.json] [--heatmaps DIR] [--fast]]',
  positionals: true,
  options: {
    run: { type: 'string', description: "a Diffuse run folder: adds its watermark and detector for images of the model's size (without it: file-level signals of any image)" },
    model: { type: 'string', description: "or a model folder: a Diffuse export (as its run), or a Stable Diffusion folder of ONNX components: adds its autoencoder detector (DIR/detector.json, from diffuse detector calibrate --model) and, with --key, the watermark diffuse sample --model --key writes" },
    key: { type: 'string', description: "the watermark key (diffuse keygen) of --run's watermark; without it the watermark is not checked" },
    trust: { type: 'string', multiple: true, description: 'trust anchors for content credentials: a PEM bundle (the C2PA trust list, its interim list, your own c2pa-root.pem from diffuse keygen --c2pa) or the C2PA trust list in JSON' },
    'trust-allowed': { type: 'string', multiple: true, description: 'allowed list of end-entity signing certificates (PEM, or base64 SHA-256 hashes one per line), trusted as they are' },
    'trust-config': { type: 'string', description: "extended key usages to accept, one OID per line (the trust list's store.cfg; default: c2pa-rs's)" },
    json: { type: 'boolean', description: 'one JSON object per image on stdout (fields: docs/INSPECT.md) instead of the text report' },
    'metadata-only': { type: 'boolean', description: "credentials and metadata only: skip the checks that decode the pixels (the Stable Diffusion invisible mark, metadata hidden in the pixels, NovelAI's signature)" },
    csv: { type: 'string', description: 'also write a CSV summary, one row per image' },
    html: { type: 'string', description: 'also write one self-contained HTML page with each image, its heat map and the three signals' },
    heatmaps: { type: 'string', description: "write each image's detector heat map as a PNG into this folder" },
    steps: { type: 'string', description: 'DDIM inversion steps of the watermark check', default: '50' },
    fast: { type: 'boolean', description: 'the watermark check with 25 inversion steps instead of 50 (docs/INSPECT.md: its cost in accuracy)' },
    fpr: { type: 'string', description: 'false-positive rate of the watermark decision', default: '0.01' },
    'max-rotation': { type: 'string', description: 'also look for the watermark with the image turned back by up to this many degrees (0-45; costs about 3.5x the check at 20)', default: '0' },
    geometric: { type: 'boolean', description: 'also look for the watermark after a turn by any angle or a crop enlarged back to size (about 1 s more per unmarked image and core; images are then inspected several at a time)' },
    threads: { type: 'string', description: "threads: of --geometric's search with --run, of the files' inspection without (default: one per core; 1: one image at a time, in the main thread)" },
    prompt: { type: 'string', description: 'text-conditional runs and --model: the prompt to invert with (the empty prompt works without knowing the one used)', default: '' },
    resize: { type: 'boolean', description: "resize images of another size to the model's (scores are then less reliable)" },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  },
  async run(v, positionals) {
    if (positionals.length === 0) throw new UsageError('give one or more images or folders to inspect');
    const runDir = v.run === undefined ? undefined : String(v.run);
    const modelDir = v.model === undefined ? undefined : String(v.model);
    if (runDir !== undefined && modelDir !== undefined) throw new UsageError('give --run or --model, not both');
    const config = runDir === undefined ? undefined : readRunConfig(runDir);
    if (runDir === undefined && modelDir === undefined) {
      const modelFlag = (['key', 'fast', 'geometric', 'resize'] as const).find((f) => v[f] !== undefined && v[f] !== false);
      if (modelFlag) throw new UsageError(`--${modelFlag} is about a model's watermark or detector: give the model's --run DIR (or --model DIR) too`);
    }
    if (modelDir !== undefined) {
      const runFlag = (['geometric', 'resize'] as const).find((f) => v[f] !== undefined && v[f] !== false) ?? (v['max-rotation'] !== '0' ? 'max-rotation' : undefined);
      if (runFlag) throw new UsageError(`--${runFlag} applies to --run: a Stable Diffusion folder's signals read the image as it is`);
    }
    const key = v.key === undefined ? undefined : readKey(String(v.key));
    const trust = readTrustSettings(list(v, 'trust'), list(v, 'trust-allowed'), v['trust-config'] === undefined ? undefined : String(v['trust-config']));
    const steps = v.fast ? 25 : (num(v, 'steps', { int: true, min: 1 }) as number);
    const fpr = num(v, 'fpr', { min: 1e-12, max: 0.5 }) as number;
    const maxRotation = num(v, 'max-rotation', { int: true, min: 0, max: 45 }) as number;
    const geometric = Boolean(v.geometric);
    if (config?.latent && maxRotation > 0) throw new UsageError(`${runDir} is a latent run: it is searched for turns with --geometric (any angle; about 120 inversions per image), not --max-rotation`);
    if (geometric && maxRotation > 0) throw new UsageError('choose --geometric or --max-rotation: the geometric search already covers every turn');
    const threads = num(v, 'threads', { int: true, min: 1, max: 256 });
    const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
    for (const f of [v.csv, v.html]) if (f !== undefined) await ensureWritable(String(f));
    const heatDir = v.heatmaps === undefined ? undefined : String(v.heatmaps);
    if (heatDir) await ensureWritable(path.join(heatDir, 'x.png'));
    const files = await imagePaths(positionals);

    const settings = { device, key, trust, metadataOnly: Boolean(v['metadata-only']), inversionSteps: steps, fpr, maxRotation, geometric, threads: threads ?? (files.length > 1 ? undefined : 1), resize: Boolean(v.resize), ...(config?.text || modelDir ? { prompt: String(v.prompt) } : {}) };
    const inspector = modelDir === undefined ? await Inspector.open(runDir, settings) : await Inspector.openStableDiffusion(modelDir, settings);
    for (const note of inspector.notes) process.stderr.write(`note: ${note}\n`);
    const wantPictures = v.html !== undefined;
    const pictures: { report: InspectReport; pictures: ReportPictures }[] = [];
    // The CSV summary is built only when asked for (a row per image, written at the end).
    const csv: string[] | undefined = v.csv === undefined ? undefined : [csvHeader()];
    const bar = new ProgressLine();
    let failed = 0;
    const started = Date.now();
    // Up to inspector.parallel images are in work at once (the geometric search of one beside the
    // inversion of the next); reports still come in the order of the files.
    const inspectOne = (i: number): Promise<{ report: InspectReport; pictures?: ReportPictures }> => {
      const file = files[i];
      const what = `${i + 1}/${files.length}`;
      bar.update(`inspecting ${what}: ${file}`);
      return inspector
        .inspect(file, { pictures: wantPictures, heatDir, onStep: (s) => bar.update(`inspecting ${what}: ${file}: ${s}`) })
        .catch((e: Error) => ({ report: { file, error: e.message.split('\n')[0] } }));
    };
    // Each report is let go once written (a folder may hold millions of images).
    const inWork: (Promise<{ report: InspectReport; pictures?: ReportPictures }> | undefined)[] = [];
    try {
      for (let i = 0; i < files.length; i++) {
        for (let j = inWork.length; j < Math.min(files.length, i + inspector.parallel); j++) inWork.push(inspectOne(j));
        const one = (await inWork[i])!;
        inWork[i] = undefined;
        const { report } = one;
        if (report.error) failed++;
        if (v.json) console.log(JSON.stringify(report));
        else {
          bar.done();
          console.log(reportText(report).trimEnd());
        }
        csv?.push(csvRow(report));
        if (wantPictures) pictures.push({ report, pictures: one.pictures ?? {} });
      }
    } finally {
      bar.done();
      await inspector.release();
    }
    const seconds = (Date.now() - started) / 1000;
    const notes = [`inspected ${files.length - failed} of ${files.length} image(s) in ${seconds.toFixed(1)} s (${(seconds / files.length).toFixed(2)} s per image)`];
    if (csv) {
      await writeFileAtomic(String(v.csv), csv.join(''));
      notes.push(`wrote ${String(v.csv)}`);
    }
    if (v.html !== undefined) {
      await writeFileAtomic(String(v.html), reportHtml(pictures, { ...(runDir ?? modelDir ? { run: path.basename(path.resolve((runDir ?? modelDir) as string)) } : {}), created: new Date().toISOString() }));
      notes.push(`wrote ${String(v.html)}`);
    }
    process.stderr.write(`${notes.join('; ')}\n`);
    if (failed === files.length) throw new UsageError(`no image could be inspected (${failed} of ${failed} failed; their lines say why)`);
  },
};

export const commandDetector: Command = {
  summary: "fit the detector of this run's samples on held-out real images, or of a Stable Diffusion folder's autoencoder on real and generated images (writes DIR/detector.json)",
  usage: 'diffuse detector calibrate --run DIR [--real FOLDER] [--count 1000] | --model DIR --real FOLDER --generated FOLDER [--count 1000] [--crop 512] [--jpeg 95,90,75,50] [--out FILE]',
  positionals: true,
  options: {
    run: { type: 'string', description: 'the run folder' },
    model: { type: 'string', description: "or a model folder: a Diffuse export (as its run), or a Stable Diffusion folder of ONNX components: calibrates the detector of its autoencoder's reconstructions" },
    real: { type: 'string', description: 'held-out real images the model never trained on (default for the built-in sets: their test split from index 5000, or from its middle for emoji)' },
    generated: { type: 'string', description: "with --model: images made through the folder's autoencoder (e.g. diffuse sample --model DIR --images OUT), saved as the real ones are" },
    count: { type: 'string', description: 'real images to use; as many samples are drawn (default 1000, or as many as a built-in set keeps for calibration if fewer: 373 for emoji); with --model, at most this many of each folder' },
    crop: { type: 'string', description: 'with --model: every image is read as its centred square of this side, unresized (smaller images are left out)', default: String(DEFAULT_DETECTOR_CROP) },
    jpeg: { type: 'string', description: 'with --model: JPEG qualities with a profile each', default: '95,90,75,50' },
    out: { type: 'string', description: 'with --model: where to write the calibration (default DIR/detector.json, which inspect --model DIR reads)' },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  },
  async run(v, positionals) {
    const [sub, ...extra] = positionals;
    if (sub !== 'calibrate' || extra.length) throw new UsageError(`unknown subcommand '${positionals.join(' ')}' (use: diffuse detector calibrate --run DIR, or --model DIR)`);
    if (v.run !== undefined && v.model !== undefined) throw new UsageError('give --run or --model, not both');
    if (v.model !== undefined) return calibrateFolder(v);
    for (const f of ['generated', 'out'] as const) if (v[f] !== undefined) throw new UsageError(`--${f} applies with --model (a run draws its own samples and keeps detector.json in its folder)`);
    if (!v.run) throw new UsageError('--run DIR (or --model DIR) is required');
    const runDir = String(v.run);
    const config = readRunConfig(runDir);
    const asked = num(v, 'count', { int: true, min: 50 });
    let count = asked ?? 1000;
    // The images the model makes (a latent run's are its autoencoder's).
    const shape = runImageShape(runDir, config);
    const [channels, side] = shape;
    const per = shape[0] * shape[1] * shape[2];
    let real: Float32Array;
    let source: string;
    if (v.real !== undefined) {
      const files = listImages(String(v.real)).slice(0, count);
      if (files.length < 50) throw new UsageError(`${String(v.real)}: ${files.length} images; calibration needs at least 50`);
      real = (await decodeImages(files, { size: side, channels: channels as 1 | 3 })).images;
      source = `${path.basename(path.resolve(String(v.real)))} (${files.length} images)`;
    } else {
      const name = config.data.source;
      if (!BUILTIN_DATASETS.includes(name as DatasetName)) throw new UsageError(`this run trained on '${name}', which has no held-out split here: give --real FOLDER with images the model never saw`);
      const test = await loadDataset(name, 'test', { size: side, channels: channels as 1 | 3 });
      const from = calibrationStart(test.count);
      if (asked === undefined) count = Math.min(count, test.count - from);
      if (test.count < from + count) throw new UsageError(`--count ${count}: the ${name} test split has ${test.count - from} images kept for calibration (from index ${from}); use --count ${test.count - from} or less`);
      real = test.images.slice(from * per, (from + count) * per);
      source = `${name} test [${from}, ${from + count})`;
    }
    const out = path.join(runDir, DETECTOR_FILE);
    await ensureWritable(out);
    const pipe = await DiffusionPipeline.fromRun(runDir, { device: oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu') });
    const bar = new ProgressLine();
    const started = Date.now();
    try {
      const cal = await calibrateDetector(pipe, {
        real: { data: real, count: real.length / per, shape },
        realSource: source,
        onPhase: (p) => bar.say(`${p} (${((Date.now() - started) / 1000).toFixed(0)} s)`),
        onProgress: (d, t) => bar.update(`features ${d}/${t}`),
      });
      await writeFileAtomic(out, `${JSON.stringify(cal, null, 1)}\n`);
    } finally {
      bar.done();
      await pipe.release();
    }
    process.stderr.write(`wrote ${out} (calibrated on ${source} and as many samples, ${((Date.now() - started) / 1000).toFixed(0)} s); diffuse inspect ${modelFlag(runDir)} uses it\n`);
  },
};

/** Reads up to `count` images of a folder as centred squares of `crop`, leaving out smaller ones; with how many are JPEG files. */
async function readSquares(folder: string, count: number, crop: number, what: string): Promise<{ batch: ImageBatch; jpegs: number; smaller: number; unreadable: string[]; source: string }> {
  const files = listImages(folder);
  const data: Float32Array[] = [];
  let [jpegs, smaller] = [0, 0];
  // Files that are not images (a FIFO, a device, a corrupt file) are left out and named, not fatal.
  const unreadable: string[] = [];
  for (const file of files) {
    if (data.length === count) break;
    try {
      data.push((await readImage(file, { channels: 3, convert: true, crop })).data);
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      if (/smaller than the/.test(e.message)) smaller++;
      else unreadable.push(e.message.replace(/; skipped$/, ''));
      continue;
    }
    if ((await readRegularFile(file)).subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))) jpegs++;
  }
  if (data.length < 50) throw new UsageError(`${folder}: ${data.length} ${what} images of at least ${crop}x${crop}${smaller ? ` (${smaller} smaller left out)` : ''}; calibration needs at least 50 (--crop sets the square's side)`);
  const all = new Float32Array(data.length * 3 * crop * crop);
  data.forEach((d, k) => all.set(d, k * d.length));
  return { batch: { data: all, count: data.length, shape: [3, crop, crop] }, jpegs, smaller, unreadable, source: `${path.basename(path.resolve(folder))} (${data.length} images${jpegs ? `, ${jpegs} JPEG` : ''})` };
}

/** `detector calibrate --model DIR`: the autoencoder detector of a Stable Diffusion folder (forensics/autoencoder-detector.ts). */
async function calibrateFolder(v: FlagValues): Promise<void> {
  const dir = String(v.model);
  if (v.real === undefined || v.generated === undefined) throw new UsageError('--model needs --real FOLDER (real images) and --generated FOLDER (images made through its autoencoder, e.g. diffuse sample --model DIR --images OUT)');
  const count = num(v, 'count', { int: true, min: 50 }) ?? 1000;
  const crop = num(v, 'crop', { int: true, min: 8, max: 4096 }) as number;
  if (crop % 8) throw new UsageError(`--crop must be a multiple of 8 (the autoencoder's factor), got ${crop}`);
  const jpegQualities = String(v.jpeg)
    .split(',')
    .filter((q) => q.trim() !== '')
    .map((q) => {
      const n = Number(q);
      if (!(Number.isInteger(n) && n >= 1 && n <= 100)) throw new UsageError(`--jpeg takes qualities in 1..100 separated by commas, got '${q}'`);
      return n;
    });
  const out = v.out === undefined ? path.join(dir, DETECTOR_FILE) : String(v.out);
  await ensureWritable(out);
  const real = await readSquares(String(v.real), count, crop, 'real');
  const generated = await readSquares(String(v.generated), count, crop, 'generated');
  // A JPEG set against a PNG set would teach the detector the file format, not the generator.
  const jpegShare = (s: { jpegs: number; batch: ImageBatch }) => s.jpegs / s.batch.count;
  if (Math.abs(jpegShare(real) - jpegShare(generated)) > 0.1) {
    throw new UsageError(
      `${(100 * jpegShare(real)).toFixed(0)}% of the real images are JPEG files but ${(100 * jpegShare(generated)).toFixed(0)}% of the generated ones: a detector fitted on them would learn the file format instead of the generator. Give both sets in the same format (e.g. save the generated images as JPEG at the real ones' quality)`,
    );
  }
  const folder = await StableDiffusionPipeline.fromPretrained(dir, { device: oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu') });
  const bar = new ProgressLine();
  const started = Date.now();
  try {
    for (const s of [real, generated]) {
      if (s.smaller) bar.say(`note: ${s.smaller} image(s) smaller than ${crop}x${crop} left out of ${s.source}`);
      for (const u of s.unreadable) bar.say(`note: left out ${safeText(u)}`);
    }
    const cal = await calibrateAutoencoderDetector(folder, {
      real: real.batch,
      generated: generated.batch,
      realSource: real.source,
      generatedSource: generated.source,
      jpegQualities,
      onPhase: (p) => bar.say(`${p} (${((Date.now() - started) / 1000).toFixed(0)} s)`),
      onProgress: (d, t) => bar.update(`reconstructing ${d}/${t}`),
    });
    await writeFileAtomic(out, `${JSON.stringify(cal, null, 1)}\n`);
  } finally {
    bar.done();
    await folder.release();
  }
  process.stderr.write(`wrote ${out} (calibrated on ${real.source} and ${generated.source}, ${crop}x${crop} squares, ${((Date.now() - started) / 1000).toFixed(0)} s)${v.out === undefined ? `; diffuse inspect --model ${dir} uses it` : ''}\n`);
}
