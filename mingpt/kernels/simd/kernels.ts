/**
 * The SIMD kernels with the signatures of ../js.ts: same arguments, same results to float32
 * rounding (the tests hold each to its twin). ../index.ts swaps them in for the plain ones.
 * The attention kernels are in ./attention.ts.
 *
 * Each copies what it is given into a scratch area of a WebAssembly memory (./scratch.ts), runs
 * the module's kernel there — shared among the kernel threads when the call is big
 * (./threads.ts) — and copies the result out, in blocks when the arrays do not fit at once.
 * matmulForward works in the memory that holds the weights (the model's parameters, ./memory.ts),
 * the others in this thread's loose memory; arrays already in the memory are used where they are.
 */
import { kernelMemoryOf, looseMemory, looseActScratch, slotScratch, workScratch, LOOSE_WEIGHT_BYTES, type KernelMemory } from './memory.ts';
import { allocBytes, type Scratch } from './scratch.ts';
import { jobThreads, runJob } from './threads.ts';

const inside = (km: KernelMemory, a: Float32Array) => a.buffer === km.buffer;

/** Items per thread a job is cut into: enough that a slow thread's share is picked up by the others. */
export const ITEMS_PER_THREAD = 4;

/** Rows at least in a block of a matmul whose outputs are wide (the vocabulary): each block streams all the weights once. */
const MIN_BLOCK_ROWS = 256;

/** out (BT, OC) = inp (BT, C) · weight (OC, C)ᵀ + bias (OC) */
export function matmulForward(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  if (BT <= 0 || OC <= 0) return;
  const km = kernelMemoryOf(weight);
  const s = km ? slotScratch(km) : null;
  if (s) matmulIn(s, out, OC, 0, inp, weight.byteOffset, bias, BT, C, OC);
  else matmulLoose(out, inp, weight, bias, BT, C, OC);
}

/**
 * The product with the weights at byte w of the scratch's memory, into columns outCol … outCol+OC
 * of out (BT, outStride). Blocks of rows, as many as fit; when even MIN_BLOCK_ROWS rows of all
 * the outputs do not fit (the vocabulary projection: 201 KB a row), blocks of channels too.
 */
function matmulIn(
  s: Scratch, out: Float32Array, outStride: number, outCol: number,
  inp: Float32Array, w: number, bias: Float32Array | null, BT: number, C: number, OC: number,
): void {
  const km = s.km;
  const b = !bias ? 0 : inside(km, bias) ? bias.byteOffset : s.copyIn(bias, 0, OC);
  const inpIn = inside(km, inp), outIn = inside(km, out) && outStride === OC && outCol === 0;
  if (inpIn && outIn) {
    threadedMatmul(s, out.byteOffset, inp.byteOffset, w, b, BT, C, OC);
    return;
  }
  const inBytes = (rows: number) => (inpIn ? 0 : allocBytes(rows * C));
  const outBytes = (rows: number, cols: number) => (outIn ? 0 : allocBytes(rows * cols));
  let rows = BT, cols = OC;
  if (inBytes(BT) + outBytes(BT, OC) > s.room) {
    rows = Math.floor(s.room / ((inpIn ? 0 : C * 4) + (outIn ? 0 : OC * 4) + 64));
    if (rows < Math.min(BT, MIN_BLOCK_ROWS)) {
      rows = Math.min(BT, MIN_BLOCK_ROWS);
      while (rows > 1 && inBytes(rows) > s.room / 2) rows >>= 1;
      cols = Math.min(OC, Math.floor((s.room - inBytes(rows) - 64) / (rows * 4) / 4) * 4);
    }
    if (rows < 1 || cols < 1) throw new Error(`matmulForward: one row of ${C} inputs does not fit in the ${s.room}-byte scratch area`);
  }
  const mark = s.mark();
  for (let r0 = 0; r0 < BT; r0 += rows) {
    const n = Math.min(rows, BT - r0);
    const x = inpIn ? inp.byteOffset + r0 * C * 4 : s.copyIn(inp, r0 * C, n * C);
    for (let o0 = 0; o0 < OC; o0 += cols) {
      const nc = Math.min(cols, OC - o0);
      const o = outIn ? out.byteOffset + r0 * OC * 4 : s.alloc(n * nc);
      threadedMatmul(s, o, x, w + o0 * C * 4, b && b + o0 * 4, n, C, nc);
      if (outIn) continue;
      if (nc === outStride) s.copyOut(out, r0 * outStride, o, n * nc);
      else for (let i = 0; i < n; i++) s.copyOut(out, (r0 + i) * outStride + outCol + o0, o + i * nc * 4, nc);
      s.release(o);
    }
    s.release(mark);
  }
}

/** km.exports.matmul over all OC channels (byte addresses), cut into channel ranges for the threads. */
function threadedMatmul(s: Scratch, out: number, inp: number, w: number, b: number, BT: number, C: number, OC: number): void {
  const chunk = Math.max(16, Math.ceil(OC / (jobThreads() * ITEMS_PER_THREAD) / 4) * 4); // whole 2 × 4 tiles
  const args = s.args([out, inp, w, b, BT, C, OC, chunk]);
  runJob(s.km, 'matmul_job', args, Math.ceil(OC / chunk), 2 * BT * C * OC);
}

