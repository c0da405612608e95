/**
 * Full definition of a GPT Language Model, all of it in this single file: the TypeScript port of
 * minGPT's mingpt/model.py. Read the two side by side; classes, methods and names match.
 *
 * References:
 * 1) the official GPT-2 TensorFlow implementation released by OpenAI:
 *    https://github.com/openai/gpt-2/blob/master/src/model.py
 * 2) huggingface/transformers PyTorch implementation:
 *    https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt2/modeling_gpt2.py
 * 3) Andrej Karpathy's minGPT (MIT): https://github.com/karpathy/minGPT
 *
 * What differs from minGPT, and why:
 * - There is no autograd here. As in llm.c, each layer's backward pass is written by hand right
 *   after its forward (Linear.backward, LayerNorm.backward, ..., Block.backward, GPT.backward), on
 *   backward kernels that sit beside their forward twins. A forward pass asked to (targets, or
 *   grad: true) keeps a reference to the value at every hook point, which is all the backward pass
 *   reads (the attention pattern it builds again); backward() adds the parameters' gradients to
 *   one buffer laid out like the parameters (grads, grad_of, zero_grad), as loss.backward() fills
 *   .grad. Dropout is not implemented: the identity, forward and backward.
 * - Tensors are plain Float32Arrays in row-major order; the loops live in ./kernels/ (js.ts, and
 *   their WebAssembly SIMD twins, chosen by the one switch in ./kernels/index.ts), so the math below
 *   reads top to bottom. Shapes are written next to every tensor.
 * - The forward pass carries hook points (./hooks.ts, TransformerLens's names): one-line identity
 *   calls that cost nothing unless an experiment attaches a hook for one run. The layer norm is
 *   written in its two steps (scale, then normalise) so that both can be seen.
 * - forward() can start at a block from a given residual stream, stop before a block, and compute
 *   the logits at chosen positions only; and a run can compute some rows only, attending to keys
 *   and values kept from earlier positions (TransformerLens's past_kv_cache: `KVCache`, `Rows`).
 *   generate() can use that to run only the newest token at each step. The experiments use these
 *   instead of copies of the model.
 * - The instruments (run_with_hooks, the key/value cache, the assignment's save/patch flags) come
 *   after generate(), in their own section; ../lens/ builds on them.
 */
import ndarray from 'ndarray';
import type { NdArray } from 'ndarray';
import { CfgNode, rng as globalRng, type RNG } from './utils.ts';
import {
  allocParams, matmulForward, layernormScale, layernormApply, geluForward, residualForward, softmaxRows,
  splitQKV, attentionScoresForward, attentionValuesForward, attentionForward, crossEntropyForward,
  matmulBackward, layernormApplyBackward, layernormScaleBackward, geluBackward, residualBackward, softmaxRowsBackward,
  splitQKVBackward, attentionScoresBackward, attentionValuesBackward, crossEntropyBackward,
} from './kernels/index.ts';
import { HookPoints, contiguous, type HookSpec } from './hooks.ts';
import { AdamW, type Parameter } from './optim.ts';

// -----------------------------------------------------------------------------------------------
// Building blocks. Each layer holds Float32Array views into the model's single parameter buffer.

/** Hands out consecutive slices of one big buffer, so all parameters live in one place (llm.c). */
class ParamAllocator {
  offset = 0;
  readonly named: Array<[string, Float32Array, number[]]> = [];
  constructor(readonly buffer: Float32Array) {}
  take(name: string, shape: number[]): Float32Array {
    const n = shape.reduce((a, b) => a * b, 1);
    const view = this.buffer.subarray(this.offset, this.offset + n);
    this.offset += n;
    this.named.push([name, view, shape]);
    return view;
  }
}

/** nn.Linear: y = x Wᵀ + b, with W stored (out_features, in_features). */
export class Linear {
  readonly weight: Float32Array; // (out_features, in_features)
  readonly bias: Float32Array | null; // (out_features)
  constructor(p: ParamAllocator, name: string, readonly in_features: number, readonly out_features: number, bias = true) {
    this.weight = p.take(`${name}.weight`, [out_features, in_features]);
    this.bias = bias ? p.take(`${name}.bias`, [out_features]) : null;
  }
  /** x (BT, in) -> (BT, out) */
  forward(x: Float32Array, BT: number): Float32Array {
    const y = new Float32Array(BT * this.out_features);
    matmulForward(y, x, this.weight, this.bias, BT, this.in_features, this.out_features);
    return y;
  }
  /** dy (BT, out) -> dx (BT, in) added to `dx`, given the forward's input x; the weight's and bias's gradients added to `grads` */
  backward(dx: Float32Array, dy: Float32Array, x: Float32Array, BT: number, grads: Grads): void {
    const dw = grads && grads(this.weight), db = grads && this.bias && grads(this.bias);
    matmulBackward(dx, dw, db, dy, x, this.weight, BT, this.in_features, this.out_features);
  }
}

/**
 * Where a backward pass adds the parameters' gradients: the gradient buffer's view of the same
 * place as a parameter's view of model.params (null: parameter gradients not wanted).
 */
type Grads = ((param: Float32Array) => Float32Array) | null;

/** What backward() reads from the forward pass: the value every hook point passed on, by name. */
type Tape = Map<string, Float32Array>;

/** A recorded run: its hook points' values, and what backward() needs besides. */
interface Recorded {
  acts: Tape; ids: number[][] | null; targets: number[][] | null;
  B: number; T: number; P: number; positions: number[] | null; start: number;
  resid: Float32Array; logits: Float32Array; // (B, T, C) the stream entering ln_f; (B, P, vocab_size)
}

/** Batch rows [from, to) of a recorded run, as views (every recorded value is batch-major: (B, …)). */
function batchRowsOf(run: Recorded, [from, to]: [number, number]): Recorded {
  const { B } = run;
  if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from < to && to <= B)) throw new Error(`backward's batch [${from}, ${to}) is outside the run's ${B} rows`);
  const rows = (x: Float32Array) => x.subarray((x.length / B) * from, (x.length / B) * to);
  const acts: Tape = new Map([...run.acts].map(([name, x]) => [name, rows(x)]));
  return {
    ...run, acts, B: to - from, ids: run.ids && run.ids.slice(from, to), targets: run.targets && run.targets.slice(from, to),
    resid: rows(run.resid), logits: rows(run.logits),
  };
}

/** tape.get that fails loudly: a missing value means the forward pass did not record it. */
function saved(tape: Tape, name: string): Float32Array {
  const x = tape.get(name);
  if (!x) throw new Error(`internal: the forward pass recorded no value at ${name}`);
  return x;
}

/**
 * The arrays of a backward pass that live inside one block's backward only (the MLP's 4C-wide
 * gradients, the attention's (B, nh, T, T) ones, ...), made once per pass and handed on from block
 * to block, zeroed, as llm.c keeps them in buffers made once. A pass then allocates them once, not
 * once per block: that much less for the garbage collector (AtP on GPT-2 small's shape: its time
 * in the collector went from ~24 to ~11 ms of ~500). A gradient that a backward hook sees is a new
 * array every time, as the hook may keep it.
 */
class BlockBuffers {
  private readonly kept = new Map<string, Float32Array>();
  constructor(private readonly hooks: HookPoints) {}
  /** n zeros for the array `kind` (the same in every block), the gradient at hook point `name` (null: none) */
  zeros(kind: string, name: string | null, n: number): Float32Array {
    if (name !== null && this.hooks.watchesGrad(name)) return new Float32Array(n);
    const a = this.kept.get(kind);
    if (a && a.length === n) return a.fill(0);
    const fresh = new Float32Array(n);
    this.kept.set(kind, fresh);
    return fresh;
  }
}

/**
 * nn.LayerNorm over the last axis, in two steps so that experiments can see both:
 * scale = sqrt(var(x) + eps) (hook `…hook_scale`), then (x − mean) / scale · weight + bias
 * (hook `…hook_normalized`). TransformerLens names the two points the same way.
 */
