/**
 * The activation-patching experiment's charts, as vega-lite specs (cli/plot.ts renders them
 * to SVG, PNG and offline HTML):
 *
 * - patchHeatmapSpec: the patching result as a heatmap. Layer × position for the residual-stream
 *   and layer-output hook points, layer × head for --patch head, and one row per head × position
 *   for --patch head-pos. Colour: blue where the patched run prefers the clean token, orange
 *   where it prefers the corrupt one, white at zero (or, with --scale runs, from the clean run's
 *   value to the corrupted run's);
 * - logitLensSpec: the metric read from the residual stream entering each block, then the end;
 * - dlaSpec: each component's direct share of the clean run's metric, as bars;
 * - comparisonChart: the exact heatmap and attribution patching's estimate side by side.
 */
import { VEGA_LITE_SCHEMA, positionLabel, type TopLevelSpec } from '../../cli/plot.ts';
import { cellLabels, cellTextFit, cellTextLayer, colourWord, fixed, vlColourScale, type ColourScale } from '../../cli/chart_colour.ts';
import { extent, maxAbs, pickIndices, textWidth } from '../../cli/chart_layout.ts';
import { oneSide, visibleToken, zeroScaleHides } from '../../cli/terminal.ts';
import type { AxisName } from '../../lens/patching.ts';
import { patchGrid, type DLAParts, type Patch } from './experiment.ts';
import type { Comparison } from './atp.ts';

const q = (t: string) => JSON.stringify(t);
const shorten = (text: string, max: number) => (text.length <= max ? text : text.slice(0, max - 1) + '…');
const f2 = (v: number) => fixed(v, 2);

/** What every chart of one run shows in its subtitle. */
export interface RunDescription {
  model: string;
  cleanText: string;
  corruptText: string;
  cleanToken: string;
  corruptToken: string;
  cleanLogitDiff: number;
  corruptLogitDiff: number;
  /** the checkpoint's config.json marks its weights as random */
  randomWeights?: boolean;
}

const metricName = (r: RunDescription) => `logit(${q(r.corruptToken)}) − logit(${q(r.cleanToken)})`;

function subtitle(r: RunDescription): string[] {
  const lines = [
    `model: ${r.model}`,
    `clean: ${q(shorten(r.cleanText, 120))} → ${q(r.cleanToken)}`,
    `corrupt: ${q(shorten(r.corruptText, 120))} → ${q(r.corruptToken)}`,
    `without patching: ${f2(r.corruptLogitDiff)} (corrupted run), ${f2(r.cleanLogitDiff)} (clean run)`,
  ];
  if (r.randomWeights) lines.push('random weights (a test checkpoint): the numbers show the mechanics, not findings');
  return lines;
}

function title(text: string, r: RunDescription, extra: string[] = []) {
  return { text, subtitle: [...subtitle(r), ...extra], anchor: 'start' };
}

/** Axis labels that fit their step upright, else turned to read downwards (never over the other axis's title). */
function labelAngle(labels: readonly string[], step: number): Record<string, unknown> {
  const widest = Math.max(0, ...labels.map((l) => textWidth(l, 11)));
  return widest <= step - 4 ? { labelAngle: 0 } : { labelAngle: -90, labelAlign: 'right', labelBaseline: 'middle' };
}

// -----------------------------------------------------------------------------
// the patching heatmap

export interface PatchChartInput extends RunDescription {
  /** the hook point patched, e.g. blocks.{l}.hook_resid_post */
  hook: string;
  axes: AxisName[];
  /** the result nested along `axes`: [layer][pos], [layer][head] or [layer][head][pos] */
  matrix: unknown[];
  /** the clean text's tokens */
  tokens: readonly string[];
  /** 'zero': symmetric around zero (default); 'runs': from the clean run's value to the corrupted run's */
  scale?: 'zero' | 'runs';
  /** the title (default: what was patched, on which model) */
  heading?: string;
  /** with scale 'zero': the colour scale's half-width (default: the largest |value|), to give charts shown together one scale */
  maxAbs?: number;
}

