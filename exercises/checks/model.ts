/**
 * The optional track's checks (M.1–M.3): the readable kernels of mingpt/kernels/js.ts and the
 * MLP of mingpt/model.ts, called directly on block 0's inputs from the reference (analysis.json's
 * hook values) and on inputs small enough to work out by hand. Nothing here runs the whole
 * model, so each task is graded on its own.
 */
import * as js from '../../mingpt/kernels/js.ts';
import { setKernels } from '../../mingpt/kernels/index.ts';
import { Mismatch, expectArrayNear, firstDiff, fmt, near } from '../harness.ts';
import { hookData } from '../reference.ts';
import type { Context, TaskChecks } from '../context.ts';

const hook0 = (c: Context, name: string) => hookData(c.ref, `blocks.0.${name}`);

// -----------------------------------------------------------------------------------------------
// M.1 layer norm

const task1: TaskChecks = async (t, c) => {
  await t.test('one row worked out by hand: [1, 2, 3, 4]', () => {
    // mean 2.5; deviations −1.5 −0.5 0.5 1.5; biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    // scale √(1.25 + 0) = 1.118034; normalised ±1.341641, ±0.447214; gain 2, bias 1 → 2x + 1
    const x = Float32Array.from([1, 2, 3, 4]), scale = new Float32Array(1), out = new Float32Array(4);
    js.layernormScale(scale, x, 1, 4, 0);
    const unbiased = near(scale[0], Math.sqrt(5 / 3), 1e-6);
    expectArrayNear('scale', scale, [Math.sqrt(1.25)], 1e-6, unbiased ? 'that is the unbiased variance (÷ (C − 1)); layer norm uses the biased variance, ÷ C, as torch.nn.LayerNorm' : 'scale = sqrt(mean((x − mean)²) + eps) over the row');
    js.layernormApply(out, x, Float32Array.from([Math.sqrt(1.25)]), Float32Array.from([2, 2, 2, 2]), Float32Array.from([1, 1, 1, 1]), 1, 4);
    const n = [-1.5, -0.5, 0.5, 1.5].map((d) => d / Math.sqrt(1.25));
    expectArrayNear('out', out, n.map((v) => 2 * v + 1), 1e-5, 'out = (x − mean) / scale · weight + bias');
  });
  await t.test('a given scale is the one used (a hook may replace it)', () => {
    const x = Float32Array.from([1, 2, 3, 4]), out = new Float32Array(4);
    js.layernormApply(out, x, Float32Array.from([2]), Float32Array.from([1, 1, 1, 1]), Float32Array.from([0, 0, 0, 0]), 1, 4);
    expectArrayNear('out with scale 2', out, [-0.75, -0.25, 0.25, 0.75], 1e-6, 'divide by the scale you are given, not one you compute again');
  });
  await t.test("block 0's ln_1 on the reference's stream (analysis.json hooks)", () => {
    const model = c.model(), C = model.config.n_embd, eps = model.config.layer_norm_epsilon;
    const x = hook0(c, 'hook_resid_pre'), T = x.length / C;
    const scale = new Float32Array(T), out = new Float32Array(T * C);
    js.layernormScale(scale, x, T, C, eps);
    expectArrayNear('ln1.hook_scale', scale, hook0(c, 'ln1.hook_scale'), 1e-4, 'scale = sqrt(biased variance + eps), one per row');
    const ln = model.transformer.h[0].ln_1;
    js.layernormApply(out, x, hook0(c, 'ln1.hook_scale'), ln.weight, ln.bias, T, C);
    expectArrayNear('ln1.hook_normalized', out, hook0(c, 'ln1.hook_normalized'), 1e-3, 'out = (x − mean) / scale · weight + bias, per row');
  });
};

// -----------------------------------------------------------------------------------------------
// M.2 attention

/**
 * q = k = 0 (every score 0), one head, T = 4, and values v[t] = the one-hot row e_t (hs = T), so
 * that z[t] is query t's attention pattern itself: uniform over the keys it may see, 0 … t.
 *   z = [1 0 0 0; ½ ½ 0 0; ⅓ ⅓ ⅓ 0; ¼ ¼ ¼ ¼]
 */
function uniformCase() {
  const T = 4, C = 4, q = new Float32Array(T * C), k = new Float32Array(T * C), v = new Float32Array(T * C);
  for (let t = 0; t < T; t++) v[t * C + t] = 1;
  const want = Array.from({ length: T * C }, (_, i) => (i % C <= Math.floor(i / C) ? 1 / (Math.floor(i / C) + 1) : 0));
  return { T, C, q, k, v, want };
}

/** What a wrong attention pattern says about itself. */
function patternHint(z: Float32Array, T: number): string {
  const row = (t: number) => Array.from(z.subarray(t * T, (t + 1) * T));
  if (row(0)[1] > 1e-6) return 'the causal mask is off by one: query t sees key t + 1; keys 0 … t only';
  if (Math.abs(row(1)[1]) < 1e-6) return 'the causal mask hides the query\'s own position: keys 0 … t, t included';
  const rowSums = Array.from({ length: T }, (_, t) => row(t).reduce((a, b) => a + b, 0));
  const colSums = Array.from({ length: T }, (_, j) => Array.from({ length: T }, (_, t) => z[t * T + j]).reduce((a, b) => a + b, 0));
  if (!rowSums.every((s) => near(s, 1, 1e-4)) && colSums.every((s) => near(s, 1, 1e-4))) return 'the softmax normalises over the queries (each key\'s column sums to 1); it must run over the keys: each query\'s row sums to 1';
  return 'z[t] = Σ_key softmax(q·k/√hs, masked)[key] · v[key]';
}

