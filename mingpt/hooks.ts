/**
 * Hook points: named places in the forward pass where an experiment may look at an activation
 * (cache it) or change it (patch, ablate). The idea and the names come from TransformerLens.
 *
 * In the model, a hook point is one line that reads like an identity function:
 *
 *     x = this.hooks.point(this.names.resid_post, x, [B, T, C]);
 *
 * The backward pass has the same points in reverse (`this.hooks.grad(name, dx, shape)`), where
 * backward hooks see, and may replace, the gradient with respect to each hook point's value.
 *
 * With no hook attached (the normal case) it returns `x` at once: a run without hooks costs the
 * same as a model without hook support. Hooks are attached for one run only
 * (`model.run_with_hooks`, `model.run_with_cache`) and removed afterwards, even if the run throws.
 *
 * The points, per layer l (shapes with batch B, time T, channels C, heads nh, head size hs), with
 * TransformerLens's names; `model.hook_names()` lists them all in the order a run reaches them:
 *   hook_embed, hook_pos_embed                  (B, T, C)   token and position embeddings
 *   blocks.l.hook_resid_pre                     (B, T, C)   residual stream entering block l
 *   blocks.l.ln1.hook_scale                     (B, T, 1)   ln_1's sqrt(var + eps) (a replaced one is the divisor used)
 *   blocks.l.ln1.hook_normalized                (B, T, C)   ln_1's output
 *   blocks.l.attn.hook_q, hook_k, hook_v        (B, T, nh, hs) queries, keys, values per head
 *   blocks.l.attn.hook_attn_scores              (B, nh, T, T) q·k/√hs [query, key], the future −∞
 *   blocks.l.attn.hook_pattern                  (B, nh, T, T) attention probabilities (softmax over keys)
 *   blocks.l.attn.hook_z                        (B, T, nh, hs) each head's output before c_proj
 *   blocks.l.hook_attn_out                      (B, T, C)   attention output (after c_proj)
 *   blocks.l.hook_resid_mid                     (B, T, C)   residual stream after attention
 *   blocks.l.ln2.hook_scale, ln2.hook_normalized             as for ln1, on resid_mid
 *   blocks.l.mlp.hook_pre                       (B, T, 4C)  MLP hidden pre-activations
 *   blocks.l.mlp.hook_post                      (B, T, 4C)  after GELU
 *   blocks.l.hook_mlp_out                       (B, T, C)   MLP output
 *   blocks.l.hook_resid_post                    (B, T, C)   block output (the assignment's "embedding")
 *   ln_final.hook_scale, ln_final.hook_normalized            the final layer norm, on the last block's output
 */
import ndarray from 'ndarray';
import type { NdArray } from 'ndarray';
import ops from 'ndarray-ops';

/** An activation as hooks see it: a contiguous Float32Array with its shape. */
export type Activation = NdArray<Float32Array>;

/**
 * A hook receives the activation and its name. It may read it, change it in place, or return a
 * replacement of the same shape.
 */
export type HookFn = (act: Activation, name: string) => Activation | void;

/** Hooks to attach for one run: by exact name, or a predicate over names (like TransformerLens's filters). */
export type HookSpec = Array<[string | ((name: string) => boolean), HookFn]>;

/** The hook-point registry a model carries. Empty (and free) except during a hooked run. */
export class HookPoints {
  private active: HookSpec | null = null;
  /** backward hooks, attached for one backward pass: they see (and may change) gradients */
  private backward: HookSpec | null = null;
  /** while a forward pass records for backward(): the value each hook point passed on */
  private tape: Map<string, Float32Array> | null = null;

  /** The identity function of the forward pass; calls the attached hooks whose name matches. */
  point(name: string, x: Float32Array, shape: number[]): Float32Array {
    if (this.active !== null) x = callHooks(this.active, name, x, shape);
    if (this.tape !== null) this.tape.set(name, x); // a reference: the model never writes into an activation it passed on
    return x;
  }

  /**
   * The same point in the backward pass: `dx` is the gradient of the output with respect to the
   * hook point's value (all of it: every later use has added its part); backward hooks whose name
   * matches may read it or replace it, as forward hooks do activations.
   */
  grad(name: string, dx: Float32Array, shape: number[]): Float32Array {
    return this.backward === null ? dx : callHooks(this.backward, name, dx, shape);
  }

