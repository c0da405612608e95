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
 *
 * One colour convention for every IOI grid: the value of logit(IO) − logit(S) on vega's
 * "redblue" scheme, blue where it is higher (toward IO, the right answer), red where it is lower
 * (toward S), white at the grid's reference value (0, the ABC run's F, or the model's F). The
 * captions name the colours from the scale and the data, so they cannot drift apart.
 */
import type { TopLevelSpec } from '../../cli/plot.ts';
import { positionLabel } from '../../cli/plot.ts';
import { cellLabels, cellTextFit, cellTextLayer, colourBarLegend, colourWord, fixed, vlColourScale, type ColourScale } from '../../cli/chart_colour.ts';
import { extent, pickIndices, wrapToWidth } from '../../cli/chart_layout.ts';
import type { HeadGrid, KnockoutResults } from './experiment.ts';
import type { Edge } from '../../lens/eap.ts';
import { headName } from '../../lens/heads.ts';

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const f3 = (v: number) => fixed(v, 3);

export interface Marks {
  name_movers: readonly string[];
  circuit: readonly string[];
}

export function lensSpec(o: { model: string; lens: readonly number[]; F: number }): TopLevelSpec {
  const L = o.lens.length - 1;
  const values = o.lens.map((v, l) => ({ layer: l, label: l < L ? `entering block ${l}` : 'end (after the last block)', value: v }));
  return {
    $schema: SCHEMA,
    title: { text: `Logit lens on the IOI prompts (${o.model})`, subtitle: [`Mean logit(IO) − logit(S) at END read from the residual stream; the last point is the model's F = ${f3(o.F)}.`, 'Above 0: the stream already favours IO.'], anchor: 'start' },
    width: Math.max(360, 40 * (L + 1)),
    height: 260,
    layer: [
      {
        data: { values },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'layer', type: 'quantitative', title: 'residual stream entering block … (L = after the last block)', scale: { domain: [0, L] }, axis: { tickMinStep: 1 } },
          y: { field: 'value', type: 'quantitative', title: 'logit(IO) − logit(S)' },
          tooltip: [{ field: 'label', type: 'nominal', title: 'where' }, { field: 'value', type: 'quantitative', format: '.3f' }],
        },
      },
      { data: { values: [{ y: 0 }] }, mark: { type: 'rule', color: '#999' }, encoding: { y: { field: 'y', type: 'quantitative' } } },
    ],
  } as unknown as TopLevelSpec;
}

/** The IOI grids' scale: redblue centred on `center`, wide enough for every value given. */
function ioiScale(center: number, values: Iterable<number | null>): ColourScale {
  const [lo, hi] = extent(values);
  const span = Number.isNaN(lo) ? 1 : Math.max(Math.abs(lo - center), Math.abs(hi - center)) || 1;
  return { scheme: 'redblue', domain: [center - span, center + span] };
}

/** "blue: higher than X (…); red: lower (…)", read off the scale. */
function colourKey(s: ColourScale, center: number, centerName: string, higher: string, lower: string): string {
  const [lo, hi] = s.domain;
  return `white: ${centerName} ${f3(center)}; ${colourWord(s, hi)}: higher, ${higher}; ${colourWord(s, lo)}: lower, ${lower}`;
}

const OUTLINES = 'Outlined: the name movers (black) and the other circuit heads (grey).';

