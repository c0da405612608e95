/**
 * What every task's checks are given: the reference (fixtures or key), and the model and the
 * tokenizer, each made once per task process and only if a check asks for it.
 */
import { BPETokenizer } from '../mingpt/bpe.ts';
import type { GPT } from '../mingpt/model.ts';
import { loadGPT } from '../io/load.ts';
import type { TaskRun } from './harness.ts';
import type { Reference } from './reference.ts';

export interface Context {
  ref: Reference;
  /** the reference's checkpoint, loaded once */
  model(): GPT;
  bpe(): BPETokenizer;
}

/** One task's checks: tests run one after the other on `t`. */
export type TaskChecks = (t: TaskRun, c: Context) => Promise<void>;

export function makeContext(ref: Reference): Context {
  let model: GPT | null = null, bpe: BPETokenizer | null = null;
  return {
    ref,
    model: () => (model ??= loadGPT(ref.weights)),
    bpe: () => (bpe ??= new BPETokenizer()),
  };
}
