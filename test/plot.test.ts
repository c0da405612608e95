// Tests for cli/plot.ts and the activation-patching charts (assignments/activation-patching/charts.ts): the heatmap spec, vega's headless SVG, the PNG,
// and the self-contained HTML page. Expected values come from the definitions in the issue
// (layer 0 on top, positions in sentence order, a diverging scale centred on zero, one cell per
// layer × position) and from vega's blueorange scheme (blue for low values, orange for high).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compile } from 'vega-lite';
import { chartHtml, positionLabel, renderPng, renderSvg, type TopLevelSpec } from '../cli/plot.ts';
import { patchHeatmapSpec, patchingHeatmapSpec } from '../assignments/activation-patching/charts.ts';

// A small matrix with a repeated token (" the" at 1 and 3), negative and positive values.
const tokens = ['The', ' the', ' cat', ' the', ' end'];
const matrix = [
  [0, -2, 0.5, 0, 1],
  [0, -1, 0.25, 3, -0.5],
];
const input = {
  matrix,
  tokens,
  cleanText: 'The the cat the end',
  corruptText: 'The the dog the end',
  cleanToken: ' Jones',
  corruptToken: ' Smith',
  model: 'test-model',
  cleanLogitDiff: -2.5,
  corruptLogitDiff: 1.5,
};

/** The <path> elements of the heatmap's rect mark: vega puts them in one <g class="mark-rect role-mark ..."> */
function heatmapCells(svg: string): string[] {
  const group = svg.match(/<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)<\/g>/s);
  assert.ok(group, 'the SVG has no rect mark group');
  return group[1].match(/<path [^>]*>/g) ?? [];
}

