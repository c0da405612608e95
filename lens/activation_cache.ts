/**
 * ActivationCache: what `run_with_cache(model, ids)` returns. It holds deep copies of the hook points
 * of one run (TransformerLens's names and shapes, batch axis first) and the helpers that every
 * attribution needs, after TransformerLens's ActivationCache:
 *
 *   cache.get('blocks.5.hook_resid_post')      a hook point by its full name
 *   cache.get('resid_post', 5)                 the same, short (see act_name in ./hooks.ts)
 *   cache.accumulated_resid()                  the residual stream entering each block, and at the end
 *   cache.decompose_resid()                    the residual stream as the sum of what each part wrote
 *   cache.stack_head_results()                 each head's own output, z[h] · W_O[h]
 *   cache.apply_ln_to_stack(stack)             the final layer norm's centring and scaling, scale held fixed
 *   cache.logit_attrs(stack, tokens, others)   each component's direct effect on logit(tok) − logit(other)
 *   cache.save('clean.safetensors')            every tensor under its hook name, for numpy or TransformerLens
 *
 * Memory. A full cache keeps, per token and per layer, 19·C + 2 floats (residual stream ×5,
 * two layer-norm outputs, q, k, v, z, the MLP's two 4C-wide points, two scales) and 2·nh·T floats
 * of attention scores and pattern, in float32. For GPT-2 small (C = 768, nh = 12, 12 layers):
 * T = 11 tokens ≈ 8 MB, T = 100 ≈ 80 MB, T = 1024 ≈ 1.9 GB (the patterns grow with T²). Pass a
 * `names` filter to run_with_cache to keep only what an experiment reads.
 *
 * Where we differ from TransformerLens: TL's logit_attrs assumes the final layer norm's gain was
 * folded into W_U (its default `fold_ln`); we keep the checkpoint's weights as they are, so our
 * logit_attrs multiplies by γ_f itself, and adds nothing for β_f (that is the `const` term of
 * ./attribution.ts). The numbers are the same as TL's with fold_ln.
 */
import ndarray from 'ndarray';
import type { NdArray } from 'ndarray';
import { pickPositions, type GPT, type ForwardOptions, type ForwardResult, type Idx } from '../mingpt/model.ts';
import { act_name, batchRows, cacheHook, type Activation } from '../mingpt/hooks.ts';
import { layernormApply } from '../mingpt/kernels/index.ts';
import { logitDirection } from './metrics.ts';
import { writeSafetensors } from '../io/safetensors.ts';

export interface CacheOptions extends ForwardOptions {
  /** which hook points to keep: a list of names or a predicate (default: every one) */
  names?: string[] | ((name: string) => boolean);
}

/**
 * model.forward() that keeps a deep copy of the hook points named by `names` (an exact list or a
 * predicate; every hook point by default) in an ActivationCache (TransformerLens's
 * `model.run_with_cache`). Mind the memory for long texts: see the notes above.
 */
export function run_with_cache(model: GPT, idx: Idx | null, opts: CacheOptions = {}): ForwardResult & { cache: ActivationCache } {
  const { names, hooks: extra, ...rest } = opts;
  const keep = names === undefined ? () => true : typeof names === 'function' ? names : ((set) => (n: string) => set.has(n))(new Set(names));
  const store = new Map<string, Activation>();
  const res = model.forward(idx, { ...rest, hooks: [...(extra ?? []), [keep, cacheHook(store)]] });
  return { ...res, cache: new ActivationCache(model, store, rest.logits_at ?? null) };
}

/** A stack of residual-stream components: (n, B, C) at one position, or (n, B, T, C). */
export interface ResidStack {
  stack: NdArray<Float32Array>;
  labels: string[];
}

export interface StackOptions {
  /** one position only (the usual case for attribution at the last token); all by default */
  pos?: number;
}

export class ActivationCache {
  /**
   * @param logits_at  the run's `logits_at` positions, if any: the final layer norm (and its
   *   cached scale) then covers those positions only, in that order.
   */
  constructor(readonly model: GPT, private readonly store: Map<string, Activation>, readonly logits_at: number[] | null = null) {}

  /** Index along ln_final's position axis of position `pos` (they differ when the run used logits_at). */
  private finalIndex(pos: number): number {
    if (!this.logits_at) return pos;
    const i = this.logits_at.indexOf(pos);
    if (i < 0) throw new Error(`the run computed the final layer norm at positions ${this.logits_at.join(', ')} only (logits_at), not at ${pos}`);
    return i;
  }

  /** The cached activation of a hook point: by full name, or short name + layer (+ 'ln1'/'ln2' for scales). */
  get(name: string, layer?: number, sub?: 'ln1' | 'ln2' | 'ln_final'): Activation {
    const full = act_name(name, layer, sub);
    const a = this.store.get(full);
    if (!a) {
      const hint = this.store.size === 0 ? 'the cache is empty' : `run_with_cache kept ${this.store.size} hook points; was '${full}' left out by the names filter?`;
      throw new Error(`the cache holds no activation named '${full}' (${hint})`);
    }
    return a;
  }

