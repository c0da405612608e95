/**
 * Attribution patching (Nanda 2023; "AtP", Kramár et al. 2024): the first-order estimate of every
 * activation patch of ./patching.ts, all of them from two passes instead of one run per cell.
 *
 * Denoising, as the exact patches: the corrupted run with one clean piece put back. To first
 * order, putting back the piece changes the metric by the change of the activation times the
 * metric's gradient there, so
 *
 *   atp[cell] = metric(corrupted) + Σ over the cell's slice of (a_clean − a_corrupted) ⊙ d metric / d a
 *
 * with the gradient taken on the corrupted run. The passes: the clean and the corrupted runs
 * forward as one batch, then backward through the corrupted rows (./gradients.ts); then every
 * cell of every kind is a sum over cached numbers. The results have the axes, shapes and labels of the exact ones (PatchResult), so the
 * two compare cell by cell:
 *
 *   const runs = atp_runs(model, clean_ids, corrupted_ids, metric, ['resid_post']);
 *   const est = get_atp_resid_post(runs);                         // est.axes = ['layer', 'pos']
 *   const exact = get_act_patch_resid_post(model, corrupted_ids, clean_cache, metric);
 *
 * Where the model is close to linear between the two runs the estimate is close to the exact
 * patch. It fails where it is not: attention that saturates (a softmax whose winner changes has
 * near-zero gradient on one side of the change), or a layer norm whose scale changes a lot between
 * the runs (the estimate sees the scale's slope at the corrupted point only). The difference is a
 * finding about the model, not an error of the method; assignments/activation-patching/README.md
 * shows both side by side.
 */
import type { GPT } from '../mingpt/model.ts';
import { axesOf, batchRows } from '../mingpt/hooks.ts';
import type { ActivationCache } from './activation_cache.ts';
import { run_with_grad_cache } from './gradients.ts';
import type { AxisName, Metric, PatchResult } from './patching.ts';

/** What every estimate reads: the two runs' activations and the corrupted run's gradients at the patched hook points. */
export interface AtpRuns {
  model: GPT;
  clean: ActivationCache;
  corrupted: ActivationCache;
  /** d metric / d activation on the corrupted run */
  grads: ActivationCache;
  /** the metric of the two runs */
  metric: { clean: number; corrupted: number };
}

/** The kinds of hook point the estimates below read, by their short names (as in PatchResult.hook). */
export type AtpPoint = 'resid_pre' | 'resid_mid' | 'resid_post' | 'attn_out' | 'mlp_out' | 'z' | 'pattern';

const pointName = (p: AtpPoint, l: number) => (p === 'z' || p === 'pattern' ? `blocks.${l}.attn.hook_${p}` : `blocks.${l}.hook_${p}`);

/**
 * The passes: the clean and the corrupted texts forward as one batch (one pass over the weights
 * for both), then backward through the corrupted rows only, keeping the given kinds of hook point
 * of every layer. Texts of equal length, as many clean as corrupted; the metric needs its
 * gradient (metric.backward).
 */
export function atp_runs(model: GPT, clean_ids: number[] | number[][], corrupted_ids: number[] | number[][], metric: Metric, points: AtpPoint[]): AtpRuns {
  const rows = (x: number[] | number[][]) => (Array.isArray(x[0]) ? (x as number[][]) : [x as number[]]);
  const clean = rows(clean_ids), corrupted = rows(corrupted_ids), B = clean.length, T = clean[0].length;
  if (corrupted[0].length !== T) throw new Error(`attribution patching needs texts of one length: clean ${T} tokens, corrupted ${corrupted[0].length}`);
  if (corrupted.length !== B) throw new Error(`attribution patching needs as many clean texts as corrupted ones: ${B} clean, ${corrupted.length} corrupted`);
  const names = new Set(points.flatMap((p) => Array.from({ length: model.config.n_layer }, (_, l) => pointName(p, l))));
  const keep = (n: string) => names.has(n);
  const logits_at = metric.positions ?? [T - 1];
  // batch rows 0 … B−1 clean, B … 2B−1 corrupted
  const run = run_with_grad_cache(model, [...clean, ...corrupted], metric, { names: keep, cache: true, logits_at, grad_rows: [B, 2 * B] });
  return {
    model, clean: run.cache.apply_slice_to_batch_dim(0, B), corrupted: run.cache.apply_slice_to_batch_dim(B, 2 * B), grads: run.grad_cache,
    metric: { clean: metric(batchRows(run.logits, 0, B)), corrupted: run.value },
  };
}

/**
 * The generic estimate, twin of ./patching.ts's generic_activation_patch: `hook(l)` names layer
 * l's hook point, `axes` are the index axes ('layer' first). A cell's slice is everything of its
 * layer's activation at its position and head (all batch rows; every position or head along an
 * axis that is not an index), as the exact setters patch it.
 */
