/** Flags of the benchmark scripts: `--name value`, and the run folder that most of them need. */
const argv = process.argv.slice(2);

/** The value after --name, or the default. */
export const flag = (name: string, dflt?: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};

/** Whether --name was given (a switch without a value). */
export const has = (name: string): boolean => argv.includes(`--${name}`);

/** --run DIR, or the usage line and exit code 1. */
export function runFlag(usage: string): string {
  const run = flag('run');
  if (!run) {
    console.error(`usage: ${usage}`);
    process.exit(1);
  }
  return run;
}

export const log = (s: string): void => void process.stderr.write(`${s}\n`);
