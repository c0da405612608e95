/**
 * Plain-text output for the terminal: a token listing, a top-N table, and a coloured heatmap
 * with a legend. Colours are used only when the stream is a terminal and NO_COLOR is not set
 * (FORCE_COLOR turns them on, or off with FORCE_COLOR=0); otherwise everything is plain text
 * that reads well in a log file.
 */
import { escapeControls } from '../io/show.ts';
import { extent, maxAbs } from './chart_layout.ts';

// -----------------------------------------------------------------------------
// when to colour

export type ColorDepth = 0 | 4 | 8 | 24; // none, the 16 basic ANSI colours, xterm-256 palette, 24-bit RGB

interface StreamLike {
  isTTY?: boolean;
  columns?: number;
  getColorDepth?: (env?: Record<string, string | undefined>) => number;
}

/**
 * How many colours to use on `stream`. Node's own convention: FORCE_COLOR wins (0 or "false"
 * means no colour), then NO_COLOR (any non-empty value), then whether the stream is a TTY and
 * what the terminal says it can show (TERM=xterm: 16 colours, which get a coarser palette).
 */
export function colorDepth(stream: StreamLike = process.stdout, env: Record<string, string | undefined> = process.env): ColorDepth {
  const force = env.FORCE_COLOR;
  const richest = (): ColorDepth => {
    if (env.COLORTERM === 'truecolor' || env.COLORTERM === '24bit') return 24;
    const depth = stream.isTTY && stream.getColorDepth ? stream.getColorDepth(env) : 8;
    return depth >= 24 ? 24 : 8;
  };
  if (force !== undefined) {
    if (force === '0' || force.toLowerCase() === 'false') return 0;
    if (force === '3') return 24;
    return richest();
  }
  if (env.NO_COLOR) return 0;
  if (!stream.isTTY) return 0;
  const reported = stream.getColorDepth ? stream.getColorDepth(env) : 8;
  if (reported < 4) return 0; // a monochrome terminal
  if (reported < 8) return 4; // 16 colours: a palette of its own, see cellStyle
  return richest();
}

/**
 * The width to format for: the terminal's columns when it reports a sensible number, else
 * $COLUMNS (so `… | less` can be told), else 100. A terminal that says 0 columns (some
 * emulators and CI logs do) counts as not knowing.
 */
export function terminalWidth(stream: StreamLike = process.stdout, env: Record<string, string | undefined> = process.env): number {
  if (stream.columns !== undefined && stream.columns >= 20) return stream.columns;
  const fromEnv = Number(env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv >= 20) return fromEnv;
  return 100;
}

/** What the heatmap's two ends are called at this colour depth (null: no colours shown). */
export function colorNames(depth: ColorDepth): { negative: string; positive: string } | null {
  if (depth === 0) return null;
  return depth === 4 ? { negative: 'blue', positive: 'red' } : { negative: 'blue', positive: 'orange' };
}

// -----------------------------------------------------------------------------
// ANSI helpers

type RGB = [number, number, number];

const ESC = '\x1b[';
const RESET = `${ESC}0m`;

/** The xterm-256 palette index closest to an RGB colour (6×6×6 cube or the grey ramp). */
function xterm256(rgb: RGB): number {
  const level = (v: number) => (v < 48 ? 0 : v < 115 ? 1 : Math.floor((v - 35) / 40));
  const cubeValue = (l: number) => (l === 0 ? 0 : 55 + 40 * l);
  const [r, g, b] = rgb.map(level);
  const cube: RGB = [cubeValue(r), cubeValue(g), cubeValue(b)];
  const mean = (rgb[0] + rgb[1] + rgb[2]) / 3;
  const greyIndex = Math.max(0, Math.min(23, Math.round((mean - 8) / 10)));
  const grey = 8 + 10 * greyIndex;
  const dist = (c: RGB) => (c[0] - rgb[0]) ** 2 + (c[1] - rgb[1]) ** 2 + (c[2] - rgb[2]) ** 2;
  return dist([grey, grey, grey]) < dist(cube) ? 232 + greyIndex : 16 + 36 * r + 6 * g + b;
}

function bg(rgb: RGB, depth: ColorDepth): string {
  return depth === 24 ? `${ESC}48;2;${rgb[0]};${rgb[1]};${rgb[2]}m` : `${ESC}48;5;${xterm256(rgb)}m`;
}