  /** Whether a hook attached now would see the point `name` (the model skips building what nobody asked for). */
  wants(name: string): boolean {
    return this.active !== null && this.active.some(([sel]) => (typeof sel === 'string' ? sel === name : sel(name)));
  }

  /** Whether a backward hook attached now would see the gradient at `name` (it may keep it: the model then gives it an array of its own). */
  watchesGrad(name: string): boolean {
    return this.backward !== null && this.backward.some(([sel]) => (typeof sel === 'string' ? sel === name : sel(name)));
  }

  /** Whether any hook is attached now (a run of some rows only refuses hooks it cannot give (B, T, …) shapes). */
  get attached(): boolean {
    return this.active !== null;
  }

  /** Run `body` with `hooks` attached; they are detached afterwards whatever happens. */
  with<R>(hooks: HookSpec, body: () => R): R {
    if (this.active !== null) throw new Error('hooks are already attached: nested hooked runs are not supported');
    this.active = hooks;
    try {
      return body();
    } finally {
      this.active = null;
    }
  }

  /** Run a backward pass `body` with backward hooks attached, detached afterwards whatever happens. */
  withGrad<R>(hooks: HookSpec, body: () => R): R {
    if (this.backward !== null) throw new Error('backward hooks are already attached: nested backward passes are not supported');
    this.backward = hooks;
    try {
      return body();
    } finally {
      this.backward = null;
    }
  }

  /** Run a forward pass `body` keeping, in `tape`, the value each hook point passes on (what backward() reads). */
  recording<R>(tape: Map<string, Float32Array>, body: () => R): R {
    this.tape = tape;
    try {
      return body();
    } finally {
      this.tape = null;
    }
  }
}

/** Calls the hooks of `list` that match `name` on x, in order; returns x or the replacement they gave. */
function callHooks(list: HookSpec, name: string, x: Float32Array, shape: number[]): Float32Array {
  for (const [sel, fn] of list) {
    if (typeof sel === 'string' ? sel !== name : !sel(name)) continue;
    const act = ndarray(x, shape);
    const res = fn(act, name);
    if (res) {
      if (res.size !== act.size || res.shape.some((d, i) => d !== shape[i]))
        throw new Error(`hook on ${name} returned shape [${res.shape}], expected [${shape}]`);
      x = contiguous(res);
    }
  }
  return x;
}

/** Whether an ndarray is its whole data array in row-major order (no view of part of it, no transposition). */
function isPlain(a: Activation): boolean {
  return a.offset === 0 && a.data.length === a.size && a.stride.every((s, i) => s === a.shape.slice(i + 1).reduce((p, d) => p * d, 1));
}

/** The data of an ndarray as a fresh contiguous row-major Float32Array (a copy only when needed). */
export function contiguous(a: Activation): Float32Array {
  if (isPlain(a)) return a.data;
  const out = ndarray(new Float32Array(a.size), a.shape.slice());
  ops.assign(out, a);
  return out.data;
}

/** A deep copy of an activation (the "detach().clone()" of the assignment). */
export function clone(a: Activation): Activation {
  if (isPlain(a)) return ndarray(a.data.slice(), a.shape.slice()); // one block copy
  const out = ndarray(new Float32Array(a.size), a.shape.slice());
  ops.assign(out, a);
  return out;
}

/** Batch rows [from, to) of an activation, (to − from, …): a view of a plain array, else a copy. */
export function batchRows(a: Activation, from: number, to: number): Activation {
  const B = a.shape[0];
  if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from < to && to <= B)) throw new Error(`batch rows [${from}, ${to}) are outside 0..${B}`);
  const data = contiguous(a), n = data.length / B;
  return ndarray(data.subarray(from * n, to * n), [to - from, ...a.shape.slice(1)]);
}

// ---------------------------------------------------------------------------------------------
// Selecting part of an activation: a position (or a range of positions) and, for per-head
// activations, a head. Which axis is "position" depends on the hook point's layout.

/** Which positions: one index, or a half-open range [from, to). */
export type PositionSel = number | [number, number];
export interface Selection {
  position?: PositionSel;
  head?: number;
}

