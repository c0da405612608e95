/**
 * The numbers a task is graded against, and the checkpoint they belong to: the fixtures of
 * test/fixtures/ (an independent PyTorch run on gpt2-tiny), or a teacher's key made by
 * `npm run grade -- --make-key` (./make_key.ts) on another checkpoint and other texts.
 *
 * Both are read in the fixtures' formats (test/fixtures/README.md, ANALYSIS.md): reference.json
 * (the cases), analysis.json (hook values, patching, path patching, knockout, weight circuits,
 * the IOI group) and the IOI group's prompts (ioi-group.json). A key holds only the hook points the
 * checks read, and adds key.json: what only a key has (the induction heads' scores on its model).
 */
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../io/errors.ts';
import type { CircuitEvaluation } from '../lens/knockout.ts';

export interface Case {
  clean: string;
  corrupt: string;
  clean_token: string;
  corrupt_token: string;
  clean_ids: number[];
  corrupt_ids: number[];
  clean_token_id: number;
  corrupt_token_id: number;
  clean_logit_diff: number;
  corrupt_logit_diff: number;
  clean_last_logits_sum: number;
  clean_last_logits_first8: number[];
  patch_matrix: number[][];
}

export interface ReferenceJson {
  config: { n_layer: number; n_head: number; n_embd: number; vocab_size: number; block_size: number };
  cases: Case[];
}

type Grid = (number | null)[][];
type Grid4 = (number | null)[][][][];

export interface AnalysisJson {
  case: Pick<Case, 'clean' | 'corrupt' | 'clean_token' | 'corrupt_token' | 'clean_ids' | 'corrupt_ids' | 'clean_token_id' | 'corrupt_token_id'>;
  /** hook name -> value with a batch axis of 1 (nested arrays; null for a masked −∞ score) */
  hooks: Record<string, unknown>;
  metric: { clean: number; corrupt: number };
  patching: { resid_pre: number[][]; resid_post: number[][]; head_z: number[][] };
  path_patching: { to_logits: number[][]; to_q_last_layer: Grid };
  /** the group's prompts ([clean ids, corrupt ids] each) and ids, and the circuit's evaluation */
  knockout: CircuitEvaluation & { group_ids: [number[], number[]][]; io_ids: number[]; s_ids: number[] };
  circuits: { copying_score: number[][]; composition: { q: Grid4; k: Grid4; v: Grid4 }; positional_qk: number[][][][] };
  group: {
    F_model: number;
    patching: { head_z: number[][] };
    name_movers: string[];
    path_patching: { to_logits: number[][]; to_name_movers: Grid };
  };
}

export interface GroupJson {
  prompts: { clean: string; corrupt: string; io: string; s: string }[];
  circuit: string[];
  completeness_sets: string[][];
  name_movers: string[];
}

/** What only a key has: numbers of the key's own model that the fixtures do not hold. */
export interface KeyExtra {
  induction: {
    tokens: number[][];
    n: number;
    /** each kind's stripe, and every head's score on it: [layer][head] */
    stripes: Record<'induction' | 'previous_token', { from: number; to: number; offset: number; scores: number[][] }>;
    detection: { k: number; min_score: number; threshold: number; heads: string[] };
  };
}

export interface Reference {
  kind: 'fixtures' | 'key';
  /** the checkpoint (model.safetensors and config.json) */
  weights: string;
  reference: ReferenceJson;
  analysis: AnalysisJson;
  group: GroupJson;
  extra: KeyExtra | null;
}

function readJson<T>(file: string, what: string): T {
  if (!fs.existsSync(file)) throw new InputError(`${what}: ${file} is missing`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw new InputError(`${what}: ${file} is not valid JSON (${(err as Error).message})`);
  }
}

/** The file names a key folder holds. */
export const KEY_FILES = { reference: 'reference.json', analysis: 'analysis.json', group: 'ioi-group.json', extra: 'key.json' } as const;

/** The fixtures of the repository at `root`, or the key in `keyDir`. */
export function loadReference(root: string, keyDir?: string): Reference {
  if (keyDir === undefined) {
    const dir = path.join(root, 'test', 'fixtures', 'gpt2-tiny');
    return {
      kind: 'fixtures', weights: dir,
      reference: readJson(path.join(dir, 'reference.json'), 'the fixtures'),
      analysis: readJson(path.join(dir, 'analysis.json'), 'the fixtures'),
      group: readJson(path.join(root, 'test', 'fixtures', 'ioi-group.json'), 'the fixtures'),
      extra: null,
    };
  }
  const dir = path.resolve(keyDir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new InputError(`--key ${keyDir}: no such folder (make one with npm run grade -- --make-key … --out ${keyDir})`);
  for (const f of ['model.safetensors', 'config.json']) if (!fs.existsSync(path.join(dir, f))) throw new InputError(`--key ${keyDir}: ${f} is missing (a key holds the checkpoint it was made from)`);
  const what = `--key ${keyDir}`;
  return {
    kind: 'key', weights: dir,
    reference: readJson(path.join(dir, KEY_FILES.reference), what),
    analysis: readJson(path.join(dir, KEY_FILES.analysis), what),
    group: readJson(path.join(dir, KEY_FILES.group), what),
    extra: readJson(path.join(dir, KEY_FILES.extra), what),
  };
}

/** A hook's value (batch row 0) as one flat Float32Array, −∞ where the reference stores null. */
export function hookData(ref: Reference, name: string): Float32Array {
  const v = ref.analysis.hooks[name];
  if (v === undefined) throw new Error(`the reference has no hook ${name}`);
  const rows = (v as unknown[])[0];
  return Float32Array.from((Array.isArray(rows) ? rows.flat(Infinity) : [rows]).map((x) => (x === null ? -Infinity : Number(x))));
}
