/**
 * Kernel threads: a big kernel call on the main thread is cut into items (a range of output
 * channels of a matmul; one head and block of queries of the attention; a range of rows or
 * values) that the main thread and helper threads take one at a time, all working in the same
 * shared WebAssembly memory. Small calls stay on one thread: waking a helper costs tens of
 * microseconds.
 *
 * A helper is a worker thread running a few lines of plain JavaScript (HELPER_SOURCE below; it is
 * given the compiled module, so no bundling or tsx). Between jobs it sleeps in Atomics.wait, so an
 * idle process uses no processor time. One job at a time, described in shared control words:
 *
 *     main thread                              helpers
 *     writes the job (kernel, arguments,
 *     number of items), SEQ = new number  →   wake; IN = 1; if SEQ is still that job,
 *     takes items too: NEXT += 1 …            take items: NEXT += 1 …, run each, DONE += 1
 *     sleeps until DONE = items          ←    the one who finishes the last item wakes main
 *                                             IN = 0, sleep until SEQ changes
 *
 * Items are taken, not assigned, so a helper that gets no core in time (a busy machine) leaves its
 * share to the others instead of holding everyone up. Before writing the next job, the main
 * thread sets SEQ to CLOSED and waits until no helper is IN: none still reads the old job's words
 * when they change (a helper that woke late sees CLOSED, or a new SEQ, and takes nothing).
 *
 * Every output is computed by exactly one thread with the same instructions, so how the items
 * fall changes no number (see ./kernels_wasm.ts). A job's kernel runs on one memory; a helper
 * keeps instances of the module on the few memories it has been sent (posted on its port, read
 * synchronously with receiveMessageOnPort when it wakes); the main thread tells it which to drop.
 *
 * Helpers start in the background on the first big call and take part once they are up; they are
 * unref'd, so they never keep a process alive.
 */
import os from 'node:os';
import { Worker, MessageChannel, isMainThread, type MessagePort } from 'node:worker_threads';
import { simdSupport, type KernelMemory } from './memory.ts';
import { JOBS, type JobName } from './kernels_wasm.ts';

/** Calls below this many floating-point operations run on one thread. */
const SPLIT_FLOP = 4e6;

// the control words (Int32Array over a SharedArrayBuffer), one set for all helpers
const SEQ = 0, NEXT = 1, DONE = 2, ERR = 3, MEM = 4, JOB = 5, ARGS = 6, ITEMS = 7;
const CTL_WORDS = 8;
// and each helper's own: it is up; it is inside a job; it is to stop
const UP = 0, IN = 1, QUIT = 2;
const CLOSED = -1;
/** Memories a helper keeps instances on: the model's weights and the activations, and one to spare. */
const HELD = 3;

