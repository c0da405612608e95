/**
 * Kernel threads: a big matmul on the main thread is split by output channels between the main
 * thread and helper threads, all reading the same shared WebAssembly memory. Small products stay
 * on one thread: waking a helper costs tens of microseconds.
 *
 * A helper is a worker thread that runs a few lines of plain JavaScript (no bundling, no tsx:
 * it is given the compiled module) and sleeps in Atomics.wait on its control words:
 *
 *     main thread                         helper j
 *     writes the arguments, SEQ += 1  →   wakes, claims the part (CLAIM 0 → 1), runs
 *     runs its own channel range          matmul(o0 … o1) for its channel range, DONE = SEQ
 *     claims the part if still free and
 *     runs it; else waits until DONE = SEQ ←
 *
 * The claim makes a split never much slower than one thread: when the machine is busy and a
 * helper does not get a core in time, the main thread does its part too.
 *
 * A helper holds one memory at a time; when the main thread works on another, it first posts
 * that Memory on the helper's port, which the helper reads synchronously when it wakes
 * (receiveMessageOnPort). Every output is computed by exactly one thread with the same
 * instructions, so the split changes no number (see ./kernels_wasm.ts).
 *
 * Helpers start in the background on the first big product and are used once they are up (until
 * then products run on one thread); they are unref'd, so they never keep a process alive.
 */
import os from 'node:os';
import { Worker, MessageChannel, isMainThread, type MessagePort } from 'node:worker_threads';
import { simdSupport, type KernelMemory } from './memory.ts';

/** Products below this many floating-point operations run on one thread. */
export const SPLIT_FLOP = 4e6;

// control words of one helper (Int32Array over a SharedArrayBuffer)
const SEQ = 0, DONE = 1, ERR = 2, QUIT = 3, READY = 4, MEM = 5, CLAIM = 6, ARGS = 7; // ARGS … ARGS+8: the kernel's 9 arguments
const KIND = 16; // which kernel: 0 matmul (the forward product), 1 matmul_acc (the backward's)
const CTL_WORDS = 17;

interface Helper {
  worker: Worker;
  ctl: Int32Array;
  port: MessagePort;
  seq: number;
  memId: number; // the memory it holds now (0: none)
}

