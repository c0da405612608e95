/**
 * Where the SIMD kernels find their numbers: WebAssembly memories, and the module compiled for
 * them.
 *
 * A WebAssembly function can only read its own memory, so the model's weights live in one:
 * `allocWasmParams(n)` makes a shared WebAssembly.Memory, sized once (never grown), laid out as
 *
 *     [ header, 64 KiB | the n float32 parameters | SLOTS scratch areas of SLOT_BYTES each ]
 *
 * and returns a Float32Array view of the parameters (that is `model.params`). Shared, so a worker
 * thread given the Memory sees the same weights without a copy.
 *
 * Activations are ordinary Float32Arrays elsewhere in JavaScript's heap. A matmul copies them
 * into a scratch area of the weights' memory (they are small next to the weights) and the result
 * back out. Each thread that runs kernels on a memory claims one scratch area of its own (a claim
 * word in the header, taken with Atomics), so threads never write over each other's inputs; the
 * kernel threads that share a call (./threads.ts) work in the caller's.
 *
 * Each thread also has a private "loose" memory, made on first use. The kernels that take only
 * activations (attention, softmax, layer norm, GELU, residual) work there. And arrays that are in
 * no kernel memory at all (a test's random matrix, or GPT-2 XL, whose 6.2 GB do not fit in
 * WebAssembly's 4 GiB) go through it too: the weights are copied in, a block of rows at a time.
 * Slower, but the same numbers.
 *
 * Only the pages a run touches take memory: a 1024-token forward of GPT-2 small fills its 8 MB
 * scratch area and about 15 MB of the loose memory (q, k, v and z of the attention).
 */
import v8 from 'node:v8';
import { kernelModuleBytes, MAX_PAGES, type JobName } from './kernels_wasm.ts';
import { Scratch } from './scratch.ts';

/** The module's functions (./kernels_wasm.ts); every pointer is a byte address in the memory. */
export interface KernelExports extends Record<JobName, (args: number, item: number, thread: number) => void> {
  matmul(out: number, inp: number, w: number, bias: number, BT: number, C: number, OC: number, o0: number, o1: number): void;
  attention(z: number, q: number, k: number, v: number, Tq: number, Tk: number, stride: number, hs: number, i0: number, i1: number, S: number): void;
  attention_scores(att: number, q: number, k: number, Tq: number, Tk: number, stride: number, hs: number, i0: number, i1: number): void;
  attention_values(z: number, att: number, v: number, Tq: number, Tk: number, stride: number, hs: number, i0: number, i1: number): void;
  softmax(x: number, rows: number, n: number): void;
  split_heads(dst: number, src: number, T: number, C: number, hs: number): void;
  merge_heads(dst: number, src: number, T: number, C: number, hs: number): void;
  gelu(out: number, inp: number, N: number): void;
  residual(out: number, a: number, b: number, N: number): void;
  layernorm_scale(scale: number, inp: number, BT: number, C: number, eps: number): void;
  layernorm_apply(out: number, inp: number, scale: number, w: number, b: number, BT: number, C: number): void;
  matmul_acc(out: number, a: number, b: number, M: number, K: number, sam: number, sak: number, ldb: number, ldo: number, pack: number, n0: number, n1: number): void;
  gelu_backward(dinp: number, inp: number, dout: number, N: number): void;
  layernorm_apply_backward(dinp: number, dscale: number, dout: number, inp: number, scale: number, w: number, BT: number, C: number): void;
  layernorm_scale_backward(dinp: number, dscale: number, inp: number, scale: number, BT: number, C: number): void;
}

/** One WebAssembly memory with the kernels instantiated on it. */
export interface KernelMemory {
  /** a number for this memory, the same in every thread (its creation stamp) */
  id: number;
  memory: WebAssembly.Memory;
  buffer: ArrayBufferLike;
  f32: Float32Array; // the whole memory, as floats
  i32: Int32Array; // and as 32-bit integers (a job's arguments)
  exports: KernelExports;
  /** byte offset and size of each scratch area, and how many there are */
  slotBase: number;
  slotBytes: number;
  slots: number;
  /** the scratch area this thread has claimed (-1: none yet) */
  mySlot: number;
}

