/**
 * Errors about what a caller asked for, in the library's own words. A library caller cannot follow
 * advice about command-line flags, so messages name options as the library spells them, in
 * backticks (`strength`, `batchSize`); a front end maps those names to its own (the CLI to its
 * flags: cli/flags.ts).
 */
export class OptionError extends Error {
  /** Stable across versions, for callers that branch on the kind of error. */
  readonly code = 'DIFFUSE_BAD_OPTION';
  /**
   * @param message names options in backticks
   * @param options the options the message names, as the library spells them
   */
  constructor(
    message: string,
    readonly options: readonly string[] = [...message.matchAll(/`([A-Za-z][\w.]*)`/g)].map((m) => m[1]),
  ) {
    super(message);
    this.name = 'OptionError';
  }
}