/** The narrowest a heatmap's grid is drawn, in pixels. */
const MIN_GRID_WIDTH = 400;

/** The most columns (positions) and head rows a heatmap shows; larger results show their strongest. */
export const MAX_COLUMNS = 40;
export const MAX_HEAD_ROWS = 24;

interface Grid {
  rows: string[];
  cols: string[];
  matrix: number[][];
  row: (i: number) => { layer: number; head?: number };
  col: (j: number) => { position?: number; head?: number };
}

function gridOf(input: PatchChartInput): Grid {
  const { axes, tokens } = input;
  if (axes.length === 3) {
    const m = input.matrix as number[][][];
    const H = m[0]?.length ?? 0;
    return {
      rows: m.flatMap((heads, l) => heads.map((_, h) => `L${l}H${h}`)), cols: tokens.map((t, i) => positionLabel(i, t)), matrix: m.flat(),
      row: (i) => ({ layer: Math.floor(i / H), head: i % H }), col: (j) => ({ position: j }),
    };
  }
  const m = input.matrix as number[][];
  if (axes[1] === 'head') {
    return { rows: m.map((_, l) => String(l)), cols: (m[0] ?? []).map((_, h) => String(h)), matrix: m, row: (i) => ({ layer: i }), col: (j) => ({ head: j }) };
  }
  // BEGIN TASK 1.6: the heatmap's grid from the layer × position matrix
  // one row per layer, labelled by its number; one column per position, labelled "index: token";
  // the cell on row i and column j is matrix[i][j], the patch of layer i at position j
  const rows = m.map((_, layer) => String(layer));
  const cols = tokens.map((token, position) => positionLabel(position, token));
  return { rows, cols, matrix: m, row: (i) => ({ layer: i }), col: (j) => ({ position: j }) };
  // END TASK 1.6
}

/** The colour scale of the heatmap: centred on zero, or spanning both runs and every cell. */
function patchColourScale(values: readonly number[], r: RunDescription, scale: 'zero' | 'runs', shared?: number): ColourScale {
  if (scale === 'runs') {
    const [lo, hi] = extent([...values, r.cleanLogitDiff, r.corruptLogitDiff]);
    return { scheme: 'blueorange', domain: hi > lo ? [lo, hi] : [lo - 1, lo + 1] };
  }
  const m = shared ?? (maxAbs(values) || 1);
  return { scheme: 'blueorange', domain: [-m, m] };
}

