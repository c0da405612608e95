/**
 * The circuits experiment's charts as vega-lite specs, data inline; cli/plot.ts renders them.
 *
 *   heatmapSpec      one or more labelled matrices side by side (copying scores, composition,
 *                    positional QK, token QK and its parts, OV on tokens, virtual weights)
 *   neuronsSpec      per layer, the histogram of the MLP neurons' input/output cosines
 *   pathSpec         step 7: second-half accuracy, clean and with a QK path removed
 */
import type { TopLevelSpec } from '../../cli/plot.ts';

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
}

export interface HeatmapChartInput {
  title: string;
  subtitle: readonly string[];
  panels: readonly HeatmapPanel[];
  /** 'diverging': white at 0, blue/red for ±, symmetric domain; 'sequential' from 0 up */
  colors: 'diverging' | 'sequential';
  /** a fixed colour domain (e.g. [−1, 1] for copying scores); else taken from the data */
  domain?: [number, number];
  /** the legend's title */
  valueTitle: string;
  /** share one colour scale between the panels (default true) */
  shared?: boolean;
}

const round = (v: number) => (Math.abs(v) >= 100 ? Math.round(v * 100) / 100 : Math.round(v * 1e4) / 1e4);

export function heatmapSpec(o: HeatmapChartInput): TopLevelSpec {
  let lo = Infinity, hi = -Infinity;
  for (const p of o.panels) for (const r of p.values) for (const v of r) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) { lo = -1; hi = 1; }
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  const domain = o.domain ?? (o.colors === 'diverging' ? [-m, m] : [Math.min(0, lo), hi > lo ? hi : lo + 1]);
  const panels = o.panels.map((p) => {
    const n = Math.max(p.rows.length, p.cols.length);
    const step = n <= 20 ? 22 : n <= 40 ? 12 : n <= 80 ? 7 : 4;
    const showText = n <= 16;
    const values: Array<{ r: string; c: string; v: number }> = [];
    p.values.forEach((row, i) => row.forEach((v, j) => { if (v !== null && Number.isFinite(v)) values.push({ r: p.rows[i], c: p.cols[j], v: round(v) }); }));
    const labelFont = step >= 12 ? 10 : step >= 7 ? 7 : 5;
    return {
      title: { text: p.title, ...(p.subtitle ? { subtitle: p.subtitle } : {}) },
      data: { values },
      width: { step },
      height: { step },
      encoding: {
        x: { field: 'c', type: 'ordinal', scale: { domain: p.cols }, title: p.colTitle, axis: { labelFontSize: labelFont, labelAngle: -90, labelLimit: 90 } },
        y: { field: 'r', type: 'ordinal', scale: { domain: p.rows }, title: p.rowTitle, axis: { labelFontSize: labelFont, labelLimit: 90 } },
      },
      layer: [
        {
          mark: { type: 'rect' },
          encoding: {
            color: {
              field: 'v', type: 'quantitative', title: o.valueTitle,
              scale: o.colors === 'diverging' ? { domain, scheme: 'redblue', reverse: true, clamp: true } : { domain, scheme: 'blues', clamp: true },
            },
            tooltip: [
              { field: 'r', type: 'nominal', title: p.rowTitle },
              { field: 'c', type: 'nominal', title: p.colTitle },
              { field: 'v', type: 'quantitative', title: o.valueTitle, format: '.4g' },
            ],
          },
        },
        ...(showText ? [{ mark: { type: 'text', fontSize: 7, color: '#222' }, encoding: { text: { field: 'v', type: 'quantitative', format: '.2g' } } }] : []),
      ],
    };
  });
  const spec = {
    $schema: SCHEMA,
    title: { text: o.title, subtitle: [...o.subtitle], anchor: 'start' },
    concat: panels,
    columns: panels.length > 3 ? 3 : panels.length,
    resolve: { scale: { color: o.shared === false ? 'independent' : 'shared' } },
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  };
  return spec as unknown as TopLevelSpec;
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
  const values: Array<{ layer: string; from: number; to: number; count: number }> = [];
  o.cosines.forEach((row, l) => {
    const counts = new Array<number>(nb).fill(0);
    for (const v of row) if (v !== null && Number.isFinite(v)) counts[Math.min(nb - 1, Math.max(0, Math.floor((v + 1) / BIN)))]++;
    counts.forEach((count, b) => { if (count) values.push({ layer: `layer ${l}`, from: round(-1 + b * BIN), to: round(-1 + (b + 1) * BIN), count }); });
  });
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
    facet: { field: 'layer', type: 'ordinal', title: null, sort: { field: 'layer' } },
    columns: 4,
    spec: {
      width: 220,
      height: 110,
      layer: [
        {
          mark: { type: 'bar', color: '#4c78a8' },
          encoding: {
            x: { field: 'from', type: 'quantitative', bin: { binned: true, step: BIN }, title: 'cosine(W_in[:, n], W_out[n, :])', scale: { domain: [-1, 1] } },
            x2: { field: 'to' },
            y: { field: 'count', type: 'quantitative', title: 'neurons', scale: { type: 'symlog' } },
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
    height: { step: 28 },
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