function fg(rgb: RGB, depth: ColorDepth): string {
  return depth === 24 ? `${ESC}38;2;${rgb[0]};${rgb[1]};${rgb[2]}m` : `${ESC}38;5;${xterm256(rgb)}m`;
}

export function bold(text: string, depth: ColorDepth): string {
  return depth ? `${ESC}1m${text}${RESET}` : text;
}

export function dim(text: string, depth: ColorDepth): string {
  return depth ? `${ESC}2m${text}${RESET}` : text;
}

/** Remove ANSI colour codes (for measuring and for tests). */
export function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}

// -----------------------------------------------------------------------------
// the diverging palette

/**
 * Vega's "blueorange" scheme sampled at 11 evenly spaced points, so the terminal and the
 * vega-lite chart use the same colours: blue for negative values, orange for positive.
 */
const BLUE_ORANGE: RGB[] = [
  [19, 75, 133], [47, 120, 179], [93, 162, 203], [157, 202, 225], [210, 229, 239],
  [242, 240, 235],
  [252, 224, 186], [251, 191, 116], [232, 147, 47], [197, 105, 13], [153, 74, 7],
];

/** Colour for t in [-1, 1]: -1 darkest blue, 0 near white, +1 darkest orange. */
export function divergingColor(t: number): RGB {
  const x = (Math.max(-1, Math.min(1, Number.isFinite(t) ? t : 0)) + 1) / 2 * (BLUE_ORANGE.length - 1);
  const i = Math.min(BLUE_ORANGE.length - 2, Math.floor(x));
  const f = x - i;
  const a = BLUE_ORANGE[i], b = BLUE_ORANGE[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f)) as RGB;
}

/**
 * The escape codes of a heatmap cell for t in [-1, 1]. With 16 colours the ramp has five steps
 * of the basic ANSI palette (blue, cyan, none, yellow, red), which every terminal draws in some
 * recognisable form; with 256 or more, the blueorange ramp itself.
 */
function cellStyle(t: number, depth: ColorDepth): string {
  if (depth === 4) {
    const x = Number.isFinite(t) ? t : 0;
    if (x <= -0.5) return `${ESC}44;97m`;
    if (x <= -0.15) return `${ESC}46;30m`;
    if (x < 0.15) return '';
    if (x < 0.5) return `${ESC}43;30m`;
    return `${ESC}41;97m`;
  }
  const rgb = divergingColor(t);
  return bg(rgb, depth) + fg(textOn(rgb), depth);
}

/** Black or white, whichever reads better on `rgb`. */
function textOn(rgb: RGB): RGB {
  const luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
  return luminance > 140 ? [0, 0, 0] : [255, 255, 255];
}

// -----------------------------------------------------------------------------
// tokens

/**
 * A token as the reader should see it: spaces become '␣', newlines '↵', tabs '⇥', and other
 * characters a terminal would act on a visible escape (io/show.ts). " Jones" prints as "␣Jones".
 */
export function visibleToken(token: string): string {
  return escapeControls(token.replace(/ /g, '␣').replace(/\n/g, '↵').replace(/\r/g, '␍').replace(/\t/g, '⇥'));
}

/**
 * Columns a string takes in a terminal: East Asian wide and full-width characters (and
 * most emoji) count 2, combining marks 0. An approximation, good enough to align tables.
 */
export function displayWidth(text: string): number {
  let width = 0;
  for (const ch of stripAnsi(text)) {
    const cp = ch.codePointAt(0)!;
    if ((cp >= 0x300 && cp <= 0x36f) || cp === 0x200b || cp === 0x200d || (cp >= 0xfe00 && cp <= 0xfe0f)) continue;
    const wide =
      (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7a3) ||
      (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
      (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1faff) || (cp >= 0x20000 && cp <= 0x3fffd);
    width += wide ? 2 : 1;
  }
  return width;
}

function padEndW(text: string, width: number): string {
  return text + ' '.repeat(Math.max(0, width - displayWidth(text)));
}

function padStartW(text: string, width: number): string {
  return ' '.repeat(Math.max(0, width - displayWidth(text))) + text;
}

/** Cut `text` to at most `width` columns, marking the cut with '…'. */
export function truncateW(text: string, width: number): string {
  if (displayWidth(text) <= width) return text;
  let out = '';
  for (const ch of text) {
    if (displayWidth(out + ch) > width - 1) break;
    out += ch;
  }
  return out + '…';
}

/** Plain text (no colour codes) wrapped at spaces to `width` columns; later lines start with `indent`. */
export function wrapText(text: string, width: number, indent = ''): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && displayWidth(line) + 1 + displayWidth(word) > width) {
      lines.push(line);
      line = indent + word;
    } else {
      line += (line ? ' ' : '') + word;
    }
  }
  lines.push(line);
  return lines;
}

