/**
 * Parsing the command line of the scripts (generate.ts, the other assignments, the bench):
 * `--name value`, `--name=value` and `--flag`, checked against a spec that also gives the
 * --help text. The parsed values are typed from the spec, so the scripts need no casts.
 * Errors are UsageError (io/errors.ts); cli/command.ts's runCli turns them into a message.
 */
import { UsageError } from '../io/errors.ts';

// -----------------------------------------------------------------------------
// argument parsing

export type OptionType = 'string' | 'int' | 'number' | 'boolean';

export interface OptionSpec {
  type: OptionType;
  help: string;
  /** value used when the option is absent; shown in --help */
  default?: string | number | boolean;
  /** placeholder in --help, e.g. FILE; defaults to the option name in capitals */
  metavar?: string;
  /** allowed values for a string option */
  choices?: readonly string[];
  /** smallest allowed value for int / number options */
  min?: number;
  /** largest allowed value for int / number options */
  max?: number;
  /** one-letter alias, e.g. 'h' for --help */
  short?: string;
}

/** The options of a command, by name (without the leading --). */
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/**
 * A command's usage, help text and options. Declare it `as const satisfies CommandSpec` so that
 * each option keeps its literal type and choices: parseArgs's result is then typed from it.
 */
export interface CommandSpec<O extends OptionSpecs = OptionSpecs> {
  /** e.g. "npx tsx generate.ts" */
  usage: string;
  /** a paragraph printed under the usage line */
  description?: string;
  options: O;
  /** free text printed at the end of --help (examples) */
  epilog?: string;
}

export type ParsedValue = string | number | boolean | undefined;

/** What one option holds once parsed: one of its choices, a string, a number or a switch's state. */
type ValueOf<S extends OptionSpec> =
  S extends { type: 'boolean' } ? boolean
  : S extends { choices: readonly (infer C extends string)[] } ? C
  : S extends { type: 'string' } ? string
  : S extends { type: 'int' | 'number' } ? number
  : ParsedValue; // a spec whose type is not a literal: the caller has to narrow

/** A switch is false unless given; an option with a default always has a value; others may be absent. */
type Parsed<S extends OptionSpec> = S extends { type: 'boolean' } ? boolean : S extends { default: string | number } ? ValueOf<S> : ValueOf<S> | undefined;

/** parseArgs's result for options `O`: each option's value under its name, and whether --help was asked. */
export type ParsedArgs<O extends OptionSpecs> = { -readonly [K in keyof O]: Parsed<O[K]> } & { help: boolean };

/** Edit distance, used only to suggest the option the user probably meant. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length];
}

/** The largest seed the RNG can tell apart from others: 2^32 - 1. */
export const SEED_MAX = 2 ** 32 - 1;

function convert(name: string, spec: OptionSpec, raw: string): ParsedValue {
  if (spec.type === 'string') {
    if (spec.choices && !spec.choices.includes(raw)) {
      throw new UsageError(`--${name} must be one of ${spec.choices.join(', ')} (got "${raw}")`);
    }
    return raw;
  }
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value)) {
    throw new UsageError(`--${name} expects a number (got "${raw}")`);
  }
  if (spec.type === 'int' && !Number.isInteger(value)) {
    throw new UsageError(`--${name} expects a whole number (got "${raw}")`);
  }
  if (spec.min !== undefined && value < spec.min) {
    throw new UsageError(`--${name} must be at least ${spec.min} (got ${raw})`);
  }
  // The random number generator keeps a 32-bit state (mingpt/utils.ts RNG): a larger seed would
  // quietly wrap around to a smaller one, so every --seed is limited to 32 bits unless it says otherwise.
  const max = spec.max ?? (name === 'seed' && spec.type === 'int' ? SEED_MAX : undefined);
  if (max !== undefined && value > max) {
    throw new UsageError(`--${name} must be at most ${max} (got ${raw})`);
  }
  if (spec.type === 'int' && !Number.isSafeInteger(value)) {
    throw new UsageError(`--${name} is too large to be counted exactly (got ${raw})`);
  }
  return value;
}

/** ", e.g. --clean "some text"": the command's first text option, as an example of the syntax. */
function exampleOption(spec: CommandSpec<OptionSpecs>): string {
  const first = Object.entries(spec.options).find(([, o]) => o.type === 'string');
  return first ? `, e.g. --${first[0]} "some text"` : '';
}

/**
 * Parse `argv` (without node and the script) against `spec`. Returns every option's value,
 * defaults filled in and switches false unless given, plus `help: true` when --help / -h was
 * given (the caller prints helpText(spec) and exits 0). Throws UsageError for anything it does not
 * understand, including names that only the object machinery knows (`--toString`, `--__proto__`).
 */
