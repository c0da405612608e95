/**
 * Charts as vega-lite specs, and three ways to show them without a browser at hand:
 *
 * - renderSvg(spec): vega's headless renderer in Node, no canvas and no browser needed;
 * - renderPng(svg): the SVG rasterised by resvg (@resvg/resvg-js), or null when that
 *   optional package is not installed;
 * - chartHtml(spec, title): one HTML file with the vega, vega-lite and vega-embed browser bundles
 *   inlined, so the interactive chart (tooltips, export menu) opens offline by double-click.
 *
 * chartFiles(name, spec, title) gives all of them at once, for an OutputWriter to write as a set.
 *
 * The render functions take any vega-lite spec; the experiments build their own specs (the
 * activation-patching charts are in assignments/activation-patching/charts.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, type TopLevelSpec } from 'vega-lite';
import * as vega from 'vega';
import { parse, View } from 'vega';
import { visibleToken } from './terminal.ts';
import { flowLines, textWidth, wrapLines } from './chart_layout.ts';

export type { TopLevelSpec };

/** The schema every spec of the project names. */
export const VEGA_LITE_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

// -----------------------------------------------------------------------------
// labels

/** The label of position i on an axis, e.g. "1: ␣Jones"; unique even when tokens repeat. */
export function positionLabel(i: number, token: string): string {
  return `${i}: ${visibleToken(token)}`;
}

// -----------------------------------------------------------------------------
// rendering in Node

// Text widths. In Node vega has no canvas to measure text with and estimates every character at
// 0.8 em, so a long title or label made the picture far wider than what it holds. It keeps a hook
// for a better measure (`textMetrics.width`, the one vl-convert sets too); we give it DejaVu Sans's
// widths. In the browser vega measures with its canvas and this changes nothing.
interface TextItem {
  text?: unknown;
  fontSize?: number;
  fontWeight?: string | number;
  limit?: number;
}

const isBold = (w: unknown) => w === 'bold' || w === 'bolder' || (typeof w === 'number' && w >= 600) || (typeof w === 'string' && Number(w) >= 600);

// vega asks this for the width of every text it lays out (labels, titles, legends); a label cut at
// its `limit` is as wide as the limit.
const metrics = (vega as unknown as { textMetrics: { width: (item: TextItem, text?: string) => number } }).textMetrics;
metrics.width = (item: TextItem, text?: string) => {
  const line = String(text ?? item.text ?? '').trim();
  const w = textWidth(line, item.fontSize ?? 11, isBold(item.fontWeight));
  return item.limit && item.limit > 0 ? Math.min(w, item.limit) : w;
};

/** The Vega spec that a vega-lite spec compiles to (throws on an invalid spec). */
export function compileVegaLite(spec: TopLevelSpec) {
  return compile(spec).spec;
}

/** Render any vega-lite spec to an SVG string with vega's headless renderer. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compileVegaLite(spec)), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The width of everything a spec draws (axes, legends and panel titles included), in pixels. */
export async function contentWidth(spec: TopLevelSpec): Promise<number> {
  const view = new View(parse(compileVegaLite(spec)), { renderer: 'none' });
  try {
    await view.runAsync();
    const b = (view.scenegraph() as unknown as { root: { bounds: { x1: number; x2: number } } }).root.bounds;
    return b.x2 - b.x1;
  } finally {
    view.finalize();
  }
}

interface SceneNode { marktype?: string; role?: string; x?: number; items?: SceneNode[]; bounds?: { x1: number; x2: number } }

/** The scenegraph of a spec as vega lays it out (no rendering). */
async function scene<T>(spec: TopLevelSpec, read: (root: SceneNode) => T): Promise<T> {
  const view = new View(parse(compileVegaLite(spec)), { renderer: 'none' });
  try {
    await view.runAsync();
    return read((view.scenegraph() as unknown as { root: SceneNode }).root);
  } finally {
    view.finalize();
  }
}

/** The left and right edges of every legend drawn, in the picture's coordinates. */
function legendEdges(node: SceneNode, offset = 0, out: Array<[number, number]> = []): Array<[number, number]> {
  for (const item of node.items ?? []) {
    if (node.role === 'legend' && item.bounds) out.push([offset + item.bounds.x1, offset + item.bounds.x2]);
    if (item.items) legendEdges(item, offset + (node.marktype === 'group' ? item.x ?? 0 : 0), out);
  }
  return out;
}

type Json = Record<string, unknown>;

