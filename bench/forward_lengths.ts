/**
 * One full forward pass (logits at every position) at several lengths, timed here and, in the
 * same run, in PyTorch (./pytorch_forward.py) when a python3 with torch is found: the figures of
 * issue 20 ("long texts as fast as short ones"). Used by bench.ts.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GPT } from '../mingpt/model.ts';
import { profile } from './profile.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The lengths timed by default, with the largest ratio to PyTorch's time each may have. */
export const LENGTH_TARGETS: ReadonlyArray<[tokens: number, ratio: number]> = [[11, 0.7], [128, 1.2], [512, 1.2], [1024, 0.5]];

interface Timing { wall_s: number; cpu_s: number }
export interface ForwardFigure extends Timing {
  T: number;
  runs: number;
  gflop: number;
  /** share of this thread's profile: the matmul, the attention kernels, everything else */
  shares: { matmul: number; attention: number; other: number };
  torch?: Timing & { threads: number };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Floating-point operations of one forward of T tokens: the matmuls (vocabulary included) and the causal attention. */
function forwardFlop(model: GPT, T: number): number {
  const { n_layer: L, n_embd: C, vocab_size: V } = model.config;
  const matmul = 2 * T * (L * 12 * C * C + V * C);
  const attention = L * 4 * C * ((T * (T + 1)) / 2); // q·k and p·v over the keys each query sees
  return matmul + attention;
}

/** Runs per length: fewer for the long ones. */
function runsFor(T: number, runs: number): number {
  return T <= 16 ? Math.max(9, runs) : T <= 200 ? runs : Math.max(2, Math.ceil(runs / 2));
}

/** Wall and processor time (all threads) of fn, in seconds. */
function timeOnce(fn: () => void): Timing {
  const c0 = process.cpuUsage(), t0 = performance.now();
  fn();
  const c = process.cpuUsage(c0);
  return { wall_s: (performance.now() - t0) / 1000, cpu_s: (c.user + c.system) / 1e6 };
}

/** Our forward at each length: median of runsFor(T) runs after a warm-up, and a profile of one more. */
export async function timeForwards(model: GPT, lengths: number[], runs: number): Promise<ForwardFigure[]> {
  const out: ForwardFigure[] = [];
  for (const T of lengths) {
    const ids = Array.from({ length: T }, (_, i) => (i * 7919 + 13) % model.config.vocab_size); // any tokens: the time does not depend on them
    model.forward(ids); // warm-up (and the kernel threads start)
    await new Promise((r) => setTimeout(r, 20));
    const n = runsFor(T, runs), times: Timing[] = [];
    for (let i = 0; i < n; i++) times.push(timeOnce(() => model.forward(ids)));
    const prof = await profile(() => { for (let i = 0; i < (T <= 16 ? 10 : 1); i++) model.forward(ids); }); // (a short forward: ten, for enough samples)
    const share = (test: (k: string) => boolean) => prof.filter(([k]) => test(k)).reduce((s, [, v]) => s + v, 0);
    const matmul = share((k) => k === 'wasm:matmul'), attention = share((k) => k.startsWith('wasm:attention') || k === 'wasm:softmax');
    out.push({
      T, runs: n, gflop: forwardFlop(model, T) / 1e9,
      wall_s: median(times.map((t) => t.wall_s)), cpu_s: median(times.map((t) => t.cpu_s)),
      shares: { matmul, attention, other: 1 - matmul - attention },
    });
  }
  return out;
}

/** A python3 that has torch, or null. (Debian's python3-torch lives in /usr/bin/python3, which another python3 on the PATH may hide.) */
export function findTorchPython(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}

/**
 * PyTorch's time at each length (the faster of 1 thread and all cores, in wall time), written into
 * the figures; returns a note on what ran, or why not.
 */
export function addPyTorch(figures: ForwardFigure[], runs: number): string {
  const py = findTorchPython();
  if (!py) return 'PyTorch: no python3 with torch here, so no comparison (Debian: apt-get install python3-torch libopenblas0-pthread)';
  const r = spawnSync(py, [
    path.join(here, 'pytorch_forward.py'),
    '--lengths', figures.map((f) => f.T).join(','), '--runs', figures.map((f) => runsFor(f.T, runs)).join(','),
  ], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) return `PyTorch: bench/pytorch_forward.py failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`;
  let version = '?';
  for (const line of r.stdout.trim().split('\n')) {
    const o = JSON.parse(line) as { T?: number; threads?: number; wall_s?: number; cpu_s?: number; torch?: string };
    if (o.torch) version = o.torch;
    const f = figures.find((x) => x.T === o.T);
    if (f && o.wall_s !== undefined && (!f.torch || o.wall_s < f.torch.wall_s)) f.torch = { wall_s: o.wall_s, cpu_s: o.cpu_s!, threads: o.threads! };
  }
  // Debian's torch uses whichever libblas.so.3 is installed: say which, the reference one is 10× slower
  const maps = spawnSync(py, ['-c', "import torch; torch.ones(64, 64) @ torch.ones(64, 64); print(''.join(l for l in open('/proc/self/maps') if 'blas' in l))"], { encoding: 'utf8' }).stdout ?? '';
  const lib = /openblas/i.test(maps) ? 'OpenBLAS' : /libblas/.test(maps) ? 'the reference BLAS: slow, install libopenblas0-pthread' : 'its own BLAS';
  return `PyTorch ${version} (${py}, ${lib}), the same forward (minGPT's model in torch, float32, no gradients), the faster of 1 thread and all cores`;
}
