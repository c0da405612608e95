/**
 * The fast patching engine: the same layer × position matrix as `referencePatchingSweep`
 * (./sweep.ts), to float32 rounding, for a small fraction of the work, on the model's own blocks.
 * The readable path stays the reference; this one is chosen with
 * `patchingSweep(model, input, { engine: 'fast' })`.
 *
 * The reference does one full forward pass per cell: for GPT-2 small and the assignment's
 * 11 tokens, 2 + 12 × 11 = 134 passes of 2.7 GFLOP each (1.9 in the 12 blocks, 0.85 in the
 * vocabulary projection), about 370 GFLOP. Three savings, none of which changes a number:
 *
 * 1. Recompute only what a patch can change. Patching block l's output at position p leaves every
 *    earlier layer alone, and, attention being causal, every earlier position too. So the patched
 *    run (l, p) starts at block l + 1 with rows p … T − 1 only, their queries attending to the
 *    corrupted run's keys and values at positions before p (a frozen KVCache, see
 *    ../mingpt/model.ts), and in the last block only row T − 1 goes on to the logits (rows before
 *    it are needed there for their keys and values only):
 *
 *                positions →    0   1 … p-1   p   p+1 … T-1
 *        block l                ·   ·    ·    P    ·      ·      P = the patch
 *        block l+1 … L-2        k,v k,v  k,v  ▓    ▓      ▓      k,v: the corrupted run's, cached
 *        block L-1              k,v k,v  k,v  k,v  k,v    ▓      ▓: computed
 *
 *    And when the two texts agree up to position p, the clean and corrupted activations there are
 *    the same numbers: those cells are the corrupted run's value with no work at all (the whole
 *    first column in the assignment's example), as is the last block at every position but T-1.
 * 2. Only two logits. The cell is logit(corrupt token) − logit(clean token): the final layer norm
 *    and two rows of the unembedding (../lens/metrics.ts, logitDiffs) instead of the 50257-row
 *    vocabulary projection (0.85 GFLOP per run, 110 GFLOP over the sweep, gone).
 * 3. Batches. The runs that patch the same layer go through the blocks together, their rows
 *    stacked into one matrix (55 rows for GPT-2 small on 11 tokens): each weight matrix is read
 *    once per batch instead of once per run, and the matmul kernel gets enough rows to work at
 *    its rate. The big products use every core (the kernel threads, ../mingpt/kernels/simd/).
 *
 * The clean and corrupted runs themselves are ordinary forward passes, keeping every block's
 * output (and the corrupted run's keys and values). Their last-position logits over the whole
 * vocabulary are part of the result.
 */
import { KVCache, Rows, type GPT } from '../mingpt/model.ts';
import { firstDifference, logitDiff, logitDiffs } from '../lens/metrics.ts';
import { checkPatchingInput, type PatchingInput, type PatchingOptions, type PatchingResult } from './sweep.ts';

/** Rows of one batch of patched runs at most: bounds the scratch memory (the MLP's (rows, 4C) hidden layer). */
const MAX_ROWS = 512;

/** A base run: every block's output (L, T, C), and the logits at the last position (V). */
interface BaseRun {
  resid_post: Float32Array[];
  last_logits: Float32Array;
}

/** An ordinary forward pass keeping every block's output, and its keys and values in `kv` if given. */
function baseRun(model: GPT, ids: number[], kv: KVCache | null): BaseRun {
  const resid_post: Float32Array[] = [];
  const { logits } = model.forward([ids], {
    logits_at: [ids.length - 1], past_kv_cache: kv ?? undefined,
    hooks: [[(name) => name.endsWith('.hook_resid_post'), (act, name) => { resid_post[Number(name.split('.')[1])] = act.data.slice(); }]],
  });
  return { resid_post, last_logits: logits.data };
}

export async function fastPatchingSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): Promise<PatchingResult> {
  checkPatchingInput(model, input);
  const { clean_ids, corrupt_ids, clean_token_id, corrupt_token_id } = input;
  const { n_layer: L, n_embd: C } = model.config, T = clean_ids.length;
  // positions before the first differing token: the patch writes what is already there
  const d = firstDifference(clean_ids, corrupt_ids), firstDiff = d < 0 ? T : d;
  const total = L * T;
  let done = 0;
  const progress = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };

  const clean = baseRun(model, clean_ids, null);
  const kv = new KVCache(model.config, 1);
  const corrupt = baseRun(model, corrupt_ids, kv);
  kv.freeze(); // every patched run starts from the corrupted run's keys and values
  const diff = (logits: Float32Array) => logitDiff(logits, corrupt_token_id, clean_token_id);
  const clean_logit_diff = diff(clean.last_logits), corrupt_logit_diff = diff(corrupt.last_logits);

  // the free cells: texts that agree so far, and the last block (its output goes straight to the logits)
  const matrix = Array.from({ length: L }, (_, l) => Array.from({ length: T }, (_, p) =>
    l === L - 1 && p === T - 1 ? clean_logit_diff : corrupt_logit_diff));
  progress(L * T - (L - 1) * (T - firstDiff));

  for (let l = 0; l < L - 1; l++) {
    for (const positions of batches(firstDiff, T)) {
      // run j: the corrupted stream entering block l + 1 at positions p_j … T − 1, the clean one at p_j
      const rows = Rows.suffix(positions, T), m = positions.length;
      let x: Float32Array = new Float32Array(rows.count * C); // (rows, C)
      positions.forEach((p, j) => {
        x.set(corrupt.resid_post[l].subarray(p * C, T * C), rows.start[j] * C);
        x.set(clean.resid_post[l].subarray(p * C, (p + 1) * C), rows.start[j] * C);
      });
      const h = model.transformer.h;
      for (let k = l + 1; k < L - 1; k++) x = h[k].forward(x, rows, kv);
      x = h[L - 1].forward(x, rows, kv, rows.last(1)); // (m, C): position T − 1 of each run
      const cells = logitDiffs(model, x, new Array<number>(m).fill(corrupt_token_id), new Array<number>(m).fill(clean_token_id));
      positions.forEach((p, j) => { matrix[l][p] = cells[j]; });
      progress(m);
    }
  }
  return { matrix, clean_logit_diff, corrupt_logit_diff, clean_last_logits: clean.last_logits, corrupt_last_logits: corrupt.last_logits };
}

/** The positions firstDiff … T − 1 in runs of consecutive positions of at most MAX_ROWS rows (run p has T − p). */
function batches(firstDiff: number, T: number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [], rows = 0;
  for (let p = firstDiff; p < T; p++) {
    if (rows > 0 && rows + T - p > MAX_ROWS) {
      out.push(cur);
      cur = [];
      rows = 0;
    }
    cur.push(p);
    rows += T - p;
  }
  if (cur.length) out.push(cur);
  return out;
}