/** The colour channels of a spec whose legend lies under the chart as a horizontal colour bar, with that legend. */
function bottomGradientLegends(spec: unknown, out: Array<{ channel: Json; legend: Json }> = []): Array<{ channel: Json; legend: Json }> {
  if (Array.isArray(spec)) for (const x of spec) bottomGradientLegends(x, out);
  else if (spec && typeof spec === 'object') {
    const o = spec as Json;
    const legend = o.legend as Json | undefined;
    if (o.type === 'quantitative' && legend && legend.orient === 'bottom' && legend.direction === 'horizontal') out.push({ channel: o, legend });
    for (const v of Object.values(o)) bottomGradientLegends(v, out);
  }
  return out;
}

/** Legend titles: 11 px bold (vega's default). */
const LEGEND_TITLE_SIZE = 11;

/** A colour bar is never shortened below this. */
const MIN_GRADIENT = 120;

/**
 * The spec with its colour bar (a quantitative legend under the chart, horizontal) as long as the
 * rest of the chart is wide: the space beside a short bar is not left blank, the scale is easier
 * to read off, and a bar under a narrow chart no longer widens the picture. The legend's title
 * goes on the bar's left when it takes at most half the width (a row of its own was mostly
 * blank). Panels sharing one colour scale share the one bar; specs that draw no such bar, or
 * several legends, are returned unchanged.
 */
export async function spanLegend(spec: TopLevelSpec): Promise<TopLevelSpec> {
  if (!bottomGradientLegends(spec).length) return spec;
  const measure = async (s: TopLevelSpec) => {
    const { title: _, ...body } = s as TopLevelSpec & { title?: unknown };
    return scene(body as TopLevelSpec, (root) => ({ right: root.bounds!.x2, legends: legendEdges(root) }));
  };
  const copy = structuredClone(spec);
  const found = bottomGradientLegends(copy);
  if (found.some(({ legend }) => typeof legend.gradientLength !== 'number')) return spec;
  let { legends } = await measure(copy);
  if (legends.length !== 1) return spec;
  // the right edge of everything but the legend
  const bare = structuredClone(copy);
  for (const { channel } of bottomGradientLegends(bare)) channel.legend = null;
  const { right } = await measure(bare);
  const { channel, legend } = found[0];
  const title = legend.title ?? channel.title;
  const lines = typeof title === 'string' ? [title] : Array.isArray(title) ? title.map(String) : [];
  const titleWidth = Math.max(0, ...lines.map((l) => textWidth(l, LEGEND_TITLE_SIZE, true)));
  if (legend.titleOrient === undefined && lines.length && titleWidth <= (right - legends[0][0]) / 2) {
    for (const { legend: l } of found) Object.assign(l, { titleOrient: 'left', titleAnchor: 'end' });
    ({ legends } = await measure(copy));
  }
  const grow = Math.floor(right - legends[0][1]);
  for (const { legend: l } of found) {
    l.gradientLength = Math.max(MIN_GRADIENT, (l.gradientLength as number) + grow);
    l.tickCount ??= 8; // (vega spaces the labels by the bar's length: a long bar got dozens)
  }
  return copy;
}

/**
 * The charts' typeface. Every text is measured with DejaVu Sans's widths (textWidth above), titles
 * are wrapped with them, and resvg draws the PNG in it; a browser left to its own "sans-serif"
 * often picks an Arial-like face about a tenth narrower, and every wrapped line then stops short
 * of the plot's right edge. Verdana, where DejaVu Sans is missing, has nearly its widths.
 */
const CHART_FONT = '"DejaVu Sans", Verdana, sans-serif';

/** The spec drawn in CHART_FONT: vega-lite's config.font sets every title, axis, legend and text mark. */
function inChartFont(spec: TopLevelSpec): TopLevelSpec {
  return { ...spec, config: { ...spec.config, font: CHART_FONT } } as TopLevelSpec;
}

/** The narrowest a title may wrap to, however narrow the chart. */
const MIN_TITLE_WIDTH = 360;
const TITLE_FONT_SIZE = 14, SUBTITLE_FONT_SIZE = 12;

/**
 * The spec with its title and subtitle wrapped to the width of what the chart draws, so that a long
 * title no longer sets the width of the picture (and leaves most of it blank), and starting at the
 * picture's left edge. The subtitle's lines flow as one paragraph filled to that width (flowLines).
 */
export async function fitTitle(spec: TopLevelSpec): Promise<TopLevelSpec> {
  const { title, ...rest } = spec as TopLevelSpec & { title?: unknown };
  if (title === undefined) return spec;
  const t = (typeof title === 'string' || Array.isArray(title) ? { text: title } : title) as { text: string | string[]; subtitle?: string | string[] };
  const width = Math.max(MIN_TITLE_WIDTH, await contentWidth(rest as TopLevelSpec));
  const asLines = (x: string | string[] | undefined) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
  const text = wrapLines(asLines(t.text), width, TITLE_FONT_SIZE, true);
  const subtitle = flowLines(asLines(t.subtitle), width, SUBTITLE_FONT_SIZE);
  return {
    ...spec,
    title: {
      anchor: 'start', ...t, frame: 'bounds', fontSize: TITLE_FONT_SIZE, subtitleFontSize: SUBTITLE_FONT_SIZE,
      text, ...(subtitle.length ? { subtitle } : {}), offset: 10,
    },
  } as TopLevelSpec;
}

