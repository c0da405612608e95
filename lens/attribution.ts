/**
 * Where does the model's answer come from? Two views of one run, both reading its cache:
 *
 * - The logit lens: stop the model early. Take the residual stream entering block l, put it
 *   through the final layer norm (afresh: its own mean and scale) and the unembedding, and read
 *   the metric as if the model ended there. Entry L is the model's own answer.
 * - Direct logit attribution (DLA): the final stream is a sum (embeddings + every head's output +
 *   each attention layer's bias + every MLP's output), and with the final layer norm's scale held
 *   at its value in this run, the metric is linear in that stream. So each part's share of the
 *   metric can be read off exactly: ((r − mean r) / s) ⊙ γ_f · (W_U[:, token] − W_U[:, other]),
 *   plus the constant β_f · (W_U[:, token] − W_U[:, other]). The shares add up to the metric.
 *
 * The metric is logit(token) − logit(other) at position `pos` (the assignment: token = the
 * corrupt name, other = the clean one, so negative means the model prefers the clean name).
 * With a batch, every row has its own token pair (one IOI prompt per row); results are per row.
 * Definitions as in test/fixtures' ANALYSIS.md.
 */
import { pickPositions, type GPT } from '../mingpt/model.ts';
import type { ActivationCache } from './activation_cache.ts';
import { logitDiffs, logitDirection } from './metrics.ts';

/** The token pair of each batch row: the metric is logit(token[b]) − logit(other[b]). */
export interface Direction {
  pos: number;
  token: number[];
  other: number[];
}

/** logit_lens[l][b], l = 0 … L: the metric read from the stream entering block l (l = L: the end). */
export function logitLens(model: GPT, cache: ActivationCache, dir: Direction): number[][] {
  const { n_layer: L, n_embd: C } = model.config;
  const out: number[][] = [];
  for (let l = 0; l <= L; l++) {
    const x = l < L ? cache.get('resid_pre', l) : cache.get('resid_post', L - 1); // (B, T, C)
    const [B, T] = x.shape;
    // the final layer norm (afresh, with this stream's own mean and scale) and the two logits
    out.push(logitDiffs(model, pickPositions(x.data, B, T, C, [dir.pos]), dir.token, dir.other));
  }
  return out;
}

/** One run's direct logit attribution, per batch row. */
export interface DLA {
  embed: number[]; // [b]: token + position embeddings
  heads: number[][][]; // [l][h][b]: z[l][h] · W_O[l][h], no bias
  attn_bias: number[][]; // [l][b]: b_O[l]
  mlp: number[][]; // [l][b]: hook_mlp_out
  const: number[]; // [b]: β_f · d
  total: number[]; // [b]: the sum of all the above (equals the metric)
}

export function directLogitAttribution(model: GPT, cache: ActivationCache, dir: Direction): DLA {
  const { n_layer: L, n_head: nh, n_embd: C } = model.config;
  const attrs = (rs: ReturnType<ActivationCache['decompose_resid']>) => cache.logit_attrs(rs, dir.pos, dir.token, dir.other);
  const emb = attrs(cache.decompose_resid(0, { pos: dir.pos })); // rows: embed, pos_embed
  const B = emb.shape[1];
  const heads = attrs(cache.stack_head_results(L, { pos: dir.pos, incl_bias: true })); // rows: L0H0 … L0H{nh-1}, L0_bias, …
  const mlp = attrs(cache.decompose_resid(L, { pos: dir.pos, mode: 'mlp', incl_embeds: false }));
  const beta = model.transformer.ln_f.bias;
  const res: DLA = { embed: [], heads: [], attn_bias: [], mlp: [], const: [], total: [] };
  for (let l = 0; l < L; l++) {
    res.heads.push(Array.from({ length: nh }, (_, h) => Array.from({ length: B }, (_, b) => heads.get(l * (nh + 1) + h, b))));
    res.attn_bias.push(Array.from({ length: B }, (_, b) => heads.get(l * (nh + 1) + nh, b)));
    res.mlp.push(Array.from({ length: B }, (_, b) => mlp.get(l, b)));
  }
  for (let b = 0; b < B; b++) {
    res.embed.push(emb.get(0, b) + emb.get(1, b));
    const d = logitDirection(model, dir.token[b], dir.other[b]);
    let k = 0;
    for (let c = 0; c < C; c++) k += beta[c] * d[c];
    res.const.push(k);
    let total = res.embed[b] + k;
    for (let l = 0; l < L; l++) {
      total += res.attn_bias[l][b] + res.mlp[l][b];
      for (let h = 0; h < nh; h++) total += res.heads[l][h][b];
    }
    res.total.push(total);
  }
  return res;
}
