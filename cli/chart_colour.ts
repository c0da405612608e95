/**
 * Colour scales for the heatmaps, computed here rather than left to vega, so that a chart can say
 * in words which colour means what for the data it draws, and print each cell's number in the ink
 * that reads on that cell:
 *
 *   const s: ColourScale = { scheme: 'redblue', domain: [-2, 2] };
 *   vlColourScale(s)       the vega-lite `scale` of the colour encoding (linear, never clamped)
 *   colourAt(s, 1.5)       the cell's colour, [r, g, b], exactly as vega draws it
 *   colourWord(s, 1.5)     'blue': what a caption calls it
 *   cellLabels(data, ...)  each datum's number (fixed decimals) and ink (black or white)
 */
import { scheme } from 'vega';
import { extent, maxAbs, textWidth } from './chart_layout.ts';

export type RGB = [number, number, number];

export interface ColourScale {
  /** a continuous vega scheme: 'blueorange', 'redblue', 'blues', 'oranges', 'greys' */
  scheme: keyof typeof SCHEME_ENDS;
  /** the values drawn at the two ends of the scheme's used part; no value lies outside */
  domain: [number, number];
  /** which part of the scheme is used, from the domain's low end to its high end (default [0, 1]) */
  extent?: [number, number];
}

/** What the ends of each scheme are called in a caption, and whether its middle is white. */
const SCHEME_ENDS = {
  blueorange: { low: 'blue', high: 'orange', diverging: true },
  redblue: { low: 'red', high: 'blue', diverging: true },
  blues: { low: 'light blue', high: 'dark blue', diverging: false },
  oranges: { low: 'white', high: 'orange', diverging: false },
  greys: { low: 'light grey', high: 'dark grey', diverging: false },
} as const;

/** The vega-lite scale of a colour encoding that draws `s`. */
export function vlColourScale(s: ColourScale): Record<string, unknown> {
  return { type: 'linear', domain: s.domain, scheme: { name: s.scheme, extent: s.extent ?? [0, 1] }, zero: false, nice: false, clamp: true };
}

/**
 * The legend of a colour scale as a bar under the chart: cli/plot.ts spanLegend stretches the bar to
 * the plot's width (and puts a short title on its left). Beside a grid of few rows a vertical bar
 * stood taller than the grid, and a short bar under a wide one left the space beside it blank.
 */
export function colourBarLegend(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { orient: 'bottom', direction: 'horizontal', gradientLength: 200, titleLimit: 600, ...extra };
}

/** Where `v` sits on the scheme, 0 … 1 (the domain's ends give the extent's ends). */
function schemePosition(s: ColourScale, v: number): number {
  const [lo, hi] = s.domain;
  const t = hi === lo ? 0.5 : Math.min(1, Math.max(0, (v - lo) / (hi - lo)));
  const [e0, e1] = s.extent ?? [0, 1];
  return e0 + t * (e1 - e0);
}

/** The colour vega draws for `v` on scale `s`. */
export function colourAt(s: ColourScale, v: number): RGB {
  const interpolate = scheme(s.scheme) as (t: number) => string;
  const m = interpolate(schemePosition(s, v)).match(/rgb\((\d+),\s*(\d+),\s*(\d+)\)/);
  if (!m) throw new Error(`colourAt: scheme ${s.scheme} gave no rgb() colour`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** What a caption calls the colour of `v`: one end's name, or 'white' near a diverging scheme's middle. */
export function colourWord(s: ColourScale, v: number): string {
  const p = schemePosition(s, v);
  const ends = SCHEME_ENDS[s.scheme];
  if (ends.diverging && Math.abs(p - 0.5) < 0.08) return 'white';
  return p < 0.5 ? ends.low : ends.high;
}

/** WCAG relative luminance of an sRGB colour. */
function luminance(rgb: RGB): number {
  const [r, g, b] = rgb.map((c) => {
    const x = c / 255;
    return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio of two colours, 1 … 21. */
export function contrastRatio(a: RGB, b: RGB): number {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

/** Black or white, whichever contrasts more with `rgb`. */
function inkOn(rgb: RGB): '#000000' | '#ffffff' {
  return contrastRatio(rgb, [0, 0, 0]) >= contrastRatio(rgb, [255, 255, 255]) ? '#000000' : '#ffffff';
}

// -----------------------------------------------------------------------------
// numbers in the cells

/** `v` with `decimals` fixed decimals and a true minus sign; never "−0.00". */
export function fixed(v: number, decimals: number): string {
  const s = v.toFixed(decimals);
  if (Number(s) === 0) return (0).toFixed(decimals);
  return s.replace('-', '−');
}

/**
 * Decimals that tell the cells apart: enough to resolve a tenth of the spread of the values.
 * A grid of copying scores in [−0.3, 0.3] gets 2; logits around 50, 0; values of 1e-7, 8; a grid
 * whose cells are all −0.256, 2
 * (cellTextFit prints no numbers that need more than 3).
 */
function decimalsFor(values: readonly number[]): number {
  const [lo, hi] = extent(values);
  if (Number.isNaN(lo)) return 2;
  // values that are all the same (to a thousandth of their size) are shown to their own size
  const size = maxAbs(values);
  const spread = hi - lo > 1e-3 * size ? hi - lo : size || 1;
  return Math.max(0, 1 - Math.floor(Math.log10(spread)));
}

/** More decimals than this make cell numbers unreadable; such grids are read by hovering. */
const MAX_DECIMALS = 3;

interface CellText {
  /** whether the numbers fit the cells (false: draw none) */
  show: boolean;
  fontSize: number;
  decimals: number;
}

/**
 * Whether numbers with `decimals` decimals fit cells `width` × `height` pixels, and at which
 * size (10 px, else 9, else 8; smaller is not worth reading: the numbers are then dropped, as
 * they are when they need more than three decimals).
 */
export function cellTextFit(values: readonly number[], width: number, height: number, decimals = decimalsFor(values)): CellText {
  if (decimals > MAX_DECIMALS) return { show: false, fontSize: 8, decimals };
  // the widest number is one of the two ends
  const [lo, hi] = extent(values);
  const widest = Number.isNaN(lo) ? 0 : Math.max(textWidth(fixed(lo, decimals), 1), textWidth(fixed(hi, decimals), 1));
  for (const fontSize of [10, 9, 8]) {
    if (widest * fontSize <= width - 4 && fontSize + 3 <= height) return { show: true, fontSize, decimals };
  }
  return { show: false, fontSize: 8, decimals };
}

/**
 * Each datum with the number to print in it (`label`, fixed decimals) and the ink that reads on
 * its colour (`ink`). `value` picks the datum's number; null draws no number.
 */
export function cellLabels<T extends object>(data: readonly T[], value: (d: T) => number | null, scale: ColourScale, decimals: number): (T & { label: string; ink: string })[] {
  return data.map((d) => {
    const v = value(d);
    if (v === null || !Number.isFinite(v)) return { ...d, label: '', ink: '#000000' };
    return { ...d, label: fixed(v, decimals), ink: inkOn(colourAt(scale, v)) };
  });
}

/** The vega-lite text layer that prints `label` in `ink` (both from cellLabels); `fill`, because a `color` without a scale would clash with the cells' colour scale. */
export function cellTextLayer(fontSize: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    mark: { type: 'text', fontSize, baseline: 'middle', align: 'center' },
    encoding: { text: { field: 'label', type: 'nominal' }, fill: { field: 'ink', type: 'nominal', scale: null }, ...extra },
  };
}