export class LayerNorm {
  readonly weight: Float32Array; // (C)
  readonly bias: Float32Array; // (C)
  constructor(p: ParamAllocator, name: string, readonly C: number, readonly eps: number,
    private hooks: HookPoints, private names: { scale: string; normalized: string }) {
    this.weight = p.take(`${name}.weight`, [C]);
    this.bias = p.take(`${name}.bias`, [C]);
  }
  /** x (B, T, C) -> (B, T, C) */
  forward(x: Float32Array, B: number, T: number): Float32Array {
    const C = this.C;
    let scale: Float32Array = new Float32Array(B * T); // (B, T, 1)
    layernormScale(scale, x, B * T, C, this.eps);
    scale = this.hooks.point(this.names.scale, scale, [B, T, 1]);
    const y = new Float32Array(B * T * C);
    layernormApply(y, x, scale, this.weight, this.bias, B * T, C);
    return this.hooks.point(this.names.normalized, y, [B, T, C]);
  }
  /** dy (B, T, C) -> dx (B, T, C) added to `dx`, given the forward's input x: the two steps backwards */
  backward(dx: Float32Array, dy: Float32Array, x: Float32Array, tape: Tape, B: number, T: number, grads: Grads): void {
    const C = this.C;
    dy = this.hooks.grad(this.names.normalized, dy, [B, T, C]);
    const scale = saved(tape, this.names.scale); // (B, T, 1): the divisor the forward pass used
    let dscale: Float32Array = new Float32Array(B * T); // (B, T, 1)
    layernormApplyBackward(dx, dscale, grads && grads(this.weight), grads && grads(this.bias), dy, x, scale, this.weight, B * T, C);
    dscale = this.hooks.grad(this.names.scale, dscale, [B, T, 1]);
    layernormScaleBackward(dx, dscale, x, scale, B * T, C);
  }
}

/**
 * Implementation of the GELU activation function currently in Google BERT repo (identical to OpenAI GPT).
 * Reference: Gaussian Error Linear Units (GELU) paper: https://arxiv.org/abs/1606.08415
 */
export class NewGELU {
  forward(x: Float32Array): Float32Array {
    const y = new Float32Array(x.length);
    geluForward(y, x, x.length);
    return y;
  }
  /** dy -> dx added to `dx`, given the forward's input x */
  backward(dx: Float32Array, dy: Float32Array, x: Float32Array): void {
    geluBackward(dx, x, dy, x.length);
  }
}

/** Names of one block's hook points (TransformerLens's), built once so the forward pass does no string work. */
export function blockHookNames(l: number) {
  const b = `blocks.${l}`;
  return {
    resid_pre: `${b}.hook_resid_pre`,
    ln1: { scale: `${b}.ln1.hook_scale`, normalized: `${b}.ln1.hook_normalized` },
    q: `${b}.attn.hook_q`, k: `${b}.attn.hook_k`, v: `${b}.attn.hook_v`,
    attn_scores: `${b}.attn.hook_attn_scores`, pattern: `${b}.attn.hook_pattern`, z: `${b}.attn.hook_z`,
    attn_out: `${b}.hook_attn_out`, resid_mid: `${b}.hook_resid_mid`,
    ln2: { scale: `${b}.ln2.hook_scale`, normalized: `${b}.ln2.hook_normalized` },
    mlp_pre: `${b}.mlp.hook_pre`, mlp_post: `${b}.mlp.hook_post`, mlp_out: `${b}.hook_mlp_out`,
    resid_post: `${b}.hook_resid_post`,
  };
}
type BlockHookNames = ReturnType<typeof blockHookNames>;

/**
 * A vanilla multi-head masked self-attention layer with a projection at the end.
 * It is possible to use torch.nn.MultiheadAttention here but minGPT spells it out, and so do we.
 */
export class CausalSelfAttention {
  readonly c_attn: Linear; // key, query, value projections for all heads, but in a batch
  readonly c_proj: Linear; // output projection
  readonly n_head: number;
  readonly n_embd: number;
  constructor(p: ParamAllocator, name: string, config: GPTConfig, readonly layer: number, private hooks: HookPoints, private names: BlockHookNames) {
    if (config.n_embd % config.n_head !== 0) throw new Error(`n_embd ${config.n_embd} is not divisible by n_head ${config.n_head}`);
    this.c_attn = new Linear(p, `${name}.c_attn`, config.n_embd, 3 * config.n_embd);
    this.c_proj = new Linear(p, `${name}.c_proj`, config.n_embd, config.n_embd);
    // (minGPT registers a causal "bias" mask buffer here; our kernel applies the mask directly)
    this.n_head = config.n_head;
    this.n_embd = config.n_embd;
  }

  /**
   * x (B, T, C) -> (B, T, C). In an ordinary run `rows` is every position of every sequence.
   * With `past` (see KVCache, after generate()), x holds only the rows `rows` names, whose queries
   * also see the keys and values kept of earlier positions; and only the rows `out` come out.
   */
  forward(x: Float32Array, rows: Rows, past: KVCache | null = null, out: Rows = rows): Float32Array {
    const C = this.n_embd, nh = this.n_head, hs = C / nh, h = this.hooks, n = this.names;
    const [B, T] = rows.dims, N = rows.count;
    if (!past && (out !== rows || rows.from.some((f) => f !== 0))) throw new Error('only a run continuing a KVCache can start after position 0, or keep fewer rows');
    // calculate query, key, values for all heads in batch and split them
    const qkv = this.c_attn.forward(x, N); // (B, T, 3C)
    let q: Float32Array = new Float32Array(N * C), k: Float32Array = new Float32Array(N * C), v: Float32Array = new Float32Array(N * C);
    splitQKV(q, k, v, qkv, N, C); // each (B, T, nh, hs): head h owns channels h·hs … (h+1)·hs − 1
    q = h.point(n.q, q, [B, T, nh, hs]);
    k = h.point(n.k, k, [B, T, nh, hs]);
    v = h.point(n.v, v, [B, T, nh, hs]);
    // causal self-attention; Self-attend: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T)
    let z = past ? this.attendPast(q, k, v, rows, past, out) : this.attend(q, k, v, B, T, T);
    z = h.point(n.z, z, [...out.dims, nh, hs]); // (B, T, nh, hs), the same memory as (B, T, C)
    // output projection
    return this.c_proj.forward(z, out.count); // (B, T, C)
  }

  /**
   * z (B, Tq, C): softmax(q kᵀ / √hs, masked) v for queries q (B, Tq, C) at the last Tq of the Tk
   * positions whose keys and values k, v (B, Tk, C) are given (Tq = Tk = T in an ordinary run).
   */
  private attend(q: Float32Array, k: Float32Array, v: Float32Array, B: number, Tq: number, Tk: number): Float32Array {
    const C = this.n_embd, nh = this.n_head, h = this.hooks, n = this.names;
    const z = new Float32Array(B * Tq * C); // (B, nh, Tq, Tk) x (B, nh, Tk, hs) -> laid out (B, Tq, nh, hs)
    if (h.wants(n.attn_scores) || h.wants(n.pattern)) {
      // a hook wants to see (or change) the (B, nh, Tq, Tk) matrices: build them, step by step
      let att: Float32Array = new Float32Array(B * nh * Tq * Tk);
      attentionScoresForward(att, q, k, B, Tq, Tk, C, nh); // q·kᵀ/√hs, the future masked to −∞
      att = h.point(n.attn_scores, att, [B, nh, Tq, Tk]);
      const pattern = att.slice(); // the scores stay as they were for whoever kept them
      softmaxRows(pattern, B * nh * Tq, Tk); // (B, nh, Tq, Tk), each row a distribution over the keys
      att = h.point(n.pattern, pattern, [B, nh, Tq, Tk]);
      // (minGPT applies attn_dropout here; at inference it is the identity)
      attentionValuesForward(z, att, v, B, Tq, Tk, C, nh);
    } else {
      // the same numbers, one query row at a time: the (Tq, Tk) matrices never exist
      attentionForward(z, q, k, v, B, Tq, Tk, C, nh);
    }
    return z;
  }