/**
 * Tokens as `index:token` pairs separated by spaces, wrapped at `width` columns (`numbers` gives
 * the indices when the tokens are a selection). Positions in
 * `highlight` are shown bold (with colour) so a reader spots where two texts differ.
 */
export function formatTokenList(tokens: readonly string[], opts: { highlight?: ReadonlySet<number>; color?: ColorDepth; width?: number; numbers?: readonly number[] } = {}): string {
  const width = opts.width ?? 100;
  const lines: string[] = [];
  let line = '';
  tokens.forEach((tok, i) => {
    const plain = `${opts.numbers?.[i] ?? i}:${visibleToken(tok)}`;
    const shown = opts.highlight?.has(i) && opts.color ? `${ESC}1;4m${plain}${RESET}` : plain;
    if (line && displayWidth(line) + 1 + displayWidth(plain) > width) {
      lines.push(line);
      line = '';
    }
    line += (line ? ' ' : '') + shown;
  });
  if (line || lines.length === 0) lines.push(line);
  return lines.join('\n');
}

// -----------------------------------------------------------------------------
// top-N table

export interface TopRow {
  rank: number;
  id: number;
  token: string;
  prob: number;
}

/**
 * The next-token table of the assignment: rank, token id, token, probability, plus a small
 * bar for the probability. `marks` adds a note after chosen ids (e.g. "← clean token").
 */
export function formatTopTable(rows: readonly TopRow[], opts: { color?: ColorDepth; marks?: ReadonlyMap<number, string> } = {}): string {
  const depth = opts.color ?? 0;
  const tokenCells = rows.map((r) => `"${visibleToken(r.token)}"`);
  const tokW = Math.max(5, ...tokenCells.map(displayWidth));
  const idW = Math.max(8, ...rows.map((r) => String(r.id).length));
  const maxProb = Math.max(1e-12, ...rows.map((r) => r.prob));
  const barWidth = 20;
  const header = `${'rank'.padStart(4)}  ${'token id'.padStart(idW)}  ${padEndW('token', tokW)}  ${'probability'.padStart(11)}`;
  const lines = [bold(header, depth)];
  rows.forEach((r, i) => {
    const cells = Math.round((r.prob / maxProb) * barWidth);
    const bar = '█'.repeat(cells);
    const mark = opts.marks?.get(r.id);
    let line = `${String(r.rank).padStart(4)}  ${String(r.id).padStart(idW)}  ${padEndW(tokenCells[i], tokW)}  ${r.prob.toFixed(4).padStart(11)}  ${dim(bar, depth)}`;
    if (mark) line = `${line}${' '.repeat(barWidth - cells)}  ${bold(mark, depth)}`;
    lines.push(line.trimEnd());
  });
  return lines.join('\n');
}

// -----------------------------------------------------------------------------
// heatmap

export interface HeatmapOptions {
  /** one label per row, e.g. "layer 0" */
  rowLabels: readonly string[];
  /** one label per column, e.g. the tokens */
  columnLabels: readonly string[];
  /** the number printed above each column (default 0, 1, 2, …): the positions, when only some are shown */
  columnNumbers?: readonly number[];
  /** what a negative value means, e.g. "␣Jones favoured" */
  negativeLabel?: string;
  /** what a positive value means */
  positiveLabel?: string;
  color?: ColorDepth;
  /** terminal width in columns (default 100; anything below 30 counts as 30) */
  width?: number;
  /** decimals shown in the cells (default 2) */
  digits?: number;
  /**
   * The values at the two ends of the colour ramp, [blue end, orange end]. Default: ±max|value|,
   * centred on zero. Another range (e.g. the two unpatched runs) is drawn from its low to its high
   * end, and values outside it take the end colour.
   */
  domain?: [number, number];
  /** names of the two ends of a custom domain, e.g. ['clean run', 'corrupted run'] */
  domainLabels?: [string, string];
}

