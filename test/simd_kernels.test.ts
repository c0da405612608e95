/**
 * The WebAssembly SIMD kernels of the forward pass other than the matmul (test/simd.test.ts has
 * that one), each against its plain twin in mingpt/kernels/js.ts on awkward shapes:
 *  - attention, fused and in its three steps: T = 1, 7, 64, 1023, 1024; fewer queries than keys
 *    (a cache of earlier keys); head sizes not a multiple of 4; several batch elements;
 *  - softmax rows with masked (−∞) entries, one entry, the 50257 of a vocabulary;
 *  - layer norm (both steps and in one call), residual add, GELU: rows 1 … 5, 65, many; odd C;
 * then the properties the model relies on:
 *  - the fused SIMD attention gives bit for bit the z of the SIMD three steps (the model takes the
 *    three steps when a hook wants the pattern; an identity hook must change nothing);
 *  - one thread or two give the same bits, and the helper threads did take part;
 *  - setKernels switches every kernel the switch lists, and MINGPT_KERNEL_THREADS is checked.
 *
 * Tolerances: SIMD against js, 1e-5 of max(1, |js|) for attention (float32 sums of up to 1024
 * products with scores up to ~20, taken in a different order: we measure ~2e-6), 1e-6 for the
 * row kernels (sums of up to 768 numbers; measured ≤ 5e-7).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as js from '../mingpt/kernels/js.ts';
import * as simd from '../mingpt/kernels/simd/kernels.ts';
import * as simdAttention from '../mingpt/kernels/simd/attention.ts';
import * as simdBackward from '../mingpt/kernels/simd/backward.ts';
import * as kernels from '../mingpt/kernels/index.ts';
import { simdSupport } from '../mingpt/kernels/simd/memory.ts';
import { KernelThreadsError, maxKernelThreads, setKernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { RNG } from '../mingpt/utils.ts';
import { oneThreadThenTwo } from './helpers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rng = new RNG(2024);
const randn = (n: number, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.randn());
const maybe = simdSupport().module !== null ? test : test.skip;

/** The largest |got − want| / max(1, |want|); equal infinities count as 0, any NaN as Infinity. */
function maxRelErr(got: Float32Array, want: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])) || Infinity);
  }
  return worst;
}

/** The first index where the bits differ (Object.is: −0 ≠ +0, NaN = NaN), or −1. */
const firstDifference = (a: Float32Array, b: Float32Array) => a.findIndex((x, i) => !Object.is(x, b[i]));

// -----------------------------------------------------------------------------------------------
// attention

type AttentionShape = [B: number, Tq: number, Tk: number, C: number, NH: number];
const attentionShapes: AttentionShape[] = [
  [1, 1, 1, 8, 2], [2, 7, 7, 16, 4], [1, 3, 9, 32, 4], [2, 1, 65, 12, 3], [1, 64, 64, 64, 4],
  [1, 7, 7, 9, 3], [3, 5, 5, 20, 4], // head sizes 3 and 5
  [1, 1023, 1023, 64, 2], [1, 1024, 1024, 64, 4], [1, 33, 1024, 48, 2], [4, 101, 101, 48, 4],
];

/** q, k, v for a shape; q scaled so that the softmax is far from uniform */
function qkv([B, Tq, Tk, C]: AttentionShape) {
  return { q: randn(B * Tq * C, 3), k: randn(B * Tk * C), v: randn(B * Tk * C) };
}

function threeSteps(
  impl: { attentionScoresForward: typeof js.attentionScoresForward; softmaxRows: typeof js.softmaxRows; attentionValuesForward: typeof js.attentionValuesForward },
  q: Float32Array, k: Float32Array, v: Float32Array, [B, Tq, Tk, C, NH]: AttentionShape,
) {
  const scores = new Float32Array(B * NH * Tq * Tk), z = new Float32Array(B * Tq * C);
  impl.attentionScoresForward(scores, q, k, B, Tq, Tk, C, NH);
  const pattern = scores.slice();
  impl.softmaxRows(pattern, B * NH * Tq, Tk);
  impl.attentionValuesForward(z, pattern, v, B, Tq, Tk, C, NH);
  return { scores, pattern, z };
}
const simdSteps = { attentionScoresForward: simdAttention.attentionScoresForward, softmaxRows: simd.softmaxRows, attentionValuesForward: simdAttention.attentionValuesForward };

for (const shape of attentionShapes) {
  const [B, Tq, Tk, C, NH] = shape;
  maybe(`simd attention = js (1e-5), fused = three steps bit for bit: B=${B} Tq=${Tq} Tk=${Tk} C=${C} NH=${NH}`, () => {
    const { q, k, v } = qkv(shape);
    const want = threeSteps(js, q, k, v, shape);
    const got = threeSteps(simdSteps, q, k, v, shape);
    assert.ok(maxRelErr(got.scores, want.scores) <= 1e-5, `scores ${maxRelErr(got.scores, want.scores)}`);
    assert.is(got.scores.findIndex((x, i) => (x === -Infinity) !== (want.scores[i] === -Infinity)), -1, 'the same entries masked');
    assert.ok(maxRelErr(got.pattern, want.pattern) <= 1e-5, `pattern ${maxRelErr(got.pattern, want.pattern)}`);
    assert.ok(maxRelErr(got.z, want.z) <= 1e-5, `three-step z ${maxRelErr(got.z, want.z)}`);
    const fused = new Float32Array(B * Tq * C).fill(NaN);
    simdAttention.attentionForward(fused, q, k, v, B, Tq, Tk, C, NH);
    const d = firstDifference(fused, got.z);
    assert.is(d, -1, `fused vs three steps, first difference at ${d}: ${fused[d]} vs ${got.z[d]}`);
  });
}

