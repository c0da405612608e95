/**
 * Activation patching, generic: the one function every patching experiment is a case of, after
 * TransformerLens's `patching.py` (`generic_activation_patch` and its one-line specialisations).
 *
 * Denoising, as in the assignment: run the corrupted text, put back ONE piece of one activation
 * from the clean run (a position of the residual stream, a head's output, a head's pattern, …),
 * and measure the metric. Every piece of every layer gives one number; the result is an array
 * with named axes ('layer', 'pos', 'head').
 *
 *   const { cache } = run_with_cache(model, clean_ids);
 *   const metric = logitDiffMetric(corrupt_token, clean_token);        // on the last position
 *   const r = get_act_patch_resid_post(model, corrupt_ids, cache, metric); // r.axes = ['layer', 'pos']
 *
 * Savings that change no number: a patch in block l leaves blocks 0 … l−1 alone, so each
 * patched run starts at block l from the corrupted run's cached stream (`start_at_layer`), and at
 * the first position the patch changes, against the corrupted run's keys and values before it (a
 * KVCache); the logits are computed at the metric's positions only, and when that is the last
 * position alone, the last block (after its attention) runs there alone too, and the vocabulary
 * projection only for the tokens the metric reads (`Metric.tokens`); a patch that writes what is
 * already there (the texts agree up to that position) costs no run at all; and the cells of one layer go
 * through the model together, stacked along the batch axis (the matrix products get more rows,
 * and each weight is read once per batch instead of once per cell).
 */
import ndarray from 'ndarray';
import ops from 'ndarray-ops';
import type { NdArray } from 'ndarray';
import { KVCache, Rows, takeRows, type GPT, type ForwardOptions, type ForwardResult, type Idx } from '../mingpt/model.ts';
import { matmulForward } from '../mingpt/kernels/index.ts';
import { run_with_cache, type ActivationCache } from './activation_cache.ts';
import { patchHook, type Activation, type HookFn, type Selection } from '../mingpt/hooks.ts';

/** A metric reads the logits of the metric's positions, (B, P, vocab), and gives one number. */
export interface Metric {
  (logits: NdArray<Float32Array>): number;
  /** the positions whose logits it reads (default: the last one) */
  positions?: number[];
  /**
   * the vocabulary entries it reads (default: all of them): patched runs that stop at the last
   * position then compute only these columns of the vocabulary projection, the others are NaN
   */
  tokens?: number[];
  /** its gradient with respect to those logits, (B, P, vocab) like them (what attribution patching differentiates) */
  backward?: (logits: NdArray<Float32Array>) => Float32Array;
}

/**
 * logit(token) − logit(other) at the last position (batch row 0, or the mean over rows when each
 * row has its own pair): the assignment's metric with token = corrupt token, other = clean token.
 */
export function logitDiffMetric(token: number | number[], other: number | number[]): Metric {
  const pair = (b: number) => [Array.isArray(token) ? token[b] : token, Array.isArray(other) ? other[b] : other];
  const metric: Metric = (logits) => {
    // BEGIN TASK 3.1: the logit difference over a group
    const [B, P, V] = logits.shape;
    let sum = 0;
    for (let b = 0; b < B; b++) {
      const o = (b * P + P - 1) * V;
      const t = Array.isArray(token) ? token[b] : token, u = Array.isArray(other) ? other[b] : other;
      sum += logits.data[o + t] - logits.data[o + u];
    }
    return sum / B;
    // END TASK 3.1
  };
  metric.tokens = [...new Set([token, other].flat())];
  // the gradient: +1/B at the token, −1/B at the other, in each row's last position; 0 elsewhere
  metric.backward = (logits) => {
    const [B, P, V] = logits.shape, d = new Float32Array(B * P * V);
    for (let b = 0; b < B; b++) {
      const o = (b * P + P - 1) * V, [t, u] = pair(b);
      d[o + t] += 1 / B;
      d[o + u] -= 1 / B;
    }
    return d;
  };
  return metric;
}

/** An index axis of a patching sweep. */
export type AxisName = 'layer' | 'pos' | 'head';

/** Writes the clean values of one index into the corrupted activation (TransformerLens's patch setters). */
export type PatchSetter = (corrupted: Activation, index: Record<AxisName, number>, clean: Activation) => void;

