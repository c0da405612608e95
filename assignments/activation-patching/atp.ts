/**
 * Attribution patching beside the exact patch (generate.ts --method atp|both): the estimate of a
 * kind of patch from two passes (lens/attribution_patching.ts), and, with both, how far the two
 * agree: their correlation over the cells and the cells where they differ most (charts.ts draws
 * the two heatmaps side by side).
 */
import type { GPT } from '../../mingpt/model.ts';
import {
  atp_runs, get_atp_attn_head_out_all_pos, get_atp_attn_head_out_by_pos, get_atp_attn_out, get_atp_mlp_out,
  get_atp_resid_mid, get_atp_resid_post, get_atp_resid_pre, type AtpPoint,
} from '../../lens/attribution_patching.ts';
import { logitDiffMetric, nested } from '../../lens/patching.ts';
import { patchGrid, type Patch, type PatchKind, type Tokenized } from './experiment.ts';
import { section, signed, type Printer } from './report.ts';

export const METHODS = ['exact', 'atp', 'both'] as const;
export type Method = (typeof METHODS)[number];

const ESTIMATES = {
  resid_pre: get_atp_resid_pre,
  resid_mid: get_atp_resid_mid,
  resid_post: get_atp_resid_post,
  attn_out: get_atp_attn_out,
  mlp_out: get_atp_mlp_out,
  head: get_atp_attn_head_out_all_pos,
  'head-pos': get_atp_attn_head_out_by_pos,
} as const;

/** The kind's estimate, shaped like the exact patch: the two runs forward as one batch, the corrupted one backward. */
export function estimatePatch(model: GPT, t: Tokenized, kind: PatchKind): Patch {
  const start = performance.now();
  const point: AtpPoint = kind === 'head' || kind === 'head-pos' ? 'z' : kind;
  const runs = atp_runs(model, t.clean_ids, t.corrupt_ids, logitDiffMetric(t.corrupt_token_id, t.clean_token_id), [point]);
  const r = ESTIMATES[kind](runs);
  return { kind, hook: r.hook, axes: r.axes, shape: r.shape, matrix: nested(r), sweep_s: (performance.now() - start) / 1000 };
}

/** One cell where the two disagree. */
export interface Disagreement {
  row: string;
  column: string;
  exact: number;
  atp: number;
}

export interface Comparison {
  /** Pearson's correlation over every cell (null when either has no spread) */
  correlation: number | null;
  /** the cells with the largest |exact − atp|, largest first */
  worst: Disagreement[];
}

/** How far the estimate agrees with the exact patch, cell by cell. */
export function comparePatches(exact: Patch, atp: Patch, tokens: readonly string[], n = 5): Comparison {
  const e = patchGrid(exact, tokens), a = patchGrid(atp, tokens);
  const column = (j: number) => (e.columnTitle === 'positions' ? `${j}: ${JSON.stringify(e.columnLabels[j])}` : e.columnLabels[j]);
  const cells = e.matrix.flatMap((row, i) => row.map((x, j) => ({ row: e.rowLabels[i], column: column(j), exact: x, atp: a.matrix[i][j] })));
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const mx = mean(cells.map((c) => c.exact)), my = mean(cells.map((c) => c.atp));
  let sxy = 0, sxx = 0, syy = 0;
  for (const c of cells) {
    sxy += (c.exact - mx) * (c.atp - my);
    sxx += (c.exact - mx) ** 2;
    syy += (c.atp - my) ** 2;
  }
  const correlation = sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : null;
  const worst = cells.sort((x, y) => Math.abs(y.exact - y.atp) - Math.abs(x.exact - x.atp)).slice(0, n);
  return { correlation, worst };
}

/** Step 5 for --method both, after the exact heatmap: the estimate's agreement with it. */
export function printComparison(p: Printer, cmp: Comparison, atp: Patch): void {
  const showCorrelation = (r: number | null) => (r === null ? 'undefined (a heatmap without spread)' : r.toFixed(3));
  section(p, 'attribution patching (2 passes) against the exact patch');
  p.print(`correlation over the cells: ${showCorrelation(cmp.correlation)}; the estimate took ${atp.sweep_s.toFixed(2)} s`);
  p.print('the cells where they disagree most:');
  for (const c of cmp.worst) p.print(`  ${c.row.padEnd(10)} ${c.column.padEnd(24)} exact ${signed(c.exact, 3).padStart(9)}   estimate ${signed(c.atp, 3).padStart(9)}`);
  p.print('(attribution patching is a first-order estimate: it fails where attention saturates or a layer norm\'s scale changes much;');
  p.print(' assignments/activation-patching/README.md, "Attribution patching")');
}