/**
 * Rasterise an SVG to PNG (twice the SVG's size, for sharp text) with resvg, a well-kept
 * Rust renderer shipped as prebuilt binaries. Returns null when @resvg/resvg-js is not
 * installed, so callers can skip the PNG and say so.
 */
export async function renderPng(svg: string, scale = 2): Promise<Uint8Array | null> {
  let Resvg: typeof import('@resvg/resvg-js').Resvg;
  try {
    ({ Resvg } = await import('@resvg/resvg-js'));
  } catch {
    return null;
  }
  // vega writes font-family "sans-serif"; name a sans font each platform has, so the text
  // does not fall back to a serif face.
  const sansSerifFamily = process.platform === 'linux' ? 'DejaVu Sans' : 'Arial';
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: { loadSystemFonts: true, sansSerifFamily, defaultFontFamily: sansSerifFamily, monospaceFamily: process.platform === 'linux' ? 'DejaVu Sans Mono' : 'Courier New' },
  });
  return resvg.render().asPng();
}

// -----------------------------------------------------------------------------
// a self-contained HTML page

/** The folder of an installed package, found the way Node resolves `import name`. */
function packageDir(name: string): string {
  let dir = path.dirname(fileURLToPath(import.meta.resolve(name)));
  while (!fs.existsSync(path.join(dir, 'package.json')) || JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name !== name) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the folder of the package ${name}`);
    dir = up;
  }
  return dir;
}

/** The browser bundle a package publishes for CDNs (its "unpkg" field), read from node_modules. */
function browserBundle(name: string): string {
  const dir = packageDir(name);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const file = pkg.unpkg ?? pkg.jsdelivr;
  if (!file) throw new Error(`the package ${name} names no browser bundle (unpkg field)`);
  return fs
    .readFileSync(path.join(dir, file), 'utf8')
    .replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n') // the .map file is not next to our page
    .replace(/<\/(script)/gi, '<\\/$1'); // a "</script" inside the code would end our <script> tag
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * One HTML page that shows `spec` interactively with no network: vega, vega-lite and
 * vega-embed are copied into the page (about 850 kB), the spec and its data too.
 */
export function chartHtml(spec: TopLevelSpec, title: string, opts: { description?: string } = {}): string {
  const bundles = ['vega', 'vega-lite', 'vega-embed'].map((name) => `<script>/* ${name} */\n${browserBundle(name)}</script>`);
  // JSON is valid JavaScript; escaping '<' keeps "</script>" inside strings harmless.
  const specJson = JSON.stringify(spec).replace(/</g, '\\u003c');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 18px; margin: 0 0 8px; }
  p.description { max-width: 60em; color: #444; }
  #chart-error { color: #b00020; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${opts.description ? `<p class="description">${escapeHtml(opts.description)}</p>\n` : ''}<div id="chart"></div>
<pre id="chart-error"></pre>
<noscript>This chart needs JavaScript.</noscript>
${bundles.join('\n')}
<script>
  const spec = ${specJson};
  vegaEmbed('#chart', spec, {
    renderer: 'svg',
    // Only the export menu: the other actions open the online Vega editor.
    actions: { export: true, source: false, compiled: false, editor: false },
  }).catch((err) => {
    document.getElementById('chart-error').textContent = 'error: the chart could not be drawn: ' + (err && err.message ? err.message : err);
  });
</script>
</body>
</html>
`;
}

/**
 * One chart in the four forms the experiments write, as [file name, contents] pairs for the
 * output writer: NAME.vl.json (the spec), NAME.svg, NAME.png (only when the optional PNG renderer
 * is installed; `png` says whether it was) and NAME.html (interactive, offline).
 */
export async function chartFiles(name: string, chart: TopLevelSpec, title: string, opts: { description?: string } = {}): Promise<{ files: Array<[string, string | Uint8Array]>; png: boolean }> {
  const spec = inChartFont(await fitTitle(await spanLegend(chart)));
  const svg = await renderSvg(spec);
  const png = await renderPng(svg);
  const pretty = JSON.stringify(spec, null, 2); // readable, unless the data makes it huge
  const files: Array<[string, string | Uint8Array]> = [[`${name}.vl.json`, (pretty.length < 200_000 ? pretty : JSON.stringify(spec)) + '\n'], [`${name}.svg`, svg]];
  if (png) files.push([`${name}.png`, png]);
  files.push([`${name}.html`, chartHtml(spec, title, opts)]);
  return { files, png: png !== null };
}