export function parseArgs<O extends OptionSpecs>(argv: readonly string[], spec: CommandSpec<O>): ParsedArgs<O> {
  const options: OptionSpecs = spec.options;
  const known = (name: string) => Object.hasOwn(options, name);
  const values: Record<string, ParsedValue> = {};
  for (const [name, opt] of Object.entries(options)) values[name] = opt.default ?? (opt.type === 'boolean' ? false : undefined);
  const seen = new Set<string>();
  let help = false;
  const names = Object.keys(options);
  const byShort = new Map(Object.entries(options).filter(([, o]) => o.short).map(([n, o]) => [o.short!, n]));

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    } else if (/^-[A-Za-z]$/.test(arg) && byShort.has(arg[1])) {
      name = byShort.get(arg[1]);
    }
    if (name === undefined) {
      throw new UsageError(
        arg.startsWith('-')
          ? `unknown option ${arg}`
          : `unexpected argument "${arg}" (every input is given with an option${exampleOption(spec)}; ` +
              `put quotes around text that contains spaces)`,
      );
    }
    if (!known(name)) {
      const near = names
        .map((n) => ({ n, d: editDistance(name!, n) }))
        .filter(({ d }) => d <= 2)
        .sort((a, b) => a.d - b.d)[0];
      throw new UsageError(`unknown option --${name}` + (near ? ` (did you mean --${near.n}?)` : ''));
    }
    const opt = options[name];
    if (seen.has(name)) throw new UsageError(`--${name} was given twice`);
    seen.add(name);

    if (opt.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`--${name} is a switch and takes no value`);
      values[name] = true;
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      // The next word is the value, even when it starts with '-' ("-1", "- a list"), except
      // when it is itself one of our options: then the value was forgotten.
      const next = argv[i + 1];
      const looksLikeOption = next !== undefined && /^--[A-Za-z]/.test(next) && known(next.slice(2).split('=')[0]);
      if (next === undefined || looksLikeOption || next === '--help') {
        throw new UsageError(`--${name} needs a value (${opt.metavar ?? name.toUpperCase()})`);
      }
      raw = next;
      i++;
    }
    values[name] = convert(name, opt, raw);
  }
  // the one place the values meet their types: each was checked against its spec above
  return Object.assign(values, { help }) as ParsedArgs<O>;
}

/**
 * What `parse` makes of the text given to option `flag`. A RangeError from it (the library's way
 * of saying "not a value I accept") becomes a UsageError that names the option.
 */
export function optionValue<T>(flag: string, text: string, parse: (text: string) => T): T {
  try {
    return parse(text);
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(`${flag}: ${err.message}`);
    throw err;
  }
}

/** Quote a default for --help so that leading spaces and empty strings stay visible. */
function showDefault(value: string | number | boolean): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** Join `words` into lines of at most `width` columns (a word longer than that gets its own line). */
function wrap(words: readonly string[], width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return line ? [...lines, line] : lines;
}

/** The --help text: usage line, description, one entry per option, epilog. */
export function helpText(spec: CommandSpec, width = 100): string {
  const lines: string[] = [`usage: ${spec.usage} [options]`, ''];
  if (spec.description) lines.push(spec.description.trim(), '');
  lines.push('options:');
  const entries: [string, string[]][] = [];
  for (const [name, opt] of Object.entries(spec.options)) {
    const metavar = opt.metavar ?? (opt.choices ? opt.choices.join('|') : name.toUpperCase());
    const flag = (opt.short ? `-${opt.short}, ` : '') + `--${name}` + (opt.type === 'boolean' ? '' : ` ${metavar}`);
    const words = opt.help.split(/\s+/).filter(Boolean);
    // the default stays in one piece: a quoted " Jones" must not be split at its space
    if (opt.default !== undefined && opt.type !== 'boolean') words.push(`[default: ${showDefault(opt.default)}]`);
    entries.push([flag, words]);
  }
  entries.push(['-h, --help', ['print', 'this', 'help', 'and', 'exit']]);
  const flagW = Math.min(30, Math.max(...entries.map(([f]) => f.length)) + 2);
  const indent = ' '.repeat(2 + flagW);
  for (const [flag, words] of entries) {
    const body = wrap(words, Math.max(30, width - indent.length));
    if (flag.length + 2 > flagW) lines.push(`  ${flag}`, ...body.map((l) => indent + l));
    else lines.push(`  ${flag.padEnd(flagW)}${body[0]}`, ...body.slice(1).map((l) => indent + l));
  }
  if (spec.epilog) lines.push('', spec.epilog.trim());
  return lines.join('\n') + '\n';
}
