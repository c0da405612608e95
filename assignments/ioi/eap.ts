/**
 * Edge attribution patching on the IOI prompts (ioi.ts --eap): every edge of the model's graph
 * scored on the IOI prompts and their ABC twins (lens/eap.ts; the graph is GRADIENTS.md's), the
 * circuit made of the top edges, and how faithful it is by the knockouts of lens/knockout.ts.
 *
 * The score of an edge is the first-order effect on F = logit(IO) − logit(S) of patching the IOI
 * prompt's value along that edge alone into the ABC prompt's run (denoising), averaged over the
 * prompts. With --eap-steps m > 1 the gradients are integrated over m inputs between the two
 * prompts (EAP-IG), which sees through saturated attention that plain EAP cannot.
 *
 * The circuit of the top N edges: every head at either end of one of them. Its faithfulness is
 * |F_model − F_circuit|, with every other head mean-ablated over the ABC prompts (MLPs are kept,
 * as in the experiment's other knockouts).
 */
import type { GPT } from '../../mingpt/model.ts';
import { edge_attribution_patching, rankEdges, type Edge } from '../../lens/eap.ts';
import { logitDiffMetric } from '../../lens/patching.ts';
import { Knockout } from '../../lens/knockout.ts';
import { parseHead } from '../../lens/heads.ts';
import type { PromptGroup } from './dataset.ts';
import type { StepsProgress } from './experiment.ts';

export interface EapReport {
  steps: number;
  /** edges in the model's graph */
  n_edges: number;
  /** the top edges, largest |score| first: the circuit */
  edges: Edge[];
  /** the heads at either end of those edges ("layer.head"), and the MLPs */
  heads: string[];
  mlps: string[];
  knockout: { F_model: number; F_circuit: number; F_empty: number; faithfulness: number };
  seconds: number;
}

/** "a3.4", "a3.4.q" → "3.4"; anything else (embed, m3, logits) → null */
export function headOfNode(node: string): string | null {
  const m = node.match(/^a(\d+)\.(\d+)(\.[qkv])?$/);
  return m ? `${m[1]}.${m[2]}` : null;
}

/** The scores of every edge, the mean over every prompt of every group; the circuit of the top `n`; its knockouts. */
export function eapResults(model: GPT, groups: PromptGroup[], o: { steps: number; edges: number }, progress: StepsProgress): EapReport {
  const t0 = performance.now();
  progress.start(`edge attribution patching${o.steps > 1 ? ` with integrated gradients (${o.steps} steps)` : ''}: ${groups.length} group${groups.length > 1 ? 's' : ''} of prompts`, groups.length + 1);
  const total = groups.reduce((s, g) => s + g.prompts.length, 0);
  let sums: Map<string, Edge> | null = null;
  groups.forEach((g, i) => {
    const metric = logitDiffMetric(g.prompts.map((p) => p.io_id), g.prompts.map((p) => p.s_id)); // the mean over the group
    const r = edge_attribution_patching(model, g.prompts.map((p) => p.clean_ids), g.prompts.map((p) => p.corrupt_ids), metric, { steps: o.steps });
    const w = g.prompts.length / total;
    sums ??= new Map(rankEdges(r).map((e) => [`${e.from}>${e.to}`, { ...e, score: 0 }]));
    for (const e of rankEdges(r)) sums.get(`${e.from}>${e.to}`)!.score += w * e.score;
    progress.update(i + 1);
  });
  const all = [...sums!.values()].sort((a, b) => Math.abs(b.score) - Math.abs(a.score));
  const edges = all.slice(0, o.edges);
  const nodes = edges.flatMap((e) => [e.from, e.to]);
  const heads = [...new Set(nodes.map(headOfNode).filter((h): h is string => h !== null))].sort(byLayerHead);
  const mlps = [...new Set(nodes.filter((n) => /^m\d+$/.test(n)))].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));

  const ko = new Knockout(model, groups.map((g) => ({
    clean: g.prompts.map((p) => p.clean_ids), corrupt: g.prompts.map((p) => p.corrupt_ids),
    token: g.prompts.map((p) => p.io_id), other: g.prompts.map((p) => p.s_id),
  })));
  const F_model = ko.F('all'), F_circuit = ko.F(heads.map(parseHead)), F_empty = ko.F([]);
  progress.update(groups.length + 1);
  progress.end();
  return {
    steps: o.steps, n_edges: all.length, edges, heads, mlps,
    knockout: { F_model, F_circuit, F_empty, faithfulness: Math.abs(F_model - F_circuit) },
    seconds: (performance.now() - t0) / 1000,
  };
}

function byLayerHead(a: string, b: string): number {
  const { layer: la, head: ha } = parseHead(a), { layer: lb, head: hb } = parseHead(b);
  return la - lb || ha - hb;
}

/** The report's lines for the terminal. */
export function eapLines(r: EapReport): string[] {
  const k = r.knockout;
  const show = (e: Edge) => `${e.from} → ${e.to} ${e.score >= 0 ? '+' : ''}${e.score.toFixed(3)}`;
  return [
    `\n9. edge attribution patching${r.steps > 1 ? `, integrated gradients with ${r.steps} steps (EAP-IG)` : ' (EAP; --eap-steps for EAP-IG)'}: ${r.n_edges} edges scored in ${r.seconds.toFixed(1)} s`,
    `   top edges: ${r.edges.slice(0, 8).map(show).join(', ')}`,
    `   circuit of the top ${r.edges.length} edges: ${r.heads.length} heads (${r.heads.join(', ')})${r.mlps.length ? ` and ${r.mlps.join(', ')}` : ''}`,
    `   knockouts: F_model ${k.F_model.toFixed(3)}   F_circuit ${k.F_circuit.toFixed(3)}   F_empty ${k.F_empty.toFixed(3)}   faithfulness |F_model − F_circuit| = ${k.faithfulness.toFixed(3)}` +
      ` (${(100 * k.faithfulness / Math.abs(k.F_model)).toFixed(1)}% of F_model)`,
  ];
}