maybe('GPT-2 small\'s attention at 1024 tokens: fused = three steps bit for bit (the scores of all 12 heads do not fit at once: staged by groups of heads)', () => {
  const shape: AttentionShape = [1, 1024, 1024, 768, 12];
  const { q, k, v } = qkv(shape);
  const steps = threeSteps(simdSteps, q, k, v, shape);
  const fused = new Float32Array(1024 * 768);
  simdAttention.attentionForward(fused, q, k, v, ...shape);
  assert.is(firstDifference(fused, steps.z), -1);
});

maybe('fused attention whose batch element does not fit in the kernel memory: staged by groups of heads, the same bits as head by head', () => {
  const [T, hs, NH] = [1100, 64, 48], C = hs * NH; // q, k, v, z of one element: 54 MB
  const { q, k, v } = qkv([1, T, T, C, NH]);
  const whole = new Float32Array(T * C);
  simdAttention.attentionForward(whole, q, k, v, 1, T, T, C, NH);
  for (const h of [0, 29, NH - 1]) {
    const col = (a: Float32Array) => Float32Array.from({ length: T * hs }, (_, i) => a[Math.floor(i / hs) * C + h * hs + (i % hs)]);
    const alone = new Float32Array(T * hs);
    simdAttention.attentionForward(alone, col(q), col(k), col(v), 1, T, T, hs, 1);
    assert.is(firstDifference(col(whole), alone), -1, `head ${h}`);
  }
});

maybe('simd attention of the last queries against all the keys (a cache of earlier keys) = those rows of the full attention, bit for bit', () => {
  const [B, T, C, NH] = [2, 77, 64, 4];
  const { q, k, v } = qkv([B, T, T, C, NH]);
  const full = new Float32Array(B * T * C);
  simdAttention.attentionForward(full, q, k, v, B, T, T, C, NH); // 77 queries: each head's rows staged contiguous
  for (const Tq of [1, 6, 7, 20]) { // fewer than 16 queries: read in place, C apart
    const lastRows = (a: Float32Array) => Float32Array.from({ length: B * Tq * C }, (_, i) => {
      const b = Math.floor(i / (Tq * C)), r = i % (Tq * C);
      return a[(b * T + T - Tq) * C + r];
    });
    const part = new Float32Array(B * Tq * C);
    simdAttention.attentionForward(part, lastRows(q), k, v, B, Tq, T, C, NH);
    assert.is(firstDifference(part, lastRows(full)), -1, `Tq=${Tq}`);
  }
});

maybe('simd attention: a hook\'s pattern that is not causal is used as given (values over every key with a nonzero weight)', () => {
  const [B, Tq, Tk, C, NH] = [1, 6, 6, 8, 2];
  const att = Float32Array.from({ length: B * NH * Tq * Tk }, (_, i) => ((i * 7) % 5) / 10); // zeros and weights anywhere
  const v = randn(B * Tk * C), want = new Float32Array(B * Tq * C), got = new Float32Array(B * Tq * C);
  js.attentionValuesForward(want, att, v, B, Tq, Tk, C, NH);
  simdAttention.attentionValuesForward(got, att, v, B, Tq, Tk, C, NH);
  assert.ok(maxRelErr(got, want) <= 1e-6, String(maxRelErr(got, want)));
});

// -----------------------------------------------------------------------------------------------
// softmax and the row kernels

maybe('simd softmaxRows = js (1e-6): masked entries, one entry per row, a vocabulary-wide row, rows not a multiple of 4', () => {
  for (const [rows, n] of [[1, 1], [3, 5], [7, 64], [2, 50257], [65, 13]]) {
    const x = randn(rows * n, 4).map((v, i) => (i % 7 === 3 && i % n !== 0 ? -Infinity : v));
    const want = x.slice(), got = x.slice();
    js.softmaxRows(want, rows, n);
    simd.softmaxRows(got, rows, n);
    assert.ok(maxRelErr(got, want) <= 1e-6, `rows=${rows} n=${n}: ${maxRelErr(got, want)}`);
    assert.is(got.findIndex((p, i) => (p === 0) !== (want[i] === 0)), -1, 'exact zeros where the scores were −∞');
  }
});

maybe('simd softmaxRows: a NaN score makes its row NaN, as in js', () => {
  const x = new Float32Array([1, NaN, 2, 3, 0.5]), want = x.slice();
  js.softmaxRows(want, 1, 5);
  simd.softmaxRows(x, 1, 5);
  assert.ok(want.every(Number.isNaN) && x.every(Number.isNaN));
});