  /**
   * Attention for a run of some rows only (see KVCache): each sequence's keys and values are the
   * cached ones of the positions before its rows, then its own; the queries are those of the rows
   * `out`. The rows' own keys and values are added to the cache unless it is frozen.
   */
  private attendPast(q: Float32Array, k: Float32Array, v: Float32Array, rows: Rows, past: KVCache, out: Rows): Float32Array {
    const C = this.n_embd, T = rows.T;
    if (!past.frozen) past.append(this.layer, rows, k, v);
    if (out !== rows) q = takeRows(q, C, rows.indicesOf(out)); // (out.count, C)
    const K = new Float32Array(rows.B * T * C), V = new Float32Array(rows.B * T * C); // (B, T, C)
    for (let b = 0; b < rows.B; b++) past.keysValues(K, V, this.layer, rows, b, k, v);
    // every sequence computes the same positions: one batch, as in an ordinary run
    if (rows.uniform && out.uniform) return this.attend(q, K, V, out.B, out.dims[1], T);
    // else sequence by sequence (Block.forward made sure that no hook is watching)
    const z = new Float32Array(out.count * C);
    for (let b = 0; b < out.B; b++) {
      const r = out.start[b] * C, nq = T - out.from[b];
      attentionForward(z.subarray(r, r + nq * C), q.subarray(r, r + nq * C), K.subarray(b * T * C, (b + 1) * T * C),
        V.subarray(b * T * C, (b + 1) * T * C), 1, nq, T, C, this.n_head);
    }
    return z;
  }

  /** dy (B, T, C) -> dx (B, T, C) added to `dx`, given the forward's input x: the steps above, last to first */
  backward(dx: Float32Array, dy: Float32Array, x: Float32Array, tape: Tape, B: number, T: number, grads: Grads, buf: BlockBuffers): void {
    const C = this.n_embd, nh = this.n_head, hs = C / nh, h = this.hooks, n = this.names, N = B * T * C;
    // output projection
    let dz = buf.zeros('dz', n.z, N); // (B, T, nh, hs)
    this.c_proj.backward(dz, dy, saved(tape, n.z), B * T, grads);
    dz = h.grad(n.z, dz, [B, T, nh, hs]);
    const q = saved(tape, n.q), k = saved(tape, n.k), v = saved(tape, n.v);
    // the pattern: kept when a hook made the forward pass build it, else built again here (the
    // fused kernel never keeps it; the same kernels give the same numbers, bit for bit)
    let att = tape.get(n.pattern);
    if (!att) {
      att = buf.zeros('att', null, B * nh * T * T);
      attentionScoresForward(att, q, k, B, T, T, C, nh);
      softmaxRows(att, B * nh * T, T);
    }
    // the weighted sum of the values
    let datt = buf.zeros('datt', n.pattern, B * nh * T * T); // (B, nh, T, T)
    let dv = buf.zeros('dv', n.v, N);
    attentionValuesBackward(datt, dv, dz, att, v, B, T, T, C, nh);
    datt = h.grad(n.pattern, datt, [B, nh, T, T]);
    // the softmax, then the scores q·k/√hs
    let dscores = buf.zeros('dscores', n.attn_scores, B * nh * T * T);
    softmaxRowsBackward(dscores, datt, att, B * nh * T, T);
    dscores = h.grad(n.attn_scores, dscores, [B, nh, T, T]);
    let dq = buf.zeros('dq', n.q, N), dk = buf.zeros('dk', n.k, N);
    attentionScoresBackward(dq, dk, dscores, q, k, B, T, T, C, nh);
    dv = h.grad(n.v, dv, [B, T, nh, hs]);
    dk = h.grad(n.k, dk, [B, T, nh, hs]);
    dq = h.grad(n.q, dq, [B, T, nh, hs]);
    // query, key, value projections
    const dqkv = buf.zeros('dqkv', null, 3 * N); // (B, T, 3C)
    splitQKVBackward(dqkv, dq, dk, dv, B * T, C);
    this.c_attn.backward(dx, dqkv, x, B * T, grads);
  }
}

/** an unassuming Transformer block */
export class Block {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: { c_fc: Linear; c_proj: Linear; act: NewGELU };
  readonly names: BlockHookNames;
  constructor(p: ParamAllocator, name: string, readonly layer: number, config: GPTConfig, private hooks: HookPoints) {
    const C = config.n_embd, eps = config.layer_norm_epsilon;
    this.names = blockHookNames(layer);
    this.ln_1 = new LayerNorm(p, `${name}.ln_1`, C, eps, hooks, this.names.ln1);
    this.attn = new CausalSelfAttention(p, `${name}.attn`, config, layer, hooks, this.names);
    this.ln_2 = new LayerNorm(p, `${name}.ln_2`, C, eps, hooks, this.names.ln2);
    this.mlp = {
      c_fc: new Linear(p, `${name}.mlp.c_fc`, C, 4 * C),
      c_proj: new Linear(p, `${name}.mlp.c_proj`, 4 * C, C),
      act: new NewGELU(),
    };
  }

  /** MLP forward: x (B, T, C) -> (B, T, 4C) -> GELU -> (B, T, C) */
  mlpf(x: Float32Array, B: number, T: number): Float32Array {
    // BEGIN TASK M.3: the MLP: expand, GELU, project back
    const m = this.mlp, h = this.hooks, n = this.names, shape = [B, T, m.c_fc.out_features];
    const pre = h.point(n.mlp_pre, m.c_fc.forward(x, B * T), shape); // (B, T, 4C)
    const post = h.point(n.mlp_post, m.act.forward(pre), shape); // (B, T, 4C)
    return m.c_proj.forward(post, B * T); // (B, T, C)
    // END TASK M.3
  }

  /** The MLP's backward: dy (B, T, C) -> dx (B, T, C) added to `dx`, given the forward's input x */
  mlpBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, tape: Tape, B: number, T: number, grads: Grads, buf: BlockBuffers): void {
    const m = this.mlp, h = this.hooks, n = this.names, shape = [B, T, m.c_fc.out_features];
    let dpost = buf.zeros('dpost', n.mlp_post, B * T * m.c_fc.out_features); // (B, T, 4C)
    m.c_proj.backward(dpost, dy, saved(tape, n.mlp_post), B * T, grads);
    dpost = h.grad(n.mlp_post, dpost, shape);
    let dpre = buf.zeros('dpre', n.mlp_pre, dpost.length); // (B, T, 4C)
    m.act.backward(dpre, dpost, saved(tape, n.mlp_pre));
    dpre = h.grad(n.mlp_pre, dpre, shape);
    m.c_fc.backward(dx, dpre, x, B * T, grads);
  }

  /**
   * x (B, T, C) -> (B, T, C):  x = x + attn(ln_1(x));  x = x + mlpf(ln_2(x)). `rows` says which
   * rows x holds (every position of every sequence, in an ordinary run); with `past`, the rows
   * attend to cached keys and values too, and only the rows `out` go on (CausalSelfAttention).
   */
  forward(x: Float32Array, rows: Rows, past: KVCache | null = null, out: Rows = rows): Float32Array {
    const h = this.hooks, n = this.names, C = this.ln_1.C;
    if (!(rows.uniform && out.uniform) && h.attached)
      throw new Error('hooks see (B, T, …) tensors: they cannot watch a run whose sequences compute different numbers of positions');
    const [B, T] = rows.dims, [Bo, To] = out.dims;
    x = h.point(n.resid_pre, x, [B, T, C]);
    const attn_out = h.point(n.attn_out, this.attn.forward(this.ln_1.forward(x, B, T), rows, past, out), [Bo, To, C]);
    if (out !== rows) x = takeRows(x, C, rows.indicesOf(out)); // only the rows `out` go on
    const mid = new Float32Array(out.count * C);
    residualForward(mid, x, attn_out, mid.length);
    x = h.point(n.resid_mid, mid, [Bo, To, C]);
    const mlp_out = h.point(n.mlp_out, this.mlpf(this.ln_2.forward(x, Bo, To), Bo, To), [Bo, To, C]);
    const post = new Float32Array(out.count * C);
    residualForward(post, x, mlp_out, post.length);
    return h.point(n.resid_post, post, [Bo, To, C]);
  }

  /**
   * The backward pass of forward(), last line first: dy (B, T, C), the gradient at the block's
   * output, -> the gradient at its input. Each residual connection hands the gradient both to the
   * stream and to the branch; the branch's share comes back through its layer norm and is added.
   */
  backward(dy: Float32Array, tape: Tape, B: number, T: number, grads: Grads, buf: BlockBuffers): Float32Array {
    const h = this.hooks, n = this.names, shape = [B, T, this.ln_1.C], N = dy.length;
    dy = h.grad(n.resid_post, dy, shape);
    // x = x + mlpf(ln_2(x))
    let dmid = buf.zeros('dmid', n.resid_mid, N), dmlp_out = buf.zeros('dmlp_out', n.mlp_out, N);
    residualBackward(dmid, dmlp_out, dy, N);
    dmlp_out = h.grad(n.mlp_out, dmlp_out, shape);
    const dln2 = buf.zeros('dln2', n.ln2.normalized, N);
    this.mlpBackward(dln2, dmlp_out, saved(tape, n.ln2.normalized), tape, B, T, grads, buf);
    this.ln_2.backward(dmid, dln2, saved(tape, n.resid_mid), tape, B, T, grads);
    dmid = h.grad(n.resid_mid, dmid, shape);
    // x = x + attn(ln_1(x))
    let dx: Float32Array = new Float32Array(N), dattn_out = buf.zeros('dattn_out', n.attn_out, N);
    residualBackward(dx, dattn_out, dmid, N);
    dattn_out = h.grad(n.attn_out, dattn_out, shape);
    const dln1 = buf.zeros('dln1', n.ln1.normalized, N);
    this.attn.backward(dln1, dattn_out, saved(tape, n.ln1.normalized), tape, B, T, grads, buf);
    this.ln_1.backward(dx, dln1, saved(tape, n.resid_pre), tape, B, T, grads);
    return h.grad(n.resid_pre, dx, shape);
  }
}