  has(name: string): boolean {
    return this.store.has(name);
  }

  /** The names held, in the order the forward pass reached them. */
  keys(): string[] {
    return [...this.store.keys()];
  }

  /**
   * Batch rows [from, to) of every cached activation, as a cache of its own (views of the same
   * numbers; TransformerLens's apply_slice_to_batch_dim): one batched run, read text by text.
   */
  apply_slice_to_batch_dim(from: number, to: number): ActivationCache {
    return new ActivationCache(this.model, new Map([...this.store].map(([name, a]) => [name, batchRows(a, from, to)])), this.logits_at);
  }

  /** Bytes held by the cached tensors. */
  bytes(): number {
    let n = 0;
    for (const a of this.store.values()) n += a.size * 4;
    return n;
  }

  private get dims() {
    const c = this.model.config;
    return { L: c.n_layer, C: c.n_embd, nh: c.n_head, hs: c.n_embd / c.n_head };
  }

  /** (B, T, C) activation -> (B, C) at `pos`, or the whole thing, as a flat copy. */
  private rows(a: Activation, pos: number | undefined): Float32Array {
    const [B, T, C] = a.shape;
    if (pos === undefined) return a.data.slice();
    if (!(pos >= 0 && pos < T)) throw new Error(`position ${pos} is outside 0..${T - 1}`);
    return pickPositions(a.data, B, T, C, [pos]);
  }

  private stackOf(parts: Float32Array[], labels: string[], pos: number | undefined): ResidStack {
    const a = this.get('hook_embed');
    const [B, T, C] = a.shape;
    const per = pos === undefined ? B * T * C : B * C;
    const data = new Float32Array(parts.length * per);
    parts.forEach((p, i) => data.set(p, i * per));
    const shape = pos === undefined ? [parts.length, B, T, C] : [parts.length, B, C];
    return { stack: ndarray(data, shape), labels };
  }

  /**
   * The residual stream as it accumulates: entering each block 0 … layer−1 (`resid_pre`), and,
   * when `layer` is n_layer (the default), the last block's output. With `incl_mid`, also the
   * stream between attention and MLP of each block. Labels: '0_pre', '0_mid', …, 'final_post'.
   */
  accumulated_resid(layer?: number, opts: StackOptions & { incl_mid?: boolean } = {}): ResidStack {
    const { L } = this.dims;
    const upto = layer ?? L;
    const parts: Float32Array[] = [], labels: string[] = [];
    for (let l = 0; l < Math.min(upto, L); l++) {
      parts.push(this.rows(this.get('resid_pre', l), opts.pos)); labels.push(`${l}_pre`);
      if (opts.incl_mid) { parts.push(this.rows(this.get('resid_mid', l), opts.pos)); labels.push(`${l}_mid`); }
    }
    if (upto >= L) { parts.push(this.rows(this.get('resid_post', L - 1), opts.pos)); labels.push('final_post'); }
    return this.stackOf(parts, labels, opts.pos);
  }

  /**
   * The residual stream entering block `layer` (the final stream by default) split into the
   * parts that wrote it: 'embed', 'pos_embed', and each block's 'l_attn_out' and 'l_mlp_out'
   * (their sum is the stream). `mode` keeps only the attention or MLP outputs.
   */
  decompose_resid(layer?: number, opts: StackOptions & { mode?: 'all' | 'attn' | 'mlp'; incl_embeds?: boolean } = {}): ResidStack {
    const { L } = this.dims;
    const upto = Math.min(layer ?? L, L), mode = opts.mode ?? 'all';
    const parts: Float32Array[] = [], labels: string[] = [];
    if (opts.incl_embeds ?? true) {
      parts.push(this.rows(this.get('hook_embed'), opts.pos)); labels.push('embed');
      parts.push(this.rows(this.get('hook_pos_embed'), opts.pos)); labels.push('pos_embed');
    }
    for (let l = 0; l < upto; l++) {
      if (mode !== 'mlp') { parts.push(this.rows(this.get('attn_out', l), opts.pos)); labels.push(`${l}_attn_out`); }
      if (mode !== 'attn') { parts.push(this.rows(this.get('mlp_out', l), opts.pos)); labels.push(`${l}_mlp_out`); }
    }
    return this.stackOf(parts, labels, opts.pos);
  }