/**
 * The same product when the weights are in no kernel memory (GPT-2 XL, whose 6.2 GB do not fit
 * in WebAssembly's 4 GiB): blocks of weight rows are copied into this thread's loose memory one
 * after the other, each used for every input row.
 */
function matmulLoose(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  const km = looseMemory();
  const block = Math.min(OC, Math.floor(LOOSE_WEIGHT_BYTES / (C * 4)));
  if (block < 1) throw new Error(`matmulForward: one weight row of ${C} floats does not fit in the kernel memory`);
  for (let o0 = 0; o0 < OC; o0 += block) {
    const n = Math.min(block, OC - o0);
    km.f32.set(weight.subarray(o0 * C, (o0 + n) * C), 0);
    matmulIn(looseActScratch(), out, OC, o0, inp, 0, bias ? bias.subarray(o0, o0 + n) : null, BT, C, n);
  }
}

/**
 * Runs kernel(at, n) over a[0 … N) in blocks that fit the scratch, `perElement` floats of
 * scratch per element (the block's inputs and outputs); at = the block's first element.
 */
export function inBlocks(s: Scratch, N: number, perElement: number, kernel: (at: number, n: number) => void): void {
  const block = Math.max(1, Math.floor((s.room - 256) / (4 * perElement))); // (256: the arrays' alignment and padding)
  const mark = s.mark();
  for (let at = 0; at < N; at += block) {
    kernel(at, Math.min(block, N - at));
    s.release(mark);
  }
}

/** GPT-2's GELU over N values (out may be inp), shared among the threads when big. */
export function geluForward(out: Float32Array, inp: Float32Array, N: number): void {
  const s = workScratch();
  inBlocks(s, N, 1, (at, n) => {
    const x = s.copyIn(inp, at, n);
    const n4 = Math.ceil(n / 4) * 4; // whole vectors: the scratch has room past the end
    const chunk = Math.max(4096, Math.ceil(n4 / (jobThreads() * ITEMS_PER_THREAD) / 4) * 4);
    runJob(s.km, 'gelu_job', s.args([x, x, n4, chunk]), Math.ceil(n4 / chunk), 30 * n4);
    s.copyOut(out, at, x, n);
  });
}

/** out (N) = inp (N) + other (N). */
export function residualForward(out: Float32Array, inp: Float32Array, other: Float32Array, N: number): void {
  const s = workScratch();
  inBlocks(s, N, 2, (at, n) => {
    const a = s.copyIn(inp, at, n), b = s.copyIn(other, at, n);
    s.km.exports.residual(a, a, b, n);
    s.copyOut(out, at, a, n);
  });
}

/** In place, for each of the `rows` rows of length n: x ← softmax(x). */
export function softmaxRows(x: Float32Array, rows: number, n: number): void {
  const s = workScratch();
  const block = Math.floor(s.room / allocBytes(n));
  if (block < 1) throw new Error(`softmaxRows: a row of ${n} numbers does not fit in the kernel memory`);
  for (let r0 = 0; r0 < rows; r0 += block) {
    const nr = Math.min(block, rows - r0);
    const p = s.copyIn(x, r0 * n, nr * n);
    const chunk = Math.max(1, Math.ceil(nr / (jobThreads() * ITEMS_PER_THREAD)));
    runJob(s.km, 'softmax_job', s.args([p, nr, n, chunk]), Math.ceil(nr / chunk), 25 * nr * n);
    s.copyOut(x, r0 * n, p, nr * n);
    s.release(p);
  }
}

/** scale (BT) = √(var + eps) of each row of inp (BT, C). */
export function layernormScale(scale: Float32Array, inp: Float32Array, BT: number, C: number, eps: number): void {
  const s = workScratch();
  inBlocks(s, BT, C + 1, (at, n) => {
    const x = s.copyIn(inp, at * C, n * C), sc = s.alloc(n);
    s.km.exports.layernorm_scale(sc, x, n, C, eps);
    s.copyOut(scale, at, sc, n);
  });
}

/** out (BT, C) = (inp − mean) / scale · weight + bias, with the row means of inp and the given scale (BT). */
export function layernormApply(
  out: Float32Array, inp: Float32Array, scale: Float32Array, weight: Float32Array, bias: Float32Array, BT: number, C: number,
): void {
  const s = workScratch();
  const w = s.copyIn(weight, 0, C), b = s.copyIn(bias, 0, C);
  inBlocks(s, BT, C + 1, (at, n) => {
    const x = s.copyIn(inp, at * C, n * C), sc = s.copyIn(scale, at, n);
    s.km.exports.layernorm_apply(x, x, sc, w, b, n, C); // in place: each row's mean is taken before it is written
    s.copyOut(out, at * C, x, n * C);
  });
}
