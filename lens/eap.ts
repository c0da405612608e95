/**
 * Edge attribution patching (Syed, Rager & Conmy 2023) and its integrated-gradients form, EAP-IG
 * (Hanna, Pezzelle & Belinkov 2024): a score for every edge of the model's computational graph,
 * from a handful of passes, to find circuits such as IOI's.
 *
 * The graph (test/fixtures/GRADIENTS.md): upstream nodes write to the residual stream — `embed`
 * (token + position embeddings), each head `a{l}.{h}` (its z times its rows of W_O, no bias), each
 * MLP `m{l}`; downstream nodes read from it — each head's query, key and value inputs
 * `a{l}.{h}.q|k|v` (the stream before ln_1, as if each had its own copy: TransformerLens's
 * use_split_qkv_input), each MLP's input `m{l}` (before ln_2), and `logits` (before ln_f). An edge
 * u → v exists when u writes before v reads. Its score is the first-order effect of patching the
 * clean u into the corrupted run along that edge alone:
 *
 *   score(u → v) = Σ over batch rows, positions and channels of (out_u(clean) − out_u(corrupted)) ⊙ d metric / d in_v
 *
 * with the gradient taken on the corrupted run, at v's own copy of its input: the gradient that
 * reaches the stream through v alone (for a head's query, back through W_Q[h] and ln_1).
 *
 * EAP-IG (steps m > 1) averages that gradient over m runs whose input embeddings move from the
 * corrupted run's towards the clean run's, α = 0, 1/m, …, (m−1)/m (the left Riemann sum of the
 * integrated gradient; m = 1 is plain EAP). The differences out_u(clean) − out_u(corrupted) stay those
 * of the two real runs.
 *
 * Cost: the clean and the corrupted runs forward as one batch (one pass over the weights) and the
 * corrupted rows backward, without the weights' gradients; each further IG step one forward and
 * one backward pass; then, per downstream node, a small product back through its weights and
 * layer norm, and one (upstream × downstream) product of the differences with the gradients.
 */
import type { GPT } from '../mingpt/model.ts';
import { batchRows, type HookSpec } from '../mingpt/hooks.ts';
import { matmulBackward, matmulForward, layernormBackward } from '../mingpt/kernels/index.ts';
import type { ActivationCache } from './activation_cache.ts';
import { run_with_grad_cache } from './gradients.ts';
import type { Metric } from './patching.ts';

/** The nodes of the graph, in GRADIENTS.md's order. */
export interface EapGraph {
  upstream: string[];
  downstream: string[];
}

export interface EapResult extends EapGraph {
  /** scores[i][j]: the edge upstream[i] → downstream[j]; null where there is no edge */
  scores: Array<Array<number | null>>;
  /** the metric of the clean and the corrupted runs */
  metric: { clean: number; corrupted: number };
  /** integrated-gradient steps (1: plain EAP) */
  steps: number;
}

/** One edge and its score. */
export interface Edge {
  from: string;
  to: string;
  score: number;
}

/** The graph of a model with L layers and nh heads. */
function eapGraph(L: number, nh: number): EapGraph {
  const upstream = ['embed'], downstream: string[] = [];
  for (let l = 0; l < L; l++) for (let h = 0; h < nh; h++) upstream.push(`a${l}.${h}`);
  for (let l = 0; l < L; l++) upstream.push(`m${l}`);
  for (let l = 0; l < L; l++) for (let h = 0; h < nh; h++) downstream.push(`a${l}.${h}.q`, `a${l}.${h}.k`, `a${l}.${h}.v`);
  for (let l = 0; l < L; l++) downstream.push(`m${l}`);
  downstream.push('logits');
  return { upstream, downstream };
}

/**
 * When a node writes to the stream or reads from it, in order along the forward pass: layer l's
 * heads at 2l, its MLP at 2l + 1; the embeddings before everything (−1), the logits after (2L).
 * An edge u → v exists when u writes before v reads.
 */
function writesAt(u: string): number {
  if (u === 'embed') return -1;
  const m = u.match(/^([am])(\d+)/)!;
  return 2 * Number(m[2]) + (m[1] === 'm' ? 1 : 0);
}
function readsAt(v: string, L: number): number {
  if (v === 'logits') return 2 * L;
  const m = v.match(/^([am])(\d+)/)!;
  return 2 * Number(m[2]) + (m[1] === 'm' ? 1 : 0);
}
function isEdge(u: string, v: string, L: number): boolean {
  return writesAt(u) < readsAt(v, L);
}

