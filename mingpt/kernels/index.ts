/**
 * The one switch between kernel implementations. The forward pass (./model.ts) and the fast
 * patching engine (./fast/engine.ts) import their kernels from here, never from ./kernels.ts
 * directly, so that `setKernels('js')` or `setKernels('simd')` decides, for every later run, which
 * implementation does the arithmetic.
 *
 *   js    ./kernels.ts: plain loops over Float32Arrays, the readable reference a student reads.
 *   simd  ./simd/: the same operations as WebAssembly SIMD (four float32 lanes per instruction),
 *         the matmul split over the cores when it is big. The default where WebAssembly SIMD
 *         exists; elsewhere `simd` falls back to `js` with a one-line note.
 *
 * Both give the same numbers to float32 rounding (the tests hold them to the PyTorch fixtures
 * and to each other). One choice gives bit-identical results for the same inputs whichever way a
 * kernel is called (a hook that returns a copy, a batch of one or of many, one thread or two).
 *
 * The weights live where the SIMD kernels can read them without a copy: `allocParams` puts them
 * in one shared WebAssembly.Memory (./simd/memory.ts), and model.params is a Float32Array view
 * of it — so the js kernels, and worker threads given the Memory, read the very same numbers.
 */
import * as js from './js.ts';
import * as simd from './simd/kernels.ts';
import * as simdBackward from './simd/backward.ts';
import { allocWasmParams, attachMemory, memoryOf, releaseScratch, simdSupport, kernelMemoryOf } from './simd/memory.ts';

export type KernelsName = 'js' | 'simd';
export const KERNELS: readonly KernelsName[] = ['simd', 'js'];

export let matmulForward = js.matmulForward;
export let layernormForward = js.layernormForward;
export let layernormScale = js.layernormScale;
export let layernormApply = js.layernormApply;
export let geluForward = js.geluForward;
export let residualForward = js.residualForward;
export let softmaxRows = js.softmaxRows;
export let splitQKV = js.splitQKV;
export let attentionScoresForward = js.attentionScoresForward;
export let attentionValuesForward = js.attentionValuesForward;
export let attentionForward = js.attentionForward;
export const crossEntropyForward = js.crossEntropyForward;
// the backward pass (SIMD twins where its time goes: the matmul, the attention's products, the GELU)
export let matmulBackward = js.matmulBackward;
export let geluBackward = js.geluBackward;
export const residualBackward = js.residualBackward;
export const softmaxRowsBackward = js.softmaxRowsBackward;
export const layernormApplyBackward = js.layernormApplyBackward;
export const layernormScaleBackward = js.layernormScaleBackward;
export const layernormBackward = js.layernormBackward;
export const splitQKVBackward = js.splitQKVBackward;
export let attentionScoresBackward = js.attentionScoresBackward;
export let attentionValuesBackward = js.attentionValuesBackward;
export const crossEntropyBackward = js.crossEntropyBackward;

let current: KernelsName = 'js';
let noted = false;

/** One line on stderr, once per process, when SIMD was wanted and is not there. */
function noteFallback(): void {
  if (noted) return;
  noted = true;
  if (process.env.MINGPT_QUIET !== '1') console.error(`note: WebAssembly SIMD kernels unavailable (${simdSupport().reason}); using the plain JavaScript kernels (slower)`);
}

/** Which kernels run now. */
export function kernelsName(): KernelsName {
  return current;
}

/**
 * Choose the kernels for every later forward pass; returns the ones chosen ('js' when 'simd' is
 * asked for and WebAssembly SIMD is not available, with a note on stderr).
 */
export function setKernels(name: KernelsName): KernelsName {
  if (name !== 'js' && name !== 'simd') throw new Error(`kernels must be 'simd' or 'js', got '${name}'`);
  if (name === 'simd' && !simdSupport().module) {
    noteFallback();
    name = 'js';
  }
  current = name;
  matmulForward = name === 'simd' ? simd.matmulForward : js.matmulForward;
  geluForward = name === 'simd' ? simd.geluForward : js.geluForward;
  matmulBackward = name === 'simd' ? simdBackward.matmulBackward : js.matmulBackward;
  geluBackward = name === 'simd' ? simdBackward.geluBackward : js.geluBackward;
  attentionScoresBackward = name === 'simd' ? simdBackward.attentionScoresBackward : js.attentionScoresBackward;
  attentionValuesBackward = name === 'simd' ? simdBackward.attentionValuesBackward : js.attentionValuesBackward;
  return current;
}

setKernels(simdSupport().module ? 'simd' : 'js');

let notedBig = false;
/**
 * Memory for `n` float32 parameters, shared between threads (workers read the same weights): a
 * view of one WebAssembly memory when SIMD is available and they fit in its 4 GiB; else a
 * SharedArrayBuffer (GPT-2 XL: the SIMD kernels then copy weight blocks in as they go).
 */
export function allocParams(n: number): Float32Array {
  const inWasm = allocWasmParams(n);
  if (inWasm) return inWasm;
  if (simdSupport().module && !notedBig && process.env.MINGPT_QUIET !== '1') {
    notedBig = true;
    console.error(`note: ${(n * 4 / 2 ** 30).toFixed(1)} GiB of weights do not fit in WebAssembly's 4 GiB memory: the SIMD kernels copy them in block by block (slower than for smaller models)`);
  }
  return new Float32Array(new SharedArrayBuffer(n * 4));
}

/** The WebAssembly.Memory holding a parameter buffer from allocParams, or null (to pass to a worker). */
export function paramsMemory(params: Float32Array): WebAssembly.Memory | null {
  return memoryOf(params);
}

/**
 * In a worker thread: make the SIMD kernels work on a memory the main thread made, and return a
 * view of the same parameters in it (what `params` is in the main thread).
 */
export function attachParams(params: Float32Array, memory: WebAssembly.Memory | null): Float32Array {
  if (!memory || !attachMemory(memory)) return params;
  return new Float32Array(memory.buffer, params.byteOffset, params.length);
}

/** In a worker thread, at the end of a job: give back the scratch area it took in that memory. */
export function detachParams(params: Float32Array): void {
  const km = kernelMemoryOf(params);
  if (km) releaseScratch(km);
}
