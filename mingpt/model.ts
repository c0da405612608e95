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
 * - Tensors are plain Float32Arrays in row-major order; the loops live in ./kernels.ts (and
 *   their WebAssembly SIMD twins, chosen by the one switch in ./backend.ts), so the math below
 *   reads top to bottom. Shapes are written next to every tensor.
 * - The forward pass carries hook points (./hooks.ts, TransformerLens's names): one-line identity
 *   calls that cost nothing unless an experiment attaches a hook for one run. The layer norm is
 *   written in its two steps (scale, then normalise) so that both can be seen.
 * - forward() can start at a block from a given residual stream, stop before a block, and compute
 *   the logits at chosen positions only: the experiments use these instead of copies of the model.
 * - The instruments (run_with_hooks, run_with_cache, the assignment's save/patch flags) come after
 *   generate(), in their own section; ./activation_cache.ts, ./patching.ts and ./attribution.ts
 *   build on them.
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

/** tape.get that fails loudly: a missing value means the forward pass did not record it. */
function saved(tape: Tape, name: string): Float32Array {
  const x = tape.get(name);
  if (!x) throw new Error(`internal: the forward pass recorded no value at ${name}`);
  return x;
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
  constructor(p: ParamAllocator, name: string, config: GPTConfig, private hooks: HookPoints, private names: BlockHookNames) {
    if (config.n_embd % config.n_head !== 0) throw new Error(`n_embd ${config.n_embd} is not divisible by n_head ${config.n_head}`);
    this.c_attn = new Linear(p, `${name}.c_attn`, config.n_embd, 3 * config.n_embd);
    this.c_proj = new Linear(p, `${name}.c_proj`, config.n_embd, config.n_embd);
    // (minGPT registers a causal "bias" mask buffer here; our kernel applies the mask directly)
    this.n_head = config.n_head;
    this.n_embd = config.n_embd;
  }

  /** x (B, T, C) -> (B, T, C) */
  forward(x: Float32Array, B: number, T: number): Float32Array {
    const C = this.n_embd, nh = this.n_head, hs = C / nh, h = this.hooks, n = this.names;
    // calculate query, key, values for all heads in batch and split them
    const qkv = this.c_attn.forward(x, B * T); // (B, T, 3C)
    let q: Float32Array = new Float32Array(B * T * C), k: Float32Array = new Float32Array(B * T * C), v: Float32Array = new Float32Array(B * T * C);
    splitQKV(q, k, v, qkv, B * T, C); // each (B, T, nh, hs): head h owns channels h·hs … (h+1)·hs − 1
    q = h.point(n.q, q, [B, T, nh, hs]);
    k = h.point(n.k, k, [B, T, nh, hs]);
    v = h.point(n.v, v, [B, T, nh, hs]);
    // causal self-attention; Self-attend: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T)
    let z: Float32Array = new Float32Array(B * T * C); // (B, nh, T, T) x (B, nh, T, hs) -> laid out (B, T, nh, hs)
    if (h.wants(n.attn_scores) || h.wants(n.pattern)) {
      // a hook wants to see (or change) the (B, nh, T, T) matrices: build them, step by step
      let att: Float32Array = new Float32Array(B * nh * T * T);
      attentionScoresForward(att, q, k, B, T, T, C, nh); // q·kᵀ/√hs, the future masked to −∞
      att = h.point(n.attn_scores, att, [B, nh, T, T]);
      const pattern = att.slice(); // the scores stay as they were for whoever kept them
      softmaxRows(pattern, B * nh * T, T); // (B, nh, T, T), each row a distribution over the keys
      att = h.point(n.pattern, pattern, [B, nh, T, T]);
      // (minGPT applies attn_dropout here; at inference it is the identity)
      attentionValuesForward(z, att, v, B, T, T, C, nh);
    } else {
      // the same numbers, one query row at a time: the (T, T) matrices never exist
      attentionForward(z, q, k, v, B, T, T, C, nh);
    }
    z = h.point(n.z, z, [B, T, nh, hs]);
    // output projection
    return this.c_proj.forward(z, B * T); // (B, T, C)
  }

  /** dy (B, T, C) -> dx (B, T, C) added to `dx`, given the forward's input x: the steps above, last to first */
  backward(dx: Float32Array, dy: Float32Array, x: Float32Array, tape: Tape, B: number, T: number, grads: Grads): void {
    const C = this.n_embd, nh = this.n_head, hs = C / nh, h = this.hooks, n = this.names, N = B * T * C;
    // output projection
    let dz: Float32Array = new Float32Array(N); // (B, T, nh, hs)
    this.c_proj.backward(dz, dy, saved(tape, n.z), B * T, grads);
    dz = h.grad(n.z, dz, [B, T, nh, hs]);
    const q = saved(tape, n.q), k = saved(tape, n.k), v = saved(tape, n.v);
    // the pattern: kept when a hook made the forward pass build it, else built again here (the
    // fused kernel never keeps it; the same kernels give the same numbers, bit for bit)
    let att = tape.get(n.pattern);
    if (!att) {
      att = new Float32Array(B * nh * T * T);
      attentionScoresForward(att, q, k, B, T, T, C, nh);
      softmaxRows(att, B * nh * T, T);
    }
    // the weighted sum of the values
    let datt: Float32Array = new Float32Array(B * nh * T * T); // (B, nh, T, T)
    let dv: Float32Array = new Float32Array(N);
    attentionValuesBackward(datt, dv, dz, att, v, B, T, T, C, nh);
    datt = h.grad(n.pattern, datt, [B, nh, T, T]);
    // the softmax, then the scores q·k/√hs
    let dscores: Float32Array = new Float32Array(B * nh * T * T);
    softmaxRowsBackward(dscores, datt, att, B * nh * T, T);
    dscores = h.grad(n.attn_scores, dscores, [B, nh, T, T]);
    let dq: Float32Array = new Float32Array(N), dk: Float32Array = new Float32Array(N);
    attentionScoresBackward(dq, dk, dscores, q, k, B, T, T, C, nh);
    dv = h.grad(n.v, dv, [B, T, nh, hs]);
    dk = h.grad(n.k, dk, [B, T, nh, hs]);
    dq = h.grad(n.q, dq, [B, T, nh, hs]);
    // query, key, value projections
    const dqkv = new Float32Array(3 * N); // (B, T, 3C)
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
    this.attn = new CausalSelfAttention(p, `${name}.attn`, config, hooks, this.names);
    this.ln_2 = new LayerNorm(p, `${name}.ln_2`, C, eps, hooks, this.names.ln2);
    this.mlp = {
      c_fc: new Linear(p, `${name}.mlp.c_fc`, C, 4 * C),
      c_proj: new Linear(p, `${name}.mlp.c_proj`, 4 * C, C),
      act: new NewGELU(),
    };
  }

  /** MLP forward: x (B, T, C) -> (B, T, 4C) -> GELU -> (B, T, C) */
  mlpf(x: Float32Array, B: number, T: number): Float32Array {
    const m = this.mlp, h = this.hooks, n = this.names, shape = [B, T, m.c_fc.out_features];
    const pre = h.point(n.mlp_pre, m.c_fc.forward(x, B * T), shape); // (B, T, 4C)
    const post = h.point(n.mlp_post, m.act.forward(pre), shape); // (B, T, 4C)
    return m.c_proj.forward(post, B * T); // (B, T, C)
  }

  /** The MLP's backward: dy (B, T, C) -> dx (B, T, C) added to `dx`, given the forward's input x */
  mlpBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, tape: Tape, B: number, T: number, grads: Grads): void {
    const m = this.mlp, h = this.hooks, n = this.names, shape = [B, T, m.c_fc.out_features];
    let dpost: Float32Array = new Float32Array(B * T * m.c_fc.out_features); // (B, T, 4C)
    m.c_proj.backward(dpost, dy, saved(tape, n.mlp_post), B * T, grads);
    dpost = h.grad(n.mlp_post, dpost, shape);
    let dpre: Float32Array = new Float32Array(dpost.length); // (B, T, 4C)
    m.act.backward(dpre, dpost, saved(tape, n.mlp_pre));
    dpre = h.grad(n.mlp_pre, dpre, shape);
    m.c_fc.backward(dx, dpre, x, B * T, grads);
  }

  /** x (B, T, C) -> (B, T, C):  x = x + attn(ln_1(x));  x = x + mlpf(ln_2(x)) */
  forward(x: Float32Array, B: number, T: number): Float32Array {
    const h = this.hooks, n = this.names, shape = [B, T, this.ln_1.C], N = x.length;
    x = h.point(n.resid_pre, x, shape);
    const attn_out = h.point(n.attn_out, this.attn.forward(this.ln_1.forward(x, B, T), B, T), shape);
    const mid = new Float32Array(N);
    residualForward(mid, x, attn_out, N);
    x = h.point(n.resid_mid, mid, shape);
    const mlp_out = h.point(n.mlp_out, this.mlpf(this.ln_2.forward(x, B, T), B, T), shape);
    const post = new Float32Array(N);
    residualForward(post, x, mlp_out, N);
    return h.point(n.resid_post, post, shape);
  }

  /**
   * The backward pass of forward(), last line first: dy (B, T, C), the gradient at the block's
   * output, -> the gradient at its input. Each residual connection hands the gradient both to the
   * stream and to the branch; the branch's share comes back through its layer norm and is added.
   */
  backward(dy: Float32Array, tape: Tape, B: number, T: number, grads: Grads): Float32Array {
    const h = this.hooks, n = this.names, shape = [B, T, this.ln_1.C], N = dy.length;
    dy = h.grad(n.resid_post, dy, shape);
    // x = x + mlpf(ln_2(x))
    let dmid: Float32Array = new Float32Array(N), dmlp_out: Float32Array = new Float32Array(N);
    residualBackward(dmid, dmlp_out, dy, N);
    dmlp_out = h.grad(n.mlp_out, dmlp_out, shape);
    const dln2 = new Float32Array(N);
    this.mlpBackward(dln2, dmlp_out, saved(tape, n.ln2.normalized), tape, B, T, grads);
    this.ln_2.backward(dmid, dln2, saved(tape, n.resid_mid), tape, B, T, grads);
    dmid = h.grad(n.resid_mid, dmid, shape);
    // x = x + attn(ln_1(x))
    let dx: Float32Array = new Float32Array(N), dattn_out: Float32Array = new Float32Array(N);
    residualBackward(dx, dattn_out, dmid, N);
    dattn_out = h.grad(n.attn_out, dattn_out, shape);
    const dln1 = new Float32Array(N);
    this.attn.backward(dln1, dattn_out, saved(tape, n.ln1.normalized), tape, B, T, grads);
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
  /** compute the logits at these positions only (all by default): logits become (B, P, vocab_size) */
  logits_at?: number[];
  /** keep what backward() needs (a reference to every hook point's value); by default when targets are given */
  grad?: boolean;
}

export interface ForwardResult {
  logits: NdArray<Float32Array>; // (B, T, vocab_size), or (B, P, vocab_size) with logits_at; (B, 0, V) with stop_at_layer
  loss: number | null; // mean cross-entropy over the targets, when targets were given
  residual: NdArray<Float32Array>; // (B, T, C): the stream after the last block that ran (the input of ln_f)
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
  private tape: {
    acts: Tape; rows: number[][] | null; targets: number[][] | null;
    B: number; T: number; P: number; positions: number[] | null; start: number;
    resid: Float32Array; logits: Float32Array; // (B, T, C) the stream entering ln_f; (B, P, vocab_size)
  } | null = null;

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
    let rows: number[][] | null = null, B: number, T: number;
    if (opts.residual) {
      if (opts.start_at_layer === undefined) throw new Error('a residual stream to start from needs start_at_layer');
      [B, T] = opts.residual.shape;
      if (opts.residual.shape.length !== 3 || opts.residual.shape[2] !== C)
        throw new Error(`the residual stream must be (B, T, ${C}), got [${opts.residual.shape}]`);
    } else {
      if (start !== 0) throw new Error(`start_at_layer ${start} needs the residual stream entering that block (opts.residual)`);
      if (idx === null) throw new Error('no token ids to run');
      rows = toRows(idx);
      B = rows.length;
      T = rows[0].length;
    }
    if (T > this.block_size) throw new Error(`Cannot forward sequence of length ${T}, block size is only ${this.block_size}`);
    const positions = opts.logits_at ?? null;
    if (positions) for (const t of positions) if (!(Number.isInteger(t) && t >= 0 && t < T)) throw new Error(`logits_at: position ${t} is outside 0..${T - 1}`);
    const P = stop < L ? 0 : positions ? positions.length : T;

    const hooks: HookSpec = [...(opts.hooks ?? []), ...this.flagHooks(opts, T)];
    const run = (): [Float32Array, Float32Array] => {
      const { wte, wpe, h, ln_f } = this.transformer;
      let x: Float32Array; // (B, T, C)
      if (rows) {
        // forward the GPT model itself
        let tok_emb: Float32Array = new Float32Array(B * T * C); // token embeddings of shape (B, T, C)
        let pos_emb: Float32Array = new Float32Array(B * T * C); // position embeddings of shape (B, T, C), the same row for every b
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < T; t++) {
            const id = rows[b][t];
            if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`token id ${id} at [${b}, ${t}] is outside the vocabulary 0..${V - 1}`);
            tok_emb.set(wte.subarray(id * C, (id + 1) * C), (b * T + t) * C);
            pos_emb.set(wpe.subarray(t * C, (t + 1) * C), (b * T + t) * C);
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
      for (let l = start; l < stop; l++) x = h[l].forward(x, B, T); // (B, T, C)
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
    const acts: Tape | null = opts.grad ?? opts.targets !== undefined ? new Map() : null;
    const go = (): [Float32Array, Float32Array] => (hooks.length ? this.hooks.with(hooks, run) : run());
    const [resid, logits] = acts ? this.hooks.recording(acts, go) : go();
    if (P > 0 && !allFinite(logits)) {
      // name the first place the run went wrong: run it again, looking at every hook point
      const where = this.firstNonFinite(hooks, run);
      throw new NonFiniteError(`the model's logits contain NaN or ±∞; the first non-finite value appears at ${where}` +
        ' (are the weights damaged, or did a hook write something non-finite?)');
    }

    if (P > 0) this.lastLogits = logits.slice((P - 1) * V, P * V); // batch row 0, last computed position
    // if we are given some desired targets also calculate the loss
    let loss: number | null = null;
    if (opts.targets !== undefined) {
      if (P !== T) throw new Error('a loss needs the logits at every position (no logits_at, no stop_at_layer)');
      loss = crossEntropyForward(logits, toRows(opts.targets), B, T, V);
    }
    if (acts) {
      const targets = opts.targets !== undefined ? toRows(opts.targets) : null;
      this.tape = { acts, rows, targets, B, T, P, positions, start, resid, logits };
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
   *     for this pass only, may read or replace it (../lens/gradients.ts collects them).
   * A value that a forward hook changed is differentiated as if the layer had computed it: the
   * layers after it see the changed value, and the gradient still flows on to what came before.
   * The recorded run is dropped afterwards, as PyTorch frees its graph.
   */
  backward(dlogits?: Float32Array, opts: { params?: boolean; hooks?: HookSpec } = {}): void {
    if (opts.hooks?.length) {
      const hooks = opts.hooks;
      this.hooks.withGrad(hooks, () => this.backward(dlogits, { ...opts, hooks: undefined }));
      return;
    }
    const tape = this.tape;
    if (!tape) throw new Error('backward() needs the forward pass just before it to record what it needs: give that pass targets (the loss) or { grad: true }');
    this.tape = null;
    const { n_embd: C, vocab_size: V, n_layer: L } = this.config;
    const { acts, B, T, P, positions } = tape;
    if (P === 0) throw new Error('backward() needs a forward pass that computed logits (no stop_at_layer)');
    if (dlogits === undefined) {
      if (!tape.targets) throw new Error('backward() with no gradient of the logits differentiates the loss: the forward pass needs targets');
      dlogits = new Float32Array(B * P * V);
      crossEntropyBackward(dlogits, tape.logits, tape.targets, B, T, V);
    } else if (dlogits.length !== B * P * V) throw new Error(`dlogits must be (${B}, ${P}, ${V}) like the logits, got ${dlogits.length} numbers`);
    const grads: Grads = opts.params ?? true ? (p) => this.grad_of(p) : null;
    const { wte, wpe, h, ln_f } = this.transformer;
    // the vocabulary projection and the final layer norm, at the positions that have logits
    const dxf = new Float32Array(B * P * C); // (B, P, C)
    matmulBackward(dxf, grads && grads(this.lm_head.weight), null, dlogits, saved(acts, 'ln_final.hook_normalized'), this.lm_head.weight, B * P, C, V);
    const last = positions ? pickPositions(tape.resid, B, T, C, positions) : tape.resid; // (B, P, C)
    const dlast = new Float32Array(B * P * C);
    ln_f.backward(dlast, dxf, last, acts, B, P, grads);
    let dx = positions ? scatterPositions(dlast, B, T, C, positions) : dlast; // (B, T, C)
    for (let l = L - 1; l >= tape.start; l--) dx = h[l].backward(dx, acts, B, T, grads);
    if (!tape.rows) return; // the run started from a given residual stream: nothing before it
    // x = tok_emb + pos_emb: each gets the whole gradient
    const dpos = this.hooks.grad('hook_pos_embed', dx.slice(), [B, T, C]);
    const dtok = this.hooks.grad('hook_embed', dx.slice(), [B, T, C]);
    if (!grads) return;
    // the embedding lookups: each row of wte and wpe collects the gradients of the places it was copied to
    const dwte = grads(wte), dwpe = grads(wpe);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const id = tape.rows[b][t], o = (b * T + t) * C;
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
   * ids. With do_sample false this is greedy decoding.
   */
  generate(idx: Idx, max_new_tokens: number, temperature = 1.0, do_sample = false, top_k: number | null = null, rng: RNG = globalRng): number[][] {
    const seqs = toRows(idx).map((r) => r.slice());
    const V = this.config.vocab_size;
    for (let n = 0; n < max_new_tokens; n++) {
      // if the sequence context is growing too long we must crop it at block_size
      const idx_cond = seqs.map((s) => (s.length <= this.block_size ? s : s.slice(-this.block_size)));
      // forward the model to get the logits for the index in the sequence (only the last one is needed)
      const T = idx_cond[0].length;
      const { logits } = this.forward(idx_cond, { logits_at: [T - 1] });
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

  /** The assignment's `save` and `patch` flags, expressed as hooks on the block outputs. */
  private flagHooks(opts: ForwardOptions, T: number): HookSpec {
    const hooks: HookSpec = [];
    const L = this.config.n_layer;
    if (opts.save) {
      this.activations = Array.from({ length: L }, () => []);
      for (let l = 0; l < L; l++) {
        hooks.push([this.transformer.h[l].names.resid_post, (act) => {
          const C = act.shape[2];
          // a deep copy (.slice), not a view: later runs must not overwrite what we keep
          for (let t = 0; t < T; t++) this.activations[l][t] = act.data.slice(t * C, (t + 1) * C);
        }]);
      }
    }
    if (opts.patch) {
      const { layer, position } = opts.patch;
      if (!(layer >= 0 && layer < L)) throw new Error(`patch layer ${layer} is outside 0..${L - 1}`);
      if (!(position >= 0 && position < T)) throw new Error(`patch position ${position} is outside 0..${T - 1}`);
      const value = opts.patch.value ?? this.activations[layer]?.[position];
      if (!value) throw new Error(`nothing saved for layer ${layer}, position ${position}: run forward with { save: true } first`);
      hooks.push([this.transformer.h[layer].names.resid_post, (act) => {
        const [B, , C] = act.shape;
        for (let b = 0; b < B; b++) act.data.set(value, (b * T + position) * C);
      }]);
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

function toRows(idx: Idx): number[][] {
  if (idx.length === 0) throw new Error('cannot run the model on an empty sequence');
  const rows = Array.isArray(idx[0]) ? (idx as number[][]) : [idx as number[]];
  const T = rows[0].length;
  if (T === 0) throw new Error('cannot run the model on an empty sequence');
  if (rows.some((r) => r.length !== T)) throw new Error('all sequences in a batch must have the same length');
  return rows;
}

/** x (B, T, C) -> (B, P, C): the rows at the given positions of every sequence. */
function pickPositions(x: Float32Array, B: number, T: number, C: number, positions: number[]): Float32Array {
  const P = positions.length, out = new Float32Array(B * P * C);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < P; i++) out.set(x.subarray((b * T + positions[i]) * C, (b * T + positions[i] + 1) * C), (b * P + i) * C);
  return out;
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
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}