/** Hook points the scores read: the upstream outputs, and what each downstream input's gradient needs. */
function pointsNeeded(L: number): Set<string> {
  const names = new Set(['hook_embed', 'hook_pos_embed', 'ln_final.hook_normalized', 'ln_final.hook_scale', `blocks.${L - 1}.hook_resid_post`]);
  for (let l = 0; l < L; l++) {
    for (const p of ['attn.hook_z', 'hook_mlp_out', 'hook_resid_pre', 'ln1.hook_scale', 'attn.hook_q', 'attn.hook_k', 'attn.hook_v', 'hook_resid_mid', 'ln2.hook_scale', 'ln2.hook_normalized'])
      names.add(`blocks.${l}.${p}`);
  }
  return names;
}

/**
 * Every upstream node's output on one run, stacked: (U, B·T·C), in the graph's upstream order.
 * A head's output is its z at every position times its rows of W_O (no bias).
 */
function upstreamOutputs(model: GPT, cache: ActivationCache): Float32Array {
  const { n_layer: L, n_head: nh, n_embd: C } = model.config, hs = C / nh;
  const embed = cache.get('hook_embed'), pos = cache.get('hook_pos_embed');
  const N = embed.size, BT = N / C, U = 1 + L * nh + L;
  const out = new Float32Array(U * N);
  for (let i = 0; i < N; i++) out[i] = embed.data[i] + pos.data[i];
  const zh = new Float32Array(BT * hs), WO = new Float32Array(C * hs);
  for (let l = 0; l < L; l++) {
    const z = cache.get('z', l).data, W = model.transformer.h[l].attn.c_proj.weight; // (B, T, nh, hs); (C, C) as (out, in)
    for (let h = 0; h < nh; h++) {
      for (let r = 0; r < BT; r++) for (let j = 0; j < hs; j++) zh[r * hs + j] = z[r * C + h * hs + j];
      for (let o = 0; o < C; o++) for (let j = 0; j < hs; j++) WO[o * hs + j] = W[o * C + h * hs + j]; // W_O[h]ᵀ (C, hs)
      matmulForward(out.subarray((1 + l * nh + h) * N, (2 + l * nh + h) * N), zh, WO, null, BT, hs, C);
    }
    out.set(cache.get('mlp_out', l).data, (1 + L * nh + l) * N);
  }
  return out;
}

/**
 * d metric / d in_v for every downstream node v, stacked: (D, B·T·C), in the graph's downstream
 * order, from one run's activations and gradients. Each is the gradient that reaches the stream
 * through v alone: a head's query, key or value gradient back through its columns of c_attn and
 * through ln_1 (with this run's scale); the MLP's through ln_2; the logits' through ln_f.
 */
function downstreamGrads(model: GPT, cache: ActivationCache, grads: ActivationCache, logits_at: number[]): Float32Array {
  const { n_layer: L, n_head: nh, n_embd: C } = model.config, hs = C / nh;
  const resid0 = cache.get('resid_pre', 0);
  const [B, T] = resid0.shape, BT = B * T, N = BT * C, D = 3 * L * nh + L + 1;
  const out = new Float32Array(D * N);
  const dh = new Float32Array(BT * hs), dnorm = new Float32Array(N);
  const noInput = new Float32Array(0); // (no weight gradient is asked for, so the product's input is never read)
  for (let l = 0; l < L; l++) {
    const block = model.transformer.h[l];
    const x = cache.get('resid_pre', l).data, scale = cache.get('scale', l, 'ln1').data, W = block.attn.c_attn.weight; // W (3C, C)
    ['q', 'k', 'v'].forEach((which, w) => {
      const d = grads.get(which, l).data; // (B, T, nh, hs)
      for (let h = 0; h < nh; h++) {
        for (let r = 0; r < BT; r++) for (let j = 0; j < hs; j++) dh[r * hs + j] = d[r * C + h * hs + j];
        const rows = W.subarray((w * C + h * hs) * C, (w * C + (h + 1) * hs) * C); // W_Q[h]ᵀ etc., (hs, C)
        dnorm.fill(0);
        matmulBackward(dnorm, null, null, dh, noInput, rows, BT, C, hs);
        const at = (3 * (l * nh + h) + w) * N;
        layernormBackward(out.subarray(at, at + N), null, null, dnorm, x, scale, block.ln_1.weight, BT, C);
      }
    });
    const at = (3 * L * nh + l) * N;
    layernormBackward(out.subarray(at, at + N), null, null, grads.get('blocks.' + l + '.ln2.hook_normalized').data,
      cache.get('resid_mid', l).data, cache.get('scale', l, 'ln2').data, block.ln_2.weight, BT, C);
  }
  // the logits read the final stream at the positions the metric reads, through ln_f
  const P = logits_at.length, final = cache.get('resid_post', L - 1).data;
  const picked = new Float32Array(B * P * C), dpicked = new Float32Array(B * P * C);
  for (let b = 0; b < B; b++) logits_at.forEach((t, i) => picked.set(final.subarray((b * T + t) * C, (b * T + t + 1) * C), (b * P + i) * C));
  layernormBackward(dpicked, null, null, grads.get('ln_final.hook_normalized').data, picked, cache.get('ln_final.hook_scale').data,
    model.transformer.ln_f.weight, B * P, C);
  const at = (D - 1) * N;
  for (let b = 0; b < B; b++) logits_at.forEach((t, i) => out.set(dpicked.subarray((b * P + i) * C, (b * P + i + 1) * C), at + (b * T + t) * C));
  return out;
}

