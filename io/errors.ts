/**
 * The two kinds of mistake a user can make, shared by the command-line scripts and the library
 * code they call (the output writer). A script turns them into `error: message` and an exit code.
 */

/** The command line itself is wrong (unknown option, missing value, bad number). Exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Something the user gave us cannot be used (text too long, token splits, an output folder that cannot be made...). Exit code 1. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}
