/**
 * The experiment's charts as vega-lite specs, data inline. cli/plot.ts renders them
 * (renderSvg) and wraps them in self-contained pages that open offline (chartHtml).
 *
 *   logprobSpec    log P(correct next token) by position, one line, coloured by half
 *   scoresSpec     three layer × head heatmaps: induction, previous-token, duplicate-token score
 *   attentionSpec  the attention patterns of a few heads, tokens on both axes
 *   mlpSpec        change in second-half log-prob when each layer's MLP output is removed
 */
import type { TopLevelSpec } from '../../cli/plot.ts';
import { positionLabel } from '../../cli/plot.ts';
import { cellLabels, cellTextFit, cellTextLayer, colourBarLegend, vlColourScale, type ColourScale } from '../../cli/chart_colour.ts';
import { balancedColumns, labelledIndices, wrapToWidth } from '../../cli/chart_layout.ts';
import type { ScoreKind } from './scores.ts';
import { headName } from '../../lens/heads.ts';

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const KIND_TITLE: Record<ScoreKind, string> = {
  induction: 'induction score',
  previous_token: 'previous-token score',
  duplicate_token: 'duplicate-token score',
};

// -----------------------------------------------------------------------------------------------

export interface LogprobChartInput {
  model: string;
  n: number;
  /** mean log-prob of the target at positions 1 … 2n (index p is the target at p + 1) */
  byPosition: readonly number[];
  firstHalf: number;
  secondHalf: number;
}

export function logprobSpec(o: LogprobChartInput): TopLevelSpec {
  const { n } = o;
  const part = (target: number) => (target <= n ? 'first copy' : target === n + 1 ? "second copy's first token" : 'second copy');
  const values = o.byPosition.map((logprob, p) => ({ position: p + 1, logprob, part: part(p + 1) }));
  const means = [
    { from: 1, to: n, value: o.firstHalf },
    { from: n + 2, to: 2 * n, value: o.secondHalf },
  ];
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `Log-probability of the correct next token on repeated random tokens (${o.model})`,
      subtitle: [
        `Each sequence is BOS, ${n} random tokens, then the same ${n} tokens again; the line is the mean over the batch.`,
        `First copy: nothing to go on. Second copy: each token followed the current one last time.`,
        `Dashed: the means, first half ${o.firstHalf.toFixed(2)}, second half ${o.secondHalf.toFixed(2)} (the second copy's first token is in neither).`,
      ],
      anchor: 'start',
    },
    width: Math.max(480, Math.min(1000, 9 * 2 * n)),
    height: 300,
    layer: [
      {
        data: { values },
        mark: { type: 'line', point: n <= 100, interpolate: 'linear' }, // points only while they do not merge into the line
        encoding: {
          x: { field: 'position', type: 'quantitative', title: 'position of the predicted token', scale: { domain: [0, 2 * n + 1], nice: false } },
          y: { field: 'logprob', type: 'quantitative', title: 'log P(correct next token)' },
          color: {
            field: 'part',
            type: 'nominal',
            title: null,
            scale: { domain: ['first copy', "second copy's first token", 'second copy'], range: ['#d95f02', '#999999', '#1b9e77'] },
            legend: { orient: 'bottom', labelLimit: 260 },
          },
          tooltip: [
            { field: 'position', type: 'quantitative' },
            { field: 'part', type: 'nominal' },
            { field: 'logprob', type: 'quantitative', format: '.3f' },
          ],
        },
      },
      {
        data: { values: means },
        mark: { type: 'rule', strokeDash: [4, 3], color: '#444' },
        encoding: { x: { field: 'from', type: 'quantitative' }, x2: { field: 'to' }, y: { field: 'value', type: 'quantitative' } },
      },
      {
        data: { values: [{ x: n + 0.5 }] },
        mark: { type: 'rule', color: '#999' },
        encoding: { x: { field: 'x', type: 'quantitative' } },
      },
    ],
  };
  return spec as unknown as TopLevelSpec;
}

// -----------------------------------------------------------------------------------------------

export interface ScoresChartInput {
  model: string;
  scores: Record<ScoreKind, number[][]>;
  detected: Record<ScoreKind, readonly string[]>;
  thresholds: Record<ScoreKind, number>;
  /** heads the literature or the construction says do the job; null when we have no list */
  labelled: Record<ScoreKind, readonly string[]> | null;
}

