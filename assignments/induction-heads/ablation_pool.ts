/**
 * The MLP ablations on two threads: the main thread and worker threads take ablations from one
 * shared list until it is empty. Each ablation is an independent forward pass, so the split
 * changes no number (test/induction.test.ts checks that the results are identical).
 *
 * When it is worth it: with the plain JavaScript kernels (`--kernels js`) every forward pass runs
 * on one core, so a worker doubles the rate on a 2-core machine. The SIMD kernels already split
 * every big product over the cores (mingpt/kernels/simd/threads.ts), so there a worker would only compete
 * with them: `autoWorkers` says 0.
 *
 * A worker loads the checkpoint itself, from the file the model came from (the page cache makes
 * that quick), because a GPT cannot yet be built on another thread's parameter buffer; a model
 * built in memory (the handmade one in the tests) has no file, and runs on the main thread alone.
 *
 * Starting a worker: its code is TypeScript, so the thread registers tsx (its documented API)
 * and then imports ./ablation_worker.ts, as sweep/fast/pool.ts does when esbuild is missing.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { GPT } from '../../mingpt/model.ts';
import type { KernelsName } from '../../mingpt/kernels/index.ts';
import { mlpAblation, type AblationMode, type AblationResult, type MlpAblationInput } from './circuit.ts';

/** One MLP ablation: the layer whose MLP is removed at the second-half positions, and how. */
export interface AblationTask {
  layer: number;
  mode: AblationMode;
}

/** What a worker is given (typed arrays in `next` and `results` are views of SharedArrayBuffers). */
export interface AblationJob {
  file: string;
  kernels: KernelsName;
  run: MlpAblationInput;
  tasks: AblationTask[];
  /** [0]: index of the next task to take */
  next: Int32Array;
  /** (tasks, 2): second-half log-prob and accuracy of each task */
  results: Float64Array;
}

export type AblationReply =
  | { type: 'block' } // a transformer block finished (for the progress bar)
  | { type: 'done' }
  | { type: 'error'; message: string; stack?: string };

/** Extra threads worth starting: one per spare core with the one-thread js kernels, none with SIMD. */
export function autoWorkers(kernels: KernelsName): number {
  return kernels === 'js' ? Math.max(0, os.availableParallelism() - 1) : 0;
}

function startWorker(): Worker {
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./ablation_worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(code, { eval: true, name: 'induction-mlp-ablation' });
}

export interface ThreadOptions {
  /** extra threads (0: the main thread alone, as when the model has no file) */
  workers: number;
  /** the kernels every thread uses */
  kernels: KernelsName;
  /** hears every finished transformer block, on any thread */
  onBlock?: () => void;
  /** false: leave every task to the workers (for the tests) */
  mainThreadWorks?: boolean;
}

/** Every task's result, in the order of `tasks`. */
export async function mlpAblationsOnThreads(model: GPT, run: MlpAblationInput, tasks: AblationTask[], o: ThreadOptions): Promise<AblationResult[]> {
  const { kernels, onBlock } = o;
  const file = model.source?.file;
  const mainWorks = o.mainThreadWorks ?? true;
  const n = file ? Math.max(mainWorks ? 0 : 1, Math.min(o.workers, mainWorks ? tasks.length - 1 : tasks.length)) : 0;
  if (!mainWorks && n === 0) throw new Error('mlpAblationsOnThreads: with the main thread idle, a worker is needed (and a model loaded from a file)');
  const next = new Int32Array(new SharedArrayBuffer(4));
  const results = new Float64Array(new SharedArrayBuffer(16 * tasks.length));
  // only the arrays the fast path reads go to the workers (they are copied once each)
  const shared: MlpAblationInput = { tokens: run.tokens, B: run.B, T: run.T, n: run.n, residPre: run.residPre, residMid: run.residMid, mlpMeans: { second_half: run.mlpMeans.second_half } };
  const job: AblationJob = { file: file ?? '', kernels, run: shared, tasks, next, results };

  const threads = Array.from({ length: n }, startWorker);
  const finished = threads.map((w) => new Promise<void>((resolve, reject) => {
    w.on('message', (m: AblationReply) => {
      if (m.type === 'block') onBlock?.();
      else if (m.type === 'done') resolve();
      else {
        const err = new Error(`MLP ablation worker: ${m.message}`);
        if (m.stack) err.stack = m.stack;
        reject(err);
      }
    });
    w.on('error', reject);
    w.on('exit', (code) => reject(new Error(`MLP ablation worker exited (code ${code}) before it was done`)));
    w.postMessage(job);
  }));
  const allDone = Promise.all(finished);
  allDone.catch(() => undefined); // handled below; this only keeps an early failure from going unheard
  try {
    // the main thread works through the same list meanwhile; a worker that is still starting
    // finds fewer tasks left, which is fine
    while (mainWorks) {
      const i = Atomics.add(next, 0, 1);
      if (i >= tasks.length) break;
      const r = mlpAblation(model, run, tasks[i].layer, tasks[i].mode, onBlock);
      results[2 * i] = r.second_half_logprob;
      results[2 * i + 1] = r.second_half_accuracy;
    }
    await allDone;
  } finally {
    await Promise.all(threads.map((w) => w.terminate()));
  }
  return tasks.map((_, i) => ({ second_half_logprob: results[2 * i], second_half_accuracy: results[2 * i + 1] }));
}
