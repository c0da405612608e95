/**
 * The one switch between kernel implementations. The forward pass (../model.ts) and everything
 * else import their kernels from here, never from ./js.ts or ./simd/ directly, so that
 * `setKernels('js')` or `setKernels('simd')` decides, for every later run, which implementation
 * does the arithmetic of every kernel in SWITCHED.
 *
 *   js    ./js.ts: plain loops over Float32Arrays, the readable reference a student reads.
 *   simd  ./simd/: the same operations as WebAssembly SIMD (four float32 lanes per instruction),
 *         big calls shared among the cores. The default where WebAssembly SIMD exists; elsewhere
 *         `simd` falls back to `js` with a one-line note.
 *
 * Both give the same numbers to float32 rounding (the tests hold them to the PyTorch fixtures
 * and to each other). One choice gives bit-identical results for the same inputs whichever way a
 * kernel is called (a hook that returns a copy, a batch of one or of many, one thread or two),
 * and the fused attention gives the same bits as its three steps.
 *
 * The weights live where the SIMD kernels can read them without a copy: `allocParams` puts them
 * in one shared WebAssembly.Memory (./simd/memory.ts), and model.params is a Float32Array view
 * of it — so the js kernels, and worker threads given the Memory, read the very same numbers.
 */
import * as js from './js.ts';
import * as simd from './simd/kernels.ts';
import * as simdAttention from './simd/attention.ts';
import * as simdBackward from './simd/backward.ts';
import { allocWasmParams, memoryOf, simdSupport } from './simd/memory.ts';
import { kernelThreads } from './simd/threads.ts';

export { KernelThreadsError } from './simd/threads.ts';

export type KernelsName = 'js' | 'simd';
export const KERNELS: readonly KernelsName[] = ['simd', 'js'];

/** The kernels that have both twins, in the plain version. */
const JS = {
  matmulForward: js.matmulForward,
  layernormScale: js.layernormScale,
  layernormApply: js.layernormApply,
  geluForward: js.geluForward,
  residualForward: js.residualForward,
  softmaxRows: js.softmaxRows,
  attentionScoresForward: js.attentionScoresForward,
  attentionValuesForward: js.attentionValuesForward,
  attentionForward: js.attentionForward,
  // the backward pass: SIMD twins where its time goes (the matmul, the attention's products, the GELU, the layer norm)
  matmulBackward: js.matmulBackward,
  geluBackward: js.geluBackward,
  attentionScoresBackward: js.attentionScoresBackward,
  attentionValuesBackward: js.attentionValuesBackward,
  layernormApplyBackward: js.layernormApplyBackward,
  layernormScaleBackward: js.layernormScaleBackward,
};
type Kernels = typeof JS;
const SIMD: Kernels = {
  matmulForward: simd.matmulForward,
  layernormScale: simd.layernormScale,
  layernormApply: simd.layernormApply,
  geluForward: simd.geluForward,
  residualForward: simd.residualForward,
  softmaxRows: simd.softmaxRows,
  attentionScoresForward: simdAttention.attentionScoresForward,
  attentionValuesForward: simdAttention.attentionValuesForward,
  attentionForward: simdAttention.attentionForward,
  matmulBackward: simdBackward.matmulBackward,
  geluBackward: simdBackward.geluBackward,
  attentionScoresBackward: simdBackward.attentionScoresBackward,
  attentionValuesBackward: simdBackward.attentionValuesBackward,
  layernormApplyBackward: simdBackward.layernormApplyBackward,
  layernormScaleBackward: simdBackward.layernormScaleBackward,
};
/** What setKernels switches: the `let` kernels below (the `const` ones after them have one version). */
export const SWITCHED = Object.keys(JS) as ReadonlyArray<keyof Kernels>;

export let matmulForward = JS.matmulForward;
export let layernormScale = JS.layernormScale;
export let layernormApply = JS.layernormApply;
export let geluForward = JS.geluForward;
export let residualForward = JS.residualForward;
export let softmaxRows = JS.softmaxRows;
export let attentionScoresForward = JS.attentionScoresForward;
export let attentionValuesForward = JS.attentionValuesForward;
export let attentionForward = JS.attentionForward;
export let matmulBackward = JS.matmulBackward;
export let geluBackward = JS.geluBackward;
export let attentionScoresBackward = JS.attentionScoresBackward;
export let attentionValuesBackward = JS.attentionValuesBackward;
export let layernormApplyBackward = JS.layernormApplyBackward;
export let layernormScaleBackward = JS.layernormScaleBackward;

function use(k: Kernels): void {
  matmulForward = k.matmulForward;
  layernormScale = k.layernormScale;
  layernormApply = k.layernormApply;
  geluForward = k.geluForward;
  residualForward = k.residualForward;
  softmaxRows = k.softmaxRows;
  attentionScoresForward = k.attentionScoresForward;
  attentionValuesForward = k.attentionValuesForward;
  attentionForward = k.attentionForward;
  matmulBackward = k.matmulBackward;
  geluBackward = k.geluBackward;
  attentionScoresBackward = k.attentionScoresBackward;
  attentionValuesBackward = k.attentionValuesBackward;
  layernormApplyBackward = k.layernormApplyBackward;
  layernormScaleBackward = k.layernormScaleBackward;
}

// The same whichever kernels: no SIMD twin, because nothing would be gained.
/** copies of column blocks (TypedArray.set, a memcpy already) */
export const splitQKV = js.splitQKV;
/** once per run, over the logits, in doubles */
export const crossEntropyForward = js.crossEntropyForward;
// the backward kernels with no SIMD twin (the backward's time goes to the products, the GELU and the layer norm above)
export const residualBackward = js.residualBackward;
export const softmaxRowsBackward = js.softmaxRowsBackward;
export const layernormBackward = js.layernormBackward;
export const splitQKVBackward = js.splitQKVBackward;
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

function choose(name: KernelsName): KernelsName {
  if (name !== 'js' && name !== 'simd') throw new Error(`kernels must be 'simd' or 'js', got '${name}'`);
  if (name === 'simd' && !simdSupport().module) {
    noteFallback();
    name = 'js';
  }
  current = name;
  use(name === 'simd' ? SIMD : JS);
  return current;
}

/**
 * Choose the kernels for every later forward pass; returns the ones chosen ('js' when 'simd' is
 * asked for and WebAssembly SIMD is not available, with a note on stderr). With 'simd', checks
 * MINGPT_KERNEL_THREADS now (a KernelThreadsError names the problem), before any long work.
 */
export function setKernels(name: KernelsName): KernelsName {
  const got = choose(name);
  if (got === 'simd') kernelThreads();
  return got;
}

choose(simdSupport().module ? 'simd' : 'js');

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