const STATUS = ['found (labelled)', 'found (not labelled)', 'missed (labelled)', 'found'] as const;
const STATUS_COLOURS = ['#1a9641', '#f08a24', '#d7191c', '#000000'];
/** What the outline colours mean, said in the caption (a legend for them beside a short grid left it blank beneath). */
const OUTLINE_KEY = {
  labelled: 'Outlined: heads above the threshold (mean + k·std over all heads, or the floor); green: on the labelled list, orange: not on it, red: a labelled head below the threshold.',
  unlabelled: 'Outlined (black): heads above the threshold (mean + k·std over all heads, or the floor).',
};
/** Scores are attention averages, 0 … 1; the scheme's lightest 15% is left out so that 0 is not the background. */
const SCORE_SCALE: ColourScale = { scheme: 'blues', domain: [0, 1], extent: [0.1, 1] };

export function scoresSpec(o: ScoresChartInput): TopLevelSpec {
  const kinds = Object.keys(KIND_TITLE) as ScoreKind[];
  const H = o.scores.induction[0].length;
  // few heads get wider cells, so that the three grids, not the caption, set the picture's width
  const stepX = Math.min(60, Math.max(H <= 16 ? 30 : 18, Math.floor(240 / H))), stepY = 22;
  const fit = cellTextFit(kinds.flatMap((k) => o.scores[k].flat()), stepX, stepY, 2);
  const anyOutlined = kinds.some((k) => o.detected[k].length || (o.labelled?.[k].length ?? 0));
  const panels = kinds.map((kind) => {
    const found = new Set(o.detected[kind]);
    const labelled = o.labelled ? new Set(o.labelled[kind]) : null;
    const values = o.scores[kind].flatMap((row, layer) =>
      row.map((score, head) => {
        const name = headName({ layer, head });
        let status = '';
        if (labelled === null) status = found.has(name) ? 'found' : '';
        else if (found.has(name)) status = labelled.has(name) ? STATUS[0] : STATUS[1];
        else if (labelled.has(name)) status = STATUS[2];
        return { layer, head, name, score, status };
      }),
    );
    return {
      title: { text: KIND_TITLE[kind], subtitle: `threshold ${o.thresholds[kind].toFixed(3)}` },
      data: { values: cellLabels(values, (d) => d.score, SCORE_SCALE, fit.decimals) },
      width: { step: stepX },
      height: { step: stepY },
      encoding: {
        x: { field: 'head', type: 'ordinal', title: 'head', axis: { labelAngle: 0 } },
        y: { field: 'layer', type: 'ordinal', title: 'layer', sort: 'ascending' },
      },
      layer: [
        {
          mark: { type: 'rect' },
          encoding: {
            color: { field: 'score', type: 'quantitative', title: 'score', scale: vlColourScale(SCORE_SCALE), legend: colourBarLegend() },
            tooltip: [
              { field: 'name', type: 'nominal', title: 'head' },
              { field: 'score', type: 'quantitative', format: '.3f' },
              { field: 'status', type: 'nominal', title: 'detection' },
            ],
          },
        },
        {
          transform: [{ filter: "datum.status !== ''" }],
          mark: { type: 'rect', fillOpacity: 0, strokeWidth: 2.5 },
          encoding: {
            stroke: {
              field: 'status',
              type: 'nominal',
              title: 'detection',
              scale: o.labelled ? { domain: STATUS.slice(0, 3), range: STATUS_COLOURS.slice(0, 3) } : { domain: [STATUS[3]], range: [STATUS_COLOURS[3]] },
              legend: null, // OUTLINE_KEY, in the caption
            },
          },
        },
        ...(fit.show ? [cellTextLayer(fit.fontSize)] : []),
      ],
    };
  });
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `Head scores on repeated random tokens (${o.model})`,
      subtitle: [
        'Each cell: the mean attention a head pays to one position, over the batch and the query positions.',
        'Induction: to the token after the earlier copy of the current token. Previous-token: to t − 1. Duplicate-token: to the earlier copy itself.',
        ...(anyOutlined ? [o.labelled ? OUTLINE_KEY.labelled : OUTLINE_KEY.unlabelled] : []),
      ],
      anchor: 'start',
    },
    concat: panels,
    columns: H * stepX * 3 > 1200 ? 2 : 3,
    resolve: { scale: { color: 'shared', stroke: 'shared' } },
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  };
  return spec as unknown as TopLevelSpec;
}

// -----------------------------------------------------------------------------------------------

