/**
 * The assignment's experiment: activation patching of every block's output at every position.
 *
 * For each block l and position p, run the corrupted text, but after block l replace the
 * residual stream at position p with its value from the clean run, and record
 *     logit(corrupt_token) − logit(clean_token)   at the last position.
 * A cell far from the corrupted run's own difference marks an activation that carries the
 * information telling the two texts apart.
 *
 * `referencePatchingSweep` below is the readable algorithm, one full forward per patch with the
 * model's save/patch flags, exactly as the assignment describes it. `fastPatchingSweep`
 * (./fast.ts) gives the same matrix (to float32 rounding) by recomputing only what a patch
 * can change; the generic patching of ../lens/patching.ts gives it too (`get_act_patch_resid_post`).
 * This file holds what the two engines share: the input, the result and the input check.
 */
import type { GPT } from '../mingpt/model.ts';

export interface PatchingInput {
  clean_ids: number[];
  corrupt_ids: number[];
  clean_token_id: number;
  corrupt_token_id: number;
}

export interface PatchingResult {
  matrix: number[][]; // [layer][position]
  clean_logit_diff: number;
  corrupt_logit_diff: number;
  clean_last_logits: Float32Array; // (vocab_size), the clean run's last position
  corrupt_last_logits: Float32Array; // (vocab_size), the corrupted run's last position
}

export type Engine = 'reference' | 'fast';

export interface PatchingOptions {
  engine?: Engine;
  /** called as patched runs finish: done of total */
  onProgress?: (done: number, total: number) => void;
}

/** Checks both runs are comparable: same length, within the context, ids in the vocabulary. */
export function checkPatchingInput(model: GPT, input: PatchingInput): void {
  const { clean_ids, corrupt_ids } = input;
  const V = model.config.vocab_size;
  if (clean_ids.length === 0) throw new Error('the clean text has no tokens');
  if (clean_ids.length !== corrupt_ids.length)
    throw new Error(`the clean and corrupted texts must have the same number of tokens (${clean_ids.length} vs ${corrupt_ids.length})`);
  if (clean_ids.length > model.block_size)
    throw new Error(`the texts have ${clean_ids.length} tokens, more than the model's context of ${model.block_size}`);
  for (const id of [...clean_ids, ...corrupt_ids, input.clean_token_id, input.corrupt_token_id])
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`token id ${id} is outside the vocabulary 0..${V - 1}`);
}

/** The assignment's algorithm, written for reading: 2 + n_layer × T full forward passes. */
export function referencePatchingSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): PatchingResult {
  // BEGIN TASK 1.5: the layer × position loop and its logit-difference matrix
  const { clean_ids, corrupt_ids, clean_token_id, corrupt_token_id } = input;
  const diff = (logits: Float32Array) => logits[corrupt_token_id] - logits[clean_token_id];
  const L = model.config.n_layer, T = clean_ids.length;

  // 1. the clean run, keeping every block's output at every position
  model.forward(clean_ids, { save: true });
  const clean_last_logits = model.lastLogits;
  // 2. the corrupted run, untouched
  model.forward(corrupt_ids);
  const corrupt_last_logits = model.lastLogits;
  // 3. one corrupted run per (layer, position), with that one vector taken from the clean run
  const matrix: number[][] = [];
  for (let layer = 0; layer < L; layer++) {
    matrix.push([]);
    for (let position = 0; position < T; position++) {
      model.forward(corrupt_ids, { patch: { layer, position } });
      matrix[layer].push(diff(model.lastLogits));
      opts.onProgress?.(layer * T + position + 1, L * T);
    }
  }
  return {
    matrix,
    clean_logit_diff: diff(clean_last_logits),
    corrupt_logit_diff: diff(corrupt_last_logits),
    clean_last_logits,
    corrupt_last_logits,
  };
  // END TASK 1.5
}