/** (B, T, C) or (B, T, nh, hs) activations: position `pos` (all heads). */
export const layer_pos_patch_setter: PatchSetter = (act, { pos }, clean) => {
  ops.assign(act.pick(null, pos), clean.pick(null, pos));
};
/** (B, T, nh, hs): head `head` at every position. */
export const layer_head_vector_patch_setter: PatchSetter = (act, { head }, clean) => {
  // BEGIN TASK 3.2: patch one head's output at every position
  ops.assign(act.pick(null, null, head), clean.pick(null, null, head));
  // END TASK 3.2
};
/** (B, T, nh, hs): head `head` at position `pos`. */
export const layer_head_pos_patch_setter: PatchSetter = (act, { pos, head }, clean) => {
  ops.assign(act.pick(null, pos, head), clean.pick(null, pos, head));
};
/** (B, nh, T, T): head `head`'s whole pattern (every query position). */
export const layer_head_pattern_patch_setter: PatchSetter = (act, { head }, clean) => {
  ops.assign(act.pick(null, head), clean.pick(null, head));
};

/** A patching result: values in row-major order over the named axes. */
export interface PatchResult {
  axes: AxisName[];
  shape: number[];
  data: number[];
  /** the metric of the corrupted and the clean runs, for scale */
  corrupted: number;
  clean: number;
  /** the hook point, with {l} for the layer */
  hook: string;
}

/** A result as nested arrays: [layer][pos] or [layer][head] or [layer][head][pos] (or any row-major array with its shape). */
export function nested(r: { shape: readonly number[]; data: ArrayLike<number> }): unknown[] {
  const build = (dim: number, offset: number): unknown[] => {
    const n = r.shape[dim], stride = r.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: n }, (_, i) => (dim === r.shape.length - 1 ? r.data[offset + i] : build(dim + 1, offset + i * stride)));
  };
  return build(0, 0);
}

export interface PatchOptions {
  /** called as cells finish: done of total */
  onProgress?: (done: number, total: number) => void;
  /** at most this many cells in one forward pass, stacked along the batch (default 16); 1 = one run per cell */
  batch?: number;
}

/** Rows of the stacked batch a forward pass may hold (cells × B × T): bounds its memory. */
const MAX_BATCH_ROWS = 2048;

/** model.forward() with the hook point `name` patched from its value in `cache` (a clean run), on a selection. */
export function run_with_patch(model: GPT, idx: Idx, cache: ActivationCache, name: string, sel: Selection = {}, opts: Omit<ForwardOptions, 'hooks'> = {}): ForwardResult {
  return model.forward(idx, { ...opts, hooks: [[name, patchHook(cache.get(name), sel)]] });
}

/** Rows [from, from + n) of an activation's batch axis, as a view. */
function batchRows(a: Activation, from: number, n: number): Activation {
  return a.hi(from + n, ...a.shape.slice(1)).lo(from, ...a.shape.slice(1).map(() => 0));
}

/**
 * The generic patch. `hook` gives the hook point of layer l (e.g. l => `blocks.${l}.hook_resid_post`);
 * `axes` are the index axes, 'layer' first; `setter` writes one index's clean values into the run.
 * Clean and corrupted texts must have the same length; `clean_cache` must hold the hook points.
 */