function gridPanel(grid: HeadGrid, what: string | string[], marks: Marks | null, scale: ColourScale, title: string | null, minWidth: number) {
  const nm = new Set(marks?.name_movers ?? []), circ = new Set(marks?.circuit ?? []);
  const H = grid[0]?.length ?? 0;
  // few heads get wider cells, so that the grid, not its caption, sets the picture's width; and
  // few layers taller ones, so that wide cells are not flat strips
  const stepX = Math.min(120, Math.max(H <= 12 ? 38 : 24, Math.floor(minWidth / Math.max(1, H)))), stepY = grid.length <= 6 ? 32 : 24;
  const values = grid.flatMap((row, layer) => row.map((value, head) => {
    const name = headName({ layer, head });
    return { layer, head, name, value, mark: nm.has(name) ? 'name mover' : circ.has(name) ? 'circuit' : '' };
  }));
  const fit = cellTextFit(values.map((d) => d.value ?? NaN), stepX, stepY);
  const data = cellLabels(values, (d) => d.value, scale, fit.decimals);
  return {
    ...(title ? { title } : {}),
    data: { values: data },
    width: { step: stepX },
    height: { step: stepY },
    encoding: {
      x: { field: 'head', type: 'ordinal', title: 'head', axis: { labelAngle: 0 } },
      y: { field: 'layer', type: 'ordinal', title: 'layer', sort: 'ascending' },
    },
    layer: [
      {
        transform: [{ filter: 'datum.value !== null' }],
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'value', type: 'quantitative', title: Array.isArray(what) ? what.join(' ') : what, scale: vlColourScale(scale), legend: colourBarLegend() },
          tooltip: [{ field: 'name', type: 'nominal', title: 'head' }, { field: 'value', type: 'quantitative', format: '.3f', title: 'IO − S' }, { field: 'mark', type: 'nominal', title: 'role' }],
        },
      },
      {
        transform: [{ filter: "datum.mark !== ''" }],
        mark: { type: 'rect', fillOpacity: 0, strokeWidth: 2.5 },
        // no legend: the caption says what the outlines are (OUTLINES), and a legend under the colour
        // scale made the column beside a short grid taller than the grid, blank beneath it
        encoding: { stroke: { field: 'mark', type: 'nominal', scale: { domain: ['name mover', 'circuit'], range: ['#111111', '#8c8c8c'] }, legend: null } },
      },
      ...(fit.show ? [{ transform: [{ filter: 'datum.value !== null' }], ...cellTextLayer(fit.fontSize) }] : []),
    ],
  };
}

export function headGridSpec(o: { model: string; grid: HeadGrid; title: string; what: string | string[]; marks: Marks; center: number; centerName: string; higher: string; lower: string }): TopLevelSpec {
  const scale = ioiScale(o.center, o.grid.flat());
  return {
    $schema: SCHEMA,
    title: {
      text: `${o.title} (${o.model})`,
      subtitle: ['Mean over the prompts.', colourKey(scale, o.center, o.centerName, o.higher, o.lower), OUTLINES],
      anchor: 'start',
    },
    ...gridPanel(o.grid, o.what, o.marks, scale, null, 400),
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  } as unknown as TopLevelSpec;
}

/** Positions a residual-stream chart shows at most; a longer prompt shows those where patching matters most. */
const MAX_POSITIONS = 40;

export function residSpec(o: { model: string; matrix: number[][]; tokens: readonly string[]; clean: number; corrupt: number; group: string; prompts: number }): TopLevelSpec {
  const labels = o.tokens.map((t, i) => positionLabel(i, t));
  const T = labels.length;
  const scale = ioiScale(o.corrupt, [...o.matrix.flat(), o.clean]);
  const effect = (v: number) => Math.abs(v - o.corrupt);
  const cols = T > MAX_POSITIONS ? pickIndices(labels.map((_, p) => extent(o.matrix.map((row) => effect(row[p])))[1]), MAX_POSITIONS, [T - 1]) : labels.map((_, p) => p);
  const stepX = Math.min(120, Math.max(40, Math.floor(400 / cols.length))), stepY = o.matrix.length <= 6 ? 30 : 22; // (few layers: taller cells, as in the head grids)
  const raw = o.matrix.flatMap((row, layer) => cols.map((p) => ({ layer, position: labels[p], value: row[p] })));
  const fit = cellTextFit(raw.map((d) => d.value), stepX, stepY);
  const values = cellLabels(raw, (d) => d.value, scale, fit.decimals);
  const shown = cols.map((p) => labels[p]);
  return {
    $schema: SCHEMA,
    title: {
      text: `Activation patching of the residual stream (${o.model})`,
      subtitle: [
        `The ABC run with one block's output (row: its layer) at one position taken from the IOI run; mean logit(IO) − logit(S) over group "${o.group}" (${o.prompts} prompt${o.prompts === 1 ? '' : 's'}). Positions labelled with the first prompt's tokens.`,
        `white: the ABC run ${f3(o.corrupt)}; the IOI run ${f3(o.clean)} is ${colourWord(scale, o.clean)}; ${colourWord(scale, scale.domain[1])}: higher IO − S (toward IO), ${colourWord(scale, scale.domain[0])}: lower (toward S).`,
        ...(cols.length < T ? [`showing the ${cols.length} of ${T} positions where a patch moves IO − S most (all in ioi.json)`] : []),
      ],
      anchor: 'start',
    },
    data: { values },
    width: { step: stepX },
    height: { step: stepY },
    encoding: {
      x: { field: 'position', type: 'ordinal', scale: { domain: shown }, title: 'position: token (first prompt)', axis: { labelAngle: -90, labelAlign: 'right', labelBaseline: 'middle' } },
      y: { field: 'layer', type: 'ordinal', title: 'layer' },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'value', type: 'quantitative', title: 'IO − S', scale: vlColourScale(scale), legend: colourBarLegend() },
          tooltip: [{ field: 'layer', type: 'ordinal' }, { field: 'position', type: 'nominal' }, { field: 'value', type: 'quantitative', format: '.3f' }],
        },
      },
      ...(fit.show ? [cellTextLayer(fit.fontSize)] : []),
    ],
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  } as unknown as TopLevelSpec;
}

