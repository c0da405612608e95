// The facts of the experiments' charts that can be checked in their specs and rendered SVGs: the
// captions name the colours the data are drawn in, cell numbers contrast with their cells, the
// panels of the neurons chart run in numeric layer order, the title no longer sets the width of the
// picture, and large results are shown thinned, with a note. Colours are read from vega's own
// rendering (the SVG's fill attributes), never from our colour code; the contrast threshold is
// WCAG's 4.5:1 for normal text.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { contentWidth, fitTitle, renderSvg, type TopLevelSpec } from '../cli/plot.ts';
import { colourAt, contrastRatio, type ColourScale, type RGB } from '../cli/chart_colour.ts';
import { patchHeatmapSpec, dlaSpec } from '../assignments/activation-patching/charts.ts';
import { headGridSpec, knockoutSpec, pathSpec, residSpec, attentionBarsSpec, nameMoverCaption } from '../assignments/ioi/charts.ts';
import { heatmapSpec, neuronsSpec } from '../assignments/circuits/charts.ts';
import { scoresSpec } from '../assignments/induction-heads/charts.ts';

// -----------------------------------------------------------------------------
// reading the SVG

interface Rect { x: number; y: number; w: number; h: number; fill: RGB; label: string }
interface Text { x: number; y: number; fill: RGB; text: string }

const hex = (h: string): RGB => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)) as RGB;
const rgb = (s: string): RGB => (s.startsWith('#') ? hex(s) : (s.match(/\d+/g)!.slice(0, 3).map(Number) as RGB));

/** The cells (filled rects) and cell texts of each panel (vega draws each panel in a group of its own). */
function panels(svg: string): { rects: Rect[]; texts: Text[] }[] {
  return svg.split('<g class="mark-group role-scope').map((chunk) => {
    const rects: Rect[] = [];
    for (const g of chunk.matchAll(/<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)<\/g>/gs)) {
      for (const m of g[1].matchAll(/<path ([^>]*)\/>/g)) {
        const attrs = m[1];
        const d = attrs.match(/ d="M([-\d.]+),([-\d.]+)h([-\d.]+)v([-\d.]+)/);
        const fill = attrs.match(/ fill="(rgb\([^)]*\)|#[0-9a-f]{6})"/);
        if (!d || !fill || /fill-opacity="0"/.test(attrs)) continue;
        rects.push({ x: +d[1], y: +d[2], w: +d[3], h: +d[4], fill: rgb(fill[1]), label: attrs.match(/aria-label="([^"]*)"/)?.[1] ?? '' });
      }
    }
    const texts: Text[] = [];
    for (const g of chunk.matchAll(/<g class="mark-text role-mark[^"]*"[^>]*>(.*?)<\/g>/gs)) {
      for (const m of g[1].matchAll(/<text ([^>]*)>([^<]*)<\/text>/g)) {
        const t = m[1].match(/transform="translate\(([-\d.]+),([-\d.]+)\)"/), fill = m[1].match(/ fill="([^"]*)"/);
        if (t && fill) texts.push({ x: +t[1], y: +t[2], fill: rgb(fill[1]), text: m[2] });
      }
    }
    return { rects, texts };
  });
}

/** Every cell number's contrast with the cell under it (each number must sit in a cell). */
function contrasts(svg: string): { text: string; ratio: number }[] {
  const out: { text: string; ratio: number }[] = [];
  for (const { rects, texts } of panels(svg)) {
    for (const t of texts) {
      const cell = rects.find((r) => t.x > r.x && t.x < r.x + r.w && t.y > r.y && t.y < r.y + r.h);
      assert.ok(cell, `the number "${t.text}" at (${t.x}, ${t.y}) sits in no cell`);
      out.push({ text: t.text, ratio: contrastRatio(t.fill, cell.fill) });
    }
  }
  return out;
}

/** What a caption would call a rendered colour: the redblue scheme's red end (or blueorange's orange end when `warm` says so), blue, or near white. */
const hue = (c: RGB, warm = 'red') => (c.every((v) => v > 225) ? 'white' : c[0] > c[2] ? warm : 'blue');
const subtitle = (spec: TopLevelSpec) => JSON.stringify((spec as any).title.subtitle);

// -----------------------------------------------------------------------------
// captions