// -----------------------------------------------------------------------------------------------

/** Token ids: one sequence (T) or a batch of equal-length sequences (B, T). */
export type Idx = number[] | number[][];

/** The model's hyper-parameters once resolved (minGPT keeps them in a CfgNode; so do we, typed). */
export interface GPTConfigFields {
  model_type: string | null;
  n_layer: number;
  n_head: number;
  n_embd: number;
  vocab_size: number;
  block_size: number;
  embd_pdrop: number;
  resid_pdrop: number;
  attn_pdrop: number;
  layer_norm_epsilon: number;
}
export type GPTConfig = CfgNode & GPTConfigFields;

/** get_default_config()'s node: the architecture may still be missing (null) until filled in. */
export type GPTConfigDraft = CfgNode & { [K in keyof GPTConfigFields]: GPTConfigFields[K] | null };

/** The assignment's patch flag: after block `layer`, replace position `position` by the saved clean value. */
export interface PatchFlag {
  layer: number;
  position: number;
  /** the vector to write (C); defaults to `model.activations[layer][position]` from a `save` run */
  value?: Float32Array;
}

export interface ForwardOptions {
  /** next-token targets (B, T) for the loss; -1 entries are ignored (as minGPT's ignore_index=-1) */
  targets?: Idx;
  /** keep a deep copy of every block's output at every position in `model.activations` (batch row 0) */
  save?: boolean;
  /** replace one block output at one position before the next block sees it (all batch rows) */
  patch?: PatchFlag;
  /** hooks for this run only (see ./hooks.ts); `run_with_hooks` is the friendlier door */
  hooks?: HookSpec;
  /** start at this block, with `residual` as its input (`blocks.{l}.hook_resid_pre`); the embeddings are skipped */
  start_at_layer?: number;
  /** (B, T, C): the residual stream entering block `start_at_layer` */
  residual?: NdArray<Float32Array>;
  /** stop before this block: run blocks [start, stop) and return the residual stream, no logits */
  stop_at_layer?: number;
  /** compute the logits at these positions only (all by default): logits become (B, P, vocab_size); [] for none */
  logits_at?: number[];
  /** keep what backward() needs (a reference to every hook point's value); by default when targets are given; whole runs only (no past_kv_cache) */
  grad?: boolean;
  /**
   * keys and values of earlier positions (TransformerLens's past_kv_cache): the T tokens (or the
   * residual rows) given are the positions after the ones it holds, and attend to them as well.
   * Unless frozen, the cache then holds these positions too. Positions in logits_at, the
   * residual and the hooks count this run's rows only.
   */
  past_kv_cache?: KVCache;
}

export interface ForwardResult {
  logits: NdArray<Float32Array>; // (B, T, vocab_size), or (B, P, vocab_size) with logits_at; (B, 0, V) with stop_at_layer
  loss: number | null; // mean cross-entropy over the targets, when targets were given
  residual: NdArray<Float32Array>; // (B, T, C): the stream after the last block that ran (the input of ln_f); logits_at [] gives it without logits
}

/** A run produced NaN or ±∞: names the first hook point where a non-finite number appeared. */
export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

/** GPT Language Model */
export class GPT {
  readonly config: GPTConfig;
  readonly block_size: number;
  /** every parameter, one contiguous buffer (shared memory, so workers can read it) */
  readonly params: Float32Array;
  /** [minGPT name, view into params, shape] for each parameter tensor */
  readonly named_parameters: Array<[string, Float32Array, number[]]>;
  readonly transformer: { wte: Float32Array; wpe: Float32Array; h: Block[]; ln_f: LayerNorm };
  readonly lm_head: { weight: Float32Array }; // (vocab_size, C); tied to wte unless a checkpoint brings its own
  readonly hooks = new HookPoints();
  /** every parameter's gradient, laid out like params (see grad_of); made on the first backward pass that wants them */
  grads: Float32Array | null = null;
  /** what the last forward pass recorded for backward(), if it recorded */
  private tape: Recorded | null = null;

  /** With `save`: activations[layer][position] is the block's output (C) at that position. */
  activations: Float32Array[][] = [];
  /** The logits (vocab_size) of the last computed position of the latest forward (batch row 0). */
  lastLogits: Float32Array = new Float32Array(0);

  static get_default_config(): GPTConfigDraft {
    return new CfgNode({
      // either model_type or (n_layer, n_head, n_embd) must be given in the config
      model_type: 'gpt',
      n_layer: null,
      n_head: null,
      n_embd: null,
      // these options must be filled in externally
      vocab_size: null,
      block_size: null,
      // dropout hyperparameters (kept for minGPT compatibility; inference only here, so unused)
      embd_pdrop: 0.1,
      resid_pdrop: 0.1,
      attn_pdrop: 0.1,
      // torch.nn.LayerNorm's default, and GPT-2's layer_norm_epsilon
      layer_norm_epsilon: 1e-5,
    }) as GPTConfigDraft;
  }

  /** The architectures minGPT knows by name. */
  static readonly MODEL_TYPES: Record<string, { n_layer: number; n_head: number; n_embd: number }> = {
    // names follow the huggingface naming conventions
    // GPT-1
    'openai-gpt': { n_layer: 12, n_head: 12, n_embd: 768 }, // 117M params
    // GPT-2 configs
    gpt2: { n_layer: 12, n_head: 12, n_embd: 768 }, // 124M params
    'gpt2-medium': { n_layer: 24, n_head: 16, n_embd: 1024 }, // 350M params
    'gpt2-large': { n_layer: 36, n_head: 20, n_embd: 1280 }, // 774M params
    'gpt2-xl': { n_layer: 48, n_head: 25, n_embd: 1600 }, // 1558M params
    // Gophers
    'gopher-44m': { n_layer: 8, n_head: 16, n_embd: 512 },
    // (there are a number more...)
    // I made these tiny models up
    'gpt-mini': { n_layer: 6, n_head: 6, n_embd: 192 },
    'gpt-micro': { n_layer: 4, n_head: 4, n_embd: 128 },
    'gpt-nano': { n_layer: 3, n_head: 3, n_embd: 48 },
  };