function formatValue(v: number, digits: number): string {
  return num(v, digits, true);
}

/**
 * A number with `digits` decimals as the reports print it: never "-0.000" (a value that rounds to
 * zero prints as 0.000), with a "+" on positive values when `sign` is set.
 */
export function num(v: number, digits = 3, sign = false): string {
  if (!Number.isFinite(v)) return String(v);
  const s = v.toFixed(digits);
  if (Number(s) === 0) return (0).toFixed(digits);
  return sign && v > 0 ? `+${s}` : s;
}

/** A number inside a formula: negative values in parentheses, so "a − (−b)" never reads "a − -b". */
export function term(v: number, digits = 3): string {
  const s = num(v, digits);
  return s.startsWith('-') ? `(${s})` : s;
}

/**
 * The warning every experiment prints, and the charts repeat, when the checkpoint's config.json
 * marks its weights as random (the test fixture, the benchmark's checkpoint).
 */
export function randomWeightsWarning(): string {
  return 'This checkpoint has random weights (its config.json says so): the numbers exercise the arithmetic of the experiment, ' +
    'but the model knows no language, so no pattern here is a finding about GPT-2.';
}

/** The one side of zero every finite value sits on, or null when they straddle it (or are 0). */
export function oneSide(values: readonly number[]): 'above' | 'below' | null {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return null;
  if (finite.every((v) => v > 0)) return 'above';
  if (finite.every((v) => v < 0)) return 'below';
  return null;
}

/**
 * Whether colours centred on zero hide the differences between the cells: every cell within a
 * fifth of the largest |value| of every other (e.g. all near −3.4 on a scale of ±3.65, when both
 * runs favour the same token). The experiments then name a scale that shows them.
 */
export function zeroScaleHides(values: readonly number[]): boolean {
  const [lo, hi] = extent(values);
  return lo < hi && hi - lo < 0.2 * maxAbs(values);
}

/**
 * A matrix as a heatmap: rows top to bottom, columns left to right, each cell coloured on a
 * diverging scale (blue negative, orange positive, centred on zero unless `domain` says
 * otherwise), with a legend. When the cells are wide enough they also show the value. Without
 * colour it prints the numbers. A grid wider than `width` is cut into blocks of columns, each
 * with its own column numbers, so nothing collapses or loses its index.
 */
