/**
 * The WebAssembly SIMD kernels (mingpt/kernels/simd/, chosen through mingpt/kernels/index.ts):
 *  - each against the naive loop of mingpt/kernels/js.ts on awkward shapes (1, 7, 65 rows; C and OC
 *    not multiples of 4 or 8; a bias, a zero bias, none), with the weights in a kernel memory
 *    and outside any (the copying path GPT-2 XL takes);
 *  - one choice of kernels gives bit-identical numbers whichever way it is called (the rows of
 *    a batch one by one, one thread or two, weights in place or copied);
 *  - the tiny checkpoint's PyTorch reference numbers (FLOAT32_TOL) with simd and with js, and the
 *    fast sweep's;
 *  - the fallback: with SIMD unavailable, asking for simd gives js, and everything still works.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { matmulForwardNaive, geluForward as geluJs } from '../mingpt/kernels/js.ts';
import * as simd from '../mingpt/kernels/simd/kernels.ts';
import { allocParams, kernelsName, paramsMemory, setKernels } from '../mingpt/kernels/index.ts';
import { resetSimdSupport, setMaxParamPages, simdSupport, type KernelExports } from '../mingpt/kernels/simd/memory.ts';
import { kernelModuleBytes } from '../mingpt/kernels/simd/kernels_wasm.ts';
import { Worker } from 'node:worker_threads';
import { setKernelThreads, stopKernelThreads, kernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { GPT } from '../mingpt/model.ts';
import { fastPatchingSweep } from '../sweep/fast.ts';
import { RNG } from '../mingpt/utils.ts';
import { loadGPT } from '../io/load.ts';
import { FIXTURE, FLOAT32_TOL, REFERENCE, close, closeAll } from './helpers.ts';

const reference = REFERENCE;

const rng = new RNG(4321);
const randn = (n: number) => Float32Array.from({ length: n }, () => rng.randn());

/**
 * The largest |got − want| of a matmul relative to the size of what was summed,
 * Σₖ |inp[i,k] · w[o,k]| + |bias[o]|: float32 sums of C terms may be off by a few ulp of that.
 */
function matmulErr(got: Float32Array, want: Float32Array, inp: Float32Array, w: Float32Array, bias: Float32Array | null, BT: number, C: number, OC: number): number {
  const abs = (a: Float32Array) => a.map(Math.abs);
  const scale = new Float32Array(BT * OC);
  matmulForwardNaive(scale, abs(inp), abs(w), bias ? abs(bias) : null, BT, C, OC);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1e-30, scale[i]));
  return worst;
}

const haveSimd = simdSupport().module !== null;
const maybe = haveSimd ? test : test.skip;

const shapes: Array<[number, number, number]> = [
  // [BT, C, OC]
  [1, 1, 1], [1, 7, 65], [7, 65, 7], [65, 7, 65], [7, 3, 5], [65, 65, 13], [2, 9, 6],
  [1, 768, 1001], [11, 96, 33], [12, 130, 514], [7, 1, 9], [65, 33, 3], [3, 17, 10], [4, 8, 4], [5, 33, 9],
];
for (const [BT, C, OC] of shapes) {
  for (const biasKind of ['bias', 'zero bias', 'no bias'] as const) {
    maybe(`simd matmul = naive (1e-6 of Σ|products|), weights in a kernel memory and not: BT=${BT} C=${C} OC=${OC}, ${biasKind}`, () => {
      const inp = randn(BT * C), w = randn(OC * C);
      const bias = biasKind === 'bias' ? randn(OC) : biasKind === 'zero bias' ? new Float32Array(OC) : null;
      const want = new Float32Array(BT * OC);
      matmulForwardNaive(want, inp, w, bias, BT, C, OC);
      // 1. weights (and bias) outside any kernel memory: copied in
      const loose = new Float32Array(BT * OC + 4).fill(NaN);
      simd.matmulForward(loose, inp, w, bias, BT, C, OC);
      const err = matmulErr(loose.subarray(0, BT * OC), want, inp, w, bias, BT, C, OC);
      assert.ok(err <= 1e-6, `loose: ${err}`);
      assert.ok(loose.subarray(BT * OC).every(Number.isNaN), 'nothing written past BT × OC');
      // 2. weights in a kernel memory, as model.params: used in place; bit-identical to 1
      const params = allocParams(OC * C + OC + 3);
      const wIn = params.subarray(3, 3 + OC * C); // an odd offset: rows not 16-byte aligned
      wIn.set(w);
      const bIn = bias ? params.subarray(3 + OC * C, 3 + OC * C + OC) : null;
      if (bias) bIn!.set(bias);
      const inPlace = new Float32Array(BT * OC);
      simd.matmulForward(inPlace, inp, wIn, bIn, BT, C, OC);
      assert.equal(inPlace, loose.subarray(0, BT * OC));
      // 3. one row at a time: the same bits as the batch
      const row = new Float32Array(OC);
      for (const i of [0, BT - 1]) {
        simd.matmulForward(row, inp.subarray(i * C, (i + 1) * C), wIn, bIn, 1, C, OC);
        assert.equal(row, inPlace.subarray(i * OC, (i + 1) * OC), `row ${i}`);
      }
    });
  }
}

