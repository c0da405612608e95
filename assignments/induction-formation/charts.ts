/**
 * The experiment's charts as vega-lite specs, data inline (cli/plot.ts renders them):
 *
 *   lossSpec    the loss over training: the training batches, and the fixed batch's first and
 *               second halves; the second half's half-way point marked
 *   scoresSpec  every head's induction and previous-token score over training, one line per head
 *
 * The attention patterns before and after the jump are drawn by the induction-heads experiment's
 * attentionSpec (../induction-heads/charts.ts), the same picture its own run draws.
 */
import type { TopLevelSpec } from '../../cli/plot.ts';
import { VEGA_LITE_SCHEMA } from '../../cli/plot.ts';
import { headName } from '../../lens/heads.ts';
import type { LogEntry, PhaseChange } from './formation.ts';

/** A dashed vertical rule at `step`, labelled, as layers of a chart whose x is the step. */
function stepRule(step: number | null, label: string) {
  if (step === null) return [];
  return [
    { data: { values: [{ step, label }] }, mark: { type: 'rule', strokeDash: [4, 3], color: '#555' }, encoding: { x: { field: 'step', type: 'quantitative' } } },
    { data: { values: [{ step, label }] }, mark: { type: 'text', align: 'right', dx: -4, dy: -6, baseline: 'top', color: '#555' }, encoding: { x: { field: 'step', type: 'quantitative' }, y: { value: 0 }, text: { field: 'label' } } },
  ];
}

export interface LossChartInput {
  log: readonly LogEntry[];
  phase: PhaseChange;
  /** log(number of tokens the data is drawn from): the loss of a uniform guess */
  uniform: number;
}

export function lossSpec(o: LossChartInput): TopLevelSpec {
  const series: Array<[string, (e: LogEntry) => number]> = [
    ['training batches', (e) => e.loss],
    ['first half (fixed batch)', (e) => e.first_half_loss],
    ['second half (fixed batch)', (e) => e.second_half_loss],
  ];
  const values = o.log.flatMap((e) => series.map(([curve, f]) => ({ step: e.step, loss: f(e), curve })));
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: 'Loss over training: the second half falls off a cliff when induction heads form',
      subtitle: [
        `Fixed batch: BOS, random tokens, the same tokens again. The first half cannot be predicted (uniform guess: ${o.uniform.toFixed(2)} nats);`,
        'the second half can, once the model finds where the current token came before and copies what followed it.',
        o.phase.formed ? 'Dashed: the step at which the second half\'s loss had fallen half-way from its start to its end.' : 'No induction head has formed yet: the curves are the plateau before the jump.',
      ],
      anchor: 'start',
    },
    width: 640,
    height: 320,
    layer: [
      {
        data: { values },
        mark: { type: 'line', point: { size: 12 } },
        encoding: {
          x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
          y: { field: 'loss', type: 'quantitative', title: 'cross-entropy (nats)', scale: { zero: true } },
          color: { field: 'curve', type: 'nominal', title: null, sort: series.map(([c]) => c), legend: { orient: 'bottom-left', labelLimit: 300 } },
          tooltip: [
            { field: 'curve', type: 'nominal' },
            { field: 'step', type: 'quantitative' },
            { field: 'loss', type: 'quantitative', format: '.3f' },
          ],
        },
      },
      ...(o.phase.formed ? stepRule(o.phase.second_half_loss.at50, 'second half: half-way down') : []),
    ],
  };
  return spec as unknown as TopLevelSpec;
}

export interface ScoresChartInput {
  log: readonly LogEntry[];
  phase: PhaseChange;
}

export function scoresSpec(o: ScoresChartInput): TopLevelSpec {
  const kinds = [
    ['induction', 'induction score: attention to the token after the current token\'s earlier copy'],
    ['previous_token', 'previous-token score: attention to the position just before'],
  ] as const;
  const panels = kinds.map(([kind, title]) => {
    const values = o.log.flatMap((e) => e[kind].flatMap((row, layer) => row.map((score, head) => ({ step: e.step, score, head: headName({ layer, head }), layer: `layer ${layer}` }))));
    const marked = kind === 'induction' ? o.phase.induction_head : o.phase.previous_token_head;
    return {
      title,
      width: 640,
      height: 220,
      layer: [
        {
          data: { values },
          mark: { type: 'line' },
          encoding: {
            x: { field: 'step', type: 'quantitative', title: 'optimizer step', scale: { nice: false } },
            y: { field: 'score', type: 'quantitative', title: 'score', scale: { domain: [0, 1] } },
            // legends above the panels, in a row: at the side they would leave a column blank below them
            color: { field: 'head', type: 'nominal', title: 'head (layer.head)', legend: { orient: 'top', direction: 'horizontal' } },
            strokeDash: { field: 'layer', type: 'nominal', title: null, legend: { orient: 'top', direction: 'horizontal' } },
            strokeWidth: { condition: { test: `datum.head === '${marked}'`, value: 3 }, value: 1.2 },
            tooltip: [
              { field: 'head', type: 'nominal' },
              { field: 'step', type: 'quantitative' },
              { field: 'score', type: 'quantitative', format: '.3f' },
            ],
          },
        },
        ...(o.phase.formed ? stepRule(o.phase.second_half_loss.at50, 'loss half-way down') : []),
      ],
    };
  });
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: 'Every head\'s scores over training, on the fixed batch',
      subtitle: [
        `Thick: head ${o.phase.induction_head}, the strongest induction score in layer 1 at the end, and ${o.phase.previous_token_head}, the strongest previous-token score below it.`,
        o.phase.formed ? 'Dashed rule: where the second half\'s loss was half-way down; the induction score jumps at the same steps.' : 'No induction head has formed yet.',
      ],
      anchor: 'start',
    },
    vconcat: panels,
    resolve: { scale: { color: 'shared' } },
  };
  return spec as unknown as TopLevelSpec;
}
