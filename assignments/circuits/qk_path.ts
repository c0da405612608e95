/**
 * Step 7: a causal check of a QK claim.
 *
 * The weights say head A (say a previous-token head) writes something that head B (an induction
 * head) reads with its keys: K-composition. To test it, run the model on repeated random tokens
 * and take A's contribution out of B's keys only — nothing else changes: A still writes into the
 * residual stream, every other head and MLP still reads it, B's queries and values still see it.
 * If B's keys really depend on A, B stops finding the right position and the model's accuracy on
 * the second copy falls; taking A out of B's queries instead is the control.
 *
 * How the removal is done. B reads the residual stream x through its layer norm:
 * k = LN(x) W_K + b_K with LN(x) = (x − mean x)/s · γ + β. Without A, x becomes x − a (a = A's
 * output, z_A W_O^A); we keep the layer norm's scale s of the clean run, so the change is exactly
 * A's share of the keys:
 *     k' = k − ((a − mean a) / s ⊙ γ) W_K
 * and we write k' into `blocks.{lB}.attn.hook_k`, for head B only.
 */
import ndarray from 'ndarray';
import type { GPT } from '../../mingpt/model.ts';
import type { HookSpec } from '../../mingpt/hooks.ts';
import { headName, type HeadRef } from '../../lens/heads.ts';
import { halves, nextTokenStats } from '../induction-heads/circuit.ts';

export interface PathAblationResult {
  writer: string;
  reader: string;
  batch: number;
  seq_len: number;
  /** second-half top-1 accuracy and mean log-prob of the correct next token */
  clean: { accuracy: number; logprob: number };
  /** the writer's output removed from the reader's keys only */
  k_path_removed: { accuracy: number; logprob: number };
  /** the writer's output removed from the reader's queries only (the control) */
  q_path_removed: { accuracy: number; logprob: number };
  /** guessing uniformly among the token range */
  chance_accuracy: number;
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

/**
 * Runs the check on `tokens` ([BOS, x1 … xn, x1 … xn] rows). `chance` is 1 / (number of token ids
 * the random tokens were drawn from).
 */
export function qkPathAblation(model: GPT, writer: HeadRef, reader: HeadRef, tokens: number[][], n: number, chance: number): PathAblationResult {
  if (writer.layer >= reader.layer) throw new Error(`the writer ${headName(writer)} must sit in an earlier layer than the reader ${headName(reader)}`);
  const { n_embd: C, n_head: nh, vocab_size: V } = model.config, hs = C / nh;
  const B = tokens.length, T = tokens[0].length;
  const [s0, s1] = halves(n).second;
  const positions = range(s0, s1);

  // the clean run: the writer's z, the stream entering the reader's block and its layer-norm
  // scale there, the second half's logits
  let z: Float32Array | null = null, resid: Float32Array | null = null, scale: Float32Array | null = null;
  const r = `blocks.${reader.layer}`;
  const clean = model.run_with_hooks(tokens, [
    [`blocks.${writer.layer}.attn.hook_z`, (act) => { z = act.data.slice(); }], // (B, T, nh, hs)
    [`${r}.hook_resid_pre`, (act) => { resid = act.data.slice(); }], // (B, T, C)
    [`${r}.ln1.hook_scale`, (act) => { scale = act.data.slice(); }], // (B, T, 1)
  ], { logits_at: positions });
  if (!z || !resid || !scale) throw new Error('internal: the clean run did not pass the hook points it needs');
  const zA: Float32Array = z, x: Float32Array = resid, s: Float32Array = scale;
  const score = (logits: Float32Array) => {
    const { logprob, correct } = nextTokenStats(logits, V, tokens, positions);
    const mean = (a: ArrayLike<number>) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i]; return s / a.length; };
    return { accuracy: mean(correct), logprob: mean(logprob) };
  };

  // a = z_A W_O^A at every (b, t), centred, over the clean scale, times γ1 of the reader's block
  const P = model.transformer.h[writer.layer].attn.c_proj.weight; // (C, C): P[c, hA·hs + i]
  const gamma = model.transformer.h[reader.layer].ln_1.weight;
  const a = new Float64Array(B * T * C); // (B, T, C)
  for (let bt = 0; bt < B * T; bt++) {
    const zo = (bt * nh + writer.head) * hs;
    let mean = 0;
    for (let c = 0; c < C; c++) {
      let v = 0;
      for (let i = 0; i < hs; i++) v += zA[zo + i] * P[c * C + writer.head * hs + i];
      a[bt * C + c] = v;
      mean += v;
    }
    mean /= C;
    for (let c = 0; c < C; c++) a[bt * C + c] = ((a[bt * C + c] - mean) / s[bt]) * gamma[c];
  }
  // the hook: subtract a W (W = W_K or W_Q of the reader, rows part·C + hB·hs + i of c_attn) from head B's slice
  const W = model.transformer.h[reader.layer].attn.c_attn.weight; // (3C, C)
  const removeFrom = (part: 0 | 1): HookSpec => [[`blocks.${reader.layer}.attn.${part === 0 ? 'hook_q' : 'hook_k'}`, (act) => {
    const d = act.data; // (B, T, nh, hs)
    for (let bt = 0; bt < B * T; bt++) {
      for (let i = 0; i < hs; i++) {
        const row = (part * C + reader.head * hs + i) * C;
        let v = 0;
        for (let c = 0; c < C; c++) v += a[bt * C + c] * W[row + c];
        d[(bt * nh + reader.head) * hs + i] -= v;
      }
    }
  }]];
  const rerun = (hooks: HookSpec) => model.forward(null, { start_at_layer: reader.layer, residual: ndarray(x.slice(), [B, T, C]), logits_at: positions, hooks }).logits.data;
  return {
    writer: headName(writer),
    reader: headName(reader),
    batch: B,
    seq_len: n,
    clean: score(clean.logits.data),
    k_path_removed: score(rerun(removeFrom(1))),
    q_path_removed: score(rerun(removeFrom(0))),
    chance_accuracy: chance,
  };
}