test('IOI path patching: the caption names the colour lower F is drawn in (the hand-built model: 2.2 → 0.00, 1.3 → −1.81)', async () => {
  // F = 5; the circuit's senders lower it: 2.2 to 0.00 on the direct path, 1.3 to −1.81 through the name mover's queries
  const F = 5;
  const to_logits = [[5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 0, 5]];
  const to_name_movers = [[5, 5, 5, 5], [5, 5, 5, -1.814], [null, null, null, null]];
  const spec = pathSpec({ model: 'm', to_logits, to_name_movers, F, name_movers: ['2.2'], marks: { name_movers: ['2.2'], circuit: ['0.1', '1.3'] } });
  const [, left] = panels(await renderSvg(spec));
  const cell22 = left.rects.find((r) => /^head: 2; layer: 2;/.test(r.label))!;
  const lower = hue(cell22.fill);
  assert.is(lower, 'red', 'lower F is drawn red on the redblue scheme');
  assert.match(subtitle(spec), `${lower}: lower, the path carries the answer`);
  assert.not.match(subtitle(spec), 'blue: the path carries');
});

test('IOI resid patching: the caption gives each run the colour it is drawn in, whichever run is higher', async () => {
  // the GPT-2-shaped random checkpoint's case: IOI run −1.179, ABC run 2.326 (the IOI run is the lower one)
  for (const [clean, corrupt] of [[-1.179, 2.326], [3.5, 0.2]]) {
    const matrix = [[clean, corrupt, 1], [corrupt, corrupt, clean]];
    const spec = residSpec({ model: 'm', matrix, tokens: ['A', ' B', ' C'], clean, corrupt, group: 'g', prompts: 2 });
    const [cells] = panels(await renderSvg(spec));
    const at = (p: number, l: number) => cells.rects.find((r) => r.label.startsWith(`position: token (first prompt): ${p}:`) && r.label.includes(`; layer: ${l};`))!;
    const ioiCell = at(0, 0);
    assert.match(subtitle(spec), `the IOI run ${clean.toFixed(3).replace('-', '−')} is ${hue(ioiCell.fill)}`);
    assert.is(hue(ioiCell.fill), clean > corrupt ? 'blue' : 'red', 'one convention: higher IO − S is blue');
    assert.is(hue(at(1, 0).fill), 'white', 'the ABC run is white');
  }
});

test('IOI grids share one convention: higher IO − S is blue in the DLA, head-patching and path-patching grids', async () => {
  const grid = [[-2, 0, 2]];
  const marks = { name_movers: [], circuit: [] };
  const dla = headGridSpec({ model: 'm', grid, title: 't', what: 'x', marks, center: 0, centerName: 'zero', higher: 'h', lower: 'l' });
  const path = pathSpec({ model: 'm', to_logits: grid, to_name_movers: grid, F: 0, name_movers: ['0.0'], marks });
  for (const spec of [dla, path]) {
    const cells = panels(await renderSvg(spec)).flatMap((p) => p.rects);
    assert.is(hue(cells.find((r) => /^head: 2; layer: 0;/.test(r.label))!.fill), 'blue');
    assert.is(hue(cells.find((r) => /^head: 0; layer: 0;/.test(r.label))!.fill), 'red');
    assert.match(subtitle(spec), 'blue: higher');
    assert.match(subtitle(spec), 'red: lower');
  }
});