export function patchHeatmapSpec(input: PatchChartInput): TopLevelSpec {
  const { axes, tokens } = input;
  const grid = gridOf(input);
  const allValues = grid.matrix.flat();
  const runs = input.scale === 'runs';
  const cs = patchColourScale(allValues, input, runs ? 'runs' : 'zero', input.maxAbs);
  const effect = (v: number) => (Number.isFinite(v) ? Math.abs(v - input.corruptLogitDiff) : -Infinity);

  // a large result shows its strongest rows and columns, and says so
  const notes: string[] = [];
  let rowIdx = grid.rows.map((_, i) => i), colIdx = grid.cols.map((_, j) => j);
  if (axes.length === 3 && grid.rows.length > MAX_HEAD_ROWS) {
    rowIdx = pickIndices(grid.matrix.map((row) => extent(row.map(effect))[1]), MAX_HEAD_ROWS);
    notes.push(`showing the ${rowIdx.length} of ${grid.rows.length} heads whose patch moves the difference most (all in patching.json)`);
  }
  if (axes[axes.length - 1] === 'pos' && grid.cols.length > MAX_COLUMNS) {
    const colEffect = grid.cols.map((_, j) => extent(rowIdx.map((i) => effect(grid.matrix[i][j])))[1]);
    // always the first position a patch changes (where the texts first differ) and the last one
    colIdx = pickIndices(colEffect, MAX_COLUMNS, [colEffect.findIndex((e) => e > 0), tokens.length - 1]);
    notes.push(`showing the ${colIdx.length} of ${grid.cols.length} positions where a patch moves the difference most (all in patching.json)`);
  }
  const rows = rowIdx.map((i) => grid.rows[i]), cols = colIdx.map((j) => grid.cols[j]);

  // a grid of few columns gets wider cells, so that it, not its caption, sets the picture's width
  const stepX = Math.min(120, Math.max(cols.length <= 16 ? 46 : cols.length <= 24 ? 34 : 24, Math.floor(MIN_GRID_WIDTH / cols.length)));
  const stepY = axes.length === 3 ? 20 : 24;
  const shownValues = rowIdx.flatMap((i) => colIdx.map((j) => grid.matrix[i][j]));
  const fit = cellTextFit(shownValues, stepX, stepY);
  const cells = cellLabels(rowIdx.flatMap((i) => colIdx.map((j) => {
    const v = grid.matrix[i][j];
    const c = grid.col(j);
    const r = grid.row(i);
    const token = c.position !== undefined ? q(tokens[c.position]) : undefined;
    // what a screen reader says for the cell (and what a test finds it by)
    const parts = [`layer: ${r.layer}`];
    const head = r.head ?? c.head;
    if (head !== undefined) parts.push(`head: ${head}`);
    if (c.position !== undefined) parts.push(`position: ${c.position}`, `token: ${token}`);
    parts.push(`value: ${v}`);
    const desc = parts.join('; ');
    return {
      row: grid.rows[i], col: grid.cols[j], ...r, ...c,
      ...(token !== undefined ? { token } : {}),
      value: v, change: v - input.corruptLogitDiff, desc,
    };
  })), (d) => d.value, cs, fit.decimals);

  const hook = input.hook;
  const short = hook.replace(/^blocks\.\{l\}\./, '');
  const what = axes.length === 3 ? `each head's output (${short}) at one position` : axes[1] === 'head' ? `each head's output (${short}) at every position` : `one ${short} vector`;

  // the caption names the colours of this scale for this data
  const extra: string[] = [];
  if (runs) {
    const [lo, hi] = cs.domain;
    const named = (v: number, who: string) => `${who} ${f2(v)} ${colourWord(cs, v)}`;
    extra.push(`colours from ${f2(lo)} (${colourWord(cs, lo)}) to ${f2(hi)} (${colourWord(cs, hi)}): ${named(input.cleanLogitDiff, 'clean run')}, ${named(input.corruptLogitDiff, 'corrupted run')}`);
  } else {
    extra.push(`${colourWord(cs, cs.domain[0])}: below zero, ${q(input.cleanToken)} favoured; ${colourWord(cs, cs.domain[1])}: above zero, ${q(input.corruptToken)} favoured; white: zero`);
  }
  const side = oneSide(allValues);
  if (side) extra.push(`every cell is ${side} zero: every patched run favours ${q(side === 'above' ? input.corruptToken : input.cleanToken)}`);
  if (!runs && zeroScaleHides(allValues)) {
    const [lo, hi] = extent(allValues);
    extra.push(`the cells differ by at most ${hi - lo >= 0.01 ? f2(hi - lo) : (hi - lo).toPrecision(2)}, little beside their size: on this zero-centred scale they look alike; --scale runs spreads the colours between the two runs`);
  }
  if (!fit.show) extra.push('hover a cell for its numbers');
  extra.push(...notes);

  const tooltip = [
    { field: 'layer', type: 'ordinal', title: 'layer' },
    ...(axes.includes('head') ? [{ field: 'head', type: 'ordinal', title: 'head' }] : []),
    ...(axes.includes('pos') ? [{ field: 'position', type: 'ordinal', title: 'position' }, { field: 'token', type: 'nominal', title: 'token' }] : []),
    { field: 'value', type: 'quantitative', title: 'logit difference', format: '.3f' },
    { field: 'change', type: 'quantitative', title: 'change from unpatched', format: '+.3f' },
  ];
  const plotWidth = stepX * cols.length;
  const xTitle = axes.length === 2 && axes[1] === 'head' ? 'head' : 'position: token (clean text)';
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: title(input.heading ?? `Activation patching: ${what} from the clean run, into the corrupted run`, input, extra),
    data: { values: cells },
    width: { step: stepX },
    height: { step: stepY },
    encoding: {
      x: { field: 'col', type: 'ordinal', scale: { domain: cols }, title: xTitle, axis: { ...labelAngle(cols, stepX), labelLimit: 160, domain: false, ticks: false } },
      y: { field: 'row', type: 'ordinal', scale: { domain: rows }, title: axes.length === 3 ? 'head (L layer H head)' : 'layer', axis: { domain: false, ticks: false, titlePadding: 8 } },
    },
    layer: [
      {
        mark: { type: 'rect', stroke: 'white', strokeWidth: 0.5 },
        encoding: {
          color: {
            field: 'value', type: 'quantitative', scale: vlColourScale(cs),
            legend: {
              orient: 'bottom', direction: 'horizontal', gradientLength: Math.max(200, Math.min(400, plotWidth)), titleLimit: 600,
              title: [`${metricName(input)} in the patched corrupted run`,
                runs ? `← more ${q(input.cleanToken)} | more ${q(input.corruptToken)} →` : `← ${q(input.cleanToken)} favoured | ${q(input.corruptToken)} favoured →`],
            },
          },
          tooltip,
          description: { field: 'desc' },
        },
      },
      ...(fit.show ? [cellTextLayer(fit.fontSize, { tooltip, description: { field: 'desc' } })] : []),
    ],
    config: { view: { stroke: null }, axis: { labelFontSize: 11, titleFontSize: 12 } },
  };
  return spec as unknown as TopLevelSpec;
}