// [BT, C, OC, what]: products bigger than the scratch area (8 MB), cut into blocks
const blockShapes: Array<[number, number, number, string]> = [
  [1300, 160, 1700, 'outputs in two blocks of rows (1116 and 184), the first over two of the kernel\'s cache blocks (818 and 298 rows)'],
  [300, 96, 9001, 'rows of outputs too wide (the vocabulary projection\'s case): blocks of rows and of channels'],
];
for (const [BT, C, OC, what] of blockShapes) {
  maybe(`simd matmul = naive (1e-6 of Σ|products|), ${what}: BT=${BT} C=${C} OC=${OC}`, () => {
    const params = allocParams(OC * C + OC);
    params.set(randn(OC * C + OC));
    const w = params.subarray(0, OC * C), b = params.subarray(OC * C);
    const inp = randn(BT * C), want = new Float32Array(BT * OC), got = new Float32Array(BT * OC);
    matmulForwardNaive(want, inp, w, b, BT, C, OC);
    simd.matmulForward(got, inp, w, b, BT, C, OC);
    assert.ok(matmulErr(got, want, inp, w, b, BT, C, OC) <= 1e-6);
    const row = new Float32Array(OC);
    for (const i of [0, 777 % BT, BT - 1]) {
      simd.matmulForward(row, inp.subarray(i * C, (i + 1) * C), w, b, 1, C, OC);
      assert.equal(row, got.subarray(i * OC, (i + 1) * OC), `row ${i}: the same bits as in the blocks`);
    }
  });
}

maybe('both builds of the matmul (relaxed fused multiply-add where it validates, plain mul + add) = naive', () => {
  const BT = 7, C = 65, OC = 13;
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const f32 = new Float32Array(memory.buffer);
  const inp = randn(BT * C), w = randn(OC * C), bias = randn(OC), want = new Float32Array(BT * OC);
  matmulForwardNaive(want, inp, w, bias, BT, C, OC);
  const [x, wp, b, o] = [0, BT * C, BT * C + OC * C, BT * C + OC * C + OC].map((k) => 64 + 4 * k); // byte addresses
  f32.set(inp, x / 4);
  f32.set(w, wp / 4);
  f32.set(bias, b / 4);
  for (const relaxed of [false, true]) {
    const bytes = kernelModuleBytes(relaxed);
    if (relaxed && !WebAssembly.validate(bytes)) continue; // a runtime without relaxed SIMD
    const k = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports as unknown as KernelExports;
    f32.fill(NaN, o / 4, o / 4 + BT * OC);
    k.matmul(o, x, wp, b, BT, C, OC, 0, OC);
    const got = f32.slice(o / 4, o / 4 + BT * OC);
    const err = matmulErr(got, want, inp, w, bias, BT, C, OC);
    assert.ok(err <= 1e-6, `relaxed=${relaxed}: ${err}`);
  }
});

