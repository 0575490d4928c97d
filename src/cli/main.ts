/**
 * The `diffuse` command line.
 *
 *   diffuse train    --data mnist --run runs/mnist --minutes 20
 *   diffuse sample   --run runs/mnist --scheduler ddim --steps 50 --out grid.png --frames strip.png
 *   diffuse img2img  --run runs/mnist --image mnist:7 --strength 0.6 --out edited.png --compare side.png
 *   diffuse inpaint  --run runs/mnist --image mnist:7 --mask lower-half.png --out filled.png
 *   diffuse invert   --run runs/mnist --image mnist:7 --out x_T.safetensors --check side.png
 *   diffuse noise    IMAGE|mnist:INDEX --schedule cosine --steps 8 --out strip.png
 *   diffuse schedule --schedule linear,cosine --out schedule.png
 *   diffuse eval     --run runs/mnist --count 1000
 *   diffuse inspect  image.png --run runs/mnist --key key.json --trust c2pa/c2pa-root.pem --html report.html
 *
 * Every error is one line naming the problem, with a non-zero exit code.
 */
import { parseArgs, ParseArgsConfig } from 'node:util';
import type { Command, FlagValues } from './flags.js';
import { UsageError, withFlags } from './flags.js';
import { isExportFolder } from '../run/export-folder.js';
import { OptionError } from '../engine/errors.js';
import { commandImg2Img, commandInpaint } from './edit.js';
import { commandEval } from './eval.js';
import { commandNoise, commandSchedule } from './pictures.js';
import { commandSample } from './sample.js';
import { commandStudio } from './studio.js';
import { commandTrain } from './train.js';
import { commandTrainVae } from './train-vae.js';
import { commandExport } from './export.js';
import { commandInvert } from './invert.js';
import { commandDetector, commandInspect } from './inspect.js';
import { commandKeygen, commandWatermark } from './watermark.js';
import { commandScan, commandWorker } from './scan.js';

const COMMANDS: Record<string, Command> = {
  train: commandTrain,
  'train-vae': commandTrainVae,
  sample: commandSample,
  img2img: commandImg2Img,
  inpaint: commandInpaint,
  invert: commandInvert,
  noise: commandNoise,
  schedule: commandSchedule,
  eval: commandEval,
  keygen: commandKeygen,
  watermark: commandWatermark,
  inspect: commandInspect,
  detector: commandDetector,
  scan: commandScan,
  worker: commandWorker,
  export: commandExport,
  studio: commandStudio,
};

/**
 * Every command that reads a trained model from --run also takes --model DIR, a model folder: a
 * Diffuse export (diffuse export) stands in for its run; a Stable Diffusion folder goes to the
 * commands that say they take one.
 */
const WRITES_RUNS = new Set(['train', 'train-vae', 'export']);
for (const [name, c] of Object.entries(COMMANDS)) {
  if (c.options.run && !c.options.model && !WRITES_RUNS.has(name)) c.options.model = { type: 'string', description: 'a model folder written by diffuse export, in place of --run' };
}

/** --model naming a Diffuse export becomes --run: the run's code paths read exports as runs. */
function modelAsRun(cmd: Command, v: FlagValues): void {
  if (typeof v.model !== 'string' || !cmd.options.run || !isExportFolder(v.model)) return;
  if (v.run !== undefined) throw new UsageError('give --run DIR or --model DIR, not both');
  v.run = v.model;
  delete v.model;
}

function help(): string {
  const lines = ['diffuse: denoising diffusion models in TypeScript', '', 'Commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(9)} ${c.summary}`);
  lines.push('', "Run 'diffuse COMMAND --help' for a command's options.");
  return lines.join('\n');
}

function commandHelp(name: string, c: Command): string {
  const lines = [`diffuse ${name}: ${c.summary}`, '', `Usage: ${c.usage}`, '', 'Options:'];
  for (const [flag, o] of Object.entries(c.options)) {
    const desc = o.description;
    const dflt = o.default;
    lines.push(`  --${flag}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(28) + desc + (o.multiple ? ' (may be given several times)' : '') + (dflt !== undefined && dflt !== false && dflt !== '' ? ` (default ${String(dflt)})` : ''));
  }
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 1;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`diffuse: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
    return 1;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(commandHelp(name, cmd));
    return 0;
  }
  try {
    // parseArgs does not know our 'description' field; strip it.
    const options = Object.fromEntries(Object.entries(cmd.options).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }]));
    const { values, positionals } = parseArgs({ args: rest, options: options as ParseArgsConfig['options'], allowPositionals: cmd.positionals ?? false, strict: true });
    const withDefaults: FlagValues = { ...values };
    for (const [k, o] of Object.entries(cmd.options)) if (withDefaults[k] === undefined && o.default !== undefined) withDefaults[k] = o.default;
    modelAsRun(cmd, withDefaults);
    await cmd.run(withDefaults, positionals);
    return 0;
  } catch (e) {
    console.error(errorLine(name, e));
    if (process.env.DIFFUSE_DEBUG) console.error((e as Error)?.stack);
    return 1;
  }
}

/**
 * The one line printed for an error: the user's mistake as its message says it; a bug in Diffuse
 * (see isInternal) labelled as one, with how to get the stack.
 */
export function errorLine(command: string, e: unknown): string {
  const err = e as Error & { code?: string };
  if (isInternal(err)) return `diffuse ${command}: internal error: ${String(err?.message ?? err).split('\n')[0]} (a bug in Diffuse; DIFFUSE_DEBUG=1 prints the stack; please report it)`;
  const msg = err.code?.startsWith('ERR_PARSE_ARGS') ? `${err.message} (see 'diffuse ${command} --help')` : err instanceof OptionError ? withFlags(err.message) : err.message;
  return `diffuse ${command}: ${msg.split('\n')[0]}`;
}

/**
 * Errors that JavaScript raises for a bug (a TypeError, an out-of-range array length, a failed
 * assertion) rather than the plain Errors that Diffuse throws with a message for the user.
 */
function isInternal(e: unknown): boolean {
  if (!(e instanceof Error)) return true;
  const code = (e as { code?: string }).code;
  if (code?.startsWith('ERR_PARSE_ARGS')) return false; // node:util parseArgs reports the user's flags as TypeErrors
  if (code === 'ERR_ASSERTION') return true;
  return e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError || e instanceof SyntaxError || e instanceof EvalError;
}