/** The helper's whole program. */
const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { module, ctl, port } = workerData;
const [SEQ, DONE, ERR, QUIT, READY, MEM, CLAIM, ARGS, KIND] = [${SEQ}, ${DONE}, ${ERR}, ${QUIT}, ${READY}, ${MEM}, ${CLAIM}, ${ARGS}, ${KIND}];
let mem = null, kernels = null, seen = 0;
Atomics.store(ctl, READY, 1);
for (;;) {
  Atomics.wait(ctl, SEQ, seen, 1000);
  if (Atomics.load(ctl, QUIT)) break;
  const seq = Atomics.load(ctl, SEQ);
  if (seq === seen) continue;
  seen = seq;
  try {
    for (let m; (m = receiveMessageOnPort(port)); ) {
      mem = m.message.id;
      kernels = new WebAssembly.Instance(module, { env: { memory: m.message.memory } }).exports;
    }
    // the main thread may have taken this part itself meanwhile (when this thread was slow to wake)
    if (Atomics.compareExchange(ctl, CLAIM, 0, 1) === 0) {
      if (mem !== ctl[MEM]) throw new Error('kernel thread: not given memory ' + ctl[MEM]);
      const a = ctl.subarray(ARGS, ARGS + 9);
      (ctl[KIND] === 1 ? kernels.matmul_acc : kernels.matmul)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
    }
  } catch (e) {
    Atomics.store(ctl, ERR, 1);
    console.error(e);
  }
  Atomics.store(ctl, DONE, seq);
  Atomics.notify(ctl, DONE);
}
`;

let helpers: Helper[] = [];
/** MINGPT_KERNEL_THREADS=n sets the default (1: no helpers). */
let wanted = Number(process.env.MINGPT_KERNEL_THREADS) >= 1 ? Math.floor(Number(process.env.MINGPT_KERNEL_THREADS)) : Math.max(1, os.availableParallelism());

/** Threads per big product, the main thread included (1: no helpers). Default: the cores, or MINGPT_KERNEL_THREADS. */
export function setKernelThreads(n: number): void {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`kernel threads must be a positive integer, got ${n}`);
  wanted = n;
  if (helpers.length > n - 1) void stopKernelThreads();
}
export function kernelThreads(): number {
  return wanted;
}

/** Ends the helper threads (they are unref'd anyway; for tidy tests). */
export async function stopKernelThreads(): Promise<void> {
  const hs = helpers;
  helpers = [];
  for (const h of hs) {
    Atomics.store(h.ctl, QUIT, 1);
    Atomics.notify(h.ctl, SEQ);
  }
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
  while (helpers.length < wanted - 1) {
    const ctl = new Int32Array(new SharedArrayBuffer(4 * CTL_WORDS));
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(HELPER_SOURCE, { eval: true, name: 'mingpt-kernels', workerData: { module, ctl, port: port2 }, transferList: [port2] });
    worker.unref();
    port1.unref();
    const h: Helper = { worker, ctl, port: port1, seq: 0, memId: 0 };
    worker.once('exit', () => {
      helpers = helpers.filter((x) => x !== h);
    });
    helpers.push(h);
  }
}

/**
 * km.exports.matmul over all OC channels, split among the ready helpers when it is big and this
 * is the main thread. Pointers are byte addresses in km (see ./kernels_wasm.ts).
 */
export function threadedMatmul(km: KernelMemory, out: number, inp: number, w: number, b: number, BT: number, C: number, OC: number): void {
  split(km, 0, [out, inp, w, b, BT, C, OC], OC, 2 * BT * C * OC);
}

/**
 * km.exports.matmul_acc, out (M, N) += a (M, K) · b (K, N) (a's rows lda apart), over all N
 * columns, split like threadedMatmul (see ./backward_wasm.ts).
 */
export function threadedMatmulAcc(km: KernelMemory, out: number, a: number, b: number, M: number, K: number, N: number, lda: number): void {
  split(km, 1, [out, a, b, M, K, N, lda], N, 2 * M * K * N);
}

/**
 * Runs kernel `kind` (see KIND) with its first seven arguments `args` over the range [0, total)
 * of its last two (output channels, or columns), split among the ready helpers when it is worth it.
 */
function split(km: KernelMemory, kind: 0 | 1, args: number[], total: number, flop: number): void {
  const kernel = kind === 1 ? km.exports.matmul_acc : km.exports.matmul;
  const mm = (o0: number, o1: number) => kernel(args[0], args[1], args[2], args[3], args[4], args[5], args[6], o0, o1);
  if (wanted <= 1 || !isMainThread || flop < SPLIT_FLOP || total < 64) {
    mm(0, total);
    return;
  }
  if (helpers.length < wanted - 1) startHelpers();
  const ready = helpers.filter((h) => Atomics.load(h.ctl, READY) === 1);
  if (ready.length === 0) {
    mm(0, total);
    return;
  }
  const parts = ready.length + 1;
  const unit = kind === 1 ? 16 : 4; // whole tiles per thread (2 × 4 channels; 2 × 16 columns)
  const chunk = Math.ceil(total / parts / unit) * unit;
  const busy: Helper[] = [];
  for (let j = 0; j < ready.length; j++) {
    const o0 = j * chunk, o1 = Math.min(total, o0 + chunk);
    if (o0 >= o1) break;
    const h = ready[j];
    if (h.memId !== km.id) {
      h.port.postMessage({ id: km.id, memory: km.memory });
      h.memId = km.id;
    }
    const c = h.ctl;
    c[MEM] = km.id;
    c[KIND] = kind;
    c.set([...args, o0, o1], ARGS); // (Int32Array: addresses past 2³¹ wrap, as wasm's i32 reads them)
    Atomics.store(c, CLAIM, 0); // published after the arguments
    h.seq = (h.seq + 1) | 0;
    Atomics.store(c, SEQ, h.seq);
    Atomics.notify(c, SEQ);
    busy.push(h);
  }
  const mine = busy.length * chunk;
  if (mine < total) mm(mine, total);
  const t0 = Date.now();
  for (const h of busy) {
    if (Atomics.compareExchange(h.ctl, CLAIM, 0, 1) === 0) { // not started yet: do it here
      mm(h.ctl[ARGS + 7], h.ctl[ARGS + 8]);
      continue;
    }
    for (let spins = 0; Atomics.load(h.ctl, DONE) !== h.seq; spins++) {
      if (spins < 200) continue; // it is usually done about when we are: spin a very little first
      Atomics.wait(h.ctl, DONE, Atomics.load(h.ctl, DONE), 50);
      if (Date.now() - t0 > 120_000) throw new Error('matmulForward: a kernel thread stopped answering');
    }
    if (Atomics.load(h.ctl, ERR)) throw new Error('matmulForward: a kernel thread failed (see the message above)');
  }
}