interface AttentionRow { head: string; why: string; to_IO: number; to_S1: number; to_S2: number }

/**
 * What the attention bars show about the name movers, from the numbers: whether each attends more
 * to IO than to S (S1 and S2 together). Null when no name mover is among the heads.
 */
export function nameMoverCaption(heads: readonly AttentionRow[], nameMovers: readonly string[]): string | null {
  const nm = heads.filter((h) => nameMovers.includes(h.head));
  if (!nm.length) return null;
  const more = nm.filter((h) => h.to_IO > h.to_S1 + h.to_S2);
  const fmt = (h: AttentionRow) => `${h.head} (IO ${fixed(h.to_IO, 2)}, S ${fixed(h.to_S1 + h.to_S2, 2)})`;
  if (more.length === nm.length) return `The name movers attend more to IO than to S (S1 + S2): ${nm.map(fmt).join(', ')}.`;
  if (!more.length) return `The name movers do not attend more to IO than to S (S1 + S2) here: ${nm.map(fmt).join(', ')}.`;
  const rest = nm.filter((h) => !more.includes(h));
  return `Attending more to IO than to S (S1 + S2): ${more.map(fmt).join(', ')}; not: ${rest.map(fmt).join(', ')}.`;
}

export function attentionBarsSpec(o: { model: string; heads: readonly AttentionRow[]; nameMovers: readonly string[] }): TopLevelSpec {
  const values = o.heads.flatMap((h) => [
    { head: h.head, why: h.why, to: 'IO', weight: h.to_IO },
    { head: h.head, why: h.why, to: 'S1', weight: h.to_S1 },
    { head: h.head, why: h.why, to: 'S2', weight: h.to_S2 },
  ]);
  const caption = nameMoverCaption(o.heads, o.nameMovers);
  return {
    $schema: SCHEMA,
    title: { text: `Attention from END to the names (${o.model})`, subtitle: ['Mean over the prompts; hover a bar for why the head is shown.', ...(caption ? [caption] : [])], anchor: 'start' },
    data: { values },
    width: Math.max(300, 54 * o.heads.length),
    height: 240,
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'head', type: 'nominal', scale: { domain: o.heads.map((h) => h.head) }, title: 'head', axis: { labelAngle: 0 } },
      xOffset: { field: 'to', type: 'nominal', sort: ['IO', 'S1', 'S2'] },
      y: { field: 'weight', type: 'quantitative', title: 'attention from END', scale: { domain: [0, 1] } },
      color: { field: 'to', type: 'nominal', sort: ['IO', 'S1', 'S2'], title: 'to', scale: { range: ['#1b9e77', '#d95f02', '#7570b3'] } },
      tooltip: [{ field: 'head', type: 'nominal' }, { field: 'why', type: 'nominal' }, { field: 'to', type: 'nominal' }, { field: 'weight', type: 'quantitative', format: '.3f' }],
    },
  } as unknown as TopLevelSpec;
}