/** The assignment's own heatmap (block outputs, layer × position) from a plain matrix. */
export interface PatchingChartInput extends RunDescription {
  matrix: readonly (readonly number[])[]; // [layer][position]
  tokens: readonly string[];
  scale?: 'zero' | 'runs';
}

export function patchingHeatmapSpec(input: PatchingChartInput): TopLevelSpec {
  return patchHeatmapSpec({ ...input, hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'], matrix: input.matrix as unknown[] });
}

// -----------------------------------------------------------------------------
// logit lens

export function logitLensSpec(lens: readonly number[], r: RunDescription): TopLevelSpec {
  const L = lens.length - 1;
  const stages = lens.map((_, l) => (l < L ? String(l) : 'end'));
  const values = lens.map((value, l) => ({ stage: stages[l], where: l < L ? `entering block ${l}` : 'after the last block', value }));
  const step = L <= 24 ? 40 : 20;
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: title(`Logit lens: ${metricName(r)} read from the clean run's residual stream`, r,
      [`each point: the stream through the final layer norm and the unembedding, as if the model ended there; below 0: ${q(r.cleanToken)} favoured, above 0: ${q(r.corruptToken)} favoured`]),
    width: Math.max(420, step * lens.length),
    height: 220,
    data: { values },
    layer: [
      { mark: { type: 'rule', color: '#999', strokeDash: [4, 3] }, encoding: { y: { datum: 0, type: 'quantitative' } } },
      {
        mark: { type: 'line', point: { filled: true, size: 60 }, color: '#4c78a8' },
        encoding: {
          x: { field: 'stage', type: 'ordinal', scale: { domain: stages }, title: ['the residual stream entering block …', '(end: after the last block)'], axis: { labelAngle: 0 } },
          y: { field: 'value', type: 'quantitative', title: metricName(r) },
          tooltip: [
            { field: 'where', type: 'nominal', title: 'stream' },
            { field: 'value', type: 'quantitative', title: 'logit difference', format: '.3f' },
          ],
        },
      },
    ],
    config: { axis: { labelFontSize: 11, titleFontSize: 12 } },
  };
  return spec as unknown as TopLevelSpec;
}

// -----------------------------------------------------------------------------
// direct logit attribution

/** The DLA parts in the model's order, with their labels. */
export function dlaRows(dla: DLAParts): { part: string; group: string; value: number }[] {
  const rows = [{ part: 'embeddings', group: 'embeddings', value: dla.embed }];
  dla.heads.forEach((hs, l) => {
    hs.forEach((value, h) => rows.push({ part: `L${l}H${h}`, group: `attention ${l}`, value }));
    rows.push({ part: `L${l} bias`, group: `attention ${l}`, value: dla.attn_bias[l] });
    rows.push({ part: `MLP ${l}`, group: `MLP ${l}`, value: dla.mlp[l] });
  });
  rows.push({ part: 'ln_final bias', group: 'constant', value: dla.const });
  return rows;
}

/** Up to this many parts are drawn in the model's order; more are ranked, the largest shown. */
const MAX_DLA_BARS = 32;
const DLA_RANKED = 24;

export function dlaSpec(dla: DLAParts, r: RunDescription): TopLevelSpec {
  const all = dlaRows(dla);
  let shown = all;
  const extra: string[] = [];
  if (all.length > MAX_DLA_BARS) {
    const idx = pickIndices(all.map((p) => Math.abs(p.value)), DLA_RANKED);
    const picked = new Set(idx);
    const rest = all.filter((_, i) => !picked.has(i));
    shown = [...idx.map((i) => all[i]).sort((a, b) => Math.abs(b.value) - Math.abs(a.value)),
      { part: `the other ${rest.length} parts`, group: 'the rest', value: rest.reduce((s, p) => s + p.value, 0) }];
    extra.push(`the ${DLA_RANKED} largest of ${all.length} parts, largest first; the last bar is the sum of the other ${rest.length} (every part in patching.json)`);
  } else {
    extra.push('the parts in the order the model runs them');
  }
  const cleanSide = `${visibleToken(r.cleanToken)} favoured`, corruptSide = `${visibleToken(r.corruptToken)} favoured`;
  const restSide = 'several parts together';
  const values = shown.map((row) => ({ ...row, sign: row.group === 'the rest' ? restSide : row.value < 0 ? cleanSide : corruptSide }));
  const signs = [cleanSide, corruptSide, ...(shown.length < all.length ? [restSide] : [])];
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: title(`Direct logit attribution: each part's share of ${metricName(r)} = ${fixed(dla.total, 3)} in the clean run`, r, extra),
    width: 420,
    height: { step: 16 },
    data: { values },
    layer: [
      { mark: { type: 'rule', color: '#999' }, encoding: { x: { datum: 0, type: 'quantitative' } } },
      {
        mark: { type: 'bar' },
        encoding: {
          y: { field: 'part', type: 'ordinal', scale: { domain: values.map((v) => v.part) }, title: null, axis: { labelLimit: 200 } },
          x: { field: 'value', type: 'quantitative', title: ['direct effect on the logit difference', 'the bars add up to the clean run\'s value'] },
          color: {
            field: 'sign', type: 'nominal', title: null,
            scale: { domain: signs, range: ['#2f78b3', '#e8932f', '#9a9a9a'].slice(0, signs.length) },
            legend: { orient: 'top', labelLimit: 300 },
          },
          tooltip: [
            { field: 'part', type: 'nominal', title: 'component' },
            { field: 'value', type: 'quantitative', title: 'direct effect', format: '+.3f' },
          ],
        },
      },
    ],
    config: { axis: { labelFontSize: 11, titleFontSize: 12 } },
  };
  return spec as unknown as TopLevelSpec;
}