const task2: TaskChecks = async (t, c) => {
  await t.test('uniform attention worked out by hand: z shows the pattern', () => {
    const u = uniformCase(), z = new Float32Array(u.T * u.C);
    js.attentionForward(z, u.q, u.k, u.v, 1, u.T, u.T, u.C, 1);
    if (firstDiff(z, u.want, 1e-6) >= 0) throw new Mismatch(`z (the pattern) = ${fmt(u.want[0])} … rows ${[1, 2, 3, 4].map((n) => `1/${n}`).join(', ')}`, Array.from(z).map(fmt).join(' '), patternHint(z, u.T));
    const att = new Float32Array(u.T * u.T);
    js.attentionScoresForward(att, u.q, u.k, 1, u.T, u.T, u.C, 1);
    for (let i = 0; i < u.T; i++) for (let j = 0; j < u.T; j++) {
      const masked = j > i;
      if (masked !== (att[i * u.T + j] === -Infinity)) throw new Mismatch(`scores[${i}][${j}] = ${masked ? '−∞ (masked)' : '0'}`, fmt(att[i * u.T + j]), masked ? 'the causal mask is off by one: query i must not see key i + 1 or later (−∞ there)' : 'query i sees keys 0 … i, itself included');
    }
  });
  await t.test("block 0's scores and z on the reference's q, k, v (analysis.json hooks)", () => {
    const model = c.model(), C = model.config.n_embd, nh = model.config.n_head;
    const q = hook0(c, 'attn.hook_q'), k = hook0(c, 'attn.hook_k'), v = hook0(c, 'attn.hook_v'), T = q.length / C;
    const att = new Float32Array(nh * T * T);
    js.attentionScoresForward(att, q, k, 1, T, T, C, nh);
    const want = hook0(c, 'attn.hook_attn_scores');
    for (let i = 0; i < att.length; i++) {
      if (want[i] === -Infinity ? att[i] === -Infinity : near(att[i], want[i], 1e-3)) continue;
      const h = Math.floor(i / (T * T)), r = Math.floor(i / T) % T, col = i % T;
      throw new Mismatch(`scores[head ${h}][${r}][${col}] = ${want[i] === -Infinity ? '−∞ (masked)' : fmt(want[i])}`, fmt(att[i]),
        (want[i] === -Infinity) !== (att[i] === -Infinity) ? 'the causal mask: query r sees keys 0 … r' : 'score = q·k / √hs, q (B, T, nh, hs) and k the same layout');
    }
    const z = new Float32Array(T * C);
    js.attentionForward(z, q, k, v, 1, T, T, C, nh);
    expectArrayNear('attn.hook_z', z, hook0(c, 'attn.hook_z'), 1e-3, 'z = softmax over the visible keys of the scores, times v; laid out (B, T, nh, hs)');
    // fewer queries than keys: the last 3 positions' queries against every key (a cache of earlier keys)
    const Tq = Math.min(3, T), zq = new Float32Array(Tq * C);
    js.attentionForward(zq, q.subarray((T - Tq) * C), k, v, 1, Tq, T, C, nh);
    expectArrayNear(`z of the last ${Tq} queries against all ${T} keys`, zq, hook0(c, 'attn.hook_z').subarray((T - Tq) * C), 1e-3, 'query i of Tq sits at position Tk − Tq + i: it sees keys 0 … Tk − Tq + i');
  });
};

// -----------------------------------------------------------------------------------------------
// M.3 GELU and the MLP

const task3: TaskChecks = async (t, c) => {
  await t.test('GELU (tanh approximation) at values worked out by hand', () => {
    // 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))): x = 1: tanh(0.797885 · 1.044715) = tanh(0.833562) = 0.682383 → 0.841192
    const x = Float32Array.from([0, 1, -1, 2, 0.5]), out = new Float32Array(5);
    const want = [0, 0.841192, -0.158808, 1.954598, 0.345714];
    js.geluForward(out, x, 5);
    const square = Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v))));
    expectArrayNear('gelu', out, want, 1e-5, firstDiff(out, square, 1e-6) < 0 ? 'the cube is missing: 0.044715 · x³, not x²' : 'GELU(x) = 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), minGPT\'s NewGELU');
  });
  await t.test("block 0's MLP on the reference's stream (analysis.json hooks)", () => {
    const model = c.model(), C = model.config.n_embd;
    const pre = hook0(c, 'mlp.hook_pre'), post = new Float32Array(pre.length);
    js.geluForward(post, pre, pre.length);
    expectArrayNear('mlp.hook_post', post, hook0(c, 'mlp.hook_post'), 1e-3, 'GELU applied to every entry of mlp.hook_pre');
    const x = hook0(c, 'ln2.hook_normalized'), T = x.length / C;
    setKernels('js'); // the MLP's GELU is then the kernel above
    try {
      expectArrayNear('hook_mlp_out', model.transformer.h[0].mlpf(x, 1, T), hook0(c, 'hook_mlp_out'), 1e-3, 'mlpf: c_fc (C → 4C), GELU, c_proj (4C → C), as minGPT\'s Block.mlpf');
    } finally {
      setKernels('simd');
    }
  });
};

export const CHECKS: Record<string, TaskChecks> = { 'M.1': task1, 'M.2': task2, 'M.3': task3 };