export function attribution_patch(runs: AtpRuns, hook: (layer: number) => string, axes: AxisName[]): PatchResult {
  const c = runs.model.config, L = c.n_layer;
  const first = runs.corrupted.get(hook(0));
  const T = first.shape[axesOf(hook(0)).pos];
  const sizes: Record<AxisName, number> = { layer: L, pos: T, head: c.n_head };
  const shape = axes.map((a) => sizes[a]);
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((x, y) => x * y, 1));
  const data = new Array<number>(shape.reduce((x, y) => x * y, 1)).fill(0);
  for (let l = 0; l < L; l++) {
    const name = hook(l);
    const a = runs.corrupted.get(name), cl = runs.clean.get(name), g = runs.grads.get(name);
    const { pos, head } = axesOf(name);
    // for each index axis: which axis of the activation it is, and that axis's stride there
    const actStride = a.shape.map((_, d) => a.shape.slice(d + 1).reduce((x, y) => x * y, 1));
    const picks = axes.map((ax, d) => {
      if (ax === 'layer') return { d, axis: -1 };
      const axis = ax === 'pos' ? pos : head;
      if (axis === null) throw new Error(`${name} has no ${ax} axis`);
      return { d, axis };
    });
    // the activation in runs of consecutive numbers that fall in one cell: everything after the
    // last index axis (a position's C channels, a head's hs, a pattern row's T keys)
    const run = Math.min(...picks.map(({ axis }) => (axis < 0 ? a.data.length : actStride[axis])));
    const ad = a.data, cd = cl.data, gd = g.data;
    for (let i0 = 0; i0 < ad.length; i0 += run) {
      let cell = 0;
      for (const { d, axis } of picks) cell += strides[d] * (axis < 0 ? l : Math.floor(i0 / actStride[axis]) % a.shape[axis]);
      data[cell] = addDeltaTimesGrad(data[cell], cd, ad, gd, i0, i0 + run);
    }
  }
  for (let k = 0; k < data.length; k++) data[k] += runs.metric.corrupted;
  return { axes, shape, data, corrupted: runs.metric.corrupted, clean: runs.metric.clean, hook: hook(Number.NaN).replace('NaN', '{l}') };
}

/**
 * sum + Σ (clean[i] − corrupted[i]) · grad[i] over i = from … to − 1, added one by one in that order.
 * A function of its own, small and called often, so that the engine compiles it early (as the
 * loop inside attribution_patch it ran unoptimised, boxing every partial sum: 39 MB a call).
 */
function addDeltaTimesGrad(sum: number, clean: Float32Array, corrupted: Float32Array, grad: Float32Array, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    const delta = clean[i] - corrupted[i];
    if (delta === 0) continue; // nothing changes here (and masked pattern entries are 0 in both runs)
    sum += delta * grad[i];
  }
  return sum;
}

// -----------------------------------------------------------------------------------------------
// The estimates of ./patching.ts's ready-made sweeps, one line each, with the same names after
// get_atp_ (the others, queries, keys or values per head or a pattern row by position, are one
// more line each, written the same way).

type Estimate = (runs: AtpRuns) => PatchResult;
const at = (p: AtpPoint) => (l: number) => pointName(p, l);

/** layer × position: the stream entering each block */
export const get_atp_resid_pre: Estimate = (r) => attribution_patch(r, at('resid_pre'), ['layer', 'pos']);
/** layer × position: the stream between attention and MLP */
export const get_atp_resid_mid: Estimate = (r) => attribution_patch(r, at('resid_mid'), ['layer', 'pos']);
/** layer × position: each block's output (the assignment's experiment) */
export const get_atp_resid_post: Estimate = (r) => attribution_patch(r, at('resid_post'), ['layer', 'pos']);
/** layer × position: the attention layer's output */
export const get_atp_attn_out: Estimate = (r) => attribution_patch(r, at('attn_out'), ['layer', 'pos']);
/** layer × position: the MLP's output */
export const get_atp_mlp_out: Estimate = (r) => attribution_patch(r, at('mlp_out'), ['layer', 'pos']);
/** layer × head: each head's output z at every position */
export const get_atp_attn_head_out_all_pos: Estimate = (r) => attribution_patch(r, at('z'), ['layer', 'head']);
/** layer × head × position: each head's output z at one position */
export const get_atp_attn_head_out_by_pos: Estimate = (r) => attribution_patch(r, at('z'), ['layer', 'head', 'pos']);
/** layer × head: each head's whole attention pattern */
export const get_atp_attn_head_pattern_all_pos: Estimate = (r) => attribution_patch(r, at('pattern'), ['layer', 'head']);