  /**
   * @param init   fill the weights with minGPT's random initialisation (skip when loading a checkpoint)
   * @param tie_lm_head  share lm_head.weight with wte.weight (GPT-2's own tying; saves vocab × C floats)
   */
  constructor(draft: GPTConfigDraft, opts: { init?: boolean; tie_lm_head?: boolean; rng?: RNG } = {}) {
    if (draft.vocab_size == null || draft.block_size == null) throw new Error('config.vocab_size and config.block_size must be set');
    const type_given = draft.model_type != null && draft.model_type in GPT.MODEL_TYPES;
    const params_given = draft.n_layer != null && draft.n_head != null && draft.n_embd != null;
    if (type_given === params_given)
      throw new Error(`give exactly one of a known model_type or (n_layer, n_head, n_embd); model_type=${draft.model_type}`);
    if (type_given) draft.merge_from_dict(GPT.MODEL_TYPES[draft.model_type!]); // translate from model_type to detailed configuration
    const config = draft as GPTConfig; // every field is set now
    this.config = config;
    this.block_size = config.block_size;

    const { n_layer: L, n_embd: C, vocab_size: V, block_size: T } = config;
    const tie = opts.tie_lm_head ?? true;
    const total = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C + (tie ? 0 : V * C);
    const p = new ParamAllocator(allocParams(total));
    this.transformer = {
      wte: p.take('transformer.wte.weight', [V, C]),
      wpe: p.take('transformer.wpe.weight', [T, C]),
      // (drop: dropout on the embeddings, identity at inference)
      h: Array.from({ length: L }, (_, l) => new Block(p, `transformer.h.${l}`, l, config, this.hooks)),
      ln_f: new LayerNorm(p, 'transformer.ln_f', C, config.layer_norm_epsilon, this.hooks,
        { scale: 'ln_final.hook_scale', normalized: 'ln_final.hook_normalized' }),
    };
    this.lm_head = { weight: tie ? this.transformer.wte : p.take('lm_head.weight', [V, C]) };
    if (p.offset !== total) throw new Error(`internal: parameter layout used ${p.offset} of ${total} floats`);
    this.params = p.buffer;
    this.named_parameters = p.named;

    if (opts.init ?? true) this._init_weights(opts.rng ?? globalRng);
  }

