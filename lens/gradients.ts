/**
 * Gradients at the hook points, TransformerLens style: run a metric forward and backward, and keep
 * the gradient of the metric with respect to each hook point's value under the hook's name, in an
 * ActivationCache like the activations' (ARENA's `get_cache_fwd_and_bwd`):
 *
 *   const metric = logitDiffMetric(corrupt_token, clean_token);
 *   const { value, grad_cache } = run_with_grad_cache(model, ids, metric, { names: (n) => n.endsWith('hook_z') });
 *   grad_cache.get('z', 3)          // (1, T, nh, hs): d metric / d blocks.3.attn.hook_z
 *
 * Each gradient is the total derivative: everything upstream of the hook point held fixed,
 * everything downstream responding (the backward pass has added every later use's share when it
 * reaches the point). Conventions, as in test/fixtures/GRADIENTS.md: `hook_scale`'s gradient is with
 * respect to the layer norm's divisor only; masked attention scores have gradient 0;
 * `hook_embed` and `hook_pos_embed` get the same gradient (they are summed).
 *
 * Backward hooks (TransformerLens's `bwd_hooks`) are given the same way as forward hooks, a list of
 * [name or predicate, fn]; fn sees the gradient as an ndarray and may change it or return a
 * replacement, which then flows on to everything upstream.
 *
 * Cost: one forward pass that keeps a reference to every activation (no copies), and one backward
 * pass without the weights' gradients, about as much arithmetic as the forward pass. The backward
 * pass stops at the earliest hook point kept or hooked: gradients at the block outputs from
 * layer 0 up (attribution patching's) need no backward of block 0 or of the embeddings.
 */
import type { NdArray } from 'ndarray';
import type { GPT, ForwardOptions, Idx } from '../mingpt/model.ts';
import { batchRows, cacheHook, type Activation, type HookSpec } from '../mingpt/hooks.ts';
import { ActivationCache } from './activation_cache.ts';
import type { Metric } from './patching.ts';

export interface GradCacheOptions extends Omit<ForwardOptions, 'targets' | 'grad' | 'save' | 'patch'> {
  /** which hook points to keep, for the gradients and (with `cache`) the activations: a list or a predicate; all by default */
  names?: string[] | ((name: string) => boolean);
  /** backward hooks for this run: [name or predicate, fn(gradient, name)] */
  bwd_hooks?: HookSpec;
  /** also keep the forward run's activations at the same hook points (default false) */
  cache?: boolean;
  /**
   * the batch rows [from, to) the metric reads (default: all). The other rows run forward in the
   * same batch, one pass over the weights, with their activations kept (with `cache`) but no
   * gradient; the gradients are the metric's rows', (to − from, …)
   */
  grad_rows?: [number, number];
}

export interface GradCacheResult {
  /** the metric's value on this run */
  value: number;
  /** the run's logits: (B, P, vocab) at logits_at (by default the metric's positions, or the last); the metric read rows grad_rows */
  logits: NdArray<Float32Array>;
  /** the activations, with `cache: true` (else empty) */
  cache: ActivationCache;
  /** d metric / d (hook point), by hook name */
  grad_cache: ActivationCache;
}

/** A names option as a predicate. */
function nameFilter(names: GradCacheOptions['names']): (name: string) => boolean {
  if (names === undefined) return () => true;
  if (typeof names === 'function') return names;
  const set = new Set(names);
  return (n) => set.has(n);
}

/** The first block whose backward pass a gradient at a hook point that `wanted` picks needs (L: none). */
function firstBlockNeeded(model: GPT, wanted: (name: string) => boolean): number {
  for (const name of model.hook_names()) {
    if (!wanted(name)) continue;
    const m = /^blocks\.(\d+)\.(.+)$/.exec(name);
    if (!m) return name.startsWith('ln_final') ? model.config.n_layer : 0; // the embeddings, or the final layer norm (backwards, before every block)
    return m[2] === 'hook_resid_post' ? Number(m[1]) + 1 : Number(m[1]); // a block's output: known before the block runs
  }
  return model.config.n_layer;
}

/**
 * Runs `idx` forward, evaluates `metric` on the logits, and runs backward from the metric's
 * gradient (`metric.backward`), keeping every selected hook point's gradient. The model's
 * parameter gradients are not touched.
 */
export function run_with_grad_cache(model: GPT, idx: Idx, metric: Metric, opts: GradCacheOptions = {}): GradCacheResult {
  const { names, bwd_hooks, cache: keepActs, hooks, grad_rows, ...rest } = opts;
  if (!metric.backward) throw new Error('this metric has no gradient (metric.backward): attribution needs one; logitDiffMetric has it');
  const T = Array.isArray(idx[0]) ? (idx[0] as number[]).length : idx.length;
  const logits_at = rest.logits_at ?? metric.positions ?? [T - 1];
  const keep = nameFilter(names);
  const acts = new Map<string, Activation>(), grads = new Map<string, Activation>();
  const fwd: HookSpec = [...(hooks ?? []), ...(keepActs ? [[keep, cacheHook(acts)] as HookSpec[number]] : [])];
  const res = model.forward(idx, { ...rest, logits_at, hooks: fwd, grad: true });
  const read = grad_rows ? batchRows(res.logits, ...grad_rows) : res.logits;
  const value = metric(read);
  const bwd: HookSpec = [...(bwd_hooks ?? []), [keep, cacheHook(grads)]];
  const stop_at_layer = firstBlockNeeded(model, (n) => bwd.some(([sel]) => (typeof sel === 'string' ? sel === n : sel(n))));
  model.backward(metric.backward(read), { params: false, hooks: bwd, stop_at_layer, batch: grad_rows });
  return { value, logits: res.logits, cache: new ActivationCache(model, acts, logits_at), grad_cache: new ActivationCache(model, grads, logits_at) };
}