/** The helper's whole program. */
const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { module, ctl, own, port, me, jobs } = workerData;
const [SEQ, NEXT, DONE, ERR, MEM, JOB, ARGS, ITEMS, CLOSED, UP, IN, QUIT] = [${SEQ}, ${NEXT}, ${DONE}, ${ERR}, ${MEM}, ${JOB}, ${ARGS}, ${ITEMS}, ${CLOSED}, ${UP}, ${IN}, ${QUIT}];
const held = new Map(); // memory id -> the module's exports on it
const fail = (e) => { Atomics.store(ctl, ERR, 1); console.error(e); };
let seen = Atomics.load(ctl, SEQ);
Atomics.store(own, UP, 1);
for (;;) {
  Atomics.wait(ctl, SEQ, seen);
  if (Atomics.load(own, QUIT)) break;
  const seq = Atomics.load(ctl, SEQ);
  seen = seq;
  if (seq === CLOSED) continue;
  Atomics.store(own, IN, 1);
  if (Atomics.load(ctl, SEQ) === seq) {
    try {
      const id = ctl[MEM];
      for (let m; !held.has(id) && (m = receiveMessageOnPort(port)); ) {
        const { memory, drop } = m.message;
        if (drop !== undefined) held.delete(drop);
        else held.set(m.message.id, new WebAssembly.Instance(module, { env: { memory } }).exports);
      }
      const k = held.get(id);
      if (!k) throw new Error('kernel thread: not given memory ' + id);
      const fn = k[jobs[ctl[JOB]]], args = ctl[ARGS], n = ctl[ITEMS];
      for (let i; (i = Atomics.add(ctl, NEXT, 1)) < n; ) {
        try { fn(args, i, me); } catch (e) { fail(e); }
        if (Atomics.add(ctl, DONE, 1) + 1 === n) Atomics.notify(ctl, DONE);
      }
    } catch (e) { fail(e); }
  }
  Atomics.store(own, IN, 0);
  Atomics.notify(own, IN);
}
`;

interface Helper {
  worker: Worker;
  own: Int32Array; // UP, IN, QUIT
  port: MessagePort;
  me: number; // its thread number, 1 … wanted − 1 (the main thread is 0)
  held: number[]; // the memory ids it has, oldest first (as it has them: it is told what to drop)
}

const ctl = new Int32Array(new SharedArrayBuffer(4 * CTL_WORDS));
let helpers: Helper[] = [];
let seq = 0;
/** items of shared jobs done by the main thread and by the helpers, since the start */
const done = { main: 0, helpers: 0 };

/** How the items of the jobs shared so far fell (the tests check that helpers took part; the benchmark reports it). */
export function kernelThreadItems(): { main: number; helpers: number } {
  return { ...done };
}

/** Thrown for a bad MINGPT_KERNEL_THREADS (or setKernelThreads argument): a user's setting, named in the message. */
export class KernelThreadsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KernelThreadsError';
  }
}

/** The most kernel threads allowed: twice the cores (a little headroom for experiments), never more than 64. */
export function maxKernelThreads(): number {
  return Math.min(64, 2 * os.availableParallelism());
}

/** MINGPT_KERNEL_THREADS, checked, or the number of cores. */
function threadsFromEnv(): number {
  const raw = process.env.MINGPT_KERNEL_THREADS;
  if (raw === undefined || raw.trim() === '') return Math.max(1, os.availableParallelism());
  const n = Number(raw), max = maxKernelThreads();
  if (!(Number.isInteger(n) && n >= 1 && n <= max)) {
    throw new KernelThreadsError(`MINGPT_KERNEL_THREADS must be a whole number from 1 to ${max} (twice this machine's ${os.availableParallelism()} cores, at most 64); got ${JSON.stringify(raw.slice(0, 40))}. Unset it to use every core.`);
  }
  return n;
}

let wanted: number | null = null;

/** Threads per big kernel call, the main thread included (1: no helpers). Default: the cores, or MINGPT_KERNEL_THREADS. Throws KernelThreadsError for a bad setting. */
export function kernelThreads(): number {
  return (wanted ??= threadsFromEnv());
}

export function setKernelThreads(n: number): void {
  const max = maxKernelThreads();
  if (!(Number.isInteger(n) && n >= 1 && n <= max)) throw new KernelThreadsError(`kernel threads must be a whole number from 1 to ${max}, got ${n}`);
  wanted = n;
  if (helpers.length > n - 1) void stopKernelThreads();
}

/** Ends the helper threads (they are unref'd anyway; for tidy tests and an exact idle measurement). */
export async function stopKernelThreads(): Promise<void> {
  const hs = helpers;
  helpers = [];
  if (hs.length === 0) return;
  closeJob();
  for (const h of hs) Atomics.store(h.own, QUIT, 1);
  Atomics.notify(ctl, SEQ);
  // (a terminating worker does not keep the event loop alive: a timer does, until they have ended)
  const hold = setInterval(() => undefined, 1000);
  try {
    await Promise.all(hs.map((h) => h.worker.terminate()));
  } finally {
    clearInterval(hold);
  }
}