  /**
   * minGPT's initialisation: N(0, 0.02) for weights and embeddings, zeros for biases, ones for
   * layer-norm gains, and a special scaled init to the residual projections, per the GPT-2 paper.
   */
  private _init_weights(rng: RNG): void {
    const n_layer = this.config.n_layer;
    for (const [name, w] of this.named_parameters) {
      if (/ln_\w+\.weight$/.test(name)) w.fill(1);
      else if (name.endsWith('.bias')) w.fill(0);
      else {
        const std = name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * n_layer) : 0.02;
        for (let i = 0; i < w.length; i++) w[i] = std * rng.randn();
      }
    }
  }

  /** Number of parameters; like minGPT, lm_head is not counted (it is tied to wte in GPT-2). */
  num_params(): number {
    return this.named_parameters.filter(([n]) => n !== 'lm_head.weight').reduce((a, [, w]) => a + w.length, 0);
  }

  /** Where the weights came from (set by the loader, ../io/load.ts): the file and its config.json as parsed. */
  source: { file: string; raw_config: Record<string, unknown> } | null = null;

  /**
   * GPT-2 weights by name ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'): taken from weights/<name>/
   * or the Hugging Face cache, or downloaded from the Hub into weights/<name>/ on first use.
   * minGPT imports the transformers library inside this method, so that the model itself does not
   * depend on it; we import our loader (../io/) the same way, lazily. Any other GPT-2-layout
   * checkpoint loads with `loadGPT(path)` from ../io/load.ts.
   */
  static async from_pretrained(model_type: string): Promise<GPT> {
    const { loadPretrained } = await import('../io/load.ts');
    return loadPretrained(model_type);
  }

  /**
   * The AdamW optimizer (./optim.ts) over two groups of parameters: those that weight decay
   * pulls towards zero, and those it leaves alone. Weights of Linear layers decay (lm_head's too,
   * a Linear of its own when untied); biases, layer-norm weights and the embeddings do not (a
   * tied lm_head is wte, and does not). As in minGPT, a parameter that fits neither is an error.
   */
  configure_optimizers(train_config: { learning_rate: number; betas: readonly [number, number]; weight_decay: number }): AdamW {
    const { h, ln_f, wte, wpe } = this.transformer;
    const linear = new Set(h.flatMap((b) => [b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj].map((m) => m.weight)));
    const whitelist = (p: Float32Array) => linear.has(p) || (p === this.lm_head.weight && p !== wte);
    const blacklist = (p: Float32Array) => p === wte || p === wpe || p === ln_f.weight || h.some((b) => p === b.ln_1.weight || p === b.ln_2.weight);
    const decay: Parameter[] = [], no_decay: Parameter[] = [];
    for (const [name, p] of this.named_parameters) {
      const param = { name, data: p, grad: this.grad_of(p) };
      if (name.endsWith('bias')) no_decay.push(param); // all biases will not be decayed
      else if (whitelist(p)) decay.push(param); // weights of whitelist modules will be weight decayed
      else if (blacklist(p)) no_decay.push(param); // weights of blacklist modules will NOT be weight decayed
      else throw new Error(`parameter ${name} was not separated into either decay/no_decay set`);
    }
    // create the optimizer object
    return new AdamW([
      { params: decay, weight_decay: train_config.weight_decay },
      { params: no_decay, weight_decay: 0.0 },
    ], { lr: train_config.learning_rate, betas: train_config.betas });
  }

  /**
   * idx (B, T) token ids -> logits (B, T, vocab_size), and the loss when targets are given.
   * The options are the instruments of the experiments (hooks, the assignment's save/patch flags,
   * running part of the model); without them this is exactly minGPT's forward.
   */
  forward(idx: Idx | null, opts: ForwardOptions = {}): ForwardResult {
    const { n_embd: C, vocab_size: V, n_layer: L } = this.config;
    const start = opts.start_at_layer ?? 0, stop = opts.stop_at_layer ?? L;
    if (!(Number.isInteger(start) && start >= 0 && start <= L)) throw new Error(`start_at_layer ${start} is outside 0..${L}`);
    if (!(Number.isInteger(stop) && stop >= start && stop <= L)) throw new Error(`stop_at_layer ${stop} is outside ${start}..${L}`);
    let ids: number[][] | null = null, B: number, T: number;
    if (opts.residual) {
      if (opts.start_at_layer === undefined) throw new Error('a residual stream to start from needs start_at_layer');
      [B, T] = opts.residual.shape;
      if (opts.residual.shape.length !== 3 || opts.residual.shape[2] !== C)
        throw new Error(`the residual stream must be (B, T, ${C}), got [${opts.residual.shape}]`);
    } else {
      if (start !== 0) throw new Error(`start_at_layer ${start} needs the residual stream entering that block (opts.residual)`);
      if (idx === null) throw new Error('no token ids to run');
      ids = toRows(idx);
      B = ids.length;
      T = ids[0].length;
    }
    // with a key/value cache, these T tokens come after the t0 positions it holds
    const past = opts.past_kv_cache ?? null, t0 = past ? past.length : 0;
    if (past) past.check(this.config, B, start, opts);
    // backward() reads the value of every hook point of a whole run (B, T, …), so only whole runs record
    const record = opts.grad ?? opts.targets !== undefined;
    if (record && past) throw new Error('a run continuing a key/value cache cannot record for backward(): run every position (no past_kv_cache), or pass grad: false');
    if (t0 + T > this.block_size) throw new Error(`Cannot forward sequence of length ${t0 + T}, block size is only ${this.block_size}`);
    const positions = opts.logits_at ?? null;
    if (positions) for (const t of positions) if (!(Number.isInteger(t) && t >= 0 && t < T)) throw new Error(`logits_at: position ${t} is outside 0..${T - 1}`);
    const P = stop < L ? 0 : positions ? positions.length : T;

    const hooks: HookSpec = [...(opts.hooks ?? []), ...this.flagHooks(opts, T)];
    const rows = Rows.suffix(new Array<number>(B).fill(t0), t0 + T); // every sequence, positions t0 … t0 + T − 1
    const run = (): [Float32Array, Float32Array] => {
      const { wte, wpe, h, ln_f } = this.transformer;
      let x: Float32Array; // (B, T, C)
      if (ids) {
        // forward the GPT model itself
        let tok_emb: Float32Array = new Float32Array(B * T * C); // token embeddings of shape (B, T, C)
        let pos_emb: Float32Array = new Float32Array(B * T * C); // position embeddings of shape (B, T, C), the same row for every b
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < T; t++) {
            const id = ids[b][t];
            if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`token id ${id} at [${b}, ${t}] is outside the vocabulary 0..${V - 1}`);
            tok_emb.set(wte.subarray(id * C, (id + 1) * C), (b * T + t) * C);
            pos_emb.set(wpe.subarray((t0 + t) * C, (t0 + t + 1) * C), (b * T + t) * C);
          }
        }
        tok_emb = this.hooks.point('hook_embed', tok_emb, [B, T, C]);
        pos_emb = this.hooks.point('hook_pos_embed', pos_emb, [B, T, C]);
        x = new Float32Array(B * T * C);
        residualForward(x, tok_emb, pos_emb, x.length);
        // (minGPT: self.transformer.drop(tok_emb + pos_emb); dropout is the identity at inference)
      } else {
        x = Float32Array.from(contiguous(opts.residual!)); // a copy: the caller's array stays as it was
      }
      for (let l = start; l < stop; l++) x = h[l].forward(x, rows, past); // (B, T, C)
      if (P === 0) return [x, new Float32Array(0)];
      // the final layer norm and the vocabulary projection, at the positions asked for
      const last = positions ? pickPositions(x, B, T, C, positions) : x; // (B, P, C)
      const xf = ln_f.forward(last, B, P); // (B, P, C)
      const logits: Float32Array = new Float32Array(B * P * V); // (B, P, vocab_size)
      matmulForward(logits, xf, this.lm_head.weight, null, B * P, C, V);
      return [x, logits];
    };
    // backward() reads the value of every hook point of this run; a new run drops what the last one kept
    this.tape = null;
    const acts: Tape | null = record ? new Map() : null;
    const go = (): [Float32Array, Float32Array] => (hooks.length ? this.hooks.with(hooks, run) : run());
    const [resid, logits] = acts ? this.hooks.recording(acts, go) : go();
    if (P > 0 && !allFinite(logits)) {
      // name the first place the run went wrong: run it again, looking at every hook point
      const where = this.firstNonFinite(hooks, run);
      throw new NonFiniteError(`the model's logits contain NaN or ±∞; the first non-finite value appears at ${where}` +
        ' (are the weights damaged, or did a hook write something non-finite?)');
    }
    if (past && !past.frozen) past.length += T; // the cache now holds these positions too

    // BEGIN TASK 1.4: keep the last position's logits
    if (P > 0) this.lastLogits = logits.slice((P - 1) * V, P * V); // batch row 0, last computed position
    // END TASK 1.4
    // if we are given some desired targets also calculate the loss
    let loss: number | null = null;
    if (opts.targets !== undefined) {
      if (P !== T) throw new Error('a loss needs the logits at every position (no logits_at, no stop_at_layer)');
      loss = crossEntropyForward(logits, toRows(opts.targets), B, T, V);
    }
    if (acts) {
      const targets = opts.targets !== undefined ? toRows(opts.targets) : null;
      this.tape = { acts, ids, targets, B, T, P, positions, start, resid, logits };
    }
    return { logits: ndarray(logits, [B, P, V]), loss, residual: ndarray(resid, [B, T, C]) };
  }

  /**
   * The backward pass (minGPT's `loss.backward()`) through the run of the forward() call just
   * before, which must have recorded it (targets given, or `grad: true`). It starts from `dlogits`
   * (B, P, vocab_size), the gradient of whatever is differentiated with respect to that run's
   * logits, or by default from the run's loss, and goes back through every layer to the embeddings:
   *   - each parameter's gradient is ADDED to model.grads (zero_grad() clears them), as PyTorch
   *     accumulates .grad; `params: false` skips them (attribution needs the activations'
   *     gradients only, and the weights' cost as much again);
   *   - each hook point's gradient passes a hook point of the backward pass, where `hooks`, attached
   *     for this pass only, may read or replace it (../lens/gradients.ts collects them);
   *   - `stop_at_layer` (forward's, backwards; with `params: false`) ends the pass at the stream
   *     entering that block: blocks L−1 … stop_at_layer run, and the last gradient given is
   *     blocks.{stop_at_layer − 1}.hook_resid_post's (what is before it, nobody reads).
   *   - `batch` [from, to) runs the pass through those batch rows only: `dlogits` is theirs,
   *     (to − from, P, vocab_size), and the other rows' gradient is zero. Rows of a batch never
   *     meet, so a pass of a few rows is the pass of the whole batch with zeros elsewhere, at the
   *     cost of those rows alone (attribution patching runs its clean and corrupted texts forward
   *     as one batch, one pass over the weights, and back through the corrupted rows).
   * A value that a forward hook changed is differentiated as if the layer had computed it: the
   * layers after it see the changed value, and the gradient still flows on to what came before.
   * The recorded run is dropped afterwards, as PyTorch frees its graph.
   */
  backward(dlogits?: Float32Array, opts: { params?: boolean; hooks?: HookSpec; stop_at_layer?: number; batch?: [number, number] } = {}): void {
    if (opts.hooks?.length) {
      const hooks = opts.hooks;
      this.hooks.withGrad(hooks, () => this.backward(dlogits, { ...opts, hooks: undefined }));
      return;
    }
    if (!this.tape) throw new Error('backward() needs the forward pass just before it to record what it needs: give that pass targets (the loss) or { grad: true }');
    const tape = opts.batch ? batchRowsOf(this.tape, opts.batch) : this.tape;
    this.tape = null;
    const { n_embd: C, vocab_size: V, n_layer: L } = this.config;
    const { acts, B, T, P, positions } = tape;
    if (P === 0) throw new Error('backward() needs a forward pass that computed logits (no stop_at_layer)');
    if (dlogits === undefined) {
      if (!tape.targets) throw new Error('backward() with no gradient of the logits differentiates the loss: the forward pass needs targets');
      dlogits = new Float32Array(B * P * V);
      crossEntropyBackward(dlogits, tape.logits, tape.targets, B, T, V);
    } else if (dlogits.length !== B * P * V) throw new Error(`dlogits must be (${B}, ${P}, ${V}) like the logits${opts.batch ? ' of those batch rows' : ''}, got ${dlogits.length} numbers`);
    const grads: Grads = opts.params ?? true ? (p) => this.grad_of(p) : null;
    const stop = Math.max(tape.start, opts.stop_at_layer ?? 0);
    if (!(Number.isInteger(stop) && stop <= L)) throw new Error(`backward's stop_at_layer ${opts.stop_at_layer} is outside 0..${L}`);
    if (grads && stop > tape.start) throw new Error('backward: the parameters\' gradients need the whole pass (stop_at_layer needs params: false)');
    const { wte, wpe, h, ln_f } = this.transformer;
    // the vocabulary projection and the final layer norm, at the positions that have logits
    const dxf = new Float32Array(B * P * C); // (B, P, C)
    matmulBackward(dxf, grads && grads(this.lm_head.weight), null, dlogits, saved(acts, 'ln_final.hook_normalized'), this.lm_head.weight, B * P, C, V);
    const last = positions ? pickPositions(tape.resid, B, T, C, positions) : tape.resid; // (B, P, C)
    const dlast = new Float32Array(B * P * C);
    ln_f.backward(dlast, dxf, last, acts, B, P, grads);
    let dx = positions ? scatterPositions(dlast, B, T, C, positions) : dlast; // (B, T, C)
    const buf = new BlockBuffers(this.hooks); // one block's temporary arrays, for every block in turn
    for (let l = L - 1; l >= stop; l--) dx = h[l].backward(dx, acts, B, T, grads, buf);
    if (stop > tape.start) {
      this.hooks.grad(h[stop - 1].names.resid_post, dx, [B, T, C]); // the stream entering block `stop`
      return;
    }
    if (!tape.ids) return; // the run started from a given residual stream: nothing before it
    // x = tok_emb + pos_emb: each gets the whole gradient
    const dpos = this.hooks.grad('hook_pos_embed', dx.slice(), [B, T, C]);
    const dtok = this.hooks.grad('hook_embed', dx.slice(), [B, T, C]);
    if (!grads) return;
    // the embedding lookups: each row of wte and wpe collects the gradients of the places it was copied to
    const dwte = grads(wte), dwpe = grads(wpe);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const id = tape.ids[b][t], o = (b * T + t) * C;
        for (let c = 0; c < C; c++) {
          dwte[id * C + c] += dtok[o + c];
          dwpe[t * C + c] += dpos[o + c];
        }
      }
    }
  }

  /**
   * The gradient of a parameter (a view from named_parameters, or a layer's weight): the same
   * place in model.grads as the parameter in model.params. model.grads is made, zeros, on first use.
   */
  grad_of(param: Float32Array): Float32Array {
    if (param.buffer !== this.params.buffer) throw new Error('grad_of: not one of this model\'s parameters');
    this.grads ??= allocParams(this.params.length);
    const o = (param.byteOffset - this.params.byteOffset) / 4;
    return this.grads.subarray(o, o + param.length);
  }

  /** Set every parameter's gradient to zero (PyTorch's zero_grad), before a backward pass adds to them. */
  zero_grad(): void {
    if (this.grads) this.grads.fill(0);
    else this.grads = allocParams(this.params.length);
  }

  /** Re-runs `run` with a check after every hook point; returns the name of the first non-finite one. */
  private firstNonFinite(hooks: HookSpec, run: () => unknown): string {
    let first: string | null = null;
    const check: HookSpec = [[() => true, (act, name) => {
      if (first !== null) return;
      const d = act.data;
      // masked attention scores are −∞ by design: only NaN and +∞ count there
      const scores = name.endsWith('hook_attn_scores');
      for (let i = 0; i < d.length; i++) {
        const v = d[i];
        if (v !== v || v === Infinity || (!scores && v === -Infinity)) { first = name; return; }
      }
    }]];
    this.hooks.with([...hooks, ...check], run);
    return first ?? 'the final layer norm or the unembedding (every hook point was finite)';
  }

  /**
   * Take a conditioning sequence of indices idx (B, T) and complete the sequence max_new_tokens
   * times, feeding the predictions back into the model each time. Returns the (B, T + max_new_tokens)
   * ids. With do_sample false this is greedy decoding. With use_kv_cache, each step runs only the
   * positions the cache does not hold yet (the newest token), not the whole context: the same
   * tokens, for a fraction of the work.
   */
  generate(idx: Idx, max_new_tokens: number, temperature = 1.0, do_sample = false, top_k: number | null = null, rng: RNG = globalRng, use_kv_cache = false): number[][] {
    const seqs = toRows(idx).map((r) => r.slice());
    const V = this.config.vocab_size;
    const past = use_kv_cache ? new KVCache(this.config, seqs.length) : null;
    for (let n = 0; n < max_new_tokens; n++) {
      // if the sequence context is growing too long we must crop it at block_size
      const idx_cond = seqs.map((s) => (s.length <= this.block_size ? s : s.slice(-this.block_size)));
      // forward the model to get the logits for the index in the sequence (only the last one is needed)
      const T = idx_cond[0].length;
      const { logits } = past ? this.forward_cached(idx_cond, past) : this.forward(idx_cond, { logits_at: [T - 1] });
      for (let b = 0; b < seqs.length; b++) {
        // pluck the logits at the final step and scale by desired temperature
        const l = logits.data.slice(b * V, (b + 1) * V);
        for (let i = 0; i < V; i++) l[i] /= temperature;
        // optionally crop the logits to only the top k options
        if (top_k !== null) {
          const kth = Float32Array.from(l).sort().reverse()[Math.min(top_k, V) - 1];
          for (let i = 0; i < V; i++) if (l[i] < kth) l[i] = -Infinity;
        }
        // apply softmax to convert logits to (normalized) probabilities
        softmaxRows(l, 1, V);
        // either sample from the distribution or take the most likely element
        seqs[b].push(do_sample ? rng.multinomial(l) : argmax(l));
      }
    }
    return seqs;
  }

  // ---------------------------------------------------------------------------------------------
  // Instruments: everything above is minGPT; what follows is for the experiments.

  /**
   * generate()'s step with a key/value cache: the logits (B, 1, V) after the context idx_cond
   * (B, T). When the cache holds every position but the newest, only the newest runs; otherwise
   * (the first step, or a context cropped at block_size, whose positions all moved) it starts over.
   */
  private forward_cached(idx_cond: number[][], past: KVCache): ForwardResult {
    const T = idx_cond[0].length;
    const from = past.length === T - 1 ? T - 1 : 0;
    if (from === 0) past.length = 0;
    return this.forward(idx_cond.map((s) => s.slice(from)), { past_kv_cache: past, logits_at: [T - 1 - from] });
  }

  /** The assignment's `save` and `patch` flags, expressed as hooks on the block outputs. */
  private flagHooks(opts: ForwardOptions, T: number): HookSpec {
    const hooks: HookSpec = [];
    const L = this.config.n_layer;
    if (opts.save) {
      // BEGIN TASK 1.2: save every block's output at every position
      this.activations = Array.from({ length: L }, () => []);
      for (let l = 0; l < L; l++) {
        hooks.push([this.transformer.h[l].names.resid_post, (act) => {
          const C = act.shape[2];
          // a deep copy (.slice), not a view: later runs must not overwrite what we keep
          for (let t = 0; t < T; t++) this.activations[l][t] = act.data.slice(t * C, (t + 1) * C);
        }]);
      }
      // END TASK 1.2
    }
    if (opts.patch) {
      // BEGIN TASK 1.3: patch one block output at one position
      const { layer, position } = opts.patch;
      if (!(layer >= 0 && layer < L)) throw new Error(`patch layer ${layer} is outside 0..${L - 1}`);
      if (!(position >= 0 && position < T)) throw new Error(`patch position ${position} is outside 0..${T - 1}`);
      const value = opts.patch.value ?? this.activations[layer]?.[position];
      if (!value) throw new Error(`nothing saved for layer ${layer}, position ${position}: run forward with { save: true } first`);
      hooks.push([this.transformer.h[layer].names.resid_post, (act) => {
        const [B, , C] = act.shape;
        for (let b = 0; b < B; b++) act.data.set(value, (b * T + position) * C);
      }]);
      // END TASK 1.3
    }
    return hooks;
  }

  /** forward() with hooks attached for this one run (TransformerLens's run_with_hooks). */
  run_with_hooks(idx: Idx | null, hooks: HookSpec, opts: Omit<ForwardOptions, 'hooks'> = {}): ForwardResult {
    return this.forward(idx, { ...opts, hooks });
  }

  /** Every hook point's name, in the order a forward pass reaches them. */
  hook_names(): string[] {
    const names = ['hook_embed', 'hook_pos_embed'];
    for (const block of this.transformer.h) {
      const n = block.names;
      names.push(n.resid_pre, n.ln1.scale, n.ln1.normalized, n.q, n.k, n.v, n.attn_scores, n.pattern, n.z,
        n.attn_out, n.resid_mid, n.ln2.scale, n.ln2.normalized, n.mlp_pre, n.mlp_post, n.mlp_out, n.resid_post);
    }
    names.push('ln_final.hook_scale', 'ln_final.hook_normalized');
    return names;
  }
}

