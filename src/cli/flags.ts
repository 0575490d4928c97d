/** What every command shares: the flag table that drives parsing and --help, user errors, and value parsers. */
export { modelFlag } from '../run/export-folder.js';

/** A flag: parseArgs' fields plus a description for --help. */
export interface Flag {
  type: 'string' | 'boolean';
  short?: string;
  default?: string | boolean;
  /** The flag may be given several times; its value is then the list (string flags only). */
  multiple?: boolean;
  description: string;
}

/** Parsed flag values: a string, a boolean, or the list of a `multiple` flag. */
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  summary: string;
  usage: string;
  options: Record<string, Flag>;
  positionals?: boolean;
  run(values: FlagValues, positionals: string[]): Promise<void>;
}

/** A user error: printed as one line, exit code 1. */
export class UsageError extends Error {}

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

/** A flag given any number of times, as a list (empty when absent). */
export function list(values: FlagValues, flag: string): string[] {
  const v = values[flag];
  return v === undefined || typeof v === 'boolean' ? [] : Array.isArray(v) ? v : [v];
}

/**
 * Library option names (as OptionError messages spell them, in backticks) whose flag is not
 * simply the name in kebab case: `batchSize` is --batch, `classLabel` --class.
 */
const FLAG_OF_OPTION: Record<string, string> = {
  batchSize: 'batch',
  classLabel: 'class',
  classConditioning: 'class-cond',
  learningRate: 'lr',
  'data.size': 'size',
  'data.channels': 'channels',
  'data.limit': 'limit',
  'data.source': 'data',
  runDir: 'run',
  model: 'preset',
};

/** The flag of a library option: `batchSize` -> --batch, `strength` -> --strength, `sendBytes` -> --send-bytes. */
export function flagOfOption(option: string): string {
  return `--${FLAG_OF_OPTION[option] ?? option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** An OptionError's message as the CLI says it: each backticked option name becomes its flag. */
export function withFlags(message: string): string {
  return message.replace(/`([A-Za-z][\w.]*)`/g, (_, name: string) => flagOfOption(name));
}
