// Tests for lens/weights.ts. References:
//   - raw views: the checkpoint file itself, read in its own Conv1D layout and sliced as
//     ANALYSIS.md's "Notation" section says (W_Q[l][h] = c_attn.weight[:, h·hs:(h+1)·hs], …);
//   - processed views: the PyTorch reference's activations in analysis.json. With the layer norm
//     folded in, a head's query is exactly resid_pre W_Q / scale + b_Q, so the processed weights
//     must reproduce hook_q, hook_k, hook_v and mlp.hook_pre from hook_resid_pre / resid_mid;
//   - W_U_W_E: the explicit product of the processed W_U and W_E (small enough on gpt2-tiny).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { Weights } from '../lens/weights.ts';
import { layernormScale } from '../mingpt/kernels/js.ts';
import { openSafetensors } from '../io/safetensors.ts';
import { loadGPT } from '../io/load.ts';
import { ANALYSIS, FIXTURE, FLOAT32_TOL, closeAll } from './helpers.ts';

const model = loadGPT(FIXTURE);
const analysis = ANALYSIS;
const hooks = analysis.hooks as Record<string, unknown>;
const C = 32, nh = 4, hs = 8, L = 3, V = 50257;
const raw = new Weights(model, false), proc = new Weights(model, true);

const flat = (x: unknown): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x as number]);

test('shapes and sizes follow TransformerLens', () => {
  assert.equal([raw.n_layers, raw.n_heads, raw.d_model, raw.d_head, raw.d_mlp, raw.d_vocab, raw.n_ctx], [L, nh, C, hs, 4 * C, V, 64]);
  assert.is(raw.W_Q(1, 2).length, C * hs);
  assert.is(raw.W_O(1, 2).length, hs * C);
  assert.is(raw.W_in(0).length, C * 4 * C);
  assert.is(raw.W_out(0).length, 4 * C * C);
  assert.throws(() => raw.W_Q(3, 0), /head 3\.0 does not exist: the model has 3 layers of 4 heads/);
  assert.throws(() => raw.W_E_rows([V]), /token id 50257 is outside the vocabulary/);
});

test('raw views are the checkpoint slices of ANALYSIS.md (Conv1D layout, read from the file)', () => {
  const f = openSafetensors(path.join(FIXTURE, 'model.safetensors'));
  try {
    const read = (name: string, n: number) => { const out = new Float32Array(n); f.readF32(name, out); return out; };
    for (let l = 0; l < L; l++) {
      const ca = read(`h.${l}.attn.c_attn.weight`, C * 3 * C); // (C, 3C)
      const cb = read(`h.${l}.attn.c_attn.bias`, 3 * C);
      const cp = read(`h.${l}.attn.c_proj.weight`, C * C); // (C, C): rows h·hs… are W_O[h]
      for (let h = 0; h < nh; h++) {
        const part = (p: number) => Array.from({ length: C * hs }, (_, k) => ca[Math.floor(k / hs) * 3 * C + p * C + h * hs + (k % hs)]);
        closeAll(raw.W_Q(l, h), part(0), 0, `W_Q ${l}.${h}`);
        closeAll(raw.W_K(l, h), part(1), 0, `W_K ${l}.${h}`);
        closeAll(raw.W_V(l, h), part(2), 0, `W_V ${l}.${h}`);
        closeAll(raw.b_K(l, h), Array.from(cb.subarray(C + h * hs, C + (h + 1) * hs)), 0, `b_K ${l}.${h}`);
        closeAll(raw.W_O(l, h), Array.from(cp.subarray(h * hs * C, (h + 1) * hs * C)), 0, `W_O ${l}.${h}`);
      }
      closeAll(raw.W_in(l), Array.from(read(`h.${l}.mlp.c_fc.weight`, C * 4 * C)), 0, `W_in ${l}`);
      closeAll(raw.W_out(l), Array.from(read(`h.${l}.mlp.c_proj.weight`, 4 * C * C)), 0, `W_out ${l}`);
    }
    const wte = read('wte.weight', V * C);
    closeAll(raw.W_E_rows([0, 5437, V - 1]), [...wte.subarray(0, C), ...wte.subarray(5437 * C, 5438 * C), ...wte.subarray((V - 1) * C)], 0, 'W_E');
    const u = raw.W_U_cols([7, 4176]); // (C, 2): tied, so column v is wte row v
    closeAll(Array.from({ length: C }, (_, c) => u[c * 2 + 1]), Array.from(wte.subarray(4176 * C, 4177 * C)), 0, 'W_U');
  } finally {
    f.close();
  }
});