test('activation patching: the caption names the colours of its scale, for --scale zero and --scale runs', async () => {
  const base = { model: 'm', cleanText: 'a', corruptText: 'b', cleanToken: ' x', corruptToken: ' y', tokens: ['a', ' b'], hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'] as const };
  const zero = patchHeatmapSpec({ ...base, axes: [...base.axes], matrix: [[-2, 1]], cleanLogitDiff: -2, corruptLogitDiff: 1 });
  const [z] = panels(await renderSvg(zero));
  const neg = z.rects.find((r) => /position: 0;/.test(r.label))!;
  assert.match(subtitle(zero), `${hue(neg.fill, 'orange')}: below zero, \\" x\\" favoured`);
  // runs: the clean run is the higher one here, so it takes the high end's colour
  const runs = patchHeatmapSpec({ ...base, axes: [...base.axes], matrix: [[1, 3]], cleanLogitDiff: 3, corruptLogitDiff: 1, scale: 'runs' });
  const [r] = panels(await renderSvg(runs));
  const cleanCell = r.rects.find((x) => /position: 1;/.test(x.label))!;
  assert.match(subtitle(runs), `clean run 3.00 ${hue(cleanCell.fill, 'orange')}`);
  assert.is(hue(cleanCell.fill, 'orange'), 'orange');
});

test('IOI attention: the caption is computed from the numbers, or absent', () => {
  const heads = [
    { head: '9.9', why: 'name mover', to_IO: 0.6, to_S1: 0.05, to_S2: 0.1 },
    { head: '9.6', why: 'name mover', to_IO: 0.1, to_S1: 0.3, to_S2: 0.2 },
  ];
  assert.match(nameMoverCaption(heads, ['9.9'])!, 'attend more to IO than to S');
  assert.match(nameMoverCaption(heads, ['9.6'])!, 'do not attend more to IO than to S');
  assert.match(nameMoverCaption(heads, ['9.9', '9.6'])!, 'not: 9.6');
  assert.is(nameMoverCaption(heads, ['1.1']), null);
  const spec = attentionBarsSpec({ model: 'm', heads, nameMovers: ['5.5'] }) as any;
  assert.not.match(JSON.stringify(spec.title), 'Name movers attend to IO', 'no claim the data do not support');
});

test('composition starts at its random baseline; cells below it keep a visible colour, not the background', async () => {
  const base = 0.18;
  const input = {
    title: 'c', subtitle: [], colors: 'sequential' as const, domain: [base, 0.25] as [number, number], valueTitle: 'composition',
    panels: [{ title: 'K', rows: ['0.0', '0.1'], cols: ['1.0', '1.1'], values: [[0.1, 0.18], [0.22, 0.25]], rowTitle: 'A', colTitle: 'B' }],
  };
  const spec = heatmapSpec(input) as any;
  const scale = spec.concat[0].layer[0].encoding.color.scale;
  assert.equal(scale.domain, [base, 0.25]);
  const cells = panels(await renderSvg(spec)).flatMap((p) => p.rects);
  for (const c of cells) assert.ok(c.fill.some((v) => v < 235), `a cell drawn ${c.fill}, too close to the white background`);
});

// -----------------------------------------------------------------------------
// numbers in cells

const scaleOfRect = (spec: any): ColourScale => {
  const s = spec.layer[0].encoding.color.scale;
  return { scheme: s.scheme.name, domain: s.domain, extent: s.scheme.extent };
};

test('colourAt gives the colour vega draws (so the ink chosen from it is the ink for the rendered cell)', async () => {
  const spec = patchHeatmapSpec({
    model: 'm', cleanText: 'a', corruptText: 'b', cleanToken: ' x', corruptToken: ' y', tokens: ['a', ' b', ' c'], hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'],
    matrix: [[-3, -1.5, 0], [0.7, 2, 3]], cleanLogitDiff: -3, corruptLogitDiff: 3,
  }) as any;
  const [p] = panels(await renderSvg(spec));
  for (const cell of p.rects) {
    const v = Number(cell.label.match(/value: ([−\-\d.]+)/)![1].replace('−', '-'));
    const mine = colourAt(scaleOfRect(spec), v);
    for (let k = 0; k < 3; k++) assert.ok(Math.abs(mine[k] - cell.fill[k]) <= 1, `value ${v}: vega ${cell.fill}, colourAt ${mine}`);
  }
});

test('cell numbers contrast with their cells (WCAG 4.5:1), on every kind of heatmap', async () => {
  const grid = Array.from({ length: 4 }, (_, l) => Array.from({ length: 5 }, (_, h) => Math.sin(3 * l + h) * 4));
  const specs: TopLevelSpec[] = [
    patchHeatmapSpec({ model: 'm', cleanText: 'a', corruptText: 'b', cleanToken: ' x', corruptToken: ' y', tokens: ['a', ' b', ' c', ' d', ' e'], hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'], matrix: grid, cleanLogitDiff: -4, corruptLogitDiff: 4 }),
    patchHeatmapSpec({ model: 'm', cleanText: 'a', corruptText: 'b', cleanToken: ' x', corruptToken: ' y', tokens: ['a', ' b', ' c', ' d', ' e'], hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'], matrix: grid, cleanLogitDiff: -1, corruptLogitDiff: 2, scale: 'runs' }),
    headGridSpec({ model: 'm', grid, title: 't', what: 'x', marks: { name_movers: ['1.1'], circuit: [] }, center: 0.5, centerName: 'c', higher: 'h', lower: 'l' }),
    heatmapSpec({ title: 't', subtitle: [], colors: 'diverging', domain: [-1, 1], valueTitle: 'v', panels: [{ title: 'p', rows: ['0', '1', '2', '3'], cols: ['0', '1', '2', '3', '4'], values: grid.map((r) => r.map((v) => v / 4)), rowTitle: 'r', colTitle: 'c' }] }),
    scoresSpec({
      model: 'm', scores: { induction: grid.map((r) => r.map((v) => Math.abs(v) / 4)), previous_token: grid.map((r) => r.map((v) => (v + 4) / 8)), duplicate_token: grid.map(() => [0, 0.2, 0.5, 0.8, 1]) },
      detected: { induction: ['1.1'], previous_token: [], duplicate_token: [] }, thresholds: { induction: 0.5, previous_token: 0.5, duplicate_token: 0.5 }, labelled: null,
    }),
  ];
  for (const spec of specs) {
    const c = contrasts(await renderSvg(spec));
    assert.ok(c.length >= 20, `expected numbers in the cells, found ${c.length}`);
    for (const { text, ratio } of c) assert.ok(ratio >= 4.5, `"${text}": contrast ${ratio.toFixed(2)} with its cell`);
  }
});

test('cell numbers have fixed decimals and fit their cells; no "−0.00"', () => {
  const spec = heatmapSpec({
    title: 't', subtitle: [], colors: 'diverging', valueTitle: 'v',
    panels: [{ title: 'p', rows: ['a', 'b'], cols: ['c', 'd', 'e'], values: [[-0.0062, 0.0054, 0.013], [-0.021, -0.00001, 0.0005]], rowTitle: 'r', colTitle: 'c' }],
  }) as any;
  const labels = spec.concat[0].layer[0].data?.values ?? spec.concat[0].data.values;
  const texts = labels.map((d: { label: string }) => d.label);
  // spread 0.034: three decimals resolve a tenth of it
  assert.equal(texts, ['−0.006', '0.005', '0.013', '−0.021', '0.000', '0.001']);
});

// -----------------------------------------------------------------------------
// layout

test('circuits neurons: the layer panels run 0, 1, 2, … 10, 11 (numbers, not text)', async () => {
  const cosines = Array.from({ length: 12 }, (_, l) => Array.from({ length: 8 }, (_, n) => Math.sin(l + n)));
  const svg = await renderSvg(neuronsSpec({ model: 'm', cosines, threshold: -0.9 }));
  const headers = [...svg.matchAll(/<text[^>]*transform="translate\(([-\d.]+),([-\d.]+)\)"[^>]*>layer (\d+)<\/text>/g)];
  assert.is(headers.length, 12);
  // the facet headers are drawn in panel order; panels fill rows of four, left to right
  assert.equal(headers.map((h) => Number(h[3])), Array.from({ length: 12 }, (_, l) => l));
});

test('the title is wrapped to the chart: the picture is no wider than what it draws (or 360 px)', async () => {
  const long = 'a very long title that goes on and on, '.repeat(12);
  const spec = patchHeatmapSpec({
    model: long, cleanText: long, corruptText: long, cleanToken: ' x', corruptToken: ' y', tokens: ['a', ' b'], hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'],
    matrix: [[1, 2]], cleanLogitDiff: 1, corruptLogitDiff: 2,
  });
  const { title, ...body } = spec as any;
  const content = await contentWidth(body);
  const fitted = await fitTitle(spec);
  const svg = await renderSvg(fitted);
  const width = Number(svg.match(/width="(\d+)"/)![1]);
  const padding = 10; // vega's default 5 px on each side
  assert.ok(width <= Math.max(content, 360) + padding + 2, `picture ${width} px for ${content} px of content`);
  assert.ok((fitted as any).title.text.length >= 1 && (fitted as any).title.subtitle.length > 4, 'the long lines were wrapped, not dropped');
  assert.ok(title, 'the spec had a title');
});

test('knockout: labels never cut, an all-zero completeness panel still has a scale and says why it is empty', async () => {
  const ko = {
    circuit: ['0.1', '1.3', '2.2'], F_model: 5, F_circuit: 5, F_empty: 0.004, faithfulness: 0, positions: 'all' as const, runs: 10, circuit_source: 'test',
    completeness: [{ K: ['0.1'], kind: 'class duplicate_token', value: 0, F_C_minus_K: -1.812, F_M_minus_K: -1.812 }],
    minimality: [{ head: '0.1', value: 6.8 }],
  };
  const spec = knockoutSpec({ model: 'm', ko: ko as any }) as any;
  assert.match(JSON.stringify(spec), 'every value is 0');
  const svg = await renderSvg(spec);
  assert.not.match(svg, '0.000000', 'no lone tick of an empty domain');
  assert.match(svg, 'class duplicate_token: K = {0.1}');
  assert.not.match(svg, /class duplicate_token[^<]*…/, 'the label is not cut');
});

test('DLA of a GPT-2-small-sized model: the 24 largest parts and the sum of the rest, not 170 bars', () => {
  const L = 12, H = 12;
  const heads = Array.from({ length: L }, (_, l) => Array.from({ length: H }, (_, h) => ((l * H + h) % 7) / 10 - 0.3));
  const dla = { embed: 0.1, heads, attn_bias: Array(L).fill(0), mlp: Array(L).fill(0.05), const: 0, total: 1 };
  const spec = dlaSpec(dla, { model: 'm', cleanText: 'a', corruptText: 'b', cleanToken: ' x', corruptToken: ' y', cleanLogitDiff: 0, corruptLogitDiff: 1 }) as any;
  const bars = spec.data.values;
  assert.is(bars.length, 25);
  assert.match(bars[24].part, 'the other 146 parts');
  const sum = bars.reduce((s: number, b: { value: number }) => s + b.value, 0);
  const total = dla.embed + heads.flat().reduce((a, b) => a + b, 0) + dla.mlp.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - total) < 1e-9, 'the bars still add up to the total');
});

test.run();
