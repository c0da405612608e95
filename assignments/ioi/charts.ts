/**
 * The IOI experiment's charts as vega-lite specs, data inline; cli/plot.ts renders them
 * (SVG, PNG) and wraps them in pages that open offline.
 *
 *   lensSpec           logit lens: IO − S by layer
 *   headGridSpec       a layer × head heatmap (DLA, activation patching), marked heads outlined
 *   residSpec          the residual-stream sweep, layer × position
 *   attentionBarsSpec  attention from END to IO, S1, S2 of the top heads
 *   pathSpec           path patching: to the logits and to the name movers' queries, side by side
 *   knockoutSpec       F_model / F_circuit / F_empty, completeness and minimality bars
 *   eapGraphSpec       the circuit of edge attribution patching's top edges, as a graph
 * (the full attention patterns use the induction experiment's attentionSpec)
 */
import type { TopLevelSpec } from '../../cli/plot.ts';
import { positionLabel } from '../../cli/plot.ts';
import type { HeadGrid, KnockoutResults } from './experiment.ts';
import type { Edge } from '../../lens/eap.ts';

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

export interface Marks {
  name_movers: readonly string[];
  circuit: readonly string[];
}

export function lensSpec(o: { model: string; lens: readonly number[]; F: number }): TopLevelSpec {
  const L = o.lens.length - 1;
  const values = o.lens.map((v, l) => ({ layer: l, label: l < L ? `entering block ${l}` : 'end (after the last block)', value: v }));
  return {
    $schema: SCHEMA,
    title: { text: `Logit lens on the IOI prompts (${o.model})`, subtitle: [`Mean logit(IO) − logit(S) at END read from the residual stream; the last point is the model's F = ${o.F.toFixed(3)}.`], anchor: 'start' },
    width: Math.max(360, 40 * (L + 1)),
    height: 260,
    layer: [
      {
        data: { values },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'layer', type: 'quantitative', title: 'layer (L = the end)', scale: { domain: [0, L] }, axis: { tickMinStep: 1 } },
          y: { field: 'value', type: 'quantitative', title: 'logit(IO) − logit(S)' },
          tooltip: [{ field: 'label', type: 'nominal', title: 'where' }, { field: 'value', type: 'quantitative', format: '.3f' }],
        },
      },
      { data: { values: [{ y: 0 }] }, mark: { type: 'rule', color: '#999' }, encoding: { y: { field: 'y', type: 'quantitative' } } },
    ],
  } as unknown as TopLevelSpec;
}

function gridPanel(grid: HeadGrid, what: string, marks: Marks | null, center: number, span: number, title: string | null) {
  const nm = new Set(marks?.name_movers ?? []), circ = new Set(marks?.circuit ?? []);
  const L = grid.length, H = grid[0]?.length ?? 0;
  const values = grid.flatMap((row, layer) => row.map((value, head) => {
    const name = `${layer}.${head}`;
    return { layer, head, name, value, mark: nm.has(name) ? 'name mover' : circ.has(name) ? 'circuit' : '' };
  }));
  const showText = L * H <= 200;
  return {
    ...(title ? { title } : {}),
    data: { values },
    width: { step: showText ? 34 : 22 },
    height: { step: showText ? 24 : 18 },
    encoding: {
      x: { field: 'head', type: 'ordinal', title: 'head', axis: { labelAngle: 0 } },
      y: { field: 'layer', type: 'ordinal', title: 'layer', sort: 'ascending' },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'value', type: 'quantitative', title: what, scale: { scheme: 'redblue', domainMid: center, domain: [center - span, center + span], clamp: true } },
          tooltip: [{ field: 'name', type: 'nominal', title: 'head' }, { field: 'value', type: 'quantitative', format: '.3f', title: what }, { field: 'mark', type: 'nominal', title: 'role' }],
        },
      },
      {
        transform: [{ filter: "datum.mark !== ''" }],
        mark: { type: 'rect', fillOpacity: 0, strokeWidth: 2 },
        encoding: { stroke: { field: 'mark', type: 'nominal', title: 'outlined', scale: { domain: ['name mover', 'circuit'], range: ['#111111', '#8c8c8c'] } } },
      },
      ...(showText ? [{ transform: [{ filter: 'datum.value !== null' }], mark: { type: 'text', fontSize: 8 }, encoding: { text: { field: 'value', type: 'quantitative', format: '.2f' } } }] : []),
    ],
  };
}