// -----------------------------------------------------------------------------------------------
// Running some rows only. A position's activations depend only on the positions up to it (the
// mask), and reach later ones only through their keys and values. So a run whose early positions
// are known from another run (the prompt generate() already ran; the corrupted run an activation
// patch starts from) need only compute the positions after them, if their keys and values are kept.

/**
 * The rows a block runs, stacked sequence after sequence: sequence b holds positions from[b] …
 * T − 1. In an ordinary run every from[b] is 0; in a run continuing a KVCache, the positions
 * before from[b] are the cache's.
 */
export class Rows {
  readonly B: number;
  /** index, in the stack, of each sequence's first row */
  readonly start: number[];
  /** rows in all */
  readonly count: number;
  /** every sequence holds the same positions: the stack is a (B, T − from, C) tensor */
  readonly uniform: boolean;
  /** the (B, T) hooks see: (B, T − from[0]) when uniform, else one sequence of every row */
  readonly dims: [number, number];

  private constructor(readonly from: readonly number[], readonly T: number) {
    this.B = from.length;
    this.start = [];
    let n = 0;
    for (const f of from) {
      if (!(Number.isInteger(f) && f >= 0 && f < T)) throw new Error(`a run's rows start at position ${f}, outside 0..${T - 1}`);
      this.start.push(n);
      n += T - f;
    }
    this.count = n;
    this.uniform = from.every((f) => f === from[0]);
    this.dims = this.uniform ? [this.B, T - from[0]] : [1, n];
  }

