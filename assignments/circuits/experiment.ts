/**
 * The circuits experiment's numbers, steps 1-7 (./README.md), as one report object. The command
 * line (./circuits.ts) prints it and writes circuits.json and the charts.
 */
import type { GPT } from '../../mingpt/model.ts';
import { Weights } from '../../lens/weights.ts';
import {
  COMPOSITION_MODES, compositionBaseline, compositionScores, copyingScores, neuronCosines, ovOnTokens, positionalQK,
  tokenQK, virtualWeights, type Composition, type CompositionMode, type TokenQK, type VirtualWeights,
} from '../../lens/circuits.ts';
import { headName, parseHead, type HeadRef } from '../../lens/heads.ts';
import { RNG } from '../../mingpt/utils.ts';
import { repeatedTokens } from '../induction-heads/scores.ts';
import { qkPathAblation, type PathAblationResult } from './qk_path.ts';

export interface ExperimentOptions {
  /** processed weights (TransformerLens's defaults) or the raw checkpoint's */
  processed: boolean;
  /** the text's token ids (steps 4-5) and their labels */
  ids: number[];
  labels: string[];
  /** head for steps 3-4; null: the reader of `path` */
  head: HeadRef | null;
  /** writer → reader for steps 5 and 7; null: the strongest K-composition pair */
  path: [HeadRef, HeadRef] | null;
  /** cosine at or below which a neuron is listed as an eraser */
  eraserBelow: number;
  /** how many of the lowest-cosine neurons to list */
  top: number;
  /** step 7's data: repeated random tokens */
  batch: number;
  seqLen: number;
  seed: number;
  lo: number;
  hi: number;
  bos: number;
}

export interface Pair {
  writer: string;
  reader: string;
  score: number;
}

export interface NeuronEntry {
  layer: number;
  neuron: number;
  cosine: number;
}

export interface Report {
  model: string;
  config: { n_layer: number; n_head: number; n_embd: number; vocab_size: number; block_size: number };
  weights: 'processed' | 'raw';
  copying_score: number[][];
  composition: Composition;
  composition_baseline: { mean: number; std: number; samples: number; note: string };
  top_pairs: Record<CompositionMode, Pair[]>;
  positional_qk: number[][][][];
  head: string;
  path: { writer: string; reader: string };
  text: { ids: number[]; tokens: string[] };
  token_qk: TokenQK;
  ov_on_tokens: { tokens: string[]; ids: number[]; values: number[][] };
  virtual_weights: VirtualWeights & { tokens: string[] };
  neuron_cosine: (number | null)[][];
  erasers: NeuronEntry[];
  lowest_neurons: NeuronEntry[];
  eraser_below: number;
  qk_path: PathAblationResult;
  timing_s: Record<string, number>;
}

/** The `k` largest entries of a composition tensor, as writer → reader pairs. */
export function topPairs(comp: Composition, mode: CompositionMode, k: number): Pair[] {
  const out: Pair[] = [];
  comp[mode].forEach((a, lA) => a.forEach((b, hA) => b.forEach((c, lB) => c.forEach((v, hB) => {
    if (v !== null) out.push({ writer: `${lA}.${hA}`, reader: `${lB}.${hB}`, score: v });
  }))));
  return out.sort((x, y) => y.score - x.score).slice(0, k);
}

