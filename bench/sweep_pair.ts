/**
 * The activation-patching sweep on a 46-token pair whose texts differ at position 1 (12 × 46 = 552
 * cells), timed here with the fast engine and, in the same run, in PyTorch (./pytorch_sweep.py)
 * when a python3 with torch is found: the sweep figure of issue 20. PyTorch does the sweep the
 * way it does it well: per layer, the 46 patched runs as one batch started at that layer, the
 * logits at the last position only. Used by bench.ts; the pair is also bench/attribution.ts's.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BPETokenizer } from '../mingpt/bpe.ts';
import type { GPT } from '../mingpt/model.ts';
import type { PatchingInput } from '../sweep/sweep.ts';
import { fastPatchingSweep } from '../sweep/fast.ts';
import { findTorchPython } from './forward_lengths.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** 46 tokens each, differing in one name at position 1 */
const CLEAN_46 = 'Michelle Jones was a top-notch student who always finished her homework early, helped her friends with their mathematics, and never once missed a single class all year. When the teacher asked who had won the prize, everyone said Michelle';
const CORRUPT_46 = CLEAN_46.replace('Jones', 'Smith');

export function pair46(bpe: BPETokenizer): PatchingInput {
  return {
    clean_ids: bpe.encode(CLEAN_46), corrupt_ids: bpe.encode(CORRUPT_46),
    clean_token_id: bpe.encode(' Jones')[0], corrupt_token_id: bpe.encode(' Smith')[0],
  };
}

interface Timing { wall_s: number; cpu_s: number }
export interface SweepFigure extends Timing {
  runs: number;
  matrix: number[][];
  torch?: Timing & { threads: number; matrix: number[][] };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1];

/** Our fast sweep: the median of `runs` runs (the first call warms up the kernels and their memory). */
export async function timeSweep(model: GPT, input: PatchingInput, runs: number): Promise<SweepFigure> {
  const times: Timing[] = [];
  let matrix: number[][] = [];
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage(), t0 = performance.now();
    matrix = (await fastPatchingSweep(model, input)).matrix;
    const c = process.cpuUsage(c0);
    times.push({ wall_s: (performance.now() - t0) / 1000, cpu_s: (c.user + c.system) / 1e6 });
  }
  return { runs, matrix, wall_s: median(times.map((t) => t.wall_s)), cpu_s: median(times.map((t) => t.cpu_s)) };
}

/** The largest |difference| between two matrices of the same shape. */
export function maxMatrixDiff(a: number[][], b: number[][]): number {
  let worst = 0;
  a.forEach((row, l) => row.forEach((v, p) => (worst = Math.max(worst, Math.abs(v - b[l][p])))));
  return worst;
}

/**
 * PyTorch's sweep of the same pair on all cores, one run (about 2 TFLOP: a minute here), with the
 * checkpoint's weights so that the matrices compare; written into `fig`. Returns a note on what
 * ran, or why not.
 */
export function addPyTorchSweep(fig: SweepFigure, input: PatchingInput, checkpoint: string): string {
  const py = findTorchPython();
  if (!py) return 'PyTorch: no python3 with torch here, so no comparison';
  const r = spawnSync(py, [
    path.join(here, 'pytorch_sweep.py'), '--weights', checkpoint,
    '--clean', input.clean_ids.join(','), '--corrupt', input.corrupt_ids.join(','),
    '--tokens', `${input.corrupt_token_id},${input.clean_token_id}`,
  ], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) return `PyTorch: bench/pytorch_sweep.py failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`;
  let timing: (Timing & { threads: number }) | undefined, matrix: number[][] | undefined, version = '?';
  for (const line of r.stdout.trim().split('\n')) {
    const o = JSON.parse(line) as { threads?: number; wall_s?: number; cpu_s?: number; matrix?: number[][]; torch?: string };
    if (o.wall_s !== undefined) timing = { wall_s: o.wall_s, cpu_s: o.cpu_s!, threads: o.threads! };
    if (o.matrix) [matrix, version] = [o.matrix, o.torch ?? '?'];
  }
  if (!timing || !matrix) return 'PyTorch: bench/pytorch_sweep.py printed no timing';
  fig.torch = { ...timing, matrix };
  return `PyTorch ${version} (${py}), per layer the ${input.clean_ids.length} patched runs as one batch from that layer on, last-position logits, ${timing.threads} threads, 1 run`;
}