export interface AttentionPanel {
  /** "layer.head" */
  head: string;
  /** why it is shown, e.g. "top induction head (score 0.97)" */
  caption: string;
  /** its attention pattern (T, T) for one sequence, row = query */
  pattern: ArrayLike<number>;
  /** the cells (query, key) its score averages, outlined on the chart */
  stripe?: { from: number; to: number; offset: number };
}

export interface AttentionChartInput {
  model: string;
  /** which sequence the patterns are of (default "first sequence of the batch") */
  sequence?: string;
  /** the sequence's tokens as strings, BOS included */
  tokens: readonly string[];
  panels: readonly AttentionPanel[];
}

/** Attention weights below this are left out of the chart's data (they would be drawn white). */
const MIN_SHOWN = 0.005;
/** A pattern longer than this is drawn in blocks of positions, at most this many a side. */
export const MAX_PATTERN_CELLS = 128;

/** One panel's cells: every (query, key) or, for long texts, (query block, key block). */
function patternCells(pattern: ArrayLike<number>, T: number, block: number, stripe?: AttentionPanel['stripe']) {
  const nb = Math.ceil(T / block);
  const inStripe = (qi: number, ki: number) => !!stripe && qi >= stripe.from && qi < stripe.to && ki === qi - stripe.offset;
  const cells: { qi: number; ki: number; weight: number; stripe: boolean }[] = [];
  for (let qb = 0; qb < nb; qb++) {
    const q0 = qb * block, q1 = Math.min(T, q0 + block);
    for (let kb = 0; kb <= qb; kb++) {
      const k0 = kb * block, k1 = Math.min(T, k0 + block);
      // the block's weight: attention summed over its keys, averaged over its queries (rows still sum to 1)
      let sum = 0, marked = false;
      for (let qi = q0; qi < q1; qi++) for (let ki = k0; ki < Math.min(k1, qi + 1); ki++) {
        sum += pattern[qi * T + ki];
        marked ||= inStripe(qi, ki);
      }
      const weight = Math.round((sum / (q1 - q0)) * 1e4) / 1e4;
      if (weight < MIN_SHOWN && !marked) continue; // blank, which is what the colour scale shows for ~0 anyway
      cells.push({ qi: qb, ki: kb, weight, stripe: marked });
    }
  }
  return cells;
}

