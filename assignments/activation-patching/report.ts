/**
 * The activation-patching experiment's terminal report: the sections generate.ts prints, and the
 * reading aid, a few sentences computed from the patching matrix that say how to read it.
 * Nothing here runs the model; everything reads the numbers experiment.ts returns.
 */
import { tokenStrings } from '../../mingpt/bpe.ts';
import type { AxisName } from '../../lens/patching.ts';
import { firstDifference } from '../../lens/metrics.ts';
import {
  bold, colorNames, formatHeatmap, randomWeightsWarning, zeroScaleHides, formatTokenList, formatTopTable, visibleToken, type ColorDepth, type TopRow,
} from '../../cli/terminal.ts';
import type { Engine } from '../../sweep/sweep.ts';
import { formatDuration } from '../../io/progress.ts';
import { extent, pickIndices } from '../../cli/chart_layout.ts';
import { patchGrid, patchHook, rankOf, type DLAParts, type Patch, type PatchKind, type Runs, type TextsAndTargets, type Tokenized } from './experiment.ts';

const q = (s: string) => JSON.stringify(s);
export const signed = (v: number, d = 2) => (v > 0 ? '+' : '') + v.toFixed(d);

/** Where the report goes and how it may look. */
export interface Printer {
  color: ColorDepth;
  width: number;
  print(s?: string): void;
}

export function section(p: Printer, title: string): void {
  p.print('\n' + bold(title, p.color));
}

/** Step 1: both texts as index:token, where they differ, and the two targets. */
export function printTokens(p: Printer, o: TextsAndTargets, t: Tokenized): void {
  const cleanTokens = tokenStrings(t.clean_ids), corruptTokens = tokenStrings(t.corrupt_ids);
  const differ = new Set(t.clean_ids.flatMap((id, i) => (id !== t.corrupt_ids[i] ? [i] : [])));
  section(p, `1. tokens (${t.clean_ids.length} in each text)`);
  p.print(`clean:   ${q(o.clean)}`);
  p.print(formatTokenList(cleanTokens, { highlight: differ, color: p.color, width: p.width }));
  p.print(`corrupt: ${q(o.corrupt)}`);
  p.print(formatTokenList(corruptTokens, { highlight: differ, color: p.color, width: p.width }));
  if (differ.size) {
    p.print(`the texts differ at ${[...differ].map((i) => `position ${i} (${q(cleanTokens[i])} → ${q(corruptTokens[i])})`).join(', ')}`);
  }
  p.print(`targets: clean ${q(o.cleanToken)} (id ${t.clean_token_id}), corrupt ${q(o.corruptToken)} (id ${t.corrupt_token_id})`);
}

/**
 * Warnings for a text changed with its answer token left at the default: `--corrupt "Michelle
 * Montgomery was …"` alone would still measure " Smith". Where the texts differ first, each text
 * has the token that is usually its answer; a default answer that is not that token is named,
 * with the one to try.
 */
export function answerTokenWarnings(o: TextsAndTargets, t: Tokenized, defaults: TextsAndTargets, given: { texts: boolean; cleanToken: boolean; corruptToken: boolean }): string[] {
  if (!given.texts) return [];
  const d = t.clean_ids.findIndex((id, i) => id !== t.corrupt_ids[i]);
  if (d < 0) return [];
  const [cleanAt, corruptAt] = [tokenStrings([t.clean_ids[d]])[0], tokenStrings([t.corrupt_ids[d]])[0]];
  const out: string[] = [];
  const check = (flag: string, tokenGiven: boolean, answer: string, fallback: string, textName: string, there: string) => {
    if (tokenGiven || answer !== fallback || answer === there) return;
    out.push(`warning: ${flag} was left at its default ${q(fallback)}, but where the texts first differ (position ${d}) the ${textName} text has ${q(there)}; ` +
      `if that is the answer you mean, add ${flag} ${q(there)}`);
  };
  check('--clean-token', given.cleanToken, o.cleanToken, defaults.cleanToken, 'clean', cleanAt);
  check('--corrupt-token', given.corruptToken, o.corruptToken, defaults.corruptToken, 'corrupted', corruptAt);
  return out;
}