test('processed weights reproduce the reference hook_q/k/v and mlp.hook_pre from the residual stream', () => {
  const T = 11;
  for (let l = 0; l < L; l++) {
    const eps = 1e-5;
    const x = Float64Array.from(flat(hooks[`blocks.${l}.hook_resid_pre`]));
    const s = new Float32Array(T);
    layernormScale(s, Float32Array.from(x), T, C, eps);
    closeAll(s, flat(hooks[`blocks.${l}.ln1.hook_scale`]), 1e-6, `ln1 scale ${l}`);
    for (const [which, W, b] of [['q', 'W_Q', 'b_Q'], ['k', 'W_K', 'b_K'], ['v', 'W_V', 'b_V']] as const) {
      const want = flat(hooks[`blocks.${l}.attn.hook_${which}`]); // (1, T, nh, hs)
      const got = new Float64Array(T * nh * hs);
      for (let h = 0; h < nh; h++) {
        const w = proc[W](l, h), bias = proc[b](l, h);
        for (let t = 0; t < T; t++) for (let i = 0; i < hs; i++) {
          let v = 0;
          for (let c = 0; c < C; c++) v += x[t * C + c] * w[c * hs + i];
          got[(t * nh + h) * hs + i] = v / s[t] + bias[i];
        }
      }
      closeAll(got, want, FLOAT32_TOL, `hook_${which} ${l}`);
    }
    const mid = Float64Array.from(flat(hooks[`blocks.${l}.hook_resid_mid`]));
    const s2 = new Float32Array(T);
    layernormScale(s2, Float32Array.from(mid), T, C, eps);
    const { W_in, b_in } = proc.mlp(l);
    const D = 4 * C, got = new Float64Array(T * D);
    for (let t = 0; t < T; t++) for (let n = 0; n < D; n++) {
      let v = 0;
      for (let c = 0; c < C; c++) v += mid[t * C + c] * W_in[c * D + n];
      got[t * D + n] = v / s2[t] + b_in[n];
    }
    closeAll(got, flat(hooks[`blocks.${l}.mlp.hook_pre`]), FLOAT32_TOL, `mlp.hook_pre ${l}`);
  }
});

test('processed: reading weights centred over C, writing weights and W_U centred', () => {
  const colMeans = (w: Float64Array, rows: number, cols: number) => Array.from({ length: cols }, (_, j) => { let m = 0; for (let i = 0; i < rows; i++) m += w[i * cols + j]; return m / rows; });
  const rowMeans = (w: Float64Array, rows: number, cols: number) => Array.from({ length: rows }, (_, i) => { let m = 0; for (let j = 0; j < cols; j++) m += w[i * cols + j]; return m / cols; });
  const zeros = (n: number) => new Array<number>(n).fill(0);
  closeAll(colMeans(proc.W_Q(2, 1), C, hs), zeros(hs), 1e-12, 'W_Q columns');
  closeAll(colMeans(proc.W_in(1), C, 4 * C), zeros(4 * C), 1e-12, 'W_in columns');
  closeAll(rowMeans(proc.W_O(0, 3), hs, C), zeros(hs), 1e-12, 'W_O rows');
  closeAll(rowMeans(proc.W_out(1), 4 * C, C), zeros(4 * C), 1e-12, 'W_out rows');
  closeAll(rowMeans(proc.W_pos(), 64, C), zeros(64), 1e-12, 'W_pos rows');
  closeAll(rowMeans(proc.W_E_rows([1, 2, 3]), 3, C), zeros(3), 1e-12, 'W_E rows');
  // W_U over the vocabulary: the mean of all columns is zero (and over C, each column)
  const all = Array.from({ length: V }, (_, v) => v);
  const U = proc.W_U_cols(all); // (C, V)
  closeAll(rowMeans(U, C, V), zeros(C), 1e-9, 'W_U rows over the vocabulary');
  closeAll(colMeans(U, C, V).slice(0, 100), zeros(100), 1e-9, 'W_U columns over C');
});

for (const processed of [false, true]) {
  test(`W_U_W_E equals the explicit product (${processed ? 'processed' : 'raw'})`, () => {
    const w = processed ? proc : raw;
    const all = Array.from({ length: V }, (_, v) => v);
    const U = w.W_U_cols(all), E = w.W_E_rows(all); // (C, V), (V, C)
    const want = new Float64Array(C * C);
    for (let i = 0; i < C; i++) for (let v = 0; v < V; v++) {
      const u = U[i * V + v];
      for (let j = 0; j < C; j++) want[i * C + j] += u * E[v * C + j];
    }
    // a sum over the 50257-token vocabulary of float32 products (chunk sums in doubles): measured 4e-5
    closeAll(w.W_U_W_E(), want, 1e-4, 'W_U W_E');
  });
}

test.run();
