/**
 * Worker threads for the fast patching engine.
 *
 * Every worker sees the model's weights in the same shared memory (nothing is copied): the buffer
 * of the model's WebAssembly.Memory, which the job carries so that the worker's SIMD kernels run
 * on it too (../backend.ts), or a plain SharedArrayBuffer. So too the two base runs and the result
 * cells: the workers write them, the main thread reads them at the end. A sweep on n workers:
 *
 *   - the two base runs (clean, corrupted) go to whichever thread claims them first. Workers that
 *     are up take them; while fresh workers start, the main thread begins on them itself, and a
 *     worker that is up in time takes the one still unclaimed;
 *   - the workers wait until both base runs are done (Atomics.wait on a shared counter);
 *   - each worker then takes the next batch from the shared list (Atomics.add on a shared index)
 *     until none is left. The list is sorted largest first, so they finish at about the same time.
 *
 * Starting a worker. The worker code is TypeScript (./worker.ts and what it imports). Loading tsx
 * inside every worker would cost each one 0.4–1 s and about 30 MB, so instead the main thread
 * bundles ./worker.ts once into plain JavaScript with esbuild — the compiler tsx itself runs on,
 * found through tsx's own dependencies, so nothing new is installed — and starts workers from
 * that text: about 0.15 s and a few MB each. If esbuild cannot be found, each worker registers
 * tsx and imports ./worker.ts directly (slower, same result).
 *
 * Workers stay alive between sweeps (warm JIT, no start-up) but are unref'd while idle, so they
 * never keep a process from exiting; `shutdownWorkers()` ends them explicitly.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { abortJob, type SweepJob, type WorkerReply } from './protocol.ts';

const pool: Worker[] = [];
const ready = new WeakSet<Worker>(); // workers that have finished loading
let queue: Promise<unknown> = Promise.resolve(); // one sweep at a time on the pool

/** The part of esbuild's API we use. */
interface EsbuildLike {
  buildSync(options: Record<string, unknown>): { outputFiles?: Array<{ text: string }> };
}

let workerSource: string | null = null;

/** ./worker.ts and its imports as one CommonJS script, or a bootstrap that loads them through tsx. */
function workerCode(): string {
  if (workerSource !== null) return workerSource;
  const entry = fileURLToPath(new URL('./worker.ts', import.meta.url));
  try {
    const fromTsx = createRequire(fileURLToPath(import.meta.resolve('tsx')));
    const esbuild = fromTsx('esbuild') as EsbuildLike;
    const out = esbuild.buildSync({
      entryPoints: [entry], bundle: true, write: false, format: 'cjs', platform: 'node', target: 'node20',
      logLevel: 'silent',
    });
    const text = out.outputFiles?.[0]?.text;
    if (!text) throw new Error('esbuild produced no output');
    workerSource = text;
  } catch {
    // In Node 20 a worker's entry module does not go through the loader hooks that
    // `--import tsx` installs, so the thread registers tsx (its documented API) and then imports.
    const tsxApi = import.meta.resolve('tsx/esm/api');
    const href = new URL('./worker.ts', import.meta.url).href;
    workerSource = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(href)}); });`;
  }
  return workerSource;
}

function spawn(): Worker {
  const w = new Worker(workerCode(), { eval: true, name: 'mingpt-fast-patching' });
  w.unref();
  w.once('message', (m: WorkerReply) => {
    if (m.type === 'ready') ready.add(w);
  });
  const drop = () => {
    const i = pool.indexOf(w);
    if (i >= 0) pool.splice(i, 1);
  };
  w.once('exit', drop);
  w.once('error', drop);
  pool.push(w);
  return w;
}

/** Starts n workers now (if fewer are alive), so that a later sweep finds them ready. */
export function prestartWorkers(n: number): void {
  while (pool.length < n) spawn();
}

/** Whether n workers are up and have loaded their code (then the main thread need not take base runs). */
export function workersReady(n: number): boolean {
  return pool.length >= n && pool.slice(0, n).every((w) => ready.has(w));
}

/** Ends the pooled workers (they are unref'd anyway; this is for tidy tests and benchmarks). */
export async function shutdownWorkers(): Promise<void> {
  const ws = pool.splice(0);
  // A terminating worker does not keep the event loop alive, and tearing down one that ran
  // WebAssembly takes a moment: hold the loop open with a timer until every one has ended.
  const hold = setInterval(() => undefined, 1000);
  try {
    await Promise.all(ws.map((w) => w.terminate()));
  } finally {
    clearInterval(hold);
  }
}

export interface WorkerCallbacks {
  /** a worker finished a base run */
  onBase?: () => void;
  /** a unit of that many patched runs is done */
  onUnitDone?: (runs: number) => void;
}

/**
 * Hands the job to n workers (started now if needed) and resolves once they have written every
 * cell. Returns at once; meanwhile the caller may take base runs itself (takeBaseRuns).
 */
export function runOnWorkers(n: number, job: SweepJob, on: WorkerCallbacks = {}): Promise<void> {
  if (!(job.params.buffer instanceof SharedArrayBuffer)) throw new Error('fast engine: workers need the model parameters in a SharedArrayBuffer');
  const run = queue.then(() => runNow(n, job, on));
  queue = run.catch(() => undefined);
  return run;
}

function runNow(n: number, job: SweepJob, on: WorkerCallbacks): Promise<void> {
  prestartWorkers(n);
  const workers = pool.slice(0, n);
  return new Promise<void>((resolve, reject) => {
    let running = n, failed = false;
    const handlers = new Map<Worker, (m: WorkerReply) => void>();
    const cleanup = () => {
      for (const w of workers) {
        w.off('message', handlers.get(w)!);
        w.off('error', onError);
        w.off('exit', onExit);
        w.unref();
      }
    };
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      abortJob(job.sync);
      cleanup();
      void shutdownWorkers(); // a worker that threw may be in any state: start afresh next time
      reject(err);
    };
    const onError = (err: Error) => fail(err);
    const onExit = (code: number) => fail(new Error(`fast engine: a worker thread exited (code ${code}) during the sweep`));
    workers.forEach((w, index) => {
      const handler = (m: WorkerReply) => {
        if (failed || m.type === 'ready') return;
        if (m.type === 'base') on.onBase?.();
        else if (m.type === 'unit') on.onUnitDone?.(m.runs);
        else if (m.type === 'done') {
          if (--running === 0) {
            cleanup();
            resolve();
          }
        } else if (m.type === 'error') {
          const err = new Error(`fast engine, worker ${index}: ${m.message}`);
          if (m.stack) err.stack = m.stack;
          fail(err);
        }
      };
      handlers.set(w, handler);
      w.on('message', handler);
      w.on('error', onError);
      w.on('exit', onExit);
      w.ref(); // keep the process alive while the sweep runs
      w.postMessage(job);
    });
  });
}