  /**
   * Each head's own contribution to the residual stream, z[l][h] · W_O[l][h] (C), without c_proj's
   * bias, for the blocks before `layer` (all by default). Computed from the cached hook_z on
   * demand, one head at a time, so the (B, T, nh, C) tensor of every head's output is never kept
   * by the forward pass. Labels 'L{l}H{h}'. With `incl_bias`, each layer's b_O follows its heads
   * as 'L{l}_bias'.
   */
  stack_head_results(layer?: number, opts: StackOptions & { incl_bias?: boolean } = {}): ResidStack {
    const { L, C, nh, hs } = this.dims;
    const upto = Math.min(layer ?? L, L);
    const parts: Float32Array[] = [], labels: string[] = [];
    for (let l = 0; l < upto; l++) {
      const z = this.get('z', l); // (B, T, nh, hs)
      const [B, T] = z.shape;
      const proj = this.model.transformer.h[l].attn.c_proj; // weight (C, C): out o, in h·hs + i
      const W = proj.weight;
      const ts = opts.pos === undefined ? [...Array(T).keys()] : [opts.pos];
      for (let h = 0; h < nh; h++) {
        const out = new Float32Array(B * ts.length * C);
        for (let b = 0; b < B; b++) {
          ts.forEach((t, j) => {
            const zo = ((b * T + t) * nh + h) * hs, oo = (b * ts.length + j) * C;
            for (let o = 0; o < C; o++) {
              let s = 0;
              const w = o * C + h * hs;
              for (let i = 0; i < hs; i++) s += z.data[zo + i] * W[w + i];
              out[oo + o] = s;
            }
          });
        }
        parts.push(out);
        labels.push(`L${l}H${h}`);
      }
      if (opts.incl_bias) {
        const per = B * ts.length;
        const out = new Float32Array(per * C);
        for (let r = 0; r < per; r++) out.set(proj.bias!, r * C);
        parts.push(out);
        labels.push(`L${l}_bias`);
      }
    }
    return this.stackOf(parts, labels, opts.pos);
  }

  /**
   * The layer norm's centring and scaling applied to every component of a stack, with the scale
   * of this run held fixed: (r − mean(r)) / s. `layer` picks the layer norm: n_layer (default) is
   * ln_final, l < n_layer is block l's ln1. Linear in r, so the components still add up.
   * (γ and β are not applied, as in TransformerLens.)
   */
  apply_ln_to_stack(rs: ResidStack, layer?: number, opts: StackOptions = {}): ResidStack {
    const { L, C } = this.dims;
    const l = layer ?? L;
    const final = l >= L;
    const scale = final ? this.get('ln_final.hook_scale') : this.get('scale', l, 'ln1'); // (B, T, 1), or (B, P, 1) with logits_at
    const [B, T] = scale.shape;
    const byPos = rs.stack.shape.length === 3; // (n, B, C) at opts.pos
    if (byPos && opts.pos === undefined) throw new Error('apply_ln_to_stack: a stack at one position needs that position (opts.pos)');
    if (!byPos && final && this.logits_at) throw new Error('apply_ln_to_stack: the run used logits_at, so only stacks at one of those positions can be scaled');
    const at = byPos ? (final ? this.finalIndex(opts.pos!) : opts.pos!) : 0;
    const n = rs.stack.shape[0], rowsPer = byPos ? B : B * T;
    const s = byPos ? pickPositions(scale.data, B, T, 1, [at]) : scale.data; // (rowsPer) the scale of each row
    const ones = new Float32Array(C).fill(1), zeros = new Float32Array(C);
    const src = rs.stack.data, out = new Float32Array(src.length), size = rowsPer * C;
    // the layer norm's second step with γ = 1, β = 0: (r − mean r) / s, each component on its own
    for (let k = 0; k < n; k++) layernormApply(out.subarray(k * size, (k + 1) * size), src.subarray(k * size, (k + 1) * size), s, ones, zeros, rowsPer, C);
    return { stack: ndarray(out, rs.stack.shape.slice()), labels: rs.labels };
  }

  /**
   * Direct logit attribution: for each component of a stack taken at position `pos` ((n, B, C)),
   * its contribution to logit(tokens[b]) − logit(incorrect[b]) (or to logit(tokens[b]) alone),
   * through the final layer norm with this run's scale held fixed: ((r − mean r) / s) ⊙ γ_f · d,
   * d = W_U[:, token] − W_U[:, incorrect]. Returns (n, B).
   */
  logit_attrs(rs: ResidStack, pos: number, tokens: number[], incorrect?: number[]): NdArray<Float64Array> {
    const { C } = this.dims;
    const scaled = this.apply_ln_to_stack(rs, undefined, { pos });
    const [n, B] = scaled.stack.shape;
    if (tokens.length !== B || (incorrect && incorrect.length !== B)) throw new Error(`logit_attrs: give one token per batch row (${B})`);
    const g = this.model.transformer.ln_f.weight;
    const out = new Float64Array(n * B);
    for (let b = 0; b < B; b++) {
      const d = logitDirection(this.model, tokens[b], incorrect?.[b]);
      for (let c = 0; c < C; c++) d[c] *= g[c];
      for (let k = 0; k < n; k++) {
        let s = 0;
        const o = (k * B + b) * C;
        for (let c = 0; c < C; c++) s += scaled.stack.data[o + c] * d[c];
        out[k * B + b] = s;
      }
    }
    return ndarray(out, [n, B]);
  }

  /**
   * Writes every cached tensor to a safetensors file under its hook name (F32, the cached shape),
   * which numpy (`safetensors.numpy.load_file`) and PyTorch open directly.
   */
  save(file: string, metadata: Record<string, string> = {}): void {
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [name, a] of this.store) tensors[name] = { dtype: 'F32', shape: a.shape.slice(), data: a.data };
    writeSafetensors(file, tensors, { format: 'pt', source: 'mingpt-ts ActivationCache', ...metadata });
  }
}