  /** Sequence b at positions from[b] … T − 1. */
  static suffix(from: readonly number[], T: number): Rows {
    return new Rows(from.slice(), T);
  }

  /** The last `n` positions of every sequence (those it has, if fewer). */
  last(n: number): Rows {
    return new Rows(this.from.map((f) => Math.max(f, this.T - n)), this.T);
  }

  /** Where, in this stack, the rows of `sub` (the same sequences, fewer positions) sit. */
  indicesOf(sub: Rows): number[] {
    const out: number[] = [];
    for (let b = 0; b < this.B; b++) for (let t = sub.from[b]; t < this.T; t++) out.push(this.start[b] + t - this.from[b]);
    return out;
  }
}

/**
 * Keys and values of earlier positions, per block (TransformerLens's past_kv_cache). A run given
 * one (ForwardOptions.past_kv_cache) computes only its own positions, which follow the cached
 * ones, and its queries attend to both. Unless frozen, the run then adds its own keys and values,
 * so that the next run continues after it: generate() runs one new token per step that way.
 * A frozen cache is a fixed prefix that many runs start from (a cache of B sequences serves a
 * batch of any multiple of B: sequence b continues cached sequence b mod B).
 */
export class KVCache {
  /** k[l], v[l]: (B, capacity, C) for block l: positions 0 … length − 1 of each sequence are set */
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  private capacity = 0;
  /** positions held */
  length = 0;
  frozen = false;
  readonly B: number;
  readonly C: number;

  constructor(config: { n_layer: number; n_embd: number }, B: number) {
    this.B = B;
    this.C = config.n_embd;
    this.k = Array.from({ length: config.n_layer }, () => new Float32Array(0));
    this.v = Array.from({ length: config.n_layer }, () => new Float32Array(0));
  }

  /** No run adds to it any more; `length` positions stay what every later run sees. */
  freeze(): this {
    this.frozen = true;
    return this;
  }

  /** A frozen view of the first n positions (no copy): what runs that recompute positions n … see. */
  prefix(n: number): KVCache {
    if (!(Number.isInteger(n) && n >= 0 && n <= this.length)) throw new Error(`the cache holds ${this.length} positions, not ${n}`);
    const view = Object.create(KVCache.prototype) as KVCache;
    Object.assign(view, this, { length: n, frozen: true });
    return view;
  }

  /** Checks a run of B sequences starting at block `start` can continue this cache (GPT.forward). */
  check(config: GPTConfig, B: number, start: number, opts: { save?: boolean; patch?: PatchFlag }): void {
    if (this.C !== config.n_embd || this.k.length !== config.n_layer) throw new Error('the key/value cache was made for a model of another shape');
    if (this.frozen ? B % this.B !== 0 : B !== this.B) throw new Error(`a key/value cache of ${this.B} sequences cannot serve a batch of ${B}`);
    if (!this.frozen && start > 0) throw new Error('a key/value cache that grows must see every block (start_at_layer 0), or be frozen');
    if (opts.save || opts.patch) throw new Error('the save and patch flags work on whole runs, not with a key/value cache');
  }

  /** Block l's keys and values k, v (rows.count, C) of the rows run, into positions from[b] … of sequence b. */
  append(l: number, rows: Rows, k: Float32Array, v: Float32Array): void {
    const C = this.C;
    if (rows.T > this.capacity) this.grow(rows.T);
    const cap = this.capacity;
    for (let b = 0; b < rows.B; b++) {
      const src = rows.start[b] * C, n = (rows.T - rows.from[b]) * C, dst = (b * cap + rows.from[b]) * C;
      this.k[l].set(k.subarray(src, src + n), dst);
      this.v[l].set(v.subarray(src, src + n), dst);
    }
  }

  /** Room for `T` positions per sequence in every block (at least doubling, so appends stay cheap). */
  private grow(T: number): void {
    const C = this.C, old = this.capacity, cap = Math.max(T, 2 * old);
    for (const kv of [this.k, this.v]) {
      for (let l = 0; l < kv.length; l++) {
        const a = new Float32Array(this.B * cap * C);
        for (let b = 0; b < this.B; b++) a.set(kv[l].subarray(b * old * C, (b * old + this.length) * C), b * cap * C);
        kv[l] = a;
      }
    }
    this.capacity = cap;
  }

  /**
   * The keys K and values V (T, C each, at sequence b's place in the (B, T, C) outputs) that
   * sequence b of `rows` attends to in block l: cached positions 0 … from[b] − 1, then its own rows
   * (from k, v (rows.count, C)).
   */
  keysValues(K: Float32Array, V: Float32Array, l: number, rows: Rows, b: number, k: Float32Array, v: Float32Array): void {
    const C = this.C, f = rows.from[b], T = rows.T;
    if (f > this.length) throw new Error(`rows from position ${f} need ${f} cached positions; the cache holds ${this.length}`);
    const src = (b % this.B) * this.capacity * C, own = rows.start[b] * C, dst = b * T * C;
    K.set(this.k[l].subarray(src, src + f * C), dst);
    V.set(this.v[l].subarray(src, src + f * C), dst);
    K.set(k.subarray(own, own + (T - f) * C), dst + f * C);
    V.set(v.subarray(own, own + (T - f) * C), dst + f * C);
  }
}

// -----------------------------------------------------------------------------------------------

function toRows(idx: Idx): number[][] {
  if (idx.length === 0) throw new Error('cannot run the model on an empty sequence');
  const rows = Array.isArray(idx[0]) ? (idx as number[][]) : [idx as number[]];
  const T = rows[0].length;
  if (T === 0) throw new Error('cannot run the model on an empty sequence');
  if (rows.some((r) => r.length !== T)) throw new Error('all sequences in a batch must have the same length');
  return rows;
}

/** out (N, C): the rows rows[0], rows[1], … of x (·, C). The one place that picks rows out of an activation. */
export function takeRows(x: Float32Array, C: number, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * C);
  for (let i = 0; i < rows.length; i++) out.set(x.subarray(rows[i] * C, (rows[i] + 1) * C), i * C);
  return out;
}

/** x (B, T, C) -> (B, P, C): the rows at the given positions of every sequence. */
export function pickPositions(x: Float32Array, B: number, T: number, C: number, positions: readonly number[]): Float32Array {
  const P = positions.length, rows = new Array<number>(B * P);
  for (let b = 0; b < B; b++) for (let i = 0; i < P; i++) rows[b * P + i] = b * T + positions[i];
  return takeRows(x, C, rows);
}

/** The backward of pickPositions: (B, P, C) -> (B, T, C), each row back at its position, zeros elsewhere. */
function scatterPositions(d: Float32Array, B: number, T: number, C: number, positions: number[]): Float32Array {
  const P = positions.length, out = new Float32Array(B * T * C);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < P; i++) {
      const o = (b * T + positions[i]) * C;
      for (let c = 0; c < C; c++) out[o + c] += d[(b * P + i) * C + c];
    }
  return out;
}

function allFinite(a: Float32Array): boolean {
  // x · 0 is 0 for a finite x and NaN for ±∞ or NaN, so the sums stay 0 exactly when all are
  // finite; four sums side by side run four times as fast as one (the logits: 2.2 MB at 11 tokens)
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, i = 0;
  for (; i + 3 < a.length; i += 4) {
    s0 += a[i] * 0; s1 += a[i + 1] * 0; s2 += a[i + 2] * 0; s3 += a[i + 3] * 0;
  }
  for (; i < a.length; i++) s0 += a[i] * 0;
  return s0 + s1 + s2 + s3 === 0;
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}