export function attentionSpec(o: AttentionChartInput): TopLevelSpec {
  const T = o.tokens.length;
  const block = Math.ceil(T / MAX_PATTERN_CELLS);
  const n = Math.ceil(T / block);
  // labels: position and token while they fit; the position alone (every k-th) for long texts
  const withTokens = block === 1 && T <= 40;
  const labels = Array.from({ length: n }, (_, b) => (block > 1 ? `${b * block}–${Math.min(T, (b + 1) * block) - 1}` : withTokens ? positionLabel(b, o.tokens[b]) : String(b)));
  // a lone panel of a short text gets larger cells, so that it, not the caption, sets the picture's width
  const step = Math.max(n <= 24 ? 16 : n <= 48 ? 10 : n <= 80 ? 6 : 4, o.panels.length === 1 ? Math.min(24, Math.floor(300 / n)) : 0);
  const side = step * n;
  const fontSize = withTokens && step < 12 ? 9 : 10;
  const shownLabels = labelledIndices(n, side, fontSize + 4).map((i) => labels[i]);
  const axis = (title: string, extra: Record<string, unknown>) => ({ title, axis: { labelFontSize: fontSize, labelLimit: 100, values: shownLabels, ...extra } });
  const columns = balancedColumns(o.panels.length, side + 140, 1800);
  const panels = o.panels.map((panel) => {
    const values = patternCells(panel.pattern, T, block, panel.stripe).map((c) => ({
      ...c, q: labels[c.qi], k: labels[c.ki], ...(block === 1 ? { qt: JSON.stringify(o.tokens[c.qi]), kt: JSON.stringify(o.tokens[c.ki]) } : {}),
    }));
    return {
      title: { text: `head ${panel.head}`, subtitle: wrapToWidth(panel.caption, Math.max(side, 200), 11), subtitleFontSize: 11 },
      data: { values },
      width: { step },
      height: { step },
      encoding: {
        x: { field: 'k', type: 'ordinal', scale: { domain: labels }, ...axis('key: the position attended to', { labelAngle: -90, labelAlign: 'right', labelBaseline: 'middle' }) },
        y: { field: 'q', type: 'ordinal', scale: { domain: labels }, ...axis('query: the position attending', {}) },
      },
      layer: [
        {
          mark: { type: 'rect' },
          encoding: {
            color: { field: 'weight', type: 'quantitative', title: 'attention', scale: { domain: [0, 1], scheme: 'oranges' }, legend: colourBarLegend() },
            tooltip: [
              { field: 'q', type: 'nominal', title: block > 1 ? 'query positions' : 'query' },
              { field: 'k', type: 'nominal', title: block > 1 ? 'key positions' : 'key' },
              ...(block === 1 ? [{ field: 'qt', type: 'nominal', title: 'query token' }, { field: 'kt', type: 'nominal', title: 'key token' }] : []),
              { field: 'weight', type: 'quantitative', format: '.3f', title: 'attention' },
            ],
          },
        },
        {
          transform: [{ filter: 'datum.stripe' }],
          mark: { type: 'rect', fillOpacity: 0, stroke: '#2b83ba', strokeWidth: step >= 6 ? 1.5 : 0.75 },
        },
      ],
    };
  });
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `Attention patterns of the top heads (${o.model}), ${o.sequence ?? 'first sequence of the batch'}`,
      subtitle: [
        'Row: the query position; column: the key position it reads from; colour: the attention weight (each row sums to 1).',
        ...(o.panels.some((p) => p.stripe) ? ['Blue outlines: the cells that head’s score averages (the stripe of its kind).'] : []),
        `Weights below ${MIN_SHOWN} are left blank.`,
        ...(block > 1 ? [`${T} positions, drawn in blocks of ${block}: each cell is a block of queries × a block of keys, the attention summed over the keys and averaged over the queries.`] : []),
        ...(!withTokens && block === 1 ? ['Positions are numbered; hover a cell for its tokens.'] : []),
      ],
      anchor: 'start',
    },
    concat: panels,
    columns,
    resolve: { scale: { color: 'shared' } },
    // a light frame shows where each grid ends when most of its weights are near 0 (left blank)
    config: { view: { stroke: '#d9d9d9' }, axis: { domain: false, ticks: false } },
  };
  return spec as unknown as TopLevelSpec;
}

// -----------------------------------------------------------------------------------------------

export interface MlpChartInput {
  model: string;
  /** change in mean second-half log-prob, per layer */
  zero: readonly number[];
  mean: readonly number[];
}

export function mlpSpec(o: MlpChartInput): TopLevelSpec {
  const values = [
    ...o.zero.map((change, layer) => ({ layer, ablation: 'zero', change })),
    ...o.mean.map((change, layer) => ({ layer, ablation: 'mean', change })),
  ];
  // every change 0 (a model whose MLPs do nothing): a domain of [0, 0] drew one tick "0.000000"
  const allZero = values.every((v) => v.change === 0);
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `Removing one MLP at the second-half positions (${o.model})`,
      subtitle: [
        'Change in the mean second-half log P(correct next token); below zero means the MLP helped.',
        ...(allZero ? ['Every change is 0: no MLP matters here.'] : []),
      ],
      anchor: 'start',
    },
    data: { values },
    // at least as wide as the caption's narrowest wrap, so that few layers do not leave it beside a blank
    width: Math.max(300, 72 * o.zero.length),
    height: 260,
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'layer', type: 'ordinal', title: 'layer of the removed MLP', axis: { labelAngle: 0 } },
          xOffset: { field: 'ablation', type: 'nominal', sort: ['zero', 'mean'] },
          y: { field: 'change', type: 'quantitative', title: 'change in second-half log-prob', ...(allZero ? { scale: { domain: [-1, 1] } } : {}) },
          // above the bars: on the right it left the space under it blank
          color: { field: 'ablation', type: 'nominal', sort: ['zero', 'mean'], title: 'replaced by', scale: { range: ['#7570b3', '#66a61e'] }, legend: { orient: 'top', direction: 'horizontal' } },
          tooltip: [
            { field: 'layer', type: 'ordinal' },
            { field: 'ablation', type: 'nominal' },
            { field: 'change', type: 'quantitative', format: '+.4f' },
          ],
        },
      },
      { data: { values: [{ y: 0 }] }, mark: { type: 'rule', color: '#444' }, encoding: { y: { field: 'y', type: 'quantitative' } } },
    ],
  };
  return spec as unknown as TopLevelSpec;
}