function startHelpers(): void {
  const module = simdSupport().module;
  if (!module) return;
  const n = kernelThreads() - 1;
  for (let me = 1; me <= n; me++) {
    if (helpers.some((h) => h.me === me)) continue;
    const { port1, port2 } = new MessageChannel();
    const own = new Int32Array(new SharedArrayBuffer(12));
    const worker = new Worker(HELPER_SOURCE, { eval: true, name: 'mingpt-kernels', workerData: { module, ctl, own, port: port2, me, jobs: JOBS }, transferList: [port2] });
    worker.unref();
    port1.unref();
    const h: Helper = { worker, own, port: port1, me, held: [] };
    worker.once('exit', () => {
      helpers = helpers.filter((x) => x !== h);
    });
    helpers.push(h);
  }
}

/** Make sure helper h has the module on km (it reads the messages, in order, when it next wakes). */
function send(h: Helper, km: KernelMemory): void {
  const i = h.held.indexOf(km.id);
  if (i >= 0) return;
  if (h.held.length >= HELD) h.port.postMessage({ drop: h.held.shift() });
  h.port.postMessage({ id: km.id, memory: km.memory });
  h.held.push(km.id);
}

/** No helper is inside a job any more: the job's words may change. (One that has ended is no longer in the list.) */
function closeJob(): void {
  Atomics.store(ctl, SEQ, CLOSED);
  for (const h of helpers) while (Atomics.load(h.own, IN) === 1) Atomics.wait(h.own, IN, 1, 50);
}

/** How many threads may take items of a job (for per-thread scratch): the main thread is number 0. */
export function jobThreads(): number {
  return isMainThread ? kernelThreads() : 1;
}

/**
 * Runs items 0 … items−1 of the job `name` of km's module, whose arguments are at byte `args` of
 * km: on this thread alone when the call is small (flop) or this is not the main thread, else
 * shared with the helper threads that are up.
 */
export function runJob(km: KernelMemory, name: JobName, args: number, items: number, flop: number): void {
  const fn = km.exports[name];
  if (items <= 1 || flop < SPLIT_FLOP || !isMainThread || kernelThreads() <= 1) {
    for (let i = 0; i < items; i++) fn(args, i, 0);
    return;
  }
  if (helpers.length < kernelThreads() - 1) startHelpers();
  if (!helpers.some((h) => Atomics.load(h.own, UP) === 1)) { // none up yet
    for (let i = 0; i < items; i++) fn(args, i, 0);
    return;
  }
  closeJob();
  for (const h of helpers) send(h, km);
  ctl[MEM] = km.id;
  ctl[JOB] = JOBS.indexOf(name);
  ctl[ARGS] = args; // (Int32Array: addresses past 2³¹ wrap, as wasm's i32 reads them)
  ctl[ITEMS] = items;
  ctl[DONE] = 0;
  ctl[ERR] = 0;
  Atomics.store(ctl, NEXT, 0);
  seq = (seq + 1) & 0x3fffffff;
  Atomics.store(ctl, SEQ, seq);
  Atomics.notify(ctl, SEQ);
  let mine = 0;
  for (let i; (i = Atomics.add(ctl, NEXT, 1)) < items; mine++) {
    fn(args, i, 0);
    Atomics.add(ctl, DONE, 1);
  }
  // the helpers finish the items they took; the last one wakes this thread
  let last = Atomics.load(ctl, DONE), since = Date.now();
  for (let d; (d = Atomics.load(ctl, DONE)) < items; ) {
    if (d !== last) {
      last = d;
      since = Date.now();
    } else if (Date.now() - since > 120_000) {
      throw new Error('SIMD kernels: a kernel thread stopped answering (no progress for 2 minutes)');
    }
    Atomics.wait(ctl, DONE, d, 100);
  }
  done.main += mine;
  done.helpers += items - mine;
  if (Atomics.load(ctl, ERR)) throw new Error('SIMD kernels: a kernel thread failed (see the message above)');
}
