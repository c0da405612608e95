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
import type { ScoreKind } from './scores.ts';

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
        mark: { type: 'line', point: true, interpolate: 'linear' },
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

export function scoresSpec(o: ScoresChartInput): TopLevelSpec {
  const kinds = Object.keys(KIND_TITLE) as ScoreKind[];
  const L = o.scores.induction.length, H = o.scores.induction[0].length;
  const showText = L * H <= 400;
  const panels = kinds.map((kind) => {
    const found = new Set(o.detected[kind]);
    const labelled = o.labelled ? new Set(o.labelled[kind]) : null;
    const values = o.scores[kind].flatMap((row, layer) =>
      row.map((score, head) => {
        const name = `${layer}.${head}`;
        let status = '';
        if (labelled === null) status = found.has(name) ? 'found' : '';
        else if (found.has(name)) status = labelled.has(name) ? STATUS[0] : STATUS[1];
        else if (labelled.has(name)) status = STATUS[2];
        return { layer, head, name, score, status };
      }),
    );
    return {
      title: { text: KIND_TITLE[kind], subtitle: `threshold ${o.thresholds[kind].toFixed(3)}` },
      data: { values },
      width: { step: showText ? 30 : 18 },
      height: { step: showText ? 22 : 14 },
      encoding: {
        x: { field: 'head', type: 'ordinal', title: 'head', axis: { labelAngle: 0 } },
        y: { field: 'layer', type: 'ordinal', title: 'layer', sort: 'ascending' },
      },
      layer: [
        {
          mark: { type: 'rect' },
          encoding: {
            color: { field: 'score', type: 'quantitative', title: 'score', scale: { domain: [0, 1], scheme: 'blues', clamp: true } },
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
              legend: { labelLimit: 260 },
            },
          },
        },
        ...(showText
          ? [{
              mark: { type: 'text', fontSize: 8 },
              encoding: {
                text: { field: 'score', type: 'quantitative', format: '.2f' },
                color: { condition: { test: 'datum.score > 0.55', value: 'white' }, value: '#333' },
              },
            }]
          : []),
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
        'Outlined: heads above the threshold (mean + k·std over all heads, or the floor), compared with the labelled list where we have one.',
      ],
      anchor: 'start',
    },
    hconcat: panels,
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
  /** the sequence's tokens as strings, BOS included */
  tokens: readonly string[];
  panels: readonly AttentionPanel[];
}

/** Attention weights below this are left out of the chart's data (they would be drawn white). */
const MIN_SHOWN = 0.005;

export function attentionSpec(o: AttentionChartInput): TopLevelSpec {
  const T = o.tokens.length;
  const labels = o.tokens.map((t, i) => positionLabel(i, t));
  const step = T <= 30 ? 18 : T <= 60 ? 11 : 8;
  const fontSize = T <= 30 ? 10 : T <= 60 ? 8 : 6;
  const panels = o.panels.map((panel) => {
    const values: { q: string; k: string; qi: number; ki: number; weight: number; stripe: boolean }[] = [];
    const s = panel.stripe;
    for (let qi = 0; qi < T; qi++) {
      for (let ki = 0; ki <= qi; ki++) {
        const stripe = !!s && qi >= s.from && qi < s.to && ki === qi - s.offset;
        const weight = Math.round(panel.pattern[qi * T + ki] * 1e4) / 1e4;
        if (weight < MIN_SHOWN && !stripe) continue; // blank, which is what the colour scale shows for ~0 anyway
        values.push({ q: labels[qi], k: labels[ki], qi, ki, weight, stripe });
      }
    }
    return {
      title: { text: `head ${panel.head}`, subtitle: panel.caption },
      data: { values },
      width: { step },
      height: { step },
      encoding: {
        x: { field: 'k', type: 'ordinal', scale: { domain: labels }, title: 'key: the position attended to', axis: { labelFontSize: fontSize, labelAngle: -90, labelLimit: 90 } },
        y: { field: 'q', type: 'ordinal', scale: { domain: labels }, title: 'query: the position attending', axis: { labelFontSize: fontSize, labelLimit: 90 } },
      },
      layer: [
        {
          mark: { type: 'rect' },
          encoding: {
            color: { field: 'weight', type: 'quantitative', title: 'attention', scale: { domain: [0, 1], scheme: 'oranges' } },
            tooltip: [
              { field: 'q', type: 'nominal', title: 'query' },
              { field: 'k', type: 'nominal', title: 'key' },
              { field: 'weight', type: 'quantitative', format: '.3f', title: 'attention' },
            ],
          },
        },
        {
          transform: [{ filter: 'datum.stripe' }],
          mark: { type: 'rect', fillOpacity: 0, stroke: '#2b83ba', strokeWidth: 1.5 },
        },
      ],
    };
  });
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `Attention patterns of the top heads (${o.model}), first sequence of the batch`,
      subtitle: [
        'Row: the query position; column: the key position it reads from; colour: the attention weight (each row sums to 1).',
        `Blue outlines: the cells that head’s score averages (the stripe of its kind). Weights below ${MIN_SHOWN} are left blank.`,
      ],
      anchor: 'start',
    },
    vconcat: panels,
    resolve: { scale: { color: 'shared' } },
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
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
  const spec = {
    $schema: SCHEMA,
    title: {
      text: `Removing one MLP at the second-half positions (${o.model})`,
      subtitle: 'Change in the mean second-half log P(correct next token); below zero means the MLP helped.',
      anchor: 'start',
    },
    data: { values },
    width: { step: 36 },
    height: 260,
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'layer', type: 'ordinal', title: 'layer of the removed MLP', axis: { labelAngle: 0 } },
          xOffset: { field: 'ablation', type: 'nominal', sort: ['zero', 'mean'] },
          y: { field: 'change', type: 'quantitative', title: 'change in second-half log-prob' },
          color: { field: 'ablation', type: 'nominal', sort: ['zero', 'mean'], title: 'replaced by', scale: { range: ['#7570b3', '#66a61e'] } },
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