/** The axes of time (query time for patterns and scores) and head in a hook point's layout. */
export function axesOf(name: string): { pos: number; head: number | null } {
  if (/attn\.hook_(pattern|attn_scores)$/.test(name)) return { pos: 2, head: 1 }; // (B, nh, T, T)
  if (/attn\.hook_[qkvz]$/.test(name)) return { pos: 1, head: 2 };             // (B, T, nh, hs)
  return { pos: 1, head: null };                                               // (B, T, ...)
}

/**
 * A hook point's full name from a short one, like TransformerLens's utils.get_act_name:
 * ('resid_post', 5) → 'blocks.5.hook_resid_post', ('pattern', 5) → 'blocks.5.attn.hook_pattern',
 * ('post', 5) → 'blocks.5.mlp.hook_post', ('scale', 5, 'ln1') → 'blocks.5.ln1.hook_scale',
 * ('scale') → 'ln_final.hook_scale', ('embed') → 'hook_embed'. Full names pass through.
 */
export function act_name(short: string, layer?: number, sub?: 'ln1' | 'ln2' | 'ln_final'): string {
  if (short.includes('.') || short.startsWith('hook_')) return short;
  if (short === 'embed' || short === 'pos_embed') return `hook_${short}`;
  if (short === 'scale' || short === 'normalized') {
    if (layer === undefined || sub === 'ln_final') return `ln_final.hook_${short}`;
    return `blocks.${layer}.${sub ?? 'ln1'}.hook_${short}`;
  }
  if (layer === undefined) throw new Error(`'${short}' needs a layer`);
  const attn = ['q', 'k', 'v', 'z', 'pattern', 'attn_scores', 'attn', 'scores'];
  if (attn.includes(short)) {
    const n = short === 'attn' ? 'pattern' : short === 'scores' ? 'attn_scores' : short;
    return `blocks.${layer}.attn.hook_${n}`;
  }
  if (short === 'pre' || short === 'post' || short === 'mlp_pre' || short === 'mlp_post') return `blocks.${layer}.mlp.hook_${short.replace('mlp_', '')}`;
  if (['resid_pre', 'resid_mid', 'resid_post', 'attn_out', 'mlp_out'].includes(short)) return `blocks.${layer}.hook_${short}`;
  throw new Error(`unknown activation name '${short}'`);
}

/** A view of `a` restricted to the selection (no copy: an ndarray view). */
export function select(a: Activation, name: string, sel: Selection): Activation {
  const { pos, head } = axesOf(name);
  let v = a;
  if (sel.position !== undefined) {
    const [from, to] = typeof sel.position === 'number' ? [sel.position, sel.position + 1] : sel.position;
    if (from < 0 || to > a.shape[pos] || from >= to)
      throw new Error(`position ${JSON.stringify(sel.position)} is outside 0..${a.shape[pos] - 1} for ${name}`);
    v = v.hi(...v.shape.map((d, i) => (i === pos ? to : d))).lo(...v.shape.map((_, i) => (i === pos ? from : 0)));
  }
  if (sel.head !== undefined) {
    if (head === null) throw new Error(`${name} has no head axis; heads can be selected on attn.hook_q/k/v/z, hook_attn_scores and hook_pattern`);
    v = v.hi(...v.shape.map((d, i) => (i === head ? sel.head! + 1 : d))).lo(...v.shape.map((_, i) => (i === head ? sel.head! : 0)));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Ready-made hooks for the common experiments.

/** Replace the selected part of the activation with the same part of `source` (a cached run). */
export function patchHook(source: Activation, sel: Selection = {}): HookFn {
  return (act, name) => {
    if (source.shape.some((d, i) => d !== act.shape[i]))
      throw new Error(`cannot patch ${name}: source shape [${source.shape}] differs from [${act.shape}]`);
    ops.assign(select(act, name, sel), select(source, name, sel));
  };
}

/** Set the selected part of the activation to zero (zero-ablation). */
export function zeroHook(sel: Selection = {}): HookFn {
  return (act, name) => {
    ops.assigns(select(act, name, sel), 0);
  };
}

/** Store a deep copy of the activation in `cache` under its name. */
export function cacheHook(cache: Map<string, Activation>): HookFn {
  return (act, name) => {
    cache.set(name, clone(act));
  };
}