const rowShapes: Array<[number, number]> = [[1, 1], [2, 3], [3, 7], [4, 8], [5, 33], [65, 768], [1024, 768], [7, 3072]];
for (const [BT, C] of rowShapes) {
  maybe(`simd layer norm (scale, apply, both), residual, GELU = js (1e-6): BT=${BT} C=${C}`, () => {
    // rows with an offset and a spread of their own, as a residual stream has
    const x = randn(BT * C, 2).map((v, i) => v * (1 + (Math.floor(i / C) % 5)) + (Math.floor(i / C) % 3) * 10);
    const w = randn(C), b = randn(C), other = randn(BT * C);
    const eps = 1e-5;
    const pair = () => [new Float32Array(BT), new Float32Array(BT)];
    const [sw, sg] = pair();
    js.layernormScale(sw, x, BT, C, eps);
    simd.layernormScale(sg, x, BT, C, eps);
    assert.ok(maxRelErr(sg, sw) <= 1e-6, `scale ${maxRelErr(sg, sw)}`);
    const big = () => [new Float32Array(BT * C), new Float32Array(BT * C)];
    const [aw, ag] = big();
    js.layernormApply(aw, x, sw, w, b, BT, C);
    simd.layernormApply(ag, x, sw, w, b, BT, C);
    assert.ok(maxRelErr(ag, aw) <= 1e-6, `apply ${maxRelErr(ag, aw)}`);
    const [rw, rg] = big();
    js.residualForward(rw, x, other, BT * C);
    simd.residualForward(rg, x, other, BT * C);
    assert.is(firstDifference(rg, rw), -1, 'a sum of two float32s is exact in both');
    const [gw, gg] = big();
    js.geluForward(gw, x, BT * C);
    simd.geluForward(gg, x, BT * C);
    assert.ok(maxRelErr(gg, gw) <= 1e-6, `gelu ${maxRelErr(gg, gw)}`);
  });
}

// -----------------------------------------------------------------------------------------------
// threads, the switch, the setting

maybe('kernel threads: one thread or two give the same bits (attention fused and in steps, softmax, GELU), and the helpers took items', async () => {
  const shape: AttentionShape = [2, 300, 300, 256, 4];
  const { q, k, v } = qkv(shape);
  const x = randn(1 << 20, 3);
  const run = () => {
    const [B, Tq, , C] = shape;
    const fused = new Float32Array(B * Tq * C);
    simdAttention.attentionForward(fused, q, k, v, ...shape);
    const gelu = new Float32Array(x.length);
    simd.geluForward(gelu, x, x.length);
    return [fused, ...Object.values(threeSteps(simdSteps, q, k, v, shape)), gelu];
  };
  const [one, two] = await oneThreadThenTwo(run);
  one.forEach((a, i) => assert.is(firstDifference(two[i], a), -1, `output ${i}`));
});

test('setKernels switches every kernel it lists, and only kernels with both twins are listed', () => {
  const before = kernels.kernelsName();
  const exported = kernels as unknown as Record<string, unknown>;
  try {
    for (const name of kernels.SWITCHED) {
      assert.type(js[name], 'function', `${name} has a js twin`);
      const twin = [simd, simdAttention, simdBackward].map((m) => (m as Record<string, unknown>)[name]).find((f) => f !== undefined);
      assert.type(twin, 'function', `${name} has a simd twin`);
    }
    kernels.setKernels('js');
    for (const name of kernels.SWITCHED) assert.is(exported[name], js[name], `js: ${name}`);
    if (kernels.setKernels('simd') === 'simd') {
      for (const name of kernels.SWITCHED) assert.is.not(exported[name], js[name], `simd: ${name}`);
    }
  } finally {
    kernels.setKernels(before);
  }
});

test('a bad kernel thread count is refused with the limit named: setKernelThreads, and MINGPT_KERNEL_THREADS at setKernels', () => {
  const max = maxKernelThreads();
  assert.ok(max >= 2 && max <= 64);
  assert.throws(() => setKernelThreads(max + 1), (e: Error) => e instanceof KernelThreadsError && e.message.includes(String(max)));
  assert.throws(() => setKernelThreads(0), (e: Error) => e instanceof KernelThreadsError);
  // the variable is read once per process: ask a fresh one
  const code = "import('./mingpt/kernels/index.ts').then((k) => k.setKernels('simd')).catch((e) => { console.log(e.name + ': ' + e.message); })";
  for (const value of ['400', '-1', 'two']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: root, encoding: 'utf8', env: { ...process.env, MINGPT_KERNEL_THREADS: value, MINGPT_QUIET: '1' },
    });
    const out = r.stdout.trim();
    if (simdSupport().module === null) continue; // js kernels: the setting does not matter
    assert.ok(out.startsWith('KernelThreadsError: MINGPT_KERNEL_THREADS must be a whole number from 1 to '), `${value}: ${out} ${r.stderr}`);
    assert.ok(out.includes(JSON.stringify(value)), out);
  }
});

test.run();