const fillOf = (cell: string) => cell.match(/fill="rgb\((\d+), (\d+), (\d+)\)"/)!.slice(1).map(Number);
const yOf = (cell: string) => Number(cell.match(/ d="M[-\d.]+,([-\d.]+)/)![1]);
const xOf = (cell: string) => Number(cell.match(/ d="M([-\d.]+),/)![1]);
const labelOf = (cell: string) => cell.match(/aria-label="([^"]*)"/)![1];

test('position labels keep repeated tokens apart and show the leading space', () => {
  assert.is(positionLabel(1, ' the'), '1: ␣the');
  assert.is.not(positionLabel(1, ' the'), positionLabel(3, ' the'));
});

test('the spec compiles with vega-lite and encodes what the issue asks for', () => {
  const spec = patchingHeatmapSpec(input) as any;
  compile(spec); // throws on an invalid spec
  assert.is(spec.data.values.length, 2 * 5, 'one datum per layer × position');
  assert.equal(spec.encoding.x.scale.domain, ['0: The', '1: ␣the', '2: ␣cat', '3: ␣the', '4: ␣end'], 'x in sentence order, labels unique');
  assert.is(spec.encoding.x.type, 'ordinal');
  assert.is(spec.encoding.y.field, 'row');
  assert.equal(spec.encoding.y.scale.domain, ['0', '1'], 'layer 0 first (on top)');
  const color = spec.layer[0].encoding.color;
  assert.is(color.scale.scheme.name, 'blueorange');
  assert.equal(color.scale.domain, [-3, 3], 'symmetric around zero, from the largest |value|');
  assert.match(JSON.stringify(color.legend.title), '← \\" Jones\\" favoured | \\" Smith\\" favoured →');
  const tooltipFields = spec.layer[0].encoding.tooltip.map((t: { field: string }) => t.field);
  for (const f of ['layer', 'position', 'token', 'value']) assert.ok(tooltipFields.includes(f), `tooltip lacks ${f}`);
  const title = JSON.stringify(spec.title);
  for (const s of ['The the cat the end', 'The the dog the end', 'Jones', 'Smith', 'test-model']) assert.ok(title.includes(s), `title lacks ${s}`);
});

test('a datum carries layer, position, token (quoted, spaces kept), its value and the number printed in it', () => {
  const spec = patchingHeatmapSpec(input) as any;
  const d = spec.data.values.find((v: { layer: number; position: number }) => v.layer === 1 && v.position === 3);
  // the values spread over 5 (−2 … 3): one decimal resolves a tenth of that
  assert.equal(d, {
    row: '1', col: '3: ␣the', layer: 1, position: 3, token: '" the"', value: 3, change: 1.5,
    desc: 'layer: 1; position: 3; token: " the"; value: 3', label: '3.0', ink: '#ffffff',
  });
});

test('renderSvg: one cell per layer × position, layer 0 on top, positions left to right', async () => {
  const svg = await renderSvg(patchingHeatmapSpec(input));
  assert.ok(svg.startsWith('<svg'), 'not an SVG');
  const cells = heatmapCells(svg);
  assert.is(cells.length, 10);
  const at = (layer: number, position: number) => {
    const c = cells.filter((x) => labelOf(x).includes(`layer: ${layer};`) && labelOf(x).includes(`position: ${position};`));
    assert.is(c.length, 1, `exactly one cell for layer ${layer}, position ${position}`);
    return c[0];
  };
  assert.ok(yOf(at(0, 0)) < yOf(at(1, 0)), 'layer 0 above layer 1');
  for (let p = 0; p < 4; p++) assert.ok(xOf(at(0, p)) < xOf(at(0, p + 1)), `position ${p} left of ${p + 1}`);
});

test('renderSvg: negative cells are blue, positive orange, zero near white', async () => {
  const cells = heatmapCells(await renderSvg(patchingHeatmapSpec(input)));
  const cell = (layer: number, position: number) => cells.find((x) => labelOf(x).includes(`layer: ${layer};`) && labelOf(x).includes(`position: ${position};`))!;
  const [r1, , b1] = fillOf(cell(0, 1)); // -2
  assert.ok(b1 > r1 + 50, `value -2 should be blue, got rgb ${fillOf(cell(0, 1))}`);
  const [r2, , b2] = fillOf(cell(1, 3)); // +3, the darkest orange
  assert.ok(r2 > b2 + 100, `value +3 should be orange, got rgb ${fillOf(cell(1, 3))}`);
  const zero = fillOf(cell(0, 0));
  assert.ok(zero.every((c) => c > 220), `value 0 should be near white, got rgb ${zero}`);
});

test('renderSvg: a 40-column grid has every cell, and numbers only where they fit', async () => {
  const T = 40, L = 12;
  const big = patchingHeatmapSpec({
    ...input,
    tokens: Array.from({ length: T }, (_, i) => (i % 2 ? ' a' : ' b')),
    matrix: Array.from({ length: L }, (_, l) => Array.from({ length: T }, (_, p) => 100 * Math.sin(l + p))),
  });
  const svg = await renderSvg(big);
  assert.is(heatmapCells(svg).length, L * T);
  // values up to ±100 with no decimals ("−100" is 21 px at 8 px) do not fit 24-pixel cells with room to spare
  assert.not.match(svg, 'mark-text role-mark', 'no value labels that would not fit their cells');
});

test('--scale runs: the colour scale spans the two unpatched runs and every cell (low end blue), not centred on zero', () => {
  const spec = patchingHeatmapSpec({ ...input, scale: 'runs' }) as any;
  compile(spec);
  const scale = spec.layer[0].encoding.color.scale;
  assert.equal(scale.domain, [-2.5, 3], 'from the clean run (−2.5) to the highest cell (3), so that no cell is clamped');
  assert.match(JSON.stringify(spec.title.subtitle), 'colours from −2.50 (blue) to 3.00 (orange)');
  const inRuns = patchingHeatmapSpec({ ...input, scale: 'runs', matrix: [[-1, 0, 1, 0, 0], [0, 0, 0, 0, 0]] }) as any;
  assert.equal(inRuns.layer[0].encoding.color.scale.domain, [-2.5, 1.5], 'every cell between the runs: from the clean run (−2.5) to the corrupted run (1.5)');
});

test('the chart says so when every cell sits on one side of zero', () => {
  const below = patchingHeatmapSpec({ ...input, matrix: [[-1, -2, -3, -1, -1], [-1, -1, -1, -1, -0.5]] }) as any;
  assert.match(JSON.stringify(below.title.subtitle), 'every cell is below zero: every patched run favours \\" Jones\\"');
  const mixed = patchingHeatmapSpec(input) as any;
  assert.not.match(JSON.stringify(mixed.title.subtitle), 'every cell');
});

test('head results: layer × head has one column per head; layer × head × position one row per head', () => {
  const byHead = patchHeatmapSpec({ ...input, hook: 'blocks.{l}.attn.hook_z', axes: ['layer', 'head'], matrix: [[1, 2, 3], [4, 5, 6]] }) as any;
  compile(byHead);
  assert.equal(byHead.encoding.x.scale.domain, ['0', '1', '2'], 'the heads by number, under the axis title "head"');
  assert.equal(byHead.data.values.find((d: any) => d.layer === 1 && d.head === 2).value, 6);
  const byPos = patchHeatmapSpec({ ...input, hook: 'blocks.{l}.attn.hook_z', axes: ['layer', 'head', 'pos'], matrix: [[[1, 2, 3, 4, 5]], [[6, 7, 8, 9, 10]]] }) as any;
  compile(byPos);
  assert.equal(byPos.encoding.y.scale.domain, ['L0H0', 'L1H0']);
  assert.is(byPos.data.values.length, 10);
  assert.equal(byPos.data.values.find((d: any) => d.row === 'L1H0' && d.position === 4).value, 10);
});

test('renderSvg takes any vega-lite spec', async () => {
  const bar: TopLevelSpec = {
    data: { values: [{ a: 'x', b: 1 }, { a: 'y', b: 2 }] },
    mark: 'bar',
    encoding: { x: { field: 'a', type: 'nominal' }, y: { field: 'b', type: 'quantitative' } },
  };
  const svg = await renderSvg(bar);
  assert.match(svg, /class="mark-rect role-mark/);
});

// @resvg/resvg-js is one of the package's dependencies, so a renderer that cannot be loaded is a
// broken installation, and this test fails rather than passing without looking at a PNG.
test('renderPng: a PNG twice the size of the SVG', async () => {
  const svg = await renderSvg(patchingHeatmapSpec(input));
  const png = await renderPng(svg);
  assert.ok(png !== null, 'renderPng returned null: @resvg/resvg-js could not be loaded (run npm ci)');
  const buf = Buffer.from(png);
  assert.equal([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  const svgW = Number(svg.match(/width="(\d+)"/)![1]);
  assert.is(buf.readUInt32BE(16), 2 * svgW, 'width from the IHDR chunk');
});

test('chartHtml: one offline page, no external script or stylesheet', () => {
  const html = chartHtml(patchingHeatmapSpec(input), 'A title');
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.not.match(html, /<script[^>]+src=/i, 'no <script src>');
  assert.not.match(html, /<link[^>]+href=/i, 'no <link href>');
  assert.not.match(html, /sourceMappingURL=/, 'source map comments stripped');
  const opens = html.match(/<script\b/gi)!.length, closes = html.match(/<\/script>/gi)!.length;
  assert.is(opens, 4, 'vega, vega-lite, vega-embed and the page script');
  assert.is(closes, opens, 'no stray </script> inside a bundle');
  assert.match(html, 'vegaEmbed(');
  assert.match(html, 'The the cat the end');
  assert.ok(html.length > 500_000, 'the three bundles are inlined');
});

test('chartHtml: text in the spec or title cannot break out of the page', () => {
  const spec = patchingHeatmapSpec({ ...input, cleanText: 'a </script><b>bold</b>' });
  const html = chartHtml(spec, '<i>title</i> & co');
  assert.not.match(html, '</script><b>');
  assert.match(html, '&lt;i&gt;title&lt;/i&gt; &amp; co');
  const json = html.match(/const spec = (.*);\n/)![1];
  assert.equal(JSON.parse(json), JSON.parse(JSON.stringify(spec)), 'the spec survives the escaping');
});

test.run();