/** Steps 1-7. `onStep` is told the name of each step as it starts. */
export function runCircuits(model: GPT, name: string, o: ExperimentOptions, onStep: (step: string) => void = () => {}): Report {
  const cfg = model.config as unknown as Report['config'] & { layer_norm_epsilon: number };
  const w = new Weights(model, o.processed);
  const L = w.n_layers, nh = w.n_heads;
  const timing: Record<string, number> = {};
  let t0 = performance.now();
  const lap = (key: string) => { const t = performance.now(); timing[key] = (t - t0) / 1000; t0 = t; };

  onStep('1. copying scores (W_U W_E, then one hs × hs eigenproblem per head)');
  const copying = copyingScores(w);
  lap('copying');

  onStep('2. composition scores');
  const composition = compositionScores(w);
  const rng = new RNG(o.seed);
  const samples = 20;
  const base = compositionBaseline(w.d_model, w.d_head, samples, () => rng.randn());
  const top_pairs = Object.fromEntries(COMPOSITION_MODES.map((m) => [m, topPairs(composition, m, 10)])) as Record<CompositionMode, Pair[]>;
  lap('composition');

  const path: [HeadRef, HeadRef] = o.path ?? (top_pairs.k.length ? [parseHead(top_pairs.k[0].writer), parseHead(top_pairs.k[0].reader)] : [{ layer: 0, head: 0 }, { layer: Math.min(1, L - 1), head: 0 }]);
  const head = o.head ?? path[1];

  onStep('3. positional QK');
  const T16 = Math.min(16, w.n_ctx);
  const positional = Array.from({ length: L }, (_, l) => Array.from({ length: nh }, (_, h) => positionalQK(w, l, h, T16)));
  lap('positional');

  onStep(`4-5. head ${headName(head)} on the text; virtual weights of ${headName(path[0])} → ${headName(path[1])}`);
  let resid: Float32Array | null = null;
  model.run_with_hooks(o.ids, [[`blocks.${head.layer}.hook_resid_pre`, (act) => { resid = act.data.slice(); }]], { stop_at_layer: head.layer + 1 });
  if (!resid) throw new Error('internal: the run on the text did not reach the chosen head');
  const token_qk = tokenQK(new Weights(model, true), head.layer, head.head, o.ids, resid, cfg.layer_norm_epsilon);
  const uniq = [...new Set(o.ids)];
  const uniqLabels = uniq.map((id) => o.labels[o.ids.indexOf(id)]);
  const ov = ovOnTokens(w, head.layer, head.head, uniq, uniq);
  const vw = path[0].layer < path[1].layer ? virtualWeights(w, path[0], path[1], uniq) : { q: [], k: [], v: [] };
  lap('text');

  onStep('6. memory-management neurons');
  const cos = Array.from({ length: L }, (_, l) => neuronCosines(w, l));
  const all: NeuronEntry[] = [];
  cos.forEach((row, layer) => row.forEach((cosine, neuron) => { if (Number.isFinite(cosine)) all.push({ layer, neuron, cosine }); }));
  all.sort((a, b) => a.cosine - b.cosine);
  lap('neurons');

  onStep(`7. causal check: ${headName(path[0])} removed from ${headName(path[1])}'s keys`);
  const tokens = repeatedTokens({ batch: o.batch, seqLen: o.seqLen, lo: o.lo, hi: o.hi, bos: o.bos, seed: o.seed });
  const qk_path = qkPathAblation(model, path[0], path[1], tokens, o.seqLen, 1 / (o.hi - o.lo));
  lap('qk_path');

  return {
    model: name,
    config: { n_layer: cfg.n_layer, n_head: cfg.n_head, n_embd: cfg.n_embd, vocab_size: cfg.vocab_size, block_size: cfg.block_size },
    weights: o.processed ? 'processed' : 'raw',
    copying_score: copying,
    composition,
    composition_baseline: {
      ...base, samples,
      note: `the score of random matrices of the same shapes (W_V, W_O, W_Q, W_K with independent Gaussian entries, C = ${w.d_model}, hs = ${w.d_head}): close to 1/√C; scores several standard deviations above the mean are not chance`,
    },
    top_pairs,
    positional_qk: positional,
    head: headName(head),
    path: { writer: headName(path[0]), reader: headName(path[1]) },
    text: { ids: o.ids, tokens: o.labels },
    token_qk,
    ov_on_tokens: { tokens: uniqLabels, ids: uniq, values: ov },
    virtual_weights: { ...vw, tokens: uniqLabels },
    neuron_cosine: cos.map((row) => Array.from(row, (v) => (Number.isFinite(v) ? v : null))),
    erasers: all.filter((e) => e.cosine <= o.eraserBelow),
    lowest_neurons: all.slice(0, o.top),
    eraser_below: o.eraserBelow,
    qk_path,
    timing_s: timing,
  };
}