const PAGE = 65536;
const HEADER_BYTES = PAGE;
/** header words (Int32): a magic number, the layout, then one claim word per scratch area */
const H_MAGIC = 0, H_ID = 1, H_SLOT_BASE_PAGES = 2, H_SLOT_PAGES = 3, H_SLOTS = 4, H_CLAIMS = 8;
const MAGIC = 0x6d696e67; // "ming"
/** scratch areas per memory, one for each thread that calls kernels on it (the kernel threads work in their caller's) */
const SLOTS = 12;
/** bytes per scratch area: room for a block of activation rows (see the kernels' chunking) */
const SLOT_BYTES = 8 << 20;

// -----------------------------------------------------------------------------------------------
// Is WebAssembly SIMD here? Compile the module once per thread.

interface SimdSupport {
  module: WebAssembly.Module | null;
  relaxed: boolean;
  /** why SIMD is not used, when module is null */
  reason: string;
}

let support: SimdSupport | null = null;

/**
 * The compiled kernels, or why there are none. MINGPT_WASM_SIMD=off pretends SIMD is missing
 * (to try the fallback). Relaxed SIMD is used where it validates: its f32x4.relaxed_madd becomes
 * one fused multiply-add (vfmadd231ps on x86 with FMA), so a step of the matmul's 2 × 4 tile is
 * 6 loads and 8 instructions instead of 16. Node 20 needs a flag for it, which can be set at run
 * time before compiling. MINGPT_WASM_RELAXED=0 keeps to plain mul + add (rounding differs in the
 * last bit here and there: a fused multiply-add rounds once, mul then add twice).
 */
export function simdSupport(): SimdSupport {
  if (support) return support;
  if (process.env.MINGPT_WASM_SIMD === 'off') return (support = { module: null, relaxed: false, reason: 'turned off by MINGPT_WASM_SIMD=off' });
  if (typeof WebAssembly !== 'object') return (support = { module: null, relaxed: false, reason: 'this runtime has no WebAssembly' });
  const wantRelaxed = process.env.MINGPT_WASM_RELAXED !== '0';
  if (wantRelaxed) {
    try {
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd'); // Node 20 needs it; later versions ignore it
    } catch { /* not V8 */ }
  }
  for (const relaxed of wantRelaxed ? [true, false] : [false]) {
    const bytes = kernelModuleBytes(relaxed);
    try {
      if (!WebAssembly.validate(bytes)) continue;
      return (support = { module: new WebAssembly.Module(bytes), relaxed, reason: '' });
    } catch { /* try the next */ }
  }
  return (support = { module: null, relaxed: false, reason: 'this runtime does not support WebAssembly SIMD' });
}

/** Forget the detection (tests switch MINGPT_WASM_SIMD and look again). */
export function resetSimdSupport(): void {
  support = null;
}

// -----------------------------------------------------------------------------------------------
// Memories

const byBuffer = new WeakMap<ArrayBufferLike, KernelMemory>();

function instantiate(memory: WebAssembly.Memory, id: number, slotBase: number, slotBytes: number, slots: number): KernelMemory {
  const { module } = simdSupport();
  if (!module) throw new Error('internal: WebAssembly SIMD kernels are not available');
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
  const km: KernelMemory = { id, memory, buffer: memory.buffer, f32: new Float32Array(memory.buffer), i32: new Int32Array(memory.buffer), exports, slotBase, slotBytes, slots, mySlot: -1 };
  byBuffer.set(memory.buffer, km);
  return km;
}

let nextId = 1;
/** a memory id that no other thread uses: pid-free, so a counter mixed with the time is enough */
const newId = () => ((Date.now() & 0xfffff) * 1024 + nextId++) | 0;

/** The largest parameter memory allocWasmParams makes, in 64 KiB pages (tests lower it to try GPT-2 XL's path). */
let maxParamPages = MAX_PAGES;
export function setMaxParamPages(pages: number = MAX_PAGES): void {
  maxParamPages = Math.min(MAX_PAGES, pages);
}

