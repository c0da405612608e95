/**
 * The circuits experiment's charts as vega-lite specs, data inline; cli/plot.ts renders them.
 *
 *   heatmapSpec      one or more labelled matrices side by side (copying scores, composition,
 *                    positional QK, token QK and its parts, OV on tokens, virtual weights)
 *   neuronsSpec      per layer, the histogram of the MLP neurons' input/output cosines
 *   pathSpec         step 7: second-half accuracy, clean and with a QK path removed
 */
import type { TopLevelSpec } from '../../cli/plot.ts';
import { cellLabels, cellTextFit, cellTextLayer, colourBarLegend, colourWord, fixed, vlColourScale, type ColourScale } from '../../cli/chart_colour.ts';
import { balancedColumns, extent, labelledIndices, maxAbs, wrapToWidth } from '../../cli/chart_layout.ts';

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

export interface HeatmapPanel {
  title: string;
  subtitle?: string;
  /** row labels (top to bottom) and column labels (left to right); must be unique */
  rows: readonly string[];
  cols: readonly string[];
  /** values[i][j]; null cells are left blank */
  values: ReadonlyArray<ReadonlyArray<number | null>>;
  rowTitle: string;
  colTitle: string;
  /** for grids too large to label every row and column: the labels to print (e.g. the first head of each layer) */
  labelEvery?: { rows: readonly string[]; cols: readonly string[] };
  /** how to print those labels (a vega expression on datum.value), e.g. "'L' + split(datum.value, '.')[0]" */
  labelExpr?: string;
  /** the largest entries as bars under the grid, when the grid is too large to read them off */
  top?: readonly { label: string; value: number }[];
}

export interface HeatmapChartInput {
  title: string;
  subtitle: readonly string[];
  panels: readonly HeatmapPanel[];
  /** 'diverging': white at 0, red above, blue below, symmetric domain; 'sequential': light to dark blue */
  colors: 'diverging' | 'sequential';
  /** a fixed colour domain (e.g. [−1, 1] for copying scores, [baseline, max] for composition); else from the data */
  domain?: [number, number];
  /** the legend's title */
  valueTitle: string | string[];
  /** share one colour scale between the panels (default true) */
  shared?: boolean;
}

/** Four significant digits: enough for the tooltips, and tiny values (a random model's 1e-7) stay what they are. */
const round = (v: number) => Number(v.toPrecision(4));

/** Rows or columns a token panel shows at most: the first ones of a longer text. */
export const MAX_TOKENS_SHOWN = 64;

/** The panel's colour scale: diverging red (positive) / blue (negative) around 0, or sequential blues. */
function scaleFor(o: HeatmapChartInput, values: Iterable<number | null>): ColourScale {
  const [lo, hi] = extent(values);
  if (o.colors === 'diverging') {
    const m = o.domain ? Math.max(Math.abs(o.domain[0]), Math.abs(o.domain[1])) : maxAbs([lo, hi]) || 1;
    return { scheme: 'redblue', domain: [-m, m], extent: [1, 0] };
  }
  const [d0, d1] = o.domain ?? [Math.min(0, Number.isNaN(lo) ? 0 : lo), Number.isNaN(hi) ? 1 : hi];
  return { scheme: 'blues', domain: [d0, d1 > d0 ? d1 : d0 + 1], extent: [0.1, 1] };
}

function stepFor(n: number): number {
  return n <= 16 ? 30 : n <= 24 ? 22 : n <= 48 ? 12 : n <= 96 ? 7 : 4;
}

