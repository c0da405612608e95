/**
 * The fast patching engine: the same layer × position matrix as `referencePatchingSweep`
 * (./patching.ts), to float32 rounding, for a small fraction of the work. The readable path stays
 * the reference; this one is chosen with `patchingSweep(model, input, { engine: 'fast' })`.
 *
 * The reference does one full forward pass per cell: for GPT-2 small and the assignment's
 * 11 tokens, 2 + 12 × 11 = 134 passes of 2.7 GFLOP each (1.9 in the 12 blocks, 0.85 in the
 * vocabulary projection), about 370 GFLOP. Three savings, none of which changes a number:
 *
 * 1. Recompute only what a patch can change. Patching block l's output at position p leaves every
 *    earlier layer alone, and, attention being causal, every earlier position too. Only the shaded
 *    part below differs from the corrupted run, so only it is computed; the corrupted run's keys
 *    and values stand in for the rest (P = the patch, block l, position p):
 *
 *                positions →    0   1 … p-1   p   p+1 … T-1
 *        block l                ·   ·    ·    P    ·      ·      (rows after p: corrupted inputs,
 *        block l+1              ·   ·    ·    ▓    ▒      ▒       so their q, k, v are the corrupted
 *        block l+2 … L-2        ·   ·    ·    ▓    ▓      ▓       run's: ▒ = attention and MLP only)
 *        block L-1              ·   ·    ·    k,v  k,v    ▓      (only row T-1 reaches the logits)
 *
 *    And when the two texts agree up to position p, the clean and corrupted activations there are
 *    the same numbers: those cells are the corrupted run's value with no work at all (the whole
 *    first column in the assignment's example), as is the last block at every position but T-1.
 *    For GPT-2 small on the assignment's sentence this leaves 44 GFLOP of the 370.
 * 2. Only two logits. The cell is logit(corrupt token) − logit(clean token): two dot products
 *    with rows of the embedding matrix instead of the 50257-row vocabulary projection (0.85 GFLOP
 *    per run, 110 GFLOP over the sweep, gone).
 * 3. Batches. The runs that patch the same layer go through the model together, block by block,
 *    their rows stacked into one matrix (55 rows for GPT-2 small): each weight matrix is read once
 *    per batch instead of once per run, and the matmul kernel gets enough rows to fill its
 *    4-row register tiles (../kernels.ts). The batches are shared among worker threads that read
 *    the model's weights from the same shared memory (./fast/pool.ts).
 *
 * The clean and corrupted runs themselves are ordinary forward passes (./fast/engine.ts,
 * `baseRun`), kept whole: every block's input, and the corrupted run's q, k, v. Their last-position
 * logits over the whole vocabulary are part of the result.
 */
import os from 'node:os';
import { GPT } from '../mingpt/model.ts';
import { RNG } from '../mingpt/utils.ts';
import { checkPatchingInput, type PatchingInput, type PatchingOptions, type PatchingResult } from './sweep.ts';
import { FastGPT, modelSpec, planUnits, type RunCache, type SweepContext } from './fast/engine.ts';
import { prestartWorkers, runOnWorkers, shutdownWorkers, workersReady } from './fast/pool.ts';
import { abortJob, baseRunsDone, newSync, takeBaseRuns, type SweepJob } from './fast/protocol.ts';
import { kernelsName, paramsMemory } from '../mingpt/kernels/index.ts';
import { stopKernelThreads } from '../mingpt/kernels/simd/threads.ts';

/** Below this much work (in floating-point operations) threads cost more than they save. */
const WORKER_THRESHOLD_FLOP = 2e9;
/** More threads than this gain little: the batches of one sweep are few (2 per layer and worker). */
const MAX_WORKERS = 8;

export async function fastPatchingSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): Promise<PatchingResult> {
  checkPatchingInput(model, input);
  const { clean_ids, corrupt_ids, clean_token_id, corrupt_token_id } = input;
  const spec = modelSpec(model);
  const L = spec.n_layer, C = spec.n_embd, T = clean_ids.length;

  // positions before the first differing token: the patch writes what is already there
  let firstDiff = 0;
  while (firstDiff < T && clean_ids[firstDiff] === corrupt_ids[firstDiff]) firstDiff++;

  const workers = chooseWorkers(opts.workers, L, C, T, firstDiff);
  const units = planUnits(L, T, firstDiff, workers);
  const runs = units.reduce((n, u) => n + u.positions.length, 0);
  const total = L * T;
  let done = 0;
  const progress = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };

  const shared = workers > 1;
  const clean = FastGPT.newRunCache(spec, T, false, shared);
  const corrupt = FastGPT.newRunCache(spec, T, true, shared);
  const diffs = new Float64Array(shared ? new SharedArrayBuffer(8 * L * T) : new ArrayBuffer(8 * L * T)); // (L, T)
  const ctx: SweepContext = { T, clean, corrupt, clean_token_id, corrupt_token_id };

  const engine = new FastGPT(model.params, spec); // views of the weights, no copy
  if (!shared) {
    engine.baseRun(clean_ids, clean);
    engine.baseRun(corrupt_ids, corrupt);
    progress(total - runs);
    for (const unit of units) {
      engine.runUnit(unit, ctx).forEach((d, j) => (diffs[unit.layer * T + unit.positions[j]] = d));
      progress(unit.positions.length);
    }
  } else {
    // the workers are the parallelism now: the kernel threads would only hold memory meanwhile
    await stopKernelThreads();
    const job: SweepJob = {
      params: model.params, memory: paramsMemory(model.params), kernels: kernelsName(),
      spec, clean_ids, corrupt_ids, ctx, units, diffs, sync: newSync(),
    };
    let baseReported = false;
    const onBase = () => {
      if (!baseReported && baseRunsDone(job.sync)) {
        baseReported = true;
        progress(total - runs);
      }
    };
    const warm = workersReady(workers);
    const finished = runOnWorkers(workers, job, { onBase, onUnitDone: progress });
    // while fresh workers boot, this thread does the base runs they have not claimed
    try {
      if (!warm) takeBaseRuns(engine, job, ['clean', 'corrupt']);
    } catch (err) {
      abortJob(job.sync);
      await finished.catch(() => undefined);
      throw err;
    }
    onBase();
    await finished;
  }

  return assemble(L, T, firstDiff, diffs, clean, corrupt, input);
}