export function pathSpec(o: { model: string; to_logits: HeadGrid; to_name_movers: HeadGrid; F: number; name_movers: readonly string[]; marks: Marks }): TopLevelSpec {
  const scale = ioiScale(o.F, [...o.to_logits.flat(), ...o.to_name_movers.flat()]);
  return {
    $schema: SCHEMA,
    title: {
      text: `Path patching from every sender head (${o.model})`,
      subtitle: [
        'orig = IOI prompt, new = its ABC twin; each cell: mean logit(IO) − logit(S) with one sender\'s path taken from the ABC run.',
        colourKey(scale, o.F, "the model's F", 'the path pushed toward S', 'the path carries the answer'),
        `Right: through the queries of ${o.name_movers.join(', ')} at END (blank: senders in or after their layer).`,
        OUTLINES,
      ],
      anchor: 'start',
    },
    hconcat: [
      gridPanel(o.to_logits, 'IO − S', o.marks, scale, 'to the logits', 260),
      gridPanel(o.to_name_movers, 'IO − S', o.marks, scale, "to the name movers' queries", 260),
    ],
    resolve: { scale: { color: 'shared', stroke: 'shared' } },
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  } as unknown as TopLevelSpec;
}

/** Horizontal bars with their values printed at the ends; labels on the left, never cut. */
/** The width of a knockout bar panel's plot. */
const BAR_WIDTH = 360;

function barPanel(title: string | { text: string; subtitle: string[] }, values: { label: string; value: number; tip?: string }[], xTitle: string, domainMax?: number) {
  const [lo, hi] = extent(values.map((v) => v.value));
  let max = Math.max(Number.isNaN(hi) ? 0 : hi, domainMax ?? 0), min = Math.min(Number.isNaN(lo) ? 0 : lo, 0);
  // room for the numbers printed beyond the bars' ends
  const room = 0.18 * (max - min || 1);
  if (max > 0) max += room;
  if (min < 0) min -= room;
  // a panel's subtitle wrapped to the plot's width: a longer line widened the whole picture
  const t = typeof title === 'string' ? title : { ...title, subtitle: title.subtitle.flatMap((line) => wrapToWidth(line, BAR_WIDTH, 11)) };
  return {
    title: t,
    data: { values: values.map((v) => ({ ...v, text: f3(v.value) })) },
    width: BAR_WIDTH,
    height: { step: 22 },
    encoding: {
      y: { field: 'label', type: 'nominal', scale: { domain: values.map((v) => v.label) }, title: null, axis: { labelLimit: 320 } },
      x: { field: 'value', type: 'quantitative', title: xTitle, scale: { domain: [min, max === min ? min + 1 : max], nice: false } },
      tooltip: [{ field: 'label', type: 'nominal', title: 'what' }, { field: 'value', type: 'quantitative', format: '.3f' }, ...(values.some((v) => v.tip) ? [{ field: 'tip', type: 'nominal', title: 'detail' }] : [])],
    },
    layer: [
      { mark: { type: 'bar', color: '#4c78a8' } },
      // the number beyond the bar's end: right of a positive bar, left of a negative one
      { mark: { type: 'text', align: { expr: "datum.value < 0 ? 'right' : 'left'" }, dx: { expr: 'datum.value < 0 ? -3 : 3' }, fontSize: 10 }, encoding: { text: { field: 'text', type: 'nominal' } } },
    ],
  };
}

