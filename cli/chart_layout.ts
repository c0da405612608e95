/**
 * Layout helpers for the charts (and the terminal's large grids): how wide a text is, wrapping it
 * to a width, and choosing which rows, columns and axis labels a large result shows. No vega here,
 * so that the terminal report can use it without loading vega; cli/plot.ts hands textWidth to vega.
 *
 * Widths are those of DejaVu Sans, the sans-serif face the PNG is drawn with on Linux (Arial, used
 * elsewhere, is a little narrower).
 */

// Advance widths of the printable ASCII characters (32 … 126), in thousandths of an em, read
// from DejaVuSans.ttf and DejaVuSans-Bold.ttf (their hmtx tables).
const REGULAR = [
  318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636, 636, 636,
  636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557, 863, 748, 787,
  603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635,
  634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838,
];
const BOLD = [
  348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696, 696, 696, 696, 696,
  696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372, 372, 775, 637, 995, 837, 850,
  733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457, 365, 457, 838, 500, 500, 675, 716, 593, 716, 678, 435, 716,
  712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924, 645, 652, 582, 712, 365, 712, 838,
];

/** East Asian wide characters and emoji take a full em; combining marks none. */
function otherWidth(cp: number): number {
  if ((cp >= 0x300 && cp <= 0x36f) || cp === 0x200b || cp === 0x200d || (cp >= 0xfe00 && cp <= 0xfe0f)) return 0;
  const wide = (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0x1f300 && cp <= 0x1faff) || (cp >= 0x20000 && cp <= 0x3fffd);
  return wide ? 1000 : 840; // arrows, math signs and accented letters: DejaVu draws most at 0.6-0.84 em
}

/** The width in pixels of one line of `text` at `fontSize`, in DejaVu Sans (bold when asked). */
export function textWidth(text: string, fontSize: number, bold = false): number {
  const table = bold ? BOLD : REGULAR;
  let units = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    units += cp >= 32 && cp < 127 ? table[cp - 32] : otherWidth(cp);
  }
  return (units * fontSize) / 1000;
}

/**
 * `text` broken at spaces into lines no wider than `maxWidth` pixels. A word wider than the whole
 * line is cut where it must be.
 */
export function wrapToWidth(text: string, maxWidth: number, fontSize: number, bold = false): string[] {
  const lines: string[] = [];
  let line = '';
  const fits = (s: string) => textWidth(s, fontSize, bold) <= maxWidth;
  for (const word of text.split(' ')) {
    const candidate = line ? `${line} ${word}` : word;
    if (fits(candidate)) {
      line = candidate;
      continue;
    }
    if (line) lines.push(line);
    line = word;
    while (!fits(line)) {
      let cut = 1;
      const chars = [...line];
      while (cut < chars.length && fits(chars.slice(0, cut + 1).join(''))) cut++;
      lines.push(chars.slice(0, cut).join(''));
      line = chars.slice(cut).join('');
    }
  }
  if (line || lines.length === 0) lines.push(line);
  return lines;
}

/** Words, or a short quoted text (a token such as " Smith") kept whole so that no line ends inside it. */
const UNITS = /"[^"]{1,24}"\S*|\S+/g;

/**
 * A caption's lines as one flowing paragraph wrapped to `maxWidth`: each line runs on after the one
 * before it (after a full stop with a space, otherwise after " · ", so that where one ends stays
 * visible), and every line of the result is filled up to the width but the last. A caption of many
 * lines of uneven length then fills the width it has instead of leaving the end of every short
 * line blank. An empty line starts a new paragraph. The " ·" stays with the word before it, so no
 * line starts with a separator, and a short quoted token is never split.
 */
export function flowLines(lines: readonly string[], maxWidth: number, fontSize: number, bold = false): string[] {
  const out: string[] = [];
  const fits = (s: string) => textWidth(s, fontSize, bold) <= maxWidth;
  let units: string[] = [];
  const flush = () => {
    let line = '';
    for (const unit of units) {
      const candidate = line ? `${line} ${unit}` : unit;
      if (fits(candidate)) line = candidate;
      else {
        if (line) out.push(line);
        // a unit wider than the whole line (a long word) is cut where it must be
        const cut = fits(unit) ? [unit] : wrapToWidth(unit, maxWidth, fontSize, bold);
        out.push(...cut.slice(0, -1));
        line = cut.at(-1)!;
      }
    }
    if (line) out.push(line);
    units = [];
  };
  for (const text of lines) {
    if (text === '') {
      flush();
      out.push('');
      continue;
    }
    if (units.length && !/[.!?:;]$/.test(units[units.length - 1])) units[units.length - 1] += ' ·';
    units.push(...(text.match(UNITS) ?? []));
  }
  flush();
  return out;
}

/** Each line of `lines` wrapped to `maxWidth`, flattened. */
export function wrapLines(lines: readonly string[], maxWidth: number, fontSize: number, bold = false): string[] {
  return lines.flatMap((l) => wrapToWidth(l, maxWidth, fontSize, bold));
}

// -----------------------------------------------------------------------------
// what a large chart shows

/** The smallest and largest finite value ([NaN, NaN] for none), without spreading into Math.min (which overflows the stack on long arrays). */
export function extent(values: Iterable<number | null>): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [NaN, NaN];
}

/** The largest |value| among the finite values (0 for none). */
export function maxAbs(values: Iterable<number | null>): number {
  const [lo, hi] = extent(values);
  return Number.isNaN(lo) ? 0 : Math.max(-lo, hi);
}

/**
 * The indices (ascending) of the at most `max` entries with the largest `score`, always including
 * `keep` (as far as `max` allows). Used to thin a chart that would be too large to read.
 */
export function pickIndices(scores: readonly number[], max: number, keep: readonly number[] = []): number[] {
  if (scores.length <= max) return scores.map((_, i) => i);
  const chosen = new Set<number>();
  for (const i of keep) if (i >= 0 && i < scores.length && chosen.size < max) chosen.add(i);
  const order = scores.map((s, i) => [Number.isFinite(s) ? s : -Infinity, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of order) {
    if (chosen.size >= max) break;
    chosen.add(i);
  }
  return [...chosen].sort((a, b) => a - b);
}

/**
 * The axis labels to print when `n` categories share `length` pixels: every k-th (k from 1, 2, 5,
 * 10, 20, 50, …), so that labels `labelSize` pixels apart never collide. Returns the indices.
 */
export function labelledIndices(n: number, length: number, labelSize: number): number[] {
  const room = n > 0 ? length / n : length;
  let k = 1;
  while (room * k < labelSize) k = nextStep(k);
  return Array.from({ length: n }, (_, i) => i).filter((i) => i % k === 0);
}

/**
 * Columns for `count` panels `panelWidth` pixels wide (labels included) in at most `maxWidth`
 * pixels: as few rows as fit, the panels shared out evenly (5 panels: 3 + 2, not 4 + 1), so that
 * no row is mostly empty.
 */
export function balancedColumns(count: number, panelWidth: number, maxWidth: number): number {
  const fit = Math.max(1, Math.floor(maxWidth / panelWidth));
  const rows = Math.ceil(count / fit);
  return Math.max(1, Math.ceil(count / rows));
}

/** 1 → 2 → 5 → 10 → 20 → 50 → … */
function nextStep(k: number): number {
  const p = 10 ** Math.floor(Math.log10(k));
  const m = k / p;
  return m < 2 ? 2 * p : m < 5 ? 5 * p : 10 * p;
}