function spanOf(grids: HeadGrid[], center: number): number {
  let m = 0;
  for (const g of grids) for (const row of g) for (const v of row) if (v !== null) m = Math.max(m, Math.abs(v - center));
  return m || 1;
}

export function headGridSpec(o: { model: string; grid: HeadGrid; title: string; what: string; marks: Marks; center: number }): TopLevelSpec {
  return {
    $schema: SCHEMA,
    title: { text: `${o.title} (${o.model})`, subtitle: [`Mean over the prompts. Colour centred on ${o.center.toFixed(3)}; outlined: the name movers (black) and the other circuit heads (grey).`], anchor: 'start' },
    ...gridPanel(o.grid, o.what, o.marks, o.center, spanOf([o.grid], o.center), null),
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  } as unknown as TopLevelSpec;
}

export function residSpec(o: { model: string; matrix: number[][]; tokens: readonly string[]; clean: number; corrupt: number; group: string; prompts: number }): TopLevelSpec {
  const labels = o.tokens.map((t, i) => positionLabel(i, t));
  const values = o.matrix.flatMap((row, layer) => row.map((value, p) => ({ layer, position: labels[p], value })));
  const all = o.matrix.flat(), lo = Math.min(...all), hi = Math.max(...all);
  return {
    $schema: SCHEMA,
    title: {
      text: `Activation patching of the residual stream (${o.model})`,
      subtitle: [`The ABC run with block l's output at one position from the IOI run; mean logit(IO) − logit(S) over group "${o.group}" (${o.prompts} prompt${o.prompts === 1 ? "" : "s"}).`,
        `IOI run ${o.clean.toFixed(3)} (red), ABC run ${o.corrupt.toFixed(3)} (blue). Positions labelled with the first prompt's tokens.`],
      anchor: 'start',
    },
    data: { values },
    width: { step: 30 },
    height: { step: 20 },
    encoding: {
      x: { field: 'position', type: 'ordinal', sort: labels, title: 'position', axis: { labelAngle: -60 } },
      y: { field: 'layer', type: 'ordinal', title: 'block whose output is patched' },
    },
    layer: [{
      mark: { type: 'rect' },
      encoding: {
        color: { field: 'value', type: 'quantitative', title: 'IO − S', scale: { scheme: 'redblue', reverse: true, domain: [Math.min(lo, o.corrupt, o.clean), Math.max(hi, o.corrupt, o.clean)], clamp: true } },
        tooltip: [{ field: 'layer', type: 'ordinal' }, { field: 'position', type: 'nominal' }, { field: 'value', type: 'quantitative', format: '.3f' }],
      },
    }],
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  } as unknown as TopLevelSpec;
}

export function attentionBarsSpec(o: { model: string; heads: readonly { head: string; why: string; to_IO: number; to_S1: number; to_S2: number }[] }): TopLevelSpec {
  const values = o.heads.flatMap((h) => [
    { head: h.head, why: h.why, to: 'IO', weight: h.to_IO },
    { head: h.head, why: h.why, to: 'S1', weight: h.to_S1 },
    { head: h.head, why: h.why, to: 'S2', weight: h.to_S2 },
  ]);
  return {
    $schema: SCHEMA,
    title: { text: `Attention from END to the names (${o.model})`, subtitle: ['Mean over the prompts. Name movers attend to IO and not to S; S-inhibition makes that so.'], anchor: 'start' },
    data: { values },
    width: { step: 16 },
    height: 240,
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'head', type: 'nominal', sort: o.heads.map((h) => h.head), title: 'head', axis: { labelAngle: 0 } },
      xOffset: { field: 'to', type: 'nominal', sort: ['IO', 'S1', 'S2'] },
      y: { field: 'weight', type: 'quantitative', title: 'attention from END', scale: { domain: [0, 1] } },
      color: { field: 'to', type: 'nominal', sort: ['IO', 'S1', 'S2'], title: 'to', scale: { range: ['#1b9e77', '#d95f02', '#7570b3'] } },
      tooltip: [{ field: 'head', type: 'nominal' }, { field: 'why', type: 'nominal' }, { field: 'to', type: 'nominal' }, { field: 'weight', type: 'quantitative', format: '.3f' }],
    },
  } as unknown as TopLevelSpec;
}

