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
import { oneSide, visibleToken } from '../../cli/terminal.ts';
import type { AxisName } from '../../lens/patching.ts';
import { patchGrid, type DLAParts, type Patch } from './experiment.ts';
import type { Comparison } from './atp.ts';

const q = (t: string) => JSON.stringify(t);
const shorten = (text: string, max: number) => (text.length <= max ? text : text.slice(0, max - 1) + '…');

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
    `clean: ${q(shorten(r.cleanText, 80))} → ${q(r.cleanToken)}`,
    `corrupt: ${q(shorten(r.corruptText, 80))} → ${q(r.corruptToken)}`,
    `without patching: ${r.corruptLogitDiff.toFixed(2)} (corrupted run), ${r.cleanLogitDiff.toFixed(2)} (clean run)`,
  ];
  if (r.randomWeights) lines.push('random weights (a test checkpoint): the numbers show the mechanics, not findings');
  return lines;
}

function title(text: string, r: RunDescription) {
  return { text, subtitle: subtitle(r), anchor: 'start', subtitleFontSize: 11, offset: 12 };
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

interface Cell {
  row: string;
  col: string;
  value: number;
  change: number;
  layer: number;
  position?: number;
  head?: number;
  token?: string;
}

export function patchHeatmapSpec(input: PatchChartInput): TopLevelSpec {
  const { axes, tokens } = input;
  const posLabels = tokens.map((t, i) => positionLabel(i, t));
  const cells: Cell[] = [];
  const rows: string[] = [];
  let cols: string[];
  const base = (value: number) => ({ value, change: value - input.corruptLogitDiff });
  if (axes.length === 3) {
    const m = input.matrix as number[][][];
    cols = posLabels;
    m.forEach((heads, layer) => heads.forEach((row, head) => {
      rows.push(`L${layer}H${head}`);
      row.forEach((v, position) => cells.push({ row: `L${layer}H${head}`, col: posLabels[position], layer, head, position, token: q(tokens[position]), ...base(v) }));
    }));
  } else if (axes[1] === 'head') {
    const m = input.matrix as number[][];
    cols = (m[0] ?? []).map((_, h) => `head ${h}`);
    m.forEach((row, layer) => {
      rows.push(String(layer));
      row.forEach((v, head) => cells.push({ row: String(layer), col: cols[head], layer, head, ...base(v) }));
    });
  } else {
    // BEGIN TASK 1.6: the heatmap's cells from the layer × position matrix
    const m = input.matrix as number[][];
    cols = posLabels;
    m.forEach((row, layer) => {
      rows.push(String(layer));
      row.forEach((v, position) => cells.push({ row: String(layer), col: posLabels[position], layer, position, token: q(tokens[position]), ...base(v) }));
    });
    // END TASK 1.6
  }
  const values = cells.map((c) => c.value).filter(Number.isFinite);
  const maxAbs = input.maxAbs ?? (Math.max(0, ...values.map(Math.abs)) || 1);
  const runs = input.scale === 'runs';
  const lo = Math.min(input.cleanLogitDiff, input.corruptLogitDiff), hi = Math.max(input.cleanLogitDiff, input.corruptLogitDiff);
  const domain = runs ? [lo, hi === lo ? lo + 1 : hi] : [-maxAbs, maxAbs];
  const showText = cols.length <= 32 && rows.length <= 48;
  const hook = input.hook;
  const what = axes.length === 3 ? `one head's output (${hook}) at one position`
    : axes[1] === 'head' ? `one head's output (${hook}) at every position` : `one ${hook.replace(/^blocks\.\{l\}\./, '')} vector`;

  const sub = subtitle(input);
  const side = oneSide(values);
  if (side) sub.push(`every cell is ${side} zero: every patched run favours ${q(side === 'above' ? input.corruptToken : input.cleanToken)}; the colours differ in strength only`);
  if (runs) sub.push(`colour scale from the ${input.cleanLogitDiff <= input.corruptLogitDiff ? 'clean' : 'corrupted'} run (${lo.toFixed(2)}, blue) to the ${input.cleanLogitDiff <= input.corruptLogitDiff ? 'corrupted' : 'clean'} run (${hi.toFixed(2)}, orange)`);

  const tooltip = [
    { field: 'layer', type: 'ordinal', title: 'layer' },
    ...(axes.includes('head') ? [{ field: 'head', type: 'ordinal', title: 'head' }] : []),
    ...(axes.includes('pos') ? [{ field: 'position', type: 'ordinal', title: 'position' }, { field: 'token', type: 'nominal', title: 'token' }] : []),
    { field: 'value', type: 'quantitative', title: 'logit difference', format: '.3f' },
    { field: 'change', type: 'quantitative', title: 'change from unpatched', format: '+.3f' },
  ];
  const legendTitle = runs
    ? [`${metricName(input)} in the patched corrupted run`, `scale: between the two unpatched runs`]
    : [`${metricName(input)} in the patched corrupted run`, `← ${q(input.cleanToken)} favoured | ${q(input.corruptToken)} favoured →`];
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: { ...title(input.heading ?? `Activation patching on ${shorten(input.model, 40)}: patch ${what} from the clean run`, input), subtitle: sub },
    data: { values: cells },
    width: { step: showText ? 46 : 22 },
    height: { step: axes.length === 3 ? 18 : 24 },
    encoding: {
      x: {
        field: 'col', type: 'ordinal', sort: cols,
        title: axes.length === 2 && axes[1] === 'head' ? 'head' : 'position: token (clean text)',
        axis: { labelAngle: -40, labelAlign: 'right', labelLimit: 140, domain: false, ticks: false },
      },
      y: {
        field: 'row', type: 'ordinal', sort: rows,
        title: axes.length === 3 ? 'head (L layer H head)' : `layer (${hook.replace(/^blocks\.\{l\}\./, '')})`,
        axis: { domain: false, ticks: false },
      },
    },
    layer: [
      {
        mark: { type: 'rect', stroke: 'white', strokeWidth: 0.5 },
        encoding: {
          color: {
            field: 'value', type: 'quantitative',
            scale: runs ? { type: 'linear', scheme: 'blueorange', domain, clamp: true } : { type: 'linear', scheme: 'blueorange', domain, domainMid: 0, clamp: true },
            legend: { orient: 'bottom', direction: 'horizontal', gradientLength: Math.max(240, Math.min(480, cols.length * 30)), titleLimit: 800, title: legendTitle },
          },
          tooltip,
        },
      },
      ...(showText
        ? [{
            mark: { type: 'text', fontSize: 10 },
            encoding: {
              text: { field: 'value', type: 'quantitative', format: '.2f' },
              color: runs
                ? { condition: { test: `datum.value < ${lo + 0.2 * (hi - lo)} || datum.value > ${hi - 0.2 * (hi - lo)}`, value: 'white' }, value: 'black' }
                : { condition: { test: `abs(datum.value) > ${0.55 * maxAbs}`, value: 'white' }, value: 'black' },
              tooltip,
            },
          }]
        : []),
    ],
    config: { view: { stroke: null }, axis: { labelFontSize: 11, titleFontSize: 12 } },
  };
  return spec as TopLevelSpec;
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
  const stages = lens.map((_, l) => (l < L ? `entering block ${l}` : 'final stream'));
  const values = lens.map((value, l) => ({ stage: stages[l], step: l, value }));
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: title(`Logit lens on ${shorten(r.model, 40)}: ${metricName(r)} read from the residual stream of the clean run`, r),
    width: Math.max(420, 60 * lens.length),
    height: 220,
    data: { values },
    layer: [
      { mark: { type: 'rule', color: '#999', strokeDash: [4, 3] }, encoding: { y: { datum: 0, type: 'quantitative' } } },
      {
        mark: { type: 'line', point: { filled: true, size: 60 }, color: '#4c78a8' },
        encoding: {
          x: { field: 'stage', type: 'ordinal', sort: stages, title: 'residual stream (final layer norm and unembedding applied)', axis: { labelAngle: -30, labelAlign: 'right' } },
          y: { field: 'value', type: 'quantitative', title: [metricName(r), `below 0: ${q(r.cleanToken)} favoured`] },
          tooltip: [
            { field: 'stage', type: 'nominal', title: 'stream' },
            { field: 'value', type: 'quantitative', title: 'logit difference', format: '.3f' },
          ],
        },
      },
    ],
    config: { axis: { labelFontSize: 11, titleFontSize: 12 } },
  };
  return spec as TopLevelSpec;
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