/** The two target logits of one run, with probability and rank, then their difference. */
export function printTargets(p: Printer, o: TextsAndTargets, t: Tokenized, logits: Float32Array): void {
  for (const [w, id] of [[o.cleanToken, t.clean_token_id], [o.corruptToken, t.corrupt_token_id]] as const) {
    const { rank, prob } = rankOf(logits, id);
    const pr = prob >= 1e-4 ? prob.toFixed(4) : prob.toExponential(2);
    p.print(`logit(${q(w)}) = ${logits[id].toFixed(3)} (probability ${pr}, rank ${rank})`);
  }
  p.print(`logit(${q(o.corruptToken)}) − logit(${q(o.cleanToken)}) = ${signed(logits[t.corrupt_token_id] - logits[t.clean_token_id], 3)}`);
}

export function printTop(p: Printer, t: Tokenized, top: TopRow[], lastToken: string): void {
  section(p, `2. clean run: the ${top.length} most probable tokens after ${q(lastToken)}`);
  p.print(formatTopTable(top, { color: p.color, marks: new Map([[t.clean_token_id, '← clean target'], [t.corrupt_token_id, '← corrupt target']]) }));
}

/** The clean run's logit lens and DLA, briefly: the numbers are in patching.json and the charts. */
export function printAttribution(p: Printer, o: TextsAndTargets, lens: number[], dla: DLAParts): void {
  const L = lens.length - 1;
  p.print(`logit lens (the difference read from the stream entering each block, then the final stream):`);
  p.print('  ' + lens.map((v, l) => `${l < L ? `block ${l}` : 'final'} ${signed(v)}`).join(', '));
  const parts: [string, number][] = [['embeddings', dla.embed], ['ln_final bias', dla.const]];
  dla.heads.forEach((hs, l) => hs.forEach((v, h) => parts.push([`L${l}H${h}`, v])));
  dla.attn_bias.forEach((v, l) => parts.push([`attention bias ${l}`, v]));
  dla.mlp.forEach((v, l) => parts.push([`MLP ${l}`, v]));
  const largest = [...parts].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 6);
  p.print(`direct logit attribution (each part's own share of the clean run's ${signed(dla.total, 3)}; negative favours ${q(o.cleanToken)}):`);
  p.print('  largest: ' + largest.map(([n, v]) => `${n} ${signed(v)}`).join(', '));
}

export interface HeatmapReport {
  matrix: number[][];
  rowLabels: string[];
  columnLabels: string[];
  /** the positions of the columns, when only some are printed */
  columnNumbers?: number[];
  /** --scale runs: the colour scale between the two unpatched runs, low end first, with their names */
  domain?: [number, number];
  domainLabels?: [string, string];
}

export function printHeatmap(p: Printer, o: TextsAndTargets, h: HeatmapReport): void {
  p.print(
    formatHeatmap(h.matrix, {
      rowLabels: h.rowLabels, columnLabels: h.columnLabels, columnNumbers: h.columnNumbers, color: p.color, width: p.width,
      negativeLabel: `${visibleToken(o.cleanToken)} favoured`, positiveLabel: `${visibleToken(o.corruptToken)} favoured`,
      domain: h.domain, domainLabels: h.domainLabels,
    }),
  );
}

/**
 * What a sweep costs, in forward passes of the text: each cell's run recomputes the blocks from its
 * layer on ((L − l) / L of a pass; the fast engine of resid_post also only the positions from p on),
 * and a cell before the first differing token costs nothing (its patch copies what is there).
 * `share(done)`: the part of the work the first `done` cells are, in the generic patch's order
 * (layer by layer), so that a progress bar's ETA is right from the start, when the cells of layer 0
 * take longest.
 */