export function pathSpec(o: { model: string; to_logits: HeadGrid; to_name_movers: HeadGrid; F: number; name_movers: readonly string[]; marks: Marks }): TopLevelSpec {
  const span = spanOf([o.to_logits, o.to_name_movers], o.F);
  return {
    $schema: SCHEMA,
    title: {
      text: `Path patching from every sender head (${o.model})`,
      subtitle: [`orig = IOI prompt, new = its ABC twin; mean logit(IO) − logit(S). White: the model's F = ${o.F.toFixed(3)}; blue: the path carries the answer.`,
        `Right: through the queries of ${o.name_movers.join(', ')} at END (blank: senders in or after their layer).`],
      anchor: 'start',
    },
    hconcat: [
      gridPanel(o.to_logits, 'IO − S', o.marks, o.F, span, 'to the logits'),
      gridPanel(o.to_name_movers, 'IO − S', o.marks, o.F, span, "to the name movers' queries"),
    ],
    resolve: { scale: { color: 'shared', stroke: 'shared' } },
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  } as unknown as TopLevelSpec;
}

export function knockoutSpec(o: { model: string; ko: KnockoutResults & { circuit_source: string } }): TopLevelSpec {
  const k = o.ko;
  const fs = [
    { what: 'F_model (nothing knocked out)', value: k.F_model },
    { what: 'F_circuit (only the circuit)', value: k.F_circuit },
    { what: 'F_empty (every head knocked out)', value: k.F_empty },
  ];
  const comp = k.completeness.map((c, i) => ({ set: `${i}: ${c.kind}`, K: c.K.join(', '), value: c.value, F_C_minus_K: c.F_C_minus_K, F_M_minus_K: c.F_M_minus_K }));
  const mini = k.minimality.map((m) => ({ head: m.head, value: m.value }));
  const bar = (x: string, title: string) => ({ mark: { type: 'bar' }, encoding: { x: { field: x, type: 'nominal', sort: null, title, axis: { labelAngle: -40, labelLimit: 200 } }, y: { field: 'value', type: 'quantitative' } } });
  return {
    $schema: SCHEMA,
    title: {
      text: `Knockouts of the IOI circuit (${o.model})`,
      subtitle: [`Circuit: ${k.circuit.length} heads (${k.circuit_source}), kept at ${k.positions === 'paper' ? "their class's positions" : 'every position'}; other heads mean-ablated over the ABC prompts.`,
        `Faithfulness |F_model − F_circuit| = ${k.faithfulness.toFixed(3)}.`],
      anchor: 'start',
    },
    hconcat: [
      { title: 'F', data: { values: fs }, width: { step: 40 }, height: 220, ...bar('what', ''), encoding: { ...bar('what', '').encoding, y: { field: 'value', type: 'quantitative', title: 'logit(IO) − logit(S)' }, tooltip: [{ field: 'what' }, { field: 'value', format: '.3f' }] } },
      { title: 'completeness |F(C\\K) − F(M\\K)|', data: { values: comp }, width: { step: 22 }, height: 220, ...bar('set', 'K'), encoding: { ...bar('set', 'K').encoding, tooltip: [{ field: 'K' }, { field: 'value', format: '.3f' }, { field: 'F_C_minus_K', format: '.3f' }, { field: 'F_M_minus_K', format: '.3f' }] } },
      { title: 'minimality |F(C\\{v}) − F(C)|', data: { values: mini }, width: { step: 16 }, height: 220, ...bar('head', 'head v'), encoding: { ...bar('head', 'head v').encoding, tooltip: [{ field: 'head' }, { field: 'value', format: '.3f' }] } },
    ],
  } as unknown as TopLevelSpec;
}

/**
 * The circuit of edge attribution patching's top edges as a graph: components as points, bottom
 * to top in the order the model runs them (embeddings, each layer's heads, its MLP, … the logits),
 * edges as lines, thicker for a larger |score|, blue where patching the edge raises IO − S and
 * orange where it lowers it; an edge into a head is labelled with the input it reaches (q, k, v).
 */
