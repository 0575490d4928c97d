/**
 * The `diffuse` command line.
 *
 *   diffuse train    --data mnist --run runs/mnist --minutes 20
 *   diffuse sample   --run runs/mnist --scheduler ddim --steps 50 --out grid.png --frames strip.png
 *   diffuse noise    IMAGE|mnist:INDEX --schedule cosine --steps 8 --out strip.png
 *   diffuse schedule --schedule linear,cosine --out schedule.png
 *   diffuse eval     --run runs/mnist --count 1000
 *
 * Every error is one line naming the problem, with a non-zero exit code.
 */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { commandEval } from './eval.js';
import { commandNoise, commandSchedule } from './pictures.js';
import { commandSample } from './sample.js';
import { commandTrain } from './train.js';

/** A flag: parseArgs' fields plus a description for --help. */
export interface Flag {
  type: 'string' | 'boolean';
  short?: string;
  default?: string | boolean;
  description: string;
}

export interface Command {
  summary: string;
  usage: string;
  options: Record<string, Flag>;
  positionals?: boolean;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  train: commandTrain,
  sample: commandSample,
  noise: commandNoise,
  schedule: commandSchedule,
  eval: commandEval,
};

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
    lines.push(`  --${flag}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(28) + desc + (dflt !== undefined && dflt !== false ? ` (default ${String(dflt)})` : ''));
  }
  return lines.join('\n');
}

/** A user error: printed as one line, exit code 1. */
export class UsageError extends Error {}

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
    const options = Object.fromEntries(Object.entries(cmd.options).map(([k, o]) => [k, o.short ? { type: o.type, short: o.short } : { type: o.type }]));
    const { values, positionals } = parseArgs({ args: rest, options: options as ParseArgsConfig['options'], allowPositionals: cmd.positionals ?? false, strict: true });
    const withDefaults: Record<string, string | boolean | undefined> = { ...values };
    for (const [k, o] of Object.entries(cmd.options)) if (withDefaults[k] === undefined && o.default !== undefined) withDefaults[k] = o.default;
    await cmd.run(withDefaults, positionals);
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    const msg = err.code?.startsWith('ERR_PARSE_ARGS') ? `${err.message} (see 'diffuse ${name} --help')` : err.message;
    console.error(`diffuse ${name}: ${msg}`);
    if (process.env.DIFFUSE_DEBUG) console.error(err.stack);
    return 1;
  }
}

/** Parses a number option, naming the flag when it is not one. */
export function num(values: Record<string, unknown>, flag: string, opts: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
    const range = [opts.int ? 'an integer' : 'a number', opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : ''].filter(Boolean).join(' ');
    throw new UsageError(`--${flag} must be ${range}, got '${String(v)}'`);
  }
  return n;
}

export function oneOf<T extends string>(values: Record<string, unknown>, flag: string, allowed: readonly T[], dflt: T): T {
  const v = (values[flag] as string | undefined) ?? dflt;
  if (!allowed.includes(v as T)) throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}, got '${v}'`);
  return v as T;
}