export function sweepCost(kind: PatchKind, engine: Engine, L: number, nh: number, T: number, firstDiff: number): { runs: number; passes: number; share?: (done: number) => number } {
  const perLayer = kind === 'head' ? nh : kind === 'head-pos' ? nh * T : T;
  const runs = L * perLayer;
  const changed = (p: number) => firstDiff >= 0 && p >= firstDiff;
  const weight = (k: number) => {
    const l = Math.floor(k / perLayer), j = k % perLayer;
    const depth = (L - l) / L;
    if (kind === 'head') return firstDiff >= 0 ? depth : 0;
    const p = kind === 'head-pos' ? j % T : j;
    if (!changed(p)) return 0;
    return kind === 'resid_post' && engine === 'fast' ? depth * (T - p) / T : depth;
  };
  const cumulative = new Float64Array(runs + 1);
  for (let k = 0; k < runs; k++) cumulative[k + 1] = cumulative[k] + weight(k);
  const passes = cumulative[runs];
  const generic = !(kind === 'resid_post' && engine === 'fast');
  return { runs, passes, ...(generic && passes > 0 ? { share: (done: number) => cumulative[Math.max(0, Math.min(runs, done))] / passes } : {}) };
}

/**
 * A cell's share of a pass costs about this many times one forward pass of the text on its own (the
 * last position's logits only): measured on GPT-2 small's shape with the simd kernels, 34 tokens
 * (generic patch: the hook that writes each cell, and the corrupted and clean runs it starts with,
 * cost more than batching saves) and 81 tokens (the fast engine). Rough: the estimate says "about".
 */
const COST_PER_PASS = { generic: 1.5, fast: 1.0 };

/** Step 4's heading: what is patched, how many runs that takes and, when it is long, about how long. */
export function printPatchPlan(p: Printer, kind: PatchKind, engine: Engine | 'atp', L: number, nh: number, T: number, timing?: { passes: number; forward_s: number }): void {
  const plan = kind === 'head' ? `${L} layers × ${nh} heads = ${L * nh}`
    : kind === 'head-pos' ? `${L} layers × ${nh} heads × ${T} positions = ${L * nh * T}` : `${L} layers × ${T} positions = ${L * T}`;
  if (engine === 'atp') return section(p, `4. attribution patching of ${patchHook(kind)}: ${plan} cells estimated from 2 passes (both runs forward as one batch; the corrupted one backward)`);
  section(p, `4. patching ${patchHook(kind)}: ${plan} runs (${kind === 'resid_post' ? `engine: ${engine}` : 'generic patch'})`);
  if (!timing) return;
  const estimate = timing.passes * timing.forward_s * (kind === 'resid_post' && engine === 'fast' ? COST_PER_PASS.fast : COST_PER_PASS.generic);
  if (estimate < 20) return;
  let line = `estimated time: about ${formatDuration(estimate)} (one forward pass of the text takes ${timing.forward_s.toFixed(2)} s)`;
  if (kind === 'head-pos') line += `; --patch head (${L * nh} runs) shows which heads matter first, in a fraction of that`;
  p.print(line);
}

/** A small difference with enough digits to show it is not zero: 0.36, 0.0042. */
const spreadText = (d: number) => (d >= 0.01 ? d.toFixed(2) : d.toPrecision(2));

/** Rows (heads) and columns (positions) the terminal heatmap prints at most; a larger result shows its strongest. */
const MAX_PRINTED_ROWS = 24, MAX_PRINTED_COLUMNS = 40;