// -----------------------------------------------------------------------------
// the three charts of a run

export interface ChartToWrite {
  name: string;
  spec: TopLevelSpec;
  title: string;
  description: string;
}

/** heatmap.*, logit_lens.* and dla.*: the specs with the page titles and descriptions of their HTML. */
export function experimentCharts(r: RunDescription, patch: Patch, tokens: readonly string[], lens: readonly number[], dla: DLAParts, scale: 'zero' | 'runs'): ChartToWrite[] {
  const metric = metricName(r);
  return [
    {
      name: 'heatmap',
      spec: patchHeatmapSpec({ ...r, hook: patch.hook, axes: patch.axes, matrix: patch.matrix, tokens, scale }),
      title: `Activation patching (${patch.hook}): ${metric}`,
      description: `Each cell is the corrupted run with one activation of ${patch.hook} copied from the clean run. ` +
        (scale === 'zero' ? `Blue cells favour ${q(r.cleanToken)}, orange cells favour ${q(r.corruptToken)}. ` : 'The colours run from the lowest value (blue) to the highest (orange), both runs included. ') +
        'Hover a cell for its numbers.',
    },
    {
      name: 'logit_lens',
      spec: logitLensSpec(lens, r),
      title: 'Logit lens of the clean run',
      description: `${metric} read from the residual stream entering each block, through the final layer norm and the unembedding, as if the model ended there.`,
    },
    {
      name: 'dla',
      spec: dlaSpec(dla, r),
      title: 'Direct logit attribution of the clean run',
      description: `Each component's direct contribution to ${metric} at the last position, with the final layer norm's scale held at its value in this run; the bars add up to the clean run's value.`,
    },
  ];
}