/**
 * n float32 parameters in a new shared kernel memory, or null if they do not fit in 4 GiB
 * (with the scratch areas) or SIMD is not available.
 */
export function allocWasmParams(n: number): Float32Array | null {
  if (!simdSupport().module) return null;
  const paramPages = Math.ceil((n * 4) / PAGE);
  const slotPages = SLOT_BYTES / PAGE;
  const pages = HEADER_BYTES / PAGE + paramPages + SLOTS * slotPages;
  if (pages > maxParamPages) return null;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const head = new Int32Array(memory.buffer, 0, H_CLAIMS + SLOTS);
  const id = newId();
  head[H_MAGIC] = MAGIC;
  head[H_ID] = id;
  head[H_SLOT_BASE_PAGES] = HEADER_BYTES / PAGE + paramPages;
  head[H_SLOT_PAGES] = slotPages;
  head[H_SLOTS] = SLOTS;
  instantiate(memory, id, head[H_SLOT_BASE_PAGES] * PAGE, SLOT_BYTES, SLOTS);
  return new Float32Array(memory.buffer, HEADER_BYTES, n);
}

/** The kernel memory an array lives in, if any (in this thread). */
export function kernelMemoryOf(a: Float32Array): KernelMemory | undefined {
  return byBuffer.get(a.buffer);
}

/** The WebAssembly.Memory behind a parameter buffer from allocWasmParams (to hand to a worker). */
export function memoryOf(a: Float32Array): WebAssembly.Memory | null {
  return byBuffer.get(a.buffer)?.memory ?? null;
}

/** This thread's scratch area in km (byte offset), claimed on first use; -1 if all are taken. */
function scratchOf(km: KernelMemory): number {
  if (km.mySlot < 0) {
    if (km.slots === 0) return -1; // a loose memory: see looseMemory, its scratch is all of it
    const head = new Int32Array(km.buffer, 0, H_CLAIMS + km.slots);
    for (let s = 0; s < km.slots; s++) {
      if (Atomics.compareExchange(head, H_CLAIMS + s, 0, 1) === 0) {
        km.mySlot = s;
        break;
      }
    }
    if (km.mySlot < 0) return -1;
  }
  return km.slotBase + km.mySlot * km.slotBytes;
}

/** Bytes of this thread's loose memory: a block of weight rows, then activations (a matmul of weights in no kernel memory). */
export const LOOSE_WEIGHT_BYTES = 32 << 20;
const LOOSE_ACT_BYTES = 16 << 20;
let loose: KernelMemory | null = null;

/**
 * This thread's private memory, made on first use: for arrays that live in no kernel memory (the
 * weights of GPT-2 XL, a test's matrix), and for the kernels that take activations only
 * (attention, softmax, GELU, layer norm, residual), which use all of it.
 */
export function looseMemory(): KernelMemory {
  if (loose) return loose;
  const pages = (LOOSE_WEIGHT_BYTES + LOOSE_ACT_BYTES) / PAGE;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  loose = instantiate(memory, newId(), 0, 0, 0);
  return loose;
}

/** Scratch for a kernel of activations only: all of this thread's loose memory. */
export function workScratch(): Scratch {
  const km = looseMemory();
  return new Scratch(km, 0, LOOSE_WEIGHT_BYTES + LOOSE_ACT_BYTES);
}

/** Scratch for the activations of a matmul with weights in the loose memory's first LOOSE_WEIGHT_BYTES. */
export function looseActScratch(): Scratch {
  return new Scratch(looseMemory(), LOOSE_WEIGHT_BYTES, LOOSE_WEIGHT_BYTES + LOOSE_ACT_BYTES);
}

/** This thread's scratch area in km as a Scratch, or null when all are taken (or km is a loose memory). */
export function slotScratch(km: KernelMemory): Scratch | null {
  const at = scratchOf(km);
  return at < 0 ? null : new Scratch(km, at, at + km.slotBytes);
}