maybe('simd matmul on one thread and on two (split by output channels) gives the same bits', async () => {
  const BT = 11, C = 256, OC = 1030; // 5.8 MFLOP: above the threshold for splitting
  const params = allocParams(OC * C + OC);
  params.set(randn(OC * C + OC));
  const w = params.subarray(0, OC * C), b = params.subarray(OC * C);
  const inp = randn(BT * C), want = new Float32Array(BT * OC);
  matmulForwardNaive(want, inp, w, b, BT, C, OC);
  const saved = kernelThreads();
  try {
    setKernelThreads(1);
    const one = new Float32Array(BT * OC);
    simd.matmulForward(one, inp, w, b, BT, C, OC);
    setKernelThreads(2);
    const two = new Float32Array(BT * OC);
    // the helper starts in the background: call until it has taken part (a few ms)
    for (let k = 0; k < 200; k++) {
      simd.matmulForward(two, inp, w, b, BT, C, OC);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(two, one);
    assert.ok(matmulErr(one, want, inp, w, b, BT, C, OC) <= 1e-6);
  } finally {
    setKernelThreads(saved);
    await stopKernelThreads();
  }
});

maybe('simd GELU = the plain GELU (2e-6 absolute), in place, odd lengths, large and tiny inputs', () => {
  for (const N of [1, 3, 5, 4099]) {
    const x = Float32Array.from(randn(N), (v, i) => (i % 7 === 0 ? v * 30 : v * 3));
    const want = new Float32Array(N);
    geluJs(want, x, N);
    const got = x.slice();
    simd.geluForward(got, got, N);
    let worst = 0;
    for (let i = 0; i < N; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    assert.ok(worst <= 2e-6, `N=${N}: ${worst}`);
  }
});

// -----------------------------------------------------------------------------------------------
// The whole model with each choice of kernels, against PyTorch

const c0 = reference.cases[0];
const input = { clean_ids: c0.clean_ids, corrupt_ids: c0.corrupt_ids, clean_token_id: c0.clean_token_id, corrupt_token_id: c0.corrupt_token_id };

function checkAgainstPyTorch(model: GPT, what: string): void {
  const { logits } = model.forward(c0.clean_ids);
  const T = c0.clean_ids.length;
  const first8 = c0.clean_last_logits_first8.map((_: number, k: number) => logits.get(0, T - 1, k));
  closeAll(first8, c0.clean_last_logits_first8, FLOAT32_TOL, `${what}: the first 8 last-position logits`);
  const diff = model.lastLogits[c0.corrupt_token_id] - model.lastLogits[c0.clean_token_id];
  close(diff, c0.clean_logit_diff, FLOAT32_TOL, `${what}: logit difference`);
}

async function checkSweep(model: GPT, what: string): Promise<void> {
  const { matrix } = await fastPatchingSweep(model, input);
  closeAll(matrix, c0.patch_matrix, FLOAT32_TOL, `${what}: matrix`);
}

for (const kernels of ['simd', 'js'] as const) {
  (kernels === 'simd' ? maybe : test)(`${kernels} kernels: the forward pass and the fast sweep match PyTorch`, async () => {
    const before = kernelsName();
    try {
      assert.is(setKernels(kernels), kernels);
      const model = loadGPT(FIXTURE);
      if (kernels === 'simd') assert.ok(paramsMemory(model.params) !== null, 'model.params is a view of a WebAssembly.Memory');
      checkAgainstPyTorch(model, kernels);
      await checkSweep(model, kernels);
    } finally {
      setKernels(before);
      await stopKernelThreads();
    }
  });
}

maybe('simd and js sweep matrices agree to 1e-5 on the tiny checkpoint', async () => {
  const before = kernelsName();
  try {
    const model = loadGPT(FIXTURE);
    setKernels('simd');
    const a = await fastPatchingSweep(model, input);
    setKernels('js');
    const b = await fastPatchingSweep(model, input);
    closeAll(a.matrix, b.matrix, 1e-5, 'simd vs js');
  } finally {
    setKernels(before);
  }
});

maybe('weights too big for a kernel memory (GPT-2 XL): a SharedArrayBuffer, the SIMD kernels copy them in, same numbers', async () => {
  const before = kernelsName(), quiet = process.env.MINGPT_QUIET;
  try {
    process.env.MINGPT_QUIET = '1';
    setKernels('simd');
    setMaxParamPages(1); // nothing fits: as for 6.2 GB of weights
    const model = loadGPT(FIXTURE);
    assert.is(paramsMemory(model.params), null);
    assert.ok(model.params.buffer instanceof SharedArrayBuffer);
    checkAgainstPyTorch(model, 'weights outside');
    await checkSweep(model, 'weights outside');
  } finally {
    setMaxParamPages();
    if (quiet === undefined) delete process.env.MINGPT_QUIET;
    else process.env.MINGPT_QUIET = quiet;
    setKernels(before);
    await stopKernelThreads();
  }
});

maybe('the parameter memory survives a worker round trip: what a worker writes, this thread reads, and back', async () => {
  const params = allocParams(1000);
  params[999] = 1.5;
  const memory = paramsMemory(params)!;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { memory, offset } = workerData;
    const p = new Float32Array(memory.buffer, offset, 1000);
    p[0] = p[999] * 2; // reads this thread's write, writes one back
    parentPort.postMessage(memory.buffer.byteLength);`;
  const w = new Worker(code, { eval: true, workerData: { memory, offset: params.byteOffset } });
  const bytes = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  await w.terminate();
  assert.is(bytes, memory.buffer.byteLength);
  assert.is(params[0], 3);
});

test('without WebAssembly SIMD: asking for simd gives js, weights in a SharedArrayBuffer, same numbers', async () => {
  const before = kernelsName(), env = process.env.MINGPT_WASM_SIMD, quiet = process.env.MINGPT_QUIET;
  try {
    process.env.MINGPT_WASM_SIMD = 'off';
    process.env.MINGPT_QUIET = '1';
    resetSimdSupport();
    assert.is(setKernels('simd'), 'js');
    assert.is(kernelsName(), 'js');
    const model = loadGPT(FIXTURE);
    assert.ok(model.params.buffer instanceof SharedArrayBuffer);
    assert.is(paramsMemory(model.params), null);
    checkAgainstPyTorch(model, 'fallback');
    await checkSweep(model, 'fallback');
  } finally {
    if (env === undefined) delete process.env.MINGPT_WASM_SIMD;
    else process.env.MINGPT_WASM_SIMD = env;
    if (quiet === undefined) delete process.env.MINGPT_QUIET;
    else process.env.MINGPT_QUIET = quiet;
    resetSimdSupport();
    setKernels(before);
    await stopKernelThreads();
  }
});

test.run();