/** The two heatmaps side by side, one colour scale, the comparison in the title. */
export function comparisonChart(r: RunDescription, exact: Patch, atp: Patch, cmp: Comparison, tokens: readonly string[]): ChartToWrite {
  const values = [exact, atp].flatMap((x) => patchGrid(x, tokens).matrix.flat());
  const shared = maxAbs(values) || 1; // one colour scale for both panels
  const panel = (x: Patch, heading: string) => {
    const spec: Record<string, unknown> = { ...patchHeatmapSpec({ ...r, hook: x.hook, axes: x.axes, matrix: x.matrix, tokens, heading, maxAbs: shared }) };
    delete spec.$schema; // (a part of a concatenated chart has neither; the whole has them)
    delete spec.config;
    spec.title = { text: heading, anchor: 'start', fontSize: 13 }; // (the runs are described once, above both)
    return spec;
  };
  const showCorrelation = (x: number | null) => (x === null ? 'undefined' : x.toFixed(3));
  const worst = cmp.worst.slice(0, 3).map((c) => `${c.row}, ${c.column}: ${c.exact.toFixed(2)} vs ${c.atp.toFixed(2)}`).join('; ');
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: `Exact activation patching and attribution patching of ${exact.hook}: correlation ${showCorrelation(cmp.correlation)}`,
      subtitle: [...subtitle(r), `largest differences (exact vs estimate): ${worst}`], anchor: 'start', fontSize: 15, subtitleFontSize: 11, offset: 12,
    },
    hconcat: [panel(exact, `exact: one run per cell (${exact.sweep_s.toFixed(1)} s)`), panel(atp, `attribution patching: 2 passes (${atp.sweep_s.toFixed(2)} s)`)],
    resolve: { scale: { color: 'shared' } },
    config: { view: { stroke: null }, axis: { labelFontSize: 11, titleFontSize: 12 } },
  };
  return {
    name: 'comparison',
    spec: spec as unknown as TopLevelSpec, // (the panels are patchHeatmapSpec's charts, typed loosely once taken apart)
    title: `Exact patching and attribution patching (${exact.hook})`,
    description: 'Left: each cell is the corrupted run with one activation copied from the clean run. Right: the first-order estimate of the same cell ' +
      'from the clean and corrupted runs\' activations and the corrupted run\'s gradient (one forward pass of both texts as a batch, one backward pass). Same colour scale.',
  };
}