export function eapGraphSpec(o: { model: string; edges: readonly Edge[]; L: number; nh: number; steps: number; faithfulness: number; F_model: number }): TopLevelSpec {
  const mid = (o.nh - 1) / 2;
  const place = (node: string): { x: number; y: number; name: string } => {
    if (node === 'embed') return { x: mid, y: 0, name: 'embed' };
    if (node === 'logits') return { x: mid, y: 2 * o.L + 1, name: 'logits' };
    const m = node.match(/^([am])(\d+)(?:\.(\d+))?/)!;
    const l = Number(m[2]);
    return m[1] === 'm' ? { x: mid, y: 2 * l + 2, name: `MLP ${l}` } : { x: Number(m[3]), y: 2 * l + 1, name: `${l}.${m[3]}` };
  };
  // a head's three inputs meet it side by side (q left, k centre, v right), each line labelled near its end
  const fan: Record<string, number> = { q: -0.15, k: 0, v: 0.15, '': 0 };
  const edges = o.edges.map((e) => {
    const a = place(e.from), b = place(e.to), input = e.to.match(/\.([qkv])$/)?.[1] ?? '';
    const x2 = b.x + fan[input];
    return { x: a.x, y: a.y, x2, y2: b.y, from: e.from, to: e.to, input, score: e.score, size: Math.abs(e.score), sign: e.score >= 0 ? 'raises IO − S' : 'lowers IO − S', lx: (a.x + 4 * x2) / 5, ly: (a.y + 4 * b.y) / 5 };
  });
  const nodes = [...new Map(o.edges.flatMap((e) => [e.from, e.to]).map((n) => place(n.replace(/\.[qkv]$/, ''))).map((p) => [p.name, p])).values()];
  const kind = (n: string) => (n === 'embed' || n === 'logits' ? n : n.startsWith('MLP') ? 'MLP' : 'head');
  const xs = { field: 'x', type: 'quantitative', scale: { domain: [-0.5, o.nh - 0.5] }, axis: null };
  const ys = { field: 'y', type: 'quantitative', scale: { domain: [-0.5, 2 * o.L + 1.5] }, axis: null };
  return {
    $schema: SCHEMA,
    title: {
      text: `The circuit of the top ${o.edges.length} edges (edge attribution patching${o.steps > 1 ? `, integrated gradients, ${o.steps} steps` : ''}), ${o.model}`,
      subtitle: [
        'Bottom to top in the order the model runs: embeddings, each layer\'s heads (layer.head), its MLP, the logits.',
        `Thicker: larger |score|. Knocking out every head off the circuit: faithfulness |F_model − F_circuit| = ${o.faithfulness.toFixed(3)} (F_model ${o.F_model.toFixed(3)}).`,
      ],
      anchor: 'start',
    },
    width: Math.max(420, 70 * o.nh),
    height: Math.max(300, 45 * (2 * o.L + 2)),
    layer: [
      {
        data: { values: edges },
        mark: { type: 'rule', opacity: 0.8 },
        encoding: {
          x: xs, y: ys, x2: { field: 'x2' }, y2: { field: 'y2' },
          strokeWidth: { field: 'size', type: 'quantitative', scale: { range: [0.5, 7] }, legend: null },
          color: { field: 'sign', type: 'nominal', scale: { domain: ['raises IO − S', 'lowers IO − S'], range: ['#2f78b3', '#e8932f'] }, legend: { orient: 'bottom', title: null } },
          tooltip: [{ field: 'from', title: 'from' }, { field: 'to', title: 'to' }, { field: 'score', type: 'quantitative', format: '+.4f', title: 'score' }],
        },
      },
      { data: { values: edges }, mark: { type: 'text', fontSize: 10, color: '#555', dx: 7 }, encoding: { x: { ...xs, field: 'lx' }, y: { ...ys, field: 'ly' }, text: { field: 'input' } } },
      {
        data: { values: nodes.map((n) => ({ ...n, kind: kind(n.name) })) },
        mark: { type: 'circle', size: 420, opacity: 1, stroke: 'white' },
        encoding: { x: xs, y: ys, fill: { field: 'kind', type: 'nominal', scale: { domain: ['embed', 'head', 'MLP', 'logits'], range: ['#888', '#54a24b', '#b279a2', '#333'] }, legend: null }, tooltip: [{ field: 'name', title: 'component' }] },
      },
      { data: { values: nodes }, mark: { type: 'text', fontSize: 10, dy: -16 }, encoding: { x: xs, y: ys, text: { field: 'name' } } },
    ],
    config: { view: { stroke: null } },
  } as TopLevelSpec;
}