export function dlaSpec(dla: DLAParts, r: RunDescription): TopLevelSpec {
  const values = dlaRows(dla).map((row) => ({ ...row, sign: row.value < 0 ? `${visibleToken(r.cleanToken)} favoured` : `${visibleToken(r.corruptToken)} favoured` }));
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: title(`Direct logit attribution on ${shorten(r.model, 40)}: each part's share of ${metricName(r)} = ${dla.total.toFixed(3)} (clean run)`, r),
    width: Math.max(560, 16 * values.length),
    height: 240,
    data: { values },
    layer: [
      { mark: { type: 'rule', color: '#999' }, encoding: { y: { datum: 0, type: 'quantitative' } } },
      {
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'part', type: 'ordinal', sort: values.map((v) => v.part), title: 'component (in the order the model runs them)', axis: { labelAngle: -60, labelAlign: 'right' } },
          y: { field: 'value', type: 'quantitative', title: ['direct effect on the logit difference', 'the bars add up to the clean run\'s value'] },
          color: {
            field: 'sign', type: 'nominal', title: null,
            scale: { domain: [`${visibleToken(r.cleanToken)} favoured`, `${visibleToken(r.corruptToken)} favoured`], range: ['#2f78b3', '#e8932f'] },
            legend: { orient: 'bottom' },
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
  return spec as TopLevelSpec;
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
        `Blue cells favour ${q(r.cleanToken)}, orange cells favour ${q(r.corruptToken)}. Hover a cell for its numbers.`,
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
  const maxAbs = Math.max(0, ...values.map(Math.abs)) || 1;
  const panel = (x: Patch, heading: string) => {
    const spec: Record<string, unknown> = { ...patchHeatmapSpec({ ...r, hook: x.hook, axes: x.axes, matrix: x.matrix, tokens, heading, maxAbs }) };
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
    hconcat: [panel(exact, `exact: one run per cell (${exact.sweep_s.toFixed(1)} s)`), panel(atp, `attribution patching: 3 passes (${atp.sweep_s.toFixed(2)} s)`)],
    resolve: { scale: { color: 'shared' } },
    config: { view: { stroke: null }, axis: { labelFontSize: 11, titleFontSize: 12 } },
  };
  return {
    name: 'comparison',
    spec: spec as unknown as TopLevelSpec, // (the panels are patchHeatmapSpec's charts, typed loosely once taken apart)
    title: `Exact patching and attribution patching (${exact.hook})`,
    description: 'Left: each cell is the corrupted run with one activation copied from the clean run. Right: the first-order estimate of the same cell ' +
      'from one forward and backward pass of the corrupted run and one forward pass of the clean run. Same colour scale.',
  };
}