/**
 * The score of every edge for one clean/corrupted pair, or a batch of pairs (the metric says how
 * the rows combine: logitDiffMetric takes their mean), texts of one length. `steps` > 1: EAP-IG
 * with that many steps.
 */
export function edge_attribution_patching(
  model: GPT, clean_ids: number[] | number[][], corrupted_ids: number[] | number[][], metric: Metric, opts: { steps?: number } = {},
): EapResult {
  const { n_layer: L, n_head: nh } = model.config;
  const steps = opts.steps ?? 1;
  if (!(Number.isInteger(steps) && steps >= 1)) throw new Error(`EAP-IG steps must be a whole number ≥ 1, got ${steps}`);
  const rows = (x: number[] | number[][]) => (Array.isArray(x[0]) ? (x as number[][]) : [x as number[]]);
  const clean = rows(clean_ids), corrupted = rows(corrupted_ids), B = clean.length, T = clean[0].length;
  if (corrupted[0].length !== T) throw new Error(`edge attribution patching needs texts of one length: clean ${T} tokens, corrupted ${corrupted[0].length}`);
  if (corrupted.length !== B) throw new Error(`edge attribution patching needs as many clean texts as corrupted ones: ${B} clean, ${corrupted.length} corrupted`);
  const graph = eapGraph(L, nh);
  const needed = pointsNeeded(L), keep = (n: string) => needed.has(n);
  const logits_at = metric.positions ?? [T - 1];

  // step 0 is the corrupted run itself: it runs with the clean text beside it, one batch (rows
  // 0 … B−1 clean, B … 2B−1 corrupted), and backward through the corrupted rows
  const first = run_with_grad_cache(model, [...clean, ...corrupted], metric, { names: keep, cache: true, logits_at, grad_rows: [B, 2 * B] });
  const cleanCache = first.cache.apply_slice_to_batch_dim(0, B), corruptedCache = first.cache.apply_slice_to_batch_dim(B, 2 * B);
  const cleanOut = upstreamOutputs(model, cleanCache), delta = upstreamOutputs(model, corruptedCache);
  for (let i = 0; i < delta.length; i++) delta[i] = cleanOut[i] - delta[i];
  const G = downstreamGrads(model, corruptedCache, first.grad_cache, logits_at);
  const cleanResid = cleanCache.get('resid_pre', 0).data;
  for (let k = 1; k < steps; k++) {
    // step k runs the corrupted text with its embeddings moved a fraction k/steps towards the clean ones
    const alpha = k / steps;
    const interpolate: HookSpec = [['blocks.0.hook_resid_pre', (act) => {
      for (let i = 0; i < act.data.length; i++) act.data[i] += alpha * (cleanResid[i] - act.data[i]);
    }]];
    const run = run_with_grad_cache(model, corrupted, metric, { names: keep, cache: true, logits_at, hooks: interpolate });
    const g = downstreamGrads(model, run.cache, run.grad_cache, logits_at);
    for (let i = 0; i < g.length; i++) G[i] += g[i];
  }
  if (steps > 1) for (let i = 0; i < G.length; i++) G[i] /= steps;

  // every edge at once: (U, N) differences times (D, N) gradients, transposed
  const U = graph.upstream.length, D = graph.downstream.length, N = delta.length / U;
  const all = new Float32Array(U * D);
  matmulForward(all, delta, G, null, U, N, D);
  const scores = graph.upstream.map((u, i) => graph.downstream.map((v, j) => (isEdge(u, v, L) ? all[i * D + j] : null)));
  return { ...graph, scores, metric: { clean: metric(batchRows(first.logits, 0, B)), corrupted: first.value }, steps };
}

/** The edges, largest |score| first. */
export function rankEdges(r: EapResult): Edge[] {
  const edges: Edge[] = [];
  r.scores.forEach((row, i) => row.forEach((s, j) => { if (s !== null) edges.push({ from: r.upstream[i], to: r.downstream[j], score: s }); }));
  return edges.sort((a, b) => Math.abs(b.score) - Math.abs(a.score));
}
