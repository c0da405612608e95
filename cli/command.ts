/**
 * What every experiment's command line shares, in one place: the options that choose the model
 * (`--model NAME` or `--weights PATH`) and the kernels (`--kernels simd|js`), loading the model
 * they name, and turning the errors we expect into one clear message and an exit code.
 *
 *   const COMMAND = { usage, description, options: { ...MODEL_OPTIONS, out: {...}, ... } } as const satisfies CommandSpec;
 *   const model = await loadModel(checkModelChoice(argv, parseArgs(argv, COMMAND)));
 *   await runCli(main, COMMAND.usage);
 *
 * Command-line code only: the library folders (mingpt/, io/, lens/, sweep/) never import it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { GPT, NonFiniteError } from '../mingpt/model.ts';
import { CheckpointError } from '../io/checkpoint.ts';
import { SafetensorsError } from '../io/safetensors.ts';
import { PRETRAINED, PretrainedError } from '../io/pretrained.ts';
import type { OptionSpecs, ParsedArgs } from './args.ts';
import { InputError, UsageError } from '../io/errors.ts';
import { KERNELS, KernelThreadsError, setKernels, type KernelsName } from '../mingpt/kernels/index.ts';
import { loadGPT } from '../io/load.ts';
import { notRegularFile } from '../io/files.ts';

/** --model, --weights and --kernels, as every experiment spells them. */
export const MODEL_OPTIONS = {
  model: { type: 'string', default: 'gpt2', metavar: 'NAME', help: 'pretrained GPT-2 to use: gpt2, gpt2-medium, gpt2-large, gpt2-xl (downloaded once into weights/)' },
  weights: { type: 'string', metavar: 'PATH', help: 'use a local GPT-2-layout checkpoint instead: a folder with model.safetensors and config.json (e.g. test/fixtures/gpt2-tiny)' },
  kernels: { type: 'string', default: 'simd', choices: KERNELS, metavar: 'WHICH', help: "the arithmetic: 'simd' (WebAssembly SIMD, the default; falls back to js where unavailable) or 'js' (the readable loops of mingpt/kernels/js.ts)" },
} as const satisfies OptionSpecs;

export interface ModelChoice {
  model?: string;
  weights?: string;
  kernels?: KernelsName;
}

/** Refuses --model together with --weights, and an empty --weights. Call after parseArgs. */
export function checkModelChoice(argv: readonly string[], args: ParsedArgs<typeof MODEL_OPTIONS>): ModelChoice {
  const { model, weights, kernels } = args;
  if (weights !== undefined && argv.some((x) => x === '--model' || x.startsWith('--model='))) throw new UsageError('give either --model or --weights, not both');
  if (weights === '') throw new UsageError('--weights needs a path');
  return { model, weights, kernels };
}

/** Selects the kernels; returns a one-line note when the choice could not be honoured. */
export function applyKernels(choice: ModelChoice): string | null {
  const want = choice.kernels ?? 'simd';
  const got = setKernels(want);
  return got === want ? null : `note: ${want} kernels are not available here; using ${got}`;
}

/** The model the options name: a local checkpoint (--weights) or a pretrained GPT-2 (--model). */
export async function loadModel(choice: ModelChoice): Promise<GPT> {
  const note = applyKernels(choice);
  if (note) process.stderr.write(note + '\n');
  if (choice.weights !== undefined) return loadGPT(choice.weights);
  return GPT.from_pretrained(choice.model ?? 'gpt2');
}

/**
 * The context length of the model the options name, known before any weights are read: 1024 for
 * the pretrained GPT-2 names, `n_positions` (or `n_ctx`) from the config.json of --weights.
 * Undefined when it cannot be told cheaply (a missing or broken config.json): the loader then
 * reports that problem itself, and the length is checked again after loading.
 */
export function knownContext(choice: ModelChoice): number | undefined {
  if (choice.weights === undefined) return (PRETRAINED as readonly string[]).includes(choice.model ?? 'gpt2') ? 1024 : undefined;
  try {
    const w = choice.weights;
    const dir = fs.statSync(w).isDirectory() ? w : path.dirname(w);
    const file = path.join(dir, 'config.json');
    if (notRegularFile(fs.statSync(file))) return undefined; // a FIFO would hang here; the loader says what it is
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    const n = cfg.n_positions ?? cfg.n_ctx;
    return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The random-weights mark our own generated checkpoints carry in config.json. */
export function hasRandomWeights(model: GPT): boolean {
  const raw = model.source?.raw_config;
  return !!raw && (raw.random_weights === true || /random weights/i.test(String(raw._comment ?? '')));
}

/** What a student copy's stub throws (exercises/regions.ts): "TASK 1.2 not done: …, write it in …". */
export const TASK_NOT_DONE = /^TASK ([\w.]+) not done: /;

/**
 * Runs `main` and turns the errors we expect into `error: …` on stderr and an exit code:
 * 2 for a wrong command line (with a pointer to --help), 1 for input, weights, a run that
 * went non-finite, or a task of a student copy that is not written yet. Anything else is a
 * bug, and Node prints its stack.
 */
export async function runCli(main: (argv: string[]) => Promise<void>, command: string, offlineArgs = ''): Promise<void> {
  try {
    await main(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) return exitWithError(`${err.message}\n(run \`${command} --help\` for the options)`, 2);
    if (err instanceof PretrainedError) return exitWithError(err.message + offlineHint(err, command, offlineArgs), 1);
    if (err instanceof InputError || err instanceof CheckpointError || err instanceof SafetensorsError
      || err instanceof NonFiniteError || err instanceof KernelThreadsError) return exitWithError(err.message, 1);
    if (err instanceof Error && TASK_NOT_DONE.test(err.message)) return exitWithError(err.message, 1);
    throw err;
  }
}

/**
 * Prints `error: message` on stderr and exits with `code` once stderr has taken all of it: a
 * pipe takes a long message in pieces, and exiting at once would cut it short.
 */
async function exitWithError(message: string, code: number): Promise<never> {
  await new Promise<void>((resolve) => process.stderr.write(`error: ${message.trimEnd()}\n`, () => resolve()));
  process.exit(code);
}

/**
 * When a pretrained model could not be had (not on disk, no network), the command that works
 * without it: the small random checkpoint that comes with the repository, with `extra` options the
 * command needs there (its context is 64 tokens).
 */
export function offlineHint(err: PretrainedError, command: string, extra = ''): string {
  if (/^unknown pretrained model/.test(err.message)) return '';
  return `\nTo try the command without downloading anything, run it on the small test checkpoint that comes with the repository `
    + `(random weights, so the numbers show the mechanics, not findings):\n  ${command} --weights test/fixtures/gpt2-tiny${extra ? ` ${extra}` : ''}`;
}
