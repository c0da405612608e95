/**
 * What the main thread and the worker threads of the fast engine share: the job they are given,
 * the messages workers send back, and the control words in shared memory with which they claim
 * work and wait for each other (Atomics). See ./pool.ts for the picture.
 */
import type { FastGPT, ModelSpec, SweepContext, Unit } from './engine.ts';
import type { KernelsName } from '../../mingpt/kernels/index.ts';

/** Everything a worker needs for one sweep. Typed arrays here are views of SharedArrayBuffers. */
export interface SweepJob {
  params: Float32Array;
  /** the WebAssembly.Memory params is a view of (null: a plain SharedArrayBuffer), for the SIMD kernels */
  memory: WebAssembly.Memory | null;
  /** the kernels the main thread runs, so that every thread computes the same numbers */
  kernels: KernelsName;
  spec: ModelSpec;
  clean_ids: number[];
  corrupt_ids: number[];
  ctx: SweepContext;
  units: Unit[];
  /** (L, T) the cells, written by the workers */
  diffs: Float64Array;
  /** the shared control words, see SYNC_* and newSync() */
  sync: Int32Array;
}

export type WorkerReply =
  | { type: 'ready' } // the worker has loaded its modules
  | { type: 'base' } // this worker finished a base run
  | { type: 'unit'; runs: number } // a unit of that many patched runs is done
  | { type: 'done' } // no units left
  | { type: 'error'; message: string; stack?: string };

/** Index of the next unit to take. */
export const SYNC_NEXT = 0;
/** Number of base runs finished (0, 1, 2). */
export const SYNC_BASE = 1;
/** Set to 1 when a thread failed: the others stop. */
export const SYNC_ABORT = 2;
/** Claim flags of the clean (3) and corrupted (4) base runs: 0 free, 1 taken. */
const SYNC_CLAIM: Record<'clean' | 'corrupt', number> = { clean: 3, corrupt: 4 };

export function newSync(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * 5));
}

/** Runs, in this thread, each base run of `order` that no other thread has claimed yet; returns how many. */
export function takeBaseRuns(engine: FastGPT, job: SweepJob, order: Array<'clean' | 'corrupt'>): number {
  const { sync } = job;
  let ran = 0;
  for (const which of order) {
    if (Atomics.load(sync, SYNC_ABORT)) break;
    if (Atomics.compareExchange(sync, SYNC_CLAIM[which], 0, 1) !== 0) continue; // someone else has it
    engine.baseRun(which === 'clean' ? job.clean_ids : job.corrupt_ids, which === 'clean' ? job.ctx.clean : job.ctx.corrupt);
    Atomics.add(sync, SYNC_BASE, 1);
    Atomics.notify(sync, SYNC_BASE);
    ran++;
  }
  return ran;
}

/** Whether both base runs are done. */
export function baseRunsDone(sync: Int32Array): boolean {
  return Atomics.load(sync, SYNC_BASE) >= 2;
}

/** Blocks (a worker only: the main thread may not) until both base runs are done or a thread failed. */
export function waitForBaseRuns(sync: Int32Array): void {
  for (;;) {
    const seen = Atomics.load(sync, SYNC_BASE);
    if (seen >= 2 || Atomics.load(sync, SYNC_ABORT)) return;
    Atomics.wait(sync, SYNC_BASE, seen, 1000);
  }
}

/** Tells every thread of the job to stop. */
export function abortJob(sync: Int32Array): void {
  Atomics.store(sync, SYNC_ABORT, 1);
  Atomics.notify(sync, SYNC_BASE);
}