export function generic_activation_patch(
  model: GPT, corrupted_ids: number[] | number[][], clean_cache: ActivationCache, metric: Metric,
  setter: PatchSetter, hook: (layer: number) => string, axes: AxisName[], opts: PatchOptions = {},
): PatchResult {
  const c = model.config, L = c.n_layer, nh = c.n_head;
  const hooks = Array.from({ length: L }, (_, l) => hook(l));
  const cleanActs = hooks.map((h) => clean_cache.get(h));
  const T = cleanActs[0].shape[axesPos(hooks[0])];
  const logits_at = metric.positions ?? [T - 1];
  // the corrupted run once: its metric, the stream entering each block, and the patched hook points
  // (and its keys and values: patched runs recompute only the positions from the first one their patch changes)
  const want = new Set([...hooks, ...Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_pre`)]);
  const kv = new KVCache(c, Array.isArray(corrupted_ids[0]) ? corrupted_ids.length : 1);
  const base = run_with_cache(model, corrupted_ids, { names: [...want], logits_at, past_kv_cache: kv });
  kv.freeze();
  const corrupted = metric(base.logits);
  const clean = metric(model.forward(corrupted_ids, { logits_at, hooks: hooks.map((h, l) => [h, (a) => { ops.assign(a, cleanActs[l]); }] as [string, HookFn]) }).logits);

  const sizes: Record<AxisName, number> = { layer: L, pos: T, head: nh };
  const shape = axes.map((a) => sizes[a]);
  const total = shape.reduce((a, b) => a * b, 1);
  const data = new Array<number>(total);
  const indexOf = (k: number): Record<AxisName, number> => {
    const index: Record<AxisName, number> = { layer: 0, pos: 0, head: 0 };
    let rest = k;
    for (let d = axes.length - 1; d >= 0; d--) { index[axes[d]] = rest % shape[d]; rest = Math.floor(rest / shape[d]); }
    return index;
  };
  // Cells whose patch writes what is already there cost nothing; the others run in batches of
  // cells of one layer: K copies of the corrupted batch stacked, copy j patched as cell j wants.
  const B = base.residual.shape[0];
  const maxCells = Math.max(1, Math.min(opts.batch ?? 16, Math.floor(MAX_BATCH_ROWS / (B * T))));
  let done = 0;
  const pending: Array<{ k: number; index: Record<AxisName, number>; from: number }> = [];
  const flush = () => {
    if (pending.length === 0) return;
    const l = pending[0].index.layer, name = hooks[l], start = layerOfHook(name, l);
    const K = pending.length;
    // positions before `from` are the corrupted run's in every cell (the patches change none of
    // them): the run computes the rest, against the corrupted run's keys and values there
    const from = Math.min(...pending.map((cell) => cell.from), ...logits_at);
    const resid = base.cache.get('resid_pre', start), C = resid.shape[2], n = B * (T - from) * C; // (B, T, C)
    const stacked = new Float32Array(K * n);
    for (let j = 0; j < K; j++) for (let b = 0; b < B; b++) stacked.set(resid.data.subarray((b * T + from) * C, (b + 1) * T * C), j * n + b * (T - from) * C);
    const clean = from ? cleanActs[l].lo(0, from) : cleanActs[l]; // (B, T − from, …)
    const run: ForwardOptions = {
      start_at_layer: start, residual: ndarray(stacked, [K * B, T - from, C]), logits_at: logits_at.map((t) => t - from),
      past_kv_cache: from ? kv.prefix(from) : undefined,
      hooks: [[name, (act) => { pending.forEach((cell, j) => setter(batchRows(act, j * B, B), { ...cell.index, pos: cell.index.pos - from }, clean)); }]],
    };
    const lastOnly = start < L - 1 && logits_at.length === 1 && logits_at[0] === T - 1;
    const logits = (lastOnly && lastPositionLogits(model, run, from ? kv.prefix(from) : null, metric.tokens)) || model.forward(null, run).logits.data; // (K·B, P, V)
    const P = logits_at.length, V = c.vocab_size;
    pending.forEach((cell, j) => {
      data[cell.k] = metric(ndarray(logits.slice(j * B * P * V, (j + 1) * B * P * V), [B, P, V]));
    });
    done += K;
    opts.onProgress?.(done, total);
    pending.length = 0;
  };
  for (let k = 0; k < total; k++) {
    const index = indexOf(k), l = index.layer, name = hooks[l];
    // what the patch would write, compared with what is there: equal means no change at all
    const probe = base.cache.get(name);
    const before = probe.data.slice();
    setter(probe, index, cleanActs[l]);
    const from = firstChange(probe, before, axesPos(name));
    probe.data.set(before);
    if (from < 0) {
      data[k] = corrupted;
      opts.onProgress?.(++done, total);
      continue;
    }
    if (pending.length && (pending[0].index.layer !== l || pending.length >= maxCells)) flush();
    pending.push({ k, index, from });
  }
  flush();
  return { axes, shape, data, corrupted, clean, hook: hook(Number.NaN).replace('NaN', '{l}') };
}

/**
 * The logits at the last position of a run `opts` (start_at_layer, residual, hooks) whose hooks
 * all sit before the last block: blocks up to the last one as usual, then the last block's rows
 * after its attention, the final layer norm and the vocabulary projection at the last position
 * only (the other rows matter there for their keys and values only, as in ../sweep/fast.ts), (N, V);
 * with `tokens`, only those columns of the vocabulary projection (NaN elsewhere). `past`: the
 * keys and values of the positions before the run's rows (a run continuing the corrupted run).
 * The same numbers as the whole run's, for about three quarters of a block less per run; null
 * when they are not all finite (the whole run then says where they went wrong).
 */
function lastPositionLogits(model: GPT, opts: ForwardOptions, past: KVCache | null, tokens?: readonly number[]): Float32Array | null {
  const { n_layer: L, n_embd: C, vocab_size: V } = model.config;
  const x = model.forward(null, { ...opts, stop_at_layer: L - 1 }).residual; // (N, T − t0, C): the stream entering the last block
  const [N, Tx] = x.shape, t0 = past?.length ?? 0, rows = Rows.suffix(new Array<number>(N).fill(t0), t0 + Tx);
  const kv = past ?? new KVCache(model.config, N).freeze(); // (no earlier positions: still what lets a block keep fewer rows)
  const last = model.transformer.h[L - 1].forward(x.data, rows, kv, rows.last(1)); // (N, C)
  const xf = model.transformer.ln_f.forward(last, N, 1);
  const logits = new Float32Array(N * V); // (N, 1, V)
  if (!tokens) {
    matmulForward(logits, xf, model.lm_head.weight, null, N, C, V);
    return logits.every(Number.isFinite) ? logits : null;
  }
  // only the columns the metric reads (the same numbers: each column is its own dot products)
  const part = new Float32Array(N * tokens.length); // (N, tokens)
  matmulForward(part, xf, takeRows(model.lm_head.weight, C, tokens), null, N, C, tokens.length);
  if (!part.every(Number.isFinite)) return null;
  logits.fill(NaN);
  for (let i = 0; i < N; i++) tokens.forEach((t, j) => { logits[i * V + t] = part[i * tokens.length + j]; });
  return logits;
}

/**
 * The first position where `a` differs from `before` (its values before a patch) in any batch
 * row, -1 where it does not differ at all; 0 when the positions are not the axis after the batch
 * (a pattern's query axis comes after the heads): then the whole run is redone.
 */
function firstChange(a: Activation, before: Float32Array, axis: number): number {
  const d = a.data, [B, T] = a.shape, inner = d.length / (B * T);
  let first = -1;
  for (let b = 0; b < B; b++) {
    for (let i = b * T * inner; i < (b + 1) * T * inner; i++) {
      if (d[i] === before[i]) continue;
      const t = Math.floor(i / inner) % T;
      if (first < 0 || t < first) first = t;
      break;
    }
  }
  return axis === 1 || first < 0 ? first : 0;
}

/** The block a hook point belongs to (resid_pre of block l is reached inside block l). */
function layerOfHook(name: string, l: number): number {
  const m = name.match(/^blocks\.(\d+)\./);
  return m ? Number(m[1]) : l;
}

/** The position axis of a hook point's layout (patterns: the query axis). */
function axesPos(name: string): number {
  return /attn\.hook_(pattern|attn_scores)$/.test(name) ? 2 : 1;
}

// -----------------------------------------------------------------------------------------------
// The ready-made sweeps (TransformerLens's get_act_patch_*): one line each. Those the experiments
// use; analysis.json's `patching` entries check all but resid_mid (test/analysis_core.test.ts).
// TransformerLens's others (queries, keys or values per head, a pattern row by position) are
// one more line each, written the same way.

type Sweep = (model: GPT, corrupted_ids: number[] | number[][], clean_cache: ActivationCache, metric: Metric, opts?: PatchOptions) => PatchResult;
const blockPoint = (p: string) => (l: number) => `blocks.${l}.hook_${p}`;
const attnPoint = (p: string) => (l: number) => `blocks.${l}.attn.hook_${p}`;

/** layer × position: the stream entering each block */
export const get_act_patch_resid_pre: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_pos_patch_setter, blockPoint('resid_pre'), ['layer', 'pos'], o);
/** layer × position: the stream between attention and MLP */
export const get_act_patch_resid_mid: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_pos_patch_setter, blockPoint('resid_mid'), ['layer', 'pos'], o);
/** layer × position: each block's output (the assignment's experiment) */
export const get_act_patch_resid_post: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_pos_patch_setter, blockPoint('resid_post'), ['layer', 'pos'], o);
/** layer × position: the attention layer's output */
export const get_act_patch_attn_out: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_pos_patch_setter, blockPoint('attn_out'), ['layer', 'pos'], o);
/** layer × position: the MLP's output */
export const get_act_patch_mlp_out: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_pos_patch_setter, blockPoint('mlp_out'), ['layer', 'pos'], o);

/** layer × head: each head's output z at every position (its whole contribution) */
export const get_act_patch_attn_head_out_all_pos: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_head_vector_patch_setter, attnPoint('z'), ['layer', 'head'], o);
/** layer × head × position: each head's output z at one position */
export const get_act_patch_attn_head_out_by_pos: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_head_pos_patch_setter, attnPoint('z'), ['layer', 'head', 'pos'], o);
/** layer × head: each head's whole attention pattern */
export const get_act_patch_attn_head_pattern_all_pos: Sweep = (m, ids, c, f, o) => generic_activation_patch(m, ids, c, f, layer_head_pattern_patch_setter, attnPoint('pattern'), ['layer', 'head'], o);