export function knockoutSpec(o: { model: string; ko: KnockoutResults & { circuit_source: string } }): TopLevelSpec {
  const k = o.ko;
  const scaleOf = Math.abs(k.F_model) || 1;
  // a set of a few heads is named in full; a larger one by its size (all its heads in the tooltip), so no label is cut
  let random = 0;
  const comp = k.completeness.map((c) => ({
    label: `${c.kind === 'random' ? `random set ${++random}` : c.kind}: ${c.K.length <= 4 ? `K = {${c.K.join(', ')}}` : `${c.K.length} heads`}`,
    value: c.value, tip: `K = {${c.K.join(', ')}}; F(C\\K) ${f3(c.F_C_minus_K)}, F(M\\K) ${f3(c.F_M_minus_K)}`,
  }));
  const allZero = comp.every((c) => c.value === 0);
  // each head's class, from the completeness sets made one per class ("class name_mover": K = its heads)
  const classOf = new Map(k.completeness.filter((c) => c.kind.startsWith('class ')).flatMap((c) => c.K.map((h) => [h, c.kind.slice('class '.length)] as const)));
  return {
    $schema: SCHEMA,
    title: {
      text: `Knockouts of the IOI circuit (${o.model})`,
      subtitle: [`Circuit: ${k.circuit.length} heads (${k.circuit_source}), kept at ${k.positions === 'paper' ? "their class's positions" : 'every position'}; other heads mean-ablated over the ABC prompts.`,
        `Faithfulness |F_model − F_circuit| = ${f3(k.faithfulness)} (${fixed((100 * k.faithfulness) / scaleOf, 1)}% of |F_model|).`],
      anchor: 'start',
    },
    vconcat: [
      barPanel('F: logit(IO) − logit(S)', [
        { label: 'F_model (nothing knocked out)', value: k.F_model },
        { label: 'F_circuit (only the circuit)', value: k.F_circuit },
        { label: 'F_empty (every head knocked out)', value: k.F_empty },
      ], 'logit(IO) − logit(S)'),
      ...(comp.length ? [barPanel({ text: 'completeness |F(C\\K) − F(M\\K)|', subtitle: [allZero ? 'every value is 0: removing K hurts the circuit exactly as much as the model' : 'small: removing K hurts the circuit as much as the model'] },
        comp, '|F(C\\K) − F(M\\K)|', 0.05 * scaleOf)] : []),
      barPanel({ text: 'minimality |F(C\\{v}) − F(C)|', subtitle: ['large: the circuit needs head v'] },
        k.minimality.map((m) => ({ label: classOf.has(m.head) ? `head ${m.head} (${classOf.get(m.head)})` : `head ${m.head}`, value: m.value })), '|F(C\\{v}) − F(C)|', 0.05 * scaleOf),
    ],
    config: { axis: { labelFontSize: 11, titleFontSize: 12 } },
  } as unknown as TopLevelSpec;
}

/** The EAP graph's geometry, in pixels of the plot (y upward, 0 at the bottom). */
const EAP = {
  /** left of the nodes: each band's label */
  gutter: 64,
  /** the narrowest picture, and the room each head of the fullest row gets */
  minWidth: 560, slot: 96,
  /** a head's box (its name above, its inputs q k v along its lower edge) and the other nodes' boxes */
  head: { w: 54, h: 34 }, other: { w: 60, h: 22 },
  /** where q and v enter a head, either side of k at its centre */
  port: 15,
  /** the height of a row of heads, of a row of one node, and the white gap between two bands */
  headRow: 100, oneRow: 56, gap: 4,
  /** the room a line keeps from a box it passes; a line passing beside a box runs this far from it, the next one a step farther */
  clear: 8, lane: 12, laneStep: 6,
} as const;

type EapKind = 'embed' | 'head' | 'MLP' | 'logits';
interface EapNode { id: string; name: string; kind: EapKind; x: number; y: number; w: number; h: number }
type Point = [number, number];

/**
 * Where edge attribution patching's graph draws each node and edge. Rows run bottom to top in the
 * order the model runs (the embeddings, each layer's heads, its MLP, the logits), only the rows that
 * hold a node; a layer's heads and its MLP share one band, labelled with the layer. A row's heads
 * spread across the whole width in head order; the embeddings and the logits sit at the centre; a
 * node alone in its row (an MLP, a lone head) where the fewest lines cross boxes, of those places
 * the nearest to the mean of the heads it is joined to. An edge leaves its node at the top
 * centre and enters a head at its input: q left, k centre, v right, on the head's lower edge. A line
 * that would run through a box of a row between its ends passes beside it instead, straight up
 * (the side nearer the straight line; the next line on that side a step farther out).
 */