function heatPanel(p: HeatmapPanel, scale: ColourScale, o: HeatmapChartInput, minWidth: number) {
  // a long text shows its first tokens
  const nr = Math.min(p.rows.length, p.labelEvery ? p.rows.length : MAX_TOKENS_SHOWN), nc = Math.min(p.cols.length, p.labelEvery ? p.cols.length : MAX_TOKENS_SHOWN);
  const rows = p.rows.slice(0, nr), cols = p.cols.slice(0, nc);
  // a lone grid of few cells gets bigger ones, so that it, not its caption, sets the picture's width
  const step = Math.min(100, Math.max(stepFor(Math.max(nr, nc)), Math.floor(minWidth / Math.max(nr, nc))));
  const raw: Array<{ r: string; c: string; v: number }> = [];
  p.values.slice(0, nr).forEach((row, i) => row.slice(0, nc).forEach((v, j) => { if (v !== null && Number.isFinite(v)) raw.push({ r: rows[i], c: cols[j], v: round(v) }); }));
  const fit = cellTextFit(raw.map((d) => d.v), step, step);
  const values = cellLabels(raw, (d) => d.v, scale, fit.decimals);
  const labelFont = step >= 12 ? 10 : 9;
  const labels = (all: readonly string[], given?: readonly string[]) => given ?? (step >= 10 ? all : labelledIndices(all.length, all.length * step, labelFont + 3).map((i) => all[i]));
  const axisLabels = p.labelExpr ? { labelExpr: p.labelExpr, labelOverlap: false, labelFontSize: 10 } : {};
  const cut = nr < p.rows.length || nc < p.cols.length ? `the first ${Math.max(nr, nc)} of ${Math.max(p.rows.length, p.cols.length)} tokens (all in circuits.json)` : '';
  const subtitle = [p.subtitle, cut].filter((x): x is string => !!x).flatMap((x) => wrapToWidth(x, Math.max(220, nc * step), 11));
  const grid = {
    title: { text: p.title, ...(subtitle.length ? { subtitle } : {}), subtitleFontSize: 11 },
    data: { values },
    width: { step },
    height: { step },
    encoding: {
      x: { field: 'c', type: 'ordinal', scale: { domain: cols }, title: p.colTitle, axis: { labelFontSize: labelFont, labelAngle: -90, labelAlign: 'right', labelBaseline: 'middle', labelLimit: 110, values: labels(cols, p.labelEvery?.cols), ...axisLabels } },
      y: { field: 'r', type: 'ordinal', scale: { domain: rows }, title: p.rowTitle, axis: { labelFontSize: labelFont, labelLimit: 110, values: labels(rows, p.labelEvery?.rows), ...axisLabels } },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'v', type: 'quantitative', title: Array.isArray(o.valueTitle) ? o.valueTitle.join(' ') : o.valueTitle, scale: vlColourScale(scale), legend: colourBarLegend({ format: '.3~g' }) },
          tooltip: [
            { field: 'r', type: 'nominal', title: p.rowTitle },
            { field: 'c', type: 'nominal', title: p.colTitle },
            { field: 'v', type: 'quantitative', title: Array.isArray(o.valueTitle) ? o.valueTitle.join(' ') : o.valueTitle, format: '.4g' },
          ],
        },
      },
      ...(fit.show ? [cellTextLayer(Math.min(fit.fontSize, 9))] : []),
    ],
  };
  if (!p.top?.length) return grid;
  const bars = {
    title: { text: `the ${p.top.length} largest`, fontSize: 12 },
    data: { values: p.top.map((t) => ({ ...t, text: t.value.toPrecision(3) })) },
    width: Math.max(200, nc * step - 80),
    height: { step: 14 },
    encoding: {
      y: { field: 'label', type: 'nominal', scale: { domain: p.top.map((t) => t.label) }, title: null, axis: { labelFontSize: 10 } },
      x: { field: 'value', type: 'quantitative', title: Array.isArray(o.valueTitle) ? o.valueTitle[0] : o.valueTitle, scale: { domain: scale.domain, clamp: true } },
      tooltip: [{ field: 'label', type: 'nominal' }, { field: 'value', type: 'quantitative', format: '.4f' }],
    },
    layer: [
      { mark: { type: 'bar', color: '#4c78a8' } },
      { mark: { type: 'text', align: 'left', dx: 3, fontSize: 9 }, encoding: { text: { field: 'text', type: 'nominal' } } },
    ],
  };
  return { vconcat: [grid, bars], spacing: 12 };
}

export function heatmapSpec(o: HeatmapChartInput): TopLevelSpec {
  const shared = o.shared !== false;
  const all = o.panels.flatMap((p) => p.values.flat());
  const panels = o.panels.map((p) => heatPanel(p, scaleFor(o, shared ? all : p.values.flat()), o, o.panels.length === 1 ? 360 : 0));
  const widest = Math.max(...o.panels.map((p) => stepFor(Math.max(p.rows.length, p.cols.length)) * Math.min(p.cols.length, MAX_TOKENS_SHOWN)));
  const spec = {
    $schema: SCHEMA,
    title: { text: o.title, subtitle: [...o.subtitle], anchor: 'start' },
    concat: panels,
    columns: balancedColumns(panels.length, widest + 160, 2100),
    resolve: { scale: { color: shared ? 'shared' : 'independent' } },
    // a light frame shows where each grid ends when its cells are masked (future keys, later
    // layers) or near 0, drawn as light as the background
    config: { view: { stroke: '#d9d9d9' }, axis: { domain: false, ticks: false } },
  };
  return spec as unknown as TopLevelSpec;
}

/** What the colours of a heatmap mean, for its subtitle, read off the scale it uses. */
export function colourKey(o: HeatmapChartInput, high: string, low: string): string {
  const s = scaleFor(o, o.panels.flatMap((p) => p.values.flat()));
  return o.colors === 'diverging'
    ? `${colourWord(s, s.domain[1])}: positive, ${high}; ${colourWord(s, s.domain[0])}: negative, ${low}; white: 0.`
    : `from ${colourWord(s, s.domain[0])} (${fixed(s.domain[0], 3)} or less) to ${colourWord(s, s.domain[1])} (${fixed(s.domain[1], 3)}).`;
}