/**
 * Starts the worker threads a sweep of `input` will use, without waiting for them: they boot on
 * the other cores while the caller does something else (generate.ts: the clean and corrupted
 * runs it prints). Does nothing when the sweep would run on one thread.
 */
export function prepareFastSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): void {
  const spec = modelSpec(model);
  const T = input.clean_ids.length;
  let firstDiff = 0;
  while (firstDiff < T && input.clean_ids[firstDiff] === input.corrupt_ids[firstDiff]) firstDiff++;
  const workers = chooseWorkers(opts.workers, spec.n_layer, spec.n_embd, T, firstDiff);
  if (workers > 1) {
    prestartWorkers(workers);
    warmUpWorkers(workers);
  }
}

/**
 * Starts, without waiting for it, a sweep of a tiny random model on the workers. A thread's first
 * sweep runs its loops before V8 has compiled them to machine code, about 1.5 s slower on GPT-2
 * small; this one takes that cost (0.2 s here) while the caller is busy. Its result is dropped;
 * the real sweep waits for it in the pool's queue.
 */
function warmUpWorkers(workers: number): void {
  const config = GPT.get_default_config();
  config.model_type = null;
  config.merge_from_dict({ n_layer: 3, n_head: 4, n_embd: 64, vocab_size: 64, block_size: 16 });
  const tiny = new GPT(config, { rng: new RNG(0) });
  const clean_ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const corrupt_ids = clean_ids.map((id, t) => (t === 1 ? 12 : id));
  fastPatchingSweep(tiny, { clean_ids, corrupt_ids, clean_token_id: 2, corrupt_token_id: 12 }, { workers }).catch(() => undefined);
}

/**
 * Ends the idle worker threads and the kernel threads (they never keep the process alive; this
 * gives their memory back, and lets the weights go: every thread that saw them holds a reference).
 */
export async function endFastSweeps(): Promise<void> {
  await shutdownWorkers();
  await stopKernelThreads();
}

/**
 * The number of threads: as asked; else 1 for small work, and 1 with the SIMD kernels, whose big
 * products already split over every core (kernel threads, ./simd/threads.ts): sweep workers
 * would add a V8 heap each (about 12 MiB) for 10-15% less time; else, with the js kernels, the
 * cores (at most MAX_WORKERS).
 */
function chooseWorkers(asked: number | undefined, L: number, C: number, T: number, firstDiff: number): number {
  if (asked !== undefined) {
    if (!(Number.isInteger(asked) && asked >= 1)) throw new Error(`workers must be a positive integer, got ${asked}`);
    return asked;
  }
  // rough size of the sweep: 24·C² flops per row and block, about (L/2)·(T-firstDiff)²/2 row-blocks per layer
  const work = 24 * C * C * L * L * (T - firstDiff) ** 2 / 4;
  if (work < WORKER_THRESHOLD_FLOP || kernelsName() === 'simd') return 1;
  return Math.max(1, Math.min(MAX_WORKERS, os.availableParallelism()));
}

/** The matrix from the computed cells and the free ones. */
function assemble(L: number, T: number, firstDiff: number, diffs: Float64Array, clean: RunCache, corrupt: RunCache, input: PatchingInput): PatchingResult {
  const diff = (logits: Float32Array) => logits[input.corrupt_token_id] - logits[input.clean_token_id];
  const clean_last_logits = clean.lastLogits.slice(); // (V) plain copies, not shared memory
  const corrupt_last_logits = corrupt.lastLogits.slice();
  const clean_logit_diff = diff(clean_last_logits);
  const corrupt_logit_diff = diff(corrupt_last_logits);
  const matrix: number[][] = [];
  for (let l = 0; l < L; l++) {
    const row: number[] = [];
    for (let p = 0; p < T; p++) {
      if (p < firstDiff) row.push(corrupt_logit_diff); // the patch changes nothing
      else if (l === L - 1) row.push(p === T - 1 ? clean_logit_diff : corrupt_logit_diff); // straight to the logits
      else row.push(diffs[l * T + p]);
    }
    matrix.push(row);
  }
  return { matrix, clean_logit_diff, corrupt_logit_diff, clean_last_logits, corrupt_last_logits };
}