export function eapLayout(edges: readonly Edge[]) {
  const base = (id: string) => id.replace(/\.[qkv]$/, '');
  const ids = [...new Set(edges.flatMap((e) => [base(e.from), base(e.to)]))];
  // the order the model runs: embed −1, layer l's heads 2l, its MLP 2l + 1, the logits last
  const info = (id: string) => {
    if (id === 'embed' || id === 'logits') return { stage: id === 'embed' ? -1 : Infinity, band: id === 'embed' ? 'input' : 'output', kind: id as EapKind, name: id, index: 0 };
    const m = id.match(/^([am])(\d+)(?:\.(\d+))?$/)!;
    const l = Number(m[2]);
    return m[1] === 'a'
      ? { stage: 2 * l, band: `layer ${l}`, kind: 'head' as const, name: `${l}.${m[3]}`, index: Number(m[3]) }
      : { stage: 2 * l + 1, band: `layer ${l}`, kind: 'MLP' as const, name: `MLP ${l}`, index: 0 };
  };
  const rows = [...new Set(ids.map((id) => info(id).stage))].sort((a, b) => a - b)
    .map((stage) => ids.filter((id) => info(id).stage === stage).sort((a, b) => info(a).index - info(b).index));
  const nodes = new Map<string, EapNode & { row: number }>();
  const bands: { label: string; y: number; y2: number }[] = [];
  let y = 0;
  rows.forEach((row, r) => {
    const { band, kind } = info(row[0]);
    const height = kind === 'head' ? EAP.headRow : EAP.oneRow;
    if (bands.length && bands[bands.length - 1].label !== band) y += EAP.gap;
    if (bands[bands.length - 1]?.label === band) bands[bands.length - 1].y2 = y + height;
    else bands.push({ label: band, y, y2: y + height });
    for (const id of row) nodes.set(id, { id, name: info(id).name, kind, row: r, x: 0, y: y + height / 2, ...(kind === 'head' ? EAP.head : EAP.other) });
    y += height;
  });
  // room for the fullest row's heads, and at least half as wide as high (a tall, narrow picture
  // crowds the lines of a large circuit)
  const width = Math.max(EAP.minWidth, EAP.gutter + EAP.slot * Math.max(...rows.map((r) => r.length)), Math.round(y / 2));
  const centre = (EAP.gutter + width) / 2;
  for (const row of rows) {
    row.forEach((id, i) => {
      const n = nodes.get(id)!;
      n.x = n.kind === 'head' ? EAP.gutter + ((i + 0.5) * (width - EAP.gutter)) / row.length : centre;
    });
  }
  const dx: Record<string, number> = { q: -EAP.port, k: 0, v: EAP.port, '': 0 };
  const ends = (e: Edge) => {
    const a = nodes.get(base(e.from))!, b = nodes.get(base(e.to))!, input = e.to.match(/\.([qkv])$/)?.[1] ?? '';
    return { a, b, input, start: [a.x, a.y + a.h / 2] as Point, end: [b.x + dx[input], b.y - b.h / 2] as Point };
  };
  // where the line from p to q runs between heights y0 and y1: [leftmost, rightmost] x
  const span = (p: Point, q: Point, y0: number, y1: number) => {
    const at = (yy: number) => p[0] + ((q[0] - p[0]) * (yy - p[1])) / (q[1] - p[1]);
    return [Math.min(at(y0), at(y1)), Math.max(at(y0), at(y1))];
  };
  const blocks = (n: EapNode, x: number, [lo, hi]: number[]) => hi > x - n.w / 2 - EAP.clear && lo < x + n.w / 2 + EAP.clear;
  const boxesIn = rows.map((row) => row.map((id) => nodes.get(id)!));
  // the heights within which a line may not cross row r's boxes
  const keepOut = (r: number) => [boxesIn[r][0].y - boxesIn[r][0].h / 2 - EAP.clear, boxesIn[r][0].y + boxesIn[r][0].h / 2 + EAP.clear];
  // how many boxes the straight lines of these edges run through
  const crossings = (list: readonly Edge[]) => list.map(ends).reduce((count, { a, b, start, end }) => {
    for (let r = a.row + 1; r < b.row; r++) {
      const s = span(start, end, keepOut(r)[0], keepOut(r)[1]);
      count += boxesIn[r].filter((n) => blocks(n, n.x, s)).length;
    }
    return count;
  }, 0);
  // a node alone in its row (an MLP, a lone head), bottom to top: where its own lines run through
  // the fewest boxes and the fewest lines passing its row run through it; of those places (every
  // 4 px) the nearest to the mean of the heads it is joined to, or to the centre
  for (const n of nodes.values()) {
    if ((n.kind !== 'MLP' && n.kind !== 'head') || boxesIn[n.row].length > 1) continue;
    const own = edges.filter((e) => base(e.from) === n.id || base(e.to) === n.id);
    const joined = own.map((e) => nodes.get(base(e.from) === n.id ? base(e.to) : base(e.from))!).filter((m) => m.kind === 'head');
    const want = joined.length ? joined.reduce((sum, m) => sum + m.x, 0) / joined.length : centre;
    const passing = edges.map(ends).filter(({ a, b }) => a.row < n.row && b.row > n.row).map(({ start, end }) => span(start, end, keepOut(n.row)[0], keepOut(n.row)[1]));
    const lo = EAP.gutter + n.w / 2, hi = width - n.w / 2;
    let best = Math.min(hi, Math.max(lo, want)), least = Infinity;
    for (const x of [best, ...Array.from({ length: Math.floor((hi - lo) / 4) + 1 }, (_, i) => lo + 4 * i)]) {
      n.x = x;
      const cost = crossings(own) + passing.filter((s) => blocks(n, x, s)).length;
      if (cost < least || (cost === least && Math.abs(x - want) < Math.abs(best - want))) [best, least] = [x, cost];
    }
    n.x = best;
  }
  const uses = new Map<string, number>();
  const lines = edges.map((e) => {
    const { a, b, input, start, end } = ends(e);
    const points: Point[] = [start];
    for (let r = a.row + 1; r < b.row; r++) {
      const [y0, y1] = keepOut(r);
      const s = span(points[points.length - 1], end, y0, y1);
      const box = boxesIn[r].find((n) => blocks(n, n.x, s));
      if (!box) continue;
      const side = (s[0] + s[1]) / 2 < box.x ? -1 : 1, key = `${box.id} ${side}`, k = uses.get(key) ?? 0;
      uses.set(key, k + 1);
      const x = box.x + side * (box.w / 2 + EAP.lane + k * EAP.laneStep);
      points.push([x, y0], [x, y1]);
    }
    points.push(end);
    return { from: e.from, to: e.to, input, score: e.score, points };
  });
  const used = new Set(lines.map((l) => `${base(l.to)}.${l.input}`));
  const ports = [...nodes.values()].filter((n) => n.kind === 'head')
    .flatMap((n) => ['q', 'k', 'v'].map((input) => ({ x: n.x + dx[input], y: n.y - n.h / 2 + 8, input, used: used.has(`${n.id}.${input}`) })));
  return { width, height: y, bands, nodes: [...nodes.values()].map(({ row: _, ...n }) => n), edges: lines, ports };
}