export function formatHeatmap(matrix: readonly (readonly number[])[], opts: HeatmapOptions): string {
  const depth = opts.color ?? 0;
  const width = Math.max(30, opts.width && opts.width > 0 ? opts.width : 100);
  const digits = opts.digits ?? 2;
  const nCols = opts.columnLabels.length;
  const rowW = Math.max(...opts.rowLabels.map(displayWidth)) + 1;
  const flat = matrix.flat().filter(Number.isFinite);
  const [smallest, largest] = flat.length ? extent(flat) : [0, 0];
  const m = maxAbs(flat) || 1;
  const [lo, hi] = opts.domain ?? [-m, m];
  const toT = (v: number) => (hi === lo ? 0 : (2 * (v - lo)) / (hi - lo) - 1); // lo → −1, hi → +1
  const valueW = Math.max(formatValue(smallest, digits).length, formatValue(largest, digits).length, digits + 3) + 1; // the widest is an end
  const number = (j: number) => opts.columnNumbers?.[j] ?? j;

  // Widest layout that fits: values in the cells, then colour-only blocks, then 1 column each.
  // Without colour the numbers are the only content, so keep them and cut the grid into blocks.
  // Cells wide enough for the column labels too, when the terminal has room for them.
  const labelW = Math.max(0, ...opts.columnLabels.map((l) => displayWidth(visibleToken(l))));
  const roomy = Math.max(valueW, Math.min(labelW + 1, 11));
  let cellW = rowW + nCols * roomy <= width ? roomy : valueW;
  let showValues = true;
  if (depth && rowW + nCols * cellW > width) {
    showValues = false;
    cellW = rowW + nCols * 3 <= width ? 3 : rowW + nCols * 2 <= width ? 2 : 1;
  }
  // Token labels fit above the cells when the cells are wide; otherwise they are listed below.
  const labelsAbove = cellW >= 5;
  const perBlock = Math.max(1, Math.floor((width - rowW) / cellW));

  const lines: string[] = [];
  for (let start = 0; start < nCols; start += perBlock) {
    const end = Math.min(nCols, start + perBlock);
    const cols = Array.from({ length: end - start }, (_, k) => start + k);
    if (start > 0) lines.push('');
    // column numbers: across when they fit in a cell, otherwise one digit per line, read downwards
    const indexW = Math.max(...cols.map((j) => String(number(j)).length));
    if (cellW > indexW) {
      lines.push(dim((' '.repeat(rowW) + cols.map((j) => padStartW(String(number(j)), cellW)).join('')).trimEnd(), depth));
    } else {
      for (let d = 0; d < indexW; d++) {
        const digitsRow = cols.map((j) => padStartW(String(number(j)).padStart(indexW, ' ')[d], cellW)).join('');
        lines.push(dim((' '.repeat(rowW) + digitsRow).trimEnd(), depth));
      }
    }
    if (labelsAbove) {
      lines.push(' '.repeat(rowW) + cols.map((j) => padStartW(truncateW(visibleToken(opts.columnLabels[j]), cellW - 1), cellW)).join(''));
    }
    matrix.forEach((row, i) => {
      let line = padEndW(opts.rowLabels[i], rowW);
      for (const j of cols) {
        const v = row[j];
        const text = showValues ? padStartW(formatValue(v, digits), cellW - 1) + ' ' : ' '.repeat(cellW);
        const style = depth ? cellStyle(toT(v), depth) : '';
        line += style ? style + text + RESET : text;
      }
      lines.push(depth ? line : line.trimEnd());
    });
  }
  if (!labelsAbove) {
    lines.push('columns: ' + formatTokenList(opts.columnLabels, { width: Math.max(40, width - 9), numbers: opts.columnNumbers }).replace(/\n/g, '\n         '));
  }

  // Legend: a colour ramp from one end of the scale to the other, with what each end means.
  const neg = opts.negativeLabel ? ` ${opts.negativeLabel}` : '';
  const pos = opts.positiveLabel ? ` ${opts.positiveLabel}` : '';
  const loText = formatValue(lo, digits), hiText = formatValue(hi, digits);
  const ends = opts.domainLabels ? [` (${opts.domainLabels[0]})`, ` (${opts.domainLabels[1]})`] : ['', ''];
  if (depth) {
    // 16 colours: the palette's five steps; more: a smooth ramp of 21
    const ts = depth === 4 ? [-1, -0.3, 0, 0.3, 1] : Array.from({ length: 21 }, (_, k) => k / 10 - 1);
    const ramp = ts.map((t) => cellStyle(t, depth) + (depth === 4 ? '   ' : ' ') + RESET).join('');
    const one = `legend: ←${neg} ${loText}${ends[0]} ${ramp} ${hiText}${ends[1]}${pos} →`;
    if (displayWidth(one) <= width) lines.push('', one);
    else lines.push('', `legend: ${loText} ${ramp} ${hiText}`, ...wrapText(`low end${ends[0]}:${neg || ' below zero'}; high end${ends[1]}:${pos || ' above zero'}`, width, '        '));
  } else if (opts.domain) {
    lines.push('', ...wrapText(`legend: colour scale from ${loText}${ends[0]} to ${hiText}${ends[1]}; negative =${neg || ' below zero'}, positive =${pos || ' above zero'}`, width, '        '));
  } else {
    lines.push('', ...wrapText(`legend: negative (${loText} … 0) =${neg || ' below zero'}; positive (0 … ${hiText}) =${pos || ' above zero'}`, width, '        '));
  }
  const side = oneSide(flat);
  if (side) {
    lines.push(...wrapText(`note: every cell is ${side} zero (${side === 'above' ? (pos.trim() || 'positive') : (neg.trim() || 'negative')}): the colours differ in strength only, not in direction`, width, '      '));
  }
  return lines.join('\n');
}
