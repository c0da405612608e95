// Tests for the caption and legend layout of the charts: flowLines (cli/chart_layout.ts) and
// spanLegend (cli/plot.ts). Expected lines are worked out by hand from the rule (greedy filling of
// a width measured with textWidth); the colour bar's expected length is the plot's width, set here.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { flowLines, textWidth } from '../cli/chart_layout.ts';
import { contentWidth, spanLegend, type TopLevelSpec } from '../cli/plot.ts';

const px = (s: string) => textWidth(s, 12);

test('flowLines: the lines run on as one paragraph, each filled to the width but the last', () => {
  assert.equal(flowLines(['one two', 'three', 'four five six'], px('one two · three · four'), 12), ['one two · three · four', 'five six']);
  // after a full stop the next line follows with a space, no separator
  assert.equal(flowLines(['Done.', 'next'], 1000, 12), ['Done. next']);
});

test('flowLines: no line starts with the separator, and a short quoted token stays whole', () => {
  assert.equal(flowLines(['one two', 'three'], px('one two'), 12), ['one', 'two ·', 'three']);
  assert.equal(flowLines(['clean: " Jones" wins'], px('clean: " Jones'), 12), ['clean:', '" Jones" wins']);
});

test('flowLines: an empty line starts a new paragraph; a word wider than the line is cut', () => {
  assert.equal(flowLines(['a', '', 'b'], 1000, 12), ['a', '', 'b']);
  const lines = flowLines(['x'.repeat(40)], px('x'.repeat(10)), 12);
  assert.equal(lines, ['x'.repeat(10), 'x'.repeat(10), 'x'.repeat(10), 'x'.repeat(10)]);
});

/** Ten columns 60 px wide: a plot 600 px wide with a 100 px colour bar under it. */
function barChart(legend: Record<string, unknown>): TopLevelSpec {
  return {
    data: { values: Array.from({ length: 10 }, (_, i) => ({ c: String(i), v: i / 9 })) },
    mark: 'rect',
    width: { step: 60 },
    height: 60,
    encoding: {
      x: { field: 'c', type: 'ordinal' },
      color: { field: 'v', type: 'quantitative', legend },
    },
  } as TopLevelSpec;
}

test('spanLegend: a colour bar under the chart grows to the width of the plot, the picture does not', async () => {
  const spec = barChart({ orient: 'bottom', direction: 'horizontal', gradientLength: 100 });
  const wide = await spanLegend(spec);
  const length = (wide as any).encoding.color.legend.gradientLength;
  // the bar starts at the plot's left edge; its end labels may reach a few px past either end
  assert.ok(length > 600 - 12 && length <= 600, `colour bar ${length} px under a 600 px plot`);
  assert.is(await contentWidth(wide), await contentWidth(spec));
  assert.is((spec as any).encoding.color.legend.gradientLength, 100, 'the spec given is not changed');
});

test('spanLegend: a legend beside the chart is left alone', async () => {
  const spec = barChart({ orient: 'right', gradientLength: 100 });
  assert.equal(await spanLegend(spec), spec);
});

test.run();