// -----------------------------------------------------------------------------------------------

export interface NeuronsChartInput {
  model: string;
  /** cosines[l][n]; null for a neuron with a zero weight */
  cosines: ReadonlyArray<ReadonlyArray<number | null>>;
  /** the listed erasers, marked as a rule at the threshold */
  threshold: number;
}

export function neuronsSpec(o: NeuronsChartInput): TopLevelSpec {
  const BIN = 0.05, nb = Math.round(2 / BIN);
  const values: Array<{ layer: number; from: number; to: number; count: number }> = [];
  o.cosines.forEach((row, l) => {
    const counts = new Array<number>(nb).fill(0);
    for (const v of row) if (v !== null && Number.isFinite(v)) counts[Math.min(nb - 1, Math.max(0, Math.floor((v + 1) / BIN)))]++;
    counts.forEach((count, b) => { if (count) values.push({ layer: l, from: round(-1 + b * BIN), to: round(-1 + (b + 1) * BIN), count }); });
  });
  const maxCount = values.reduce((m, v) => Math.max(m, v.count), 1);
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `MLP neurons: cosine between input and output direction (${o.model})`,
      subtitle: [
        'Each neuron reads the residual stream along W_in[:, n] and writes along W_out[n, :] (processed weights).',
        `Near −1 (left), a neuron writes back minus what it reads: it erases that direction ("memory management"). The dashed line is the listing threshold ${o.threshold}.`,
        'The count axis is logarithmic: a handful of erasers among thousands of neurons still shows.',
      ],
      anchor: 'start',
    },
    data: { values },
    // the layer as a number, so that the panels run 0, 1, 2, … 10, 11 (as text, 10 would follow 1)
    facet: { field: 'layer', type: 'ordinal', title: null, sort: 'ascending', header: { labelExpr: "'layer ' + datum.value", labelFontSize: 12 } },
    columns: 4,
    spec: {
      width: 220,
      height: 110,
      layer: [
        {
          mark: { type: 'bar', color: '#4c78a8' },
          encoding: {
            x: { field: 'from', type: 'quantitative', bin: { binned: true, step: BIN }, title: 'cosine(W_in[:, n], W_out[n, :])', scale: { domain: [-1, 1] }, axis: { values: [-1, -0.5, 0, 0.5, 1], format: '.1f' } },
            x2: { field: 'to' },
            y: { field: 'count', type: 'quantitative', title: 'neurons', scale: { type: 'symlog' }, axis: { values: [0, 1, 10, 100, 1000, 10000].filter((v) => v <= maxCount * 10), format: 'd' } },
            tooltip: [
              { field: 'from', type: 'quantitative', title: 'from' },
              { field: 'to', type: 'quantitative', title: 'to' },
              { field: 'count', type: 'quantitative' },
            ],
          },
        },
        { mark: { type: 'rule', strokeDash: [4, 3], color: '#d62728' }, encoding: { x: { datum: o.threshold } } },
      ],
    },
  };
  return spec as unknown as TopLevelSpec;
}

// -----------------------------------------------------------------------------------------------

export interface PathChartInput {
  model: string;
  writer: string;
  reader: string;
  clean: number;
  k_removed: number;
  q_removed: number;
  chance: number;
}

export function pathSpec(o: PathChartInput): TopLevelSpec {
  const values = [
    { run: 'clean', accuracy: o.clean },
    { run: `${o.writer} removed from ${o.reader}'s keys`, accuracy: o.k_removed },
    { run: `${o.writer} removed from ${o.reader}'s queries`, accuracy: o.q_removed },
  ];
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `Causal check of K-composition: ${o.writer} → ${o.reader} (${o.model})`,
      subtitle: [
        'Top-1 accuracy on the second copy of repeated random tokens.',
        `The writer's output is taken out of the reader's keys (or, as a control, its queries) only; everything else sees it as before.`,
        `Dashed: chance (${o.chance.toPrecision(2)}).`,
      ],
      anchor: 'start',
    },
    width: 420,
    height: { step: 40 },
    layer: [
      {
        data: { values },
        mark: { type: 'bar', color: '#4c78a8' },
        encoding: {
          y: { field: 'run', type: 'nominal', title: null, sort: null, axis: { labelLimit: 320 } },
          x: { field: 'accuracy', type: 'quantitative', scale: { domain: [0, 1] }, title: 'second-half top-1 accuracy' },
          tooltip: [{ field: 'run', type: 'nominal' }, { field: 'accuracy', type: 'quantitative', format: '.3f' }],
        },
      },
      { data: { values: [{ x: o.chance }] }, mark: { type: 'rule', strokeDash: [4, 3], color: '#d62728' }, encoding: { x: { field: 'x', type: 'quantitative' } } },
    ],
  };
  return spec as unknown as TopLevelSpec;
}