/** Step 5: the patch result as a heatmap (layer·head rows for head-pos), then the reading aid. */
export function printPatchResult(p: Printer, o: TextsAndTargets, t: Tokenized, runs: Runs, patch: Patch,
  opts: { scale: 'zero' | 'runs'; n_head: number; randomWeights: boolean; estimate?: boolean }): void {
  const tokens = tokenStrings(t.clean_ids);
  const grid = patchGrid(patch, tokens);
  const { clean_logit_diff: clean, corrupt_logit_diff: corrupt } = runs;
  const what = `logit(${q(o.corruptToken)}) − logit(${q(o.cleanToken)}) after patching`;
  section(p, `5. ${opts.estimate ? `attribution patching's estimate of ${what}` : what} (rows: ${grid.rowTitle}, columns: ${grid.columnTitle})`);

  // a large result prints the rows and columns where a patch moves the difference most
  const effect = (v: number) => (Number.isFinite(v) ? Math.abs(v - corrupt) : -Infinity);
  const strongest = (xs: number[]) => xs.reduce((m, v) => Math.max(m, effect(v)), -Infinity);
  const byPos = patch.axes[patch.axes.length - 1] === 'pos';
  let rows = grid.matrix.map((_, i) => i), cols = grid.columnLabels.map((_, j) => j);
  const notes: string[] = [];
  if (patch.axes.length === 3 && rows.length > MAX_PRINTED_ROWS) {
    rows = pickIndices(grid.matrix.map(strongest), MAX_PRINTED_ROWS);
    notes.push(`the ${rows.length} of ${grid.matrix.length} heads whose patch moves the difference most`);
  }
  if (byPos && cols.length > MAX_PRINTED_COLUMNS) {
    const colEffect = cols.map((j) => strongest(rows.map((i) => grid.matrix[i][j])));
    cols = pickIndices(colEffect, MAX_PRINTED_COLUMNS, [colEffect.findIndex((e) => e > 0), tokens.length - 1]);
    notes.push(`the ${cols.length} of ${grid.columnLabels.length} positions where it moves most`);
  }
  if (notes.length) p.print(`showing ${notes.join(', and ')} (every cell is in patching.json and the heatmap's tooltips)`);
  const all = grid.matrix.flat();
  const [lo, hi] = extent([...all, clean, corrupt]);
  const endName = (v: number, fallback: string) => (v === clean ? 'clean run' : v === corrupt ? 'corrupted run' : fallback);
  const runsScale = opts.scale === 'runs' && hi > lo;
  printHeatmap(p, o, {
    matrix: rows.map((i) => cols.map((j) => grid.matrix[i][j])),
    rowLabels: rows.map((i) => grid.rowLabels[i]),
    columnLabels: cols.map((j) => grid.columnLabels[j]),
    ...(notes.length && byPos ? { columnNumbers: cols } : {}),
    // --scale runs: from the lower run to the higher, widened to every cell, so none is clamped
    ...(runsScale ? { domain: [lo, hi], domainLabels: [endName(lo, 'lowest cell'), endName(hi, 'highest cell')] } : {}),
  });
  if (opts.scale === 'zero' && zeroScaleHides(all)) {
    const [a, b] = extent(all);
    p.print(`note: the cells differ by at most ${spreadText(b - a)}, little beside their size, so on colours centred on zero they look alike; ` +
      'run with --scale runs to spread the colours between the two unpatched runs (the numbers stay the same)');
  }
  p.print('');
  const aid = readingAid({
    matrix: grid.matrix, tokens, clean_ids: t.clean_ids, corrupt_ids: t.corrupt_ids, clean_logit_diff: clean, corrupt_logit_diff: corrupt,
    cleanToken: o.cleanToken, corruptToken: o.corruptToken, axes: patch.axes, kind: patch.kind, n_head: opts.n_head, color: p.color,
    randomWeights: opts.randomWeights,
  });
  for (const sentence of aid) p.print(`• ${sentence}`);
}

// -----------------------------------------------------------------------------
// reading aid

function ranges(xs: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    parts.push(j === i ? `${xs[i]}` : j === i + 1 ? `${xs[i]}, ${xs[j]}` : `${xs[i]}–${xs[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

export interface ReadingAidInput {
  /** rows × columns as printed: [layer][pos] (default), [layer][head], or [layer·head][pos] */
  matrix: number[][];
  tokens: string[];
  clean_ids: number[];
  corrupt_ids: number[];
  clean_logit_diff: number;
  corrupt_logit_diff: number;
  cleanToken: string;
  corruptToken: string;
  /** the patch's axes (default ['layer', 'pos']) and kind (default 'resid_post') */
  axes?: AxisName[];
  kind?: PatchKind;
  /** the number of heads per layer, for ['layer', 'head', 'pos'] rows */
  n_head?: number;
  /** the colours the terminal heatmap shows (none: it printed plain numbers) */
  color?: ColorDepth;
  /** the checkpoint says its weights are random */
  randomWeights?: boolean;
}

/**
 * A few sentences computed from the matrix. A cell's "recovery" is how far the patch moves the
 * difference from the corrupted run's value toward the clean run's value:
 *     (corrupt_diff − cell) / (corrupt_diff − clean_diff)
 * 0: the patch changes nothing; 1: the patch alone gives the clean run's difference. Directions
 * are named from the numbers: a cell below the corrupted run's value moved toward the clean
 * token, above it toward the corrupt token. When the two runs are close compared with how far
 * the cells spread, shares of their gap are meaningless, and the aid says so instead.
 */
export function readingAid(r: ReadingAidInput): string[] {
  const { matrix, tokens } = r;
  const axes = r.axes ?? ['layer', 'pos'];
  const kind = r.kind ?? 'resid_post';
  const byPos = axes.length === 2 && axes[1] === 'pos';
  const nRows = matrix.length, nCols = matrix[0]?.length ?? 0;
  const ct = q(r.cleanToken), xt = q(r.corruptToken);
  const tok = (p: number) => `${p} (${q(tokens[p])})`;
  const cell = (i: number, j: number) => {
    if (byPos) return `layer ${i}, position ${tok(j)}`;
    if (axes.length === 2) return `head L${i}H${j}`;
    const nh = r.n_head ?? 1;
    return `head L${Math.floor(i / nh)}H${i % nh} at position ${tok(j)}`;
  };
  const prefers = (d: number) => (d < 0 ? ct : d > 0 ? xt : 'neither');
  const toward = (change: number) => (change < 0 ? ct : xt);
  const out: string[] = [];
  const gap = r.corrupt_logit_diff - r.clean_logit_diff;

  if (r.randomWeights) out.push(randomWeightsWarning());
  const names = r.color === undefined ? null : colorNames(r.color);
  const shades = names ? `Negative cells (${names.negative}) favour ${ct}, positive cells (${names.positive}) favour ${xt}.`
    : `Negative cells favour ${ct}, positive cells favour ${xt} (blue and orange in the charts).`;
  out.push(
    `Unpatched, the corrupted run gives ${signed(r.corrupt_logit_diff)} (it prefers ${prefers(r.corrupt_logit_diff)}) and the clean run ` +
      `${signed(r.clean_logit_diff)} (it prefers ${prefers(r.clean_logit_diff)}). ${shades}`,
  );
  if (Math.abs(gap) < 1e-3) {
    out.push('Both runs give practically the same difference, so no single patch can move it toward the clean run: pick texts the model tells apart.');
    return out;
  }
  const [lowest, highest] = extent(matrix.flat());
  const spread = highest >= lowest ? highest - lowest : 0;
  const smallGap = Math.abs(gap) < spread / 2;
  if (smallGap) {
    out.push(
      `The two runs differ by only ${Math.abs(gap).toFixed(2)}, while the cells spread over ${spread.toFixed(2)}: as shares of that gap the cells ` +
        `would read as hundreds of percent and mean little, so the changes below are given as plain differences.`,
    );
  }

  // For the block outputs, the last layer at the last position is the whole input of the
  // unembedding there, so that patch always gives the clean run's value: it is left out of the
  // search for the strongest cell.
  const lastIsClean = kind === 'resid_post' && byPos;
  if (lastIsClean) {
    out.push(
      `The bottom-right cell (layer ${nRows - 1}, position ${nCols - 1}) always equals the clean run's value: that block output is all the final layer norm and unembedding read.`,
    );
  }
  let best = { i: 0, j: 0, effect: 0 };
  for (let i = 0; i < nRows; i++)
    for (let j = 0; j < nCols; j++) {
      if (lastIsClean && i === nRows - 1 && j === nCols - 1) continue;
      const effect = matrix[i][j] - r.corrupt_logit_diff;
      if (Math.abs(effect) > Math.abs(best.effect)) best = { i, j, effect };
    }
  const recovery = (i: number, j: number) => (r.corrupt_logit_diff - matrix[i][j]) / gap;
  if (best.effect === 0) {
    out.push(lastIsClean ? 'No other patch changes the difference at all.' : 'No patch changes the difference at all.');
    return out;
  }
  const share = (rec: number) => rec >= 0 ? `${Math.round(100 * rec)}% of the way from the corrupted run to the clean one`
    : `away from the clean run's value (${Math.round(-100 * rec)}% of the gap in the other direction)`;
  out.push(
    `${lastIsClean ? 'Apart from that, the' : 'The'} strongest cell is ${cell(best.i, best.j)}: patching it moves the difference by ${signed(best.effect)} ` +
      `(toward ${toward(best.effect)}) to ${signed(matrix[best.i][best.j])}` + (smallGap ? '.' : `, ${share(recovery(best.i, best.j))}.`),
  );

  // positions before the first difference are identical in both runs: exactly no effect
  const firstDiff = firstDifference(r.clean_ids, r.corrupt_ids);
  if (byPos && firstDiff > 0) {
    out.push(
      (firstDiff === 1 ? 'Position 0 comes' : `Positions ${ranges([...Array(firstDiff).keys()])} come`) +
        ` before the first token that differs, at position ${tok(firstDiff)}. What a block computes there depends only on the tokens so far, ` +
        `which are the same in both texts, so the patch copies identical numbers and changes nothing: ${firstDiff === 1 ? 'that column keeps' : 'those columns keep'} the corrupted run's value.`,
    );
  }
  if (smallGap) return out;

  // which columns matter, and in which layers
  const strong = 0.5, faint = 0.05;
  if (byPos) {
    const faintCols: number[] = [];
    const strongCols: { p: number; layers: number[] }[] = [];
    for (let p = 0; p < nCols; p++) {
      const rec = matrix.map((_, l) => recovery(l, p));
      if (rec.every((x) => Math.abs(x) < faint)) faintCols.push(p);
      const layers = rec.flatMap((x, l) => (x >= strong ? [l] : []));
      if (layers.length) strongCols.push({ p, layers });
    }
    for (const { p, layers } of strongCols.slice(0, 4)) {
      const first = layers[0], last = layers[layers.length - 1];
      let sentence = `At position ${tok(p)}, patching ${layers.length === nRows ? 'any layer' : `layer${layers.length > 1 ? 's' : ''} ${ranges(layers)}`} recovers at least half of the gap`;
      if (first > 0) sentence += `; below layer ${first} the information has apparently not reached this position yet`;
      if (last < nRows - 1) sentence += `; after layer ${last} this position has apparently passed on what it carries`;
      out.push(sentence + '.');
    }
    const faintAfter = faintCols.filter((p) => firstDiff < 0 || p >= firstDiff);
    if (faintAfter.length) {
      out.push(
        `Patching position${faintAfter.length > 1 ? 's' : ''} ${ranges(faintAfter)} moves the difference by less than ${100 * faint}% of the gap at every layer.`,
      );
    }
  } else {
    const strongCells: string[] = [];
    for (let i = 0; i < nRows; i++) for (let j = 0; j < nCols; j++) if (recovery(i, j) >= strong) strongCells.push(cell(i, j));
    if (strongCells.length) {
      const some = strongCells.length > 5 ? `${strongCells.slice(0, 5).join('; ')} (and ${strongCells.length - 5} more)` : strongCells.join('; ');
      out.push(`${strongCells.length === 1 ? 'This cell' : 'Each of these cells'}, patched alone, recovers at least half of the gap: ${some}.`);
    } else {
      out.push('No single cell recovers half of the gap: what tells the two texts apart is spread over several of them.');
    }
  }

  // cells that push the other way
  let worst = { i: 0, j: 0, rec: 0 };
  for (let i = 0; i < nRows; i++) for (let j = 0; j < nCols; j++) if (recovery(i, j) < worst.rec) worst = { i, j, rec: recovery(i, j) };
  if (worst.rec < -0.2) {
    const change = matrix[worst.i][worst.j] - r.corrupt_logit_diff;
    out.push(
      `Some patches work against the clean run: ${cell(worst.i, worst.j)} moves the difference toward ${toward(change)}, ` +
        `to ${signed(matrix[worst.i][worst.j])} (${Math.round(-100 * worst.rec)}% of the gap in the wrong direction).`,
    );
  }
  return out;
}
