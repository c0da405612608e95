// The heatmap's HTML page in a real browser: headless Chromium (Debian's `chromium` package),
// with every network request refused, must draw the chart (one SVG cell per layer × position),
// report no error, and show a tooltip when a cell is hovered. Skipped, with a message, when no
// Chromium is installed (.ci/run installs it). The data is the fixture's case 0 from
// test/fixtures/gpt2-tiny/reference.json, so the page is the one the CLI writes for it.
//
// Pages of full-context charts (1024 positions) must draw there too.
//
// MINGPT_SCREENSHOT=path.png keeps a screenshot of the hovered page for a person to look at.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chartFiles, chartHtml, fitTitle } from '../../cli/plot.ts';
import { textWidth } from '../../cli/chart_layout.ts';
import { patchingHeatmapSpec } from '../../assignments/activation-patching/charts.ts';
import { attentionSpec } from '../../assignments/induction-heads/charts.ts';
import { REFERENCE, tempDir } from '../helpers.ts';

const reference = REFERENCE;

/** The first Chromium on PATH (or $CHROMIUM), or null. */
function findChromium(): string | null {
  const names = [process.env.CHROMIUM, 'chromium', 'chromium-browser', 'google-chrome'].filter(Boolean) as string[];
  for (const name of names) {
    const r = spawnSync('sh', ['-c', `command -v "${name}"`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

const chromium = findChromium();
if (!chromium) console.warn('  (test/browser: no chromium on PATH; the browser tests are skipped. Install it with: apt-get install -y chromium)');
const browserTest = chromium ? test : test.skip;

const tmp = tempDir('browser-test-');

const ref = reference.cases[0];
const L = ref.patch_matrix.length, T = ref.clean_ids.length;
/** The run the fixture's case 0 describes. */
const runOf = () => ({
  cleanText: ref.clean,
  corruptText: ref.corrupt,
  cleanToken: ref.clean_token,
  corruptToken: ref.corrupt_token,
  model: 'gpt2-tiny',
  cleanLogitDiff: ref.clean_logit_diff,
  corruptLogitDiff: ref.corrupt_logit_diff,
});
const spec = patchingHeatmapSpec({ ...runOf(), matrix: ref.patch_matrix, tokens: ref.clean_tokens });

// Once the chart is drawn, move the mouse onto the cell at layer 1, position 1 so the tooltip
// shows, then mark the page done. (Vega finds the hovered item from the event's target.) A
// MutationObserver waits for the cells; a setTimeout loop would eat Chromium's virtual time.
const hoverScript = `<script>
new MutationObserver((_, observer) => {
  const cells = [...document.querySelectorAll('#chart .mark-rect.role-mark path')];
  const cell = cells.find((p) => /^layer: 1; position: 1;/.test(p.getAttribute('aria-label') || ''));
  if (!cell) return;
  observer.disconnect();
  const r = cell.getBoundingClientRect();
  for (const type of ['pointerover', 'mouseover', 'pointermove', 'mousemove']) {
    cell.dispatchEvent(new MouseEvent(type, { bubbles: true, clientX: r.x + r.width / 2, clientY: r.y + r.height / 2 }));
  }
  document.body.setAttribute('data-hovered', 'yes');
}).observe(document.getElementById('chart'), { childList: true, subtree: true });
</script>`;

const page = path.join(tmp, 'heatmap.html');
// the observer must be in place before vega-embed runs: put it right after the chart's <div>
fs.writeFileSync(page, chartHtml(spec, 'Activation patching (browser test)').replace('<div id="chart"></div>', `<div id="chart"></div>\n${hoverScript}`));

/** Chromium, headless, offline: every host resolves to nothing and the proxy is a dead port. */
function runChromium(extra: string[], file = page): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(
    chromium!,
    [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND', '--proxy-server=127.0.0.1:9',
      `--user-data-dir=${fs.mkdtempSync(path.join(tmp, 'profile-'))}`,
      '--window-size=1200,800', '--virtual-time-budget=10000',
      ...extra,
      pathToFileURL(file).href,
    ],
    { encoding: 'utf8', timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
  );
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', status: r.status };
}

let dom = '';
browserTest('chromium draws the chart offline: one SVG cell per layer × position, no error', () => {
  const r = runChromium(['--dump-dom']);
  assert.is(r.status, 0, r.stderr.slice(-2000));
  dom = r.stdout;
  const chart = dom.slice(dom.indexOf('<div id="chart"'));
  const group = chart.match(/<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)<\/g>/s);
  assert.ok(group, 'no heatmap cells in the rendered page');
  assert.is((group[1].match(/<path\b/g) ?? []).length, L * T);
  assert.match(dom, /<pre id="chart-error"><\/pre>/, 'the page reported an error');
  assert.match(chart, `${ref.clean_tokens.length - 1}: ␣Michelle`, 'the x axis labels');
});

browserTest('hovering a cell shows a tooltip with layer, position, token and value', () => {
  assert.match(dom, 'data-hovered="yes"', 'the hover script never found the cell');
  const tip = dom.match(/<div[^>]*id="vg-tooltip-element"[^>]*>(.*?)<\/div>/s);
  assert.ok(tip, 'no tooltip element in the page');
  const text = tip[1].replace(/<[^>]+>/g, ' ').replace(/&quot;/g, '"').replace(/−/g, '-').replace(/\s+/g, ' '); // d3-format writes U+2212 for minus
  assert.match(text, /layer 1 position 1 token " Jones"/);
  assert.match(text, ref.patch_matrix[1][1].toFixed(3));
});

browserTest('chromium takes a screenshot of the page', () => {
  const shot = process.env.MINGPT_SCREENSHOT ? path.resolve(process.env.MINGPT_SCREENSHOT) : path.join(tmp, 'heatmap.png');
  const r = runChromium([`--screenshot=${shot}`]);
  assert.is(r.status, 0, r.stderr.slice(-2000));
  const png = fs.readFileSync(shot);
  assert.is(png.subarray(1, 4).toString('latin1'), 'PNG');
  assert.ok(png.length > 20_000, `a ${png.length}-byte screenshot is too small to hold the chart`);
});

browserTest('pages of full-context charts draw in the browser too (vega parses their expressions there as well)', async () => {
  // a heatmap of 12 layers × 1024 positions and the attention of five heads over 1023 positions
  const T = 1024;
  const heatmap = patchingHeatmapSpec({
    ...runOf(), tokens: Array.from({ length: T }, (_, i) => (i % 2 ? ' a' : ' b')),
    matrix: Array.from({ length: 12 }, (_, l) => Array.from({ length: T }, (_, p) => Math.sin(l * 7 + p))),
  });
  const n = 511, Tn = 2 * n + 1, pattern = new Float32Array(Tn * Tn);
  for (let q = 0; q < Tn; q++) pattern[q * Tn + Math.max(0, q - n + 1)] = 1;
  const attention = attentionSpec({ model: 'm', tokens: Array.from({ length: Tn }, () => ' x'), panels: ['5.1', '5.5', '6.9', '7.2', '7.10'].map((head) => ({ head, caption: 'c', pattern })) });
  for (const [name, chart] of [['heatmap-1024', heatmap], ['attention-1023', attention]] as const) {
    const file = path.join(tmp, `${name}.html`);
    fs.writeFileSync(file, chartHtml(await fitTitle(chart), name));
    const r = runChromium(['--dump-dom'], file);
    assert.is(r.status, 0, r.stderr.slice(-2000));
    assert.match(r.stdout, /<pre id="chart-error"><\/pre>/, `${name}: the page reported an error`);
    assert.match(r.stdout.slice(r.stdout.indexOf('<div id="chart"')), /<svg/, `${name}: no chart drawn`);
  }
});

browserTest('the page draws its text in the face the widths were measured in: each title and subtitle line as wide as textWidth says (within 4%)', async () => {
  // the page the CLI writes (chartFiles), and a script that reports each title line's drawn width
  const { files } = await chartFiles('widths', spec, 'Text widths (browser test)');
  const html = files.find(([name]) => name.endsWith('.html'))![1] as string;
  const report = `<script>
new MutationObserver((_, observer) => {
  const lines = [...document.querySelectorAll('#chart .role-title-text tspan, #chart .role-title-subtitle tspan')];
  if (lines.length === 0) return;
  observer.disconnect();
  const widths = lines.map((t) => [t.closest('g').classList.contains('role-title-text'), t.textContent, t.getComputedTextLength()]);
  document.body.setAttribute('data-widths', JSON.stringify(widths));
}).observe(document.getElementById('chart'), { childList: true, subtree: true });
</script>`;
  const file = path.join(tmp, 'widths.html');
  fs.writeFileSync(file, html.replace('<div id="chart"></div>', `<div id="chart"></div>\n${report}`));
  const r = runChromium(['--dump-dom'], file);
  assert.is(r.status, 0, r.stderr.slice(-2000));
  const m = r.stdout.match(/data-widths="([^"]*)"/);
  assert.ok(m, 'the page reported no title lines');
  const widths = JSON.parse(m[1].replace(/&quot;/g, '"').replace(/&amp;/g, '&')) as Array<[boolean, string, number]>;
  assert.ok(widths.length >= 4, `${widths.length} title lines`);
  for (const [isTitle, line, drawn] of widths) {
    const measured = textWidth(line, isTitle ? 14 : 12, isTitle);
    assert.ok(Math.abs(drawn / measured - 1) <= 0.04, `"${line}": drawn ${drawn.toFixed(1)} px, measured ${measured.toFixed(1)} px`);
  }
});

test.run();