/**
 * The circuit of edge attribution patching's top edges as a graph (eapLayout): components as boxes
 * in bands, one per layer, bottom to top in the order the model runs; edges as lines, thicker for a
 * larger |score|, blue where patching the edge raises IO − S and orange where it lowers it, each
 * entering a head at the input it reaches (q, k, v, marked on the head's lower edge).
 */
export function eapGraphSpec(o: { model: string; edges: readonly Edge[]; L: number; steps: number; faithfulness: number; F_model: number }): TopLevelSpec {
  const g = eapLayout(o.edges);
  const layers = g.bands.filter((b) => b.label.startsWith('layer')).length;
  // what feeds the logits, largest |score| first (at most 8 named)
  const toLogits = o.edges.filter((e) => e.to === 'logits').sort((a, b) => Math.abs(b.score) - Math.abs(a.score)).map((e) => g.nodes.find((n) => n.id === e.from)!.name);
  const xs = { field: 'x', type: 'quantitative', scale: { domain: [0, g.width], nice: false, zero: false }, axis: null };
  const ys = { field: 'y', type: 'quantitative', scale: { domain: [0, g.height], nice: false, zero: false }, axis: null };
  const maxSize = Math.max(...o.edges.map((e) => Math.abs(e.score))) || 1;
  const fill = { domain: ['embed', 'head', 'MLP', 'logits'], range: ['#e3e3e3', '#d3ebcd', '#ecd8e8', '#d6d6d6'] };
  const stroke = { domain: fill.domain, range: ['#777', '#4c9a44', '#a0679a', '#444'] };
  return {
    $schema: SCHEMA,
    title: {
      text: `The circuit of the top ${o.edges.length} edges (edge attribution patching${o.steps > 1 ? `, integrated gradients, ${o.steps} steps` : ''}), ${o.model}`,
      subtitle: [
        `Bottom to top in the order the model runs: the embeddings, each layer's heads (layer.head) and its MLP, the logits; the ${layers} of ${o.L} layers the circuit uses.`,
        'An edge leaves a component at its top and enters a head at its query, key or value (q, k, v on the head\'s lower edge; dark where an edge enters).',
        'Blue: patching the edge raises IO − S; orange: it lowers it. Thicker: larger |score|.',
        ...(toLogits.length ? [`Into the logits: ${toLogits.slice(0, 8).join(', ')}${toLogits.length > 8 ? ` and ${toLogits.length - 8} more` : ''}.`] : []),
        `Knocking out every head off the circuit: faithfulness |F_model − F_circuit| = ${o.faithfulness.toFixed(3)} (F_model ${o.F_model.toFixed(3)}).`,
      ],
      anchor: 'start',
    },
    width: g.width,
    height: g.height,
    layer: [
      {
        data: { values: g.bands.map((b) => ({ x: 0, x2: g.width, y: b.y, y2: b.y2 })) },
        mark: { type: 'rect', color: '#f2f2f2' },
        encoding: { x: xs, x2: { field: 'x2' }, y: ys, y2: { field: 'y2' } },
      },
      {
        data: { values: g.bands.map((b) => ({ x: 6, y: (b.y + b.y2) / 2, label: b.label })) },
        mark: { type: 'text', align: 'left', baseline: 'middle', fontSize: 11, color: '#555' },
        encoding: { x: xs, y: ys, text: { field: 'label' } },
      },
      {
        // each edge a line through its points (order), the larger |score| drawn over the smaller
        data: {
          values: [...g.edges].sort((a, b) => Math.abs(a.score) - Math.abs(b.score)).flatMap((e, id) => e.points.map(([x, y], i) => ({
            id, i, x, y, from: e.from, to: e.to, score: e.score, size: Math.abs(e.score), sign: e.score >= 0 ? 'raises IO − S' : 'lowers IO − S',
          }))),
        },
        mark: { type: 'line', opacity: 0.85, strokeCap: 'round', strokeJoin: 'round' },
        encoding: {
          x: xs, y: ys, detail: { field: 'id', type: 'nominal' }, order: { field: 'i', type: 'quantitative' },
          strokeWidth: { field: 'size', type: 'quantitative', scale: { domain: [0, maxSize], range: [0.75, 7] }, legend: null },
          // the key in the top band, left of the logits
          color: {
            field: 'sign', type: 'nominal', scale: { domain: ['raises IO − S', 'lowers IO − S'], range: ['#2f78b3', '#e8932f'] },
            legend: { orient: 'none', legendX: EAP.gutter + 8, legendY: 10, direction: 'vertical', title: null, symbolType: 'stroke', symbolStrokeWidth: 3, labelFontSize: 11 },
          },
          tooltip: [{ field: 'from', title: 'from' }, { field: 'to', title: 'to' }, { field: 'score', type: 'quantitative', format: '+.4f', title: 'score' }],
        },
      },
      {
        data: { values: g.nodes.map((n) => ({ ...n, x: n.x - n.w / 2, x2: n.x + n.w / 2, y: n.y - n.h / 2, y2: n.y + n.h / 2 })) },
        mark: { type: 'rect', cornerRadius: 4, strokeWidth: 1.5 },
        encoding: {
          x: xs, x2: { field: 'x2' }, y: ys, y2: { field: 'y2' },
          fill: { field: 'kind', type: 'nominal', scale: fill, legend: null },
          stroke: { field: 'kind', type: 'nominal', scale: stroke, legend: null },
          tooltip: [{ field: 'name', title: 'component' }],
        },
      },
      {
        data: { values: g.nodes.map((n) => ({ x: n.x, y: n.kind === 'head' ? n.y + 7 : n.y, name: n.name })) },
        mark: { type: 'text', baseline: 'middle', fontSize: 11, color: '#222' },
        encoding: { x: xs, y: ys, text: { field: 'name' } },
      },
      // a head's inputs: dark where an edge enters, pale where none does
      ...[true, false].map((used) => ({
        data: { values: g.ports.filter((p) => p.used === used) },
        mark: { type: 'text', baseline: 'middle', fontSize: 10, ...(used ? { color: '#111', fontWeight: 'bold' } : { color: '#9a9a9a' }) },
        encoding: { x: xs, y: ys, text: { field: 'input' } },
      })),
    ],
    config: { view: { stroke: null } },
  } as TopLevelSpec;
}
