/**
 * npx tsx bench/experiments.ts: the experiments' default runs end to end (issue #20), each in a
 * child process on the random checkpoint of GPT-2 small's shape (.bench/gpt2-random, made by
 * bench/bench.ts on first use), with its wall and processor time, its target and the ratio:
 *
 *   - induction: assignments/induction-heads/induction.ts, defaults (8 × 101 tokens);
 *   - IOI: assignments/ioi/ioi.ts, defaults (50 prompts).
 *
 *   npx tsx bench/experiments.ts                              # both
 *   npx tsx bench/experiments.ts --only ioi                   # one of them
 *   npx tsx bench/experiments.ts --baseline ioi=432,induction=151   # this machine's figures before the work
 *   npx tsx bench/experiments.ts --baseline-tree /tmp/old     # time an older checkout's runs too, in this run
 *
 * The target is the issue's: each default run 2× faster than when it was filed (induction 88 s,
 * IOI 4 min 45 s, on that machine: so 44 s and 142.5 s). Machines differ, so the figure that
 * says more is the ratio to a baseline measured here: --baseline gives it in seconds (wall), or
 * --baseline-tree runs the same commands from another checkout (e.g. `git worktree add /tmp/old
 * 040ca42`, with node_modules and .bench symlinked in) and the target becomes half of that.
 * Each run's phases come from its own report (timing_s in ioi.json / induction.json).
 *
 * Processor time (all threads) is read in the child by ./peak-rss.ts; on a shared machine it is
 * the steadier figure (the load average is printed beside every run). Figures, not assertions.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { UsageError } from '../io/errors.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CKPT = path.join(root, '.bench', 'gpt2-random');

interface Experiment {
  name: 'induction' | 'ioi';
  what: string;
  script: string;
  report: string;
  /** the default run's wall time when issue #20 was filed, seconds */
  issue_s: number;
}

const EXPERIMENTS: Experiment[] = [
  { name: 'induction', what: 'induction experiment, defaults (8 × 101 tokens)', script: 'assignments/induction-heads/induction.ts', report: 'induction.json', issue_s: 88 },
  { name: 'ioi', what: 'IOI experiment, defaults (50 prompts)', script: 'assignments/ioi/ioi.ts', report: 'ioi.json', issue_s: 285 },
];

const COMMAND = {
  usage: 'npx tsx bench/experiments.ts',
  description: `
The induction and IOI experiments' default runs on GPT-2 small's shape, each in a child process:
wall and processor time, the phases, the target (2× faster than issue #20's figures, or than a
baseline measured on this machine) and the ratio.`,
  options: {
    only: { type: 'string', metavar: 'NAME', choices: ['induction', 'ioi'], help: 'run one experiment only' },
    baseline: { type: 'string', metavar: 'NAME=S,…', help: 'wall seconds of the runs before the work, measured on this machine (e.g. ioi=432,induction=151): the target becomes half of each' },
    'baseline-tree': { type: 'string', metavar: 'DIR', help: 'also time the same runs from this checkout (an older release, node_modules and .bench linked in), first; the target becomes half of its time' },
  },
} as const satisfies CommandSpec;

interface Timing {
  wall_s: number;
  cpu_s: number;
  peak_mib: number;
  load: string;
  phases: Record<string, number>;
}

const load = () => os.loadavg().map((x) => x.toFixed(1)).join(' ');

/** One default run of `e` from the checkout `tree`, in a child process. */
function runOnce(e: Experiment, tree: string): Timing | string {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `mingpt-bench-${e.name}-`));
  const preload = pathToFileURL(path.join(root, 'bench', 'peak-rss.ts')).href;
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx/esm', '--import', preload, path.join(tree, e.script), '--weights', CKPT, '--out', out], {
    cwd: tree, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, MINGPT_QUIET: '1', NO_COLOR: '1' },
  });
  const wall_s = (performance.now() - t0) / 1000;
  const err = r.stderr ?? '';
  const cpu = err.match(/\[cpu-s\] ([\d.]+)/), peak = err.match(/\[peak-rss-kib\] (\d+)/);
  let phases: Record<string, number> = {};
  try {
    phases = JSON.parse(fs.readFileSync(path.join(out, e.report), 'utf8')).timing_s ?? {};
  } catch { /* no report: the run failed */ }
  fs.rmSync(out, { recursive: true, force: true });
  if (r.status !== 0 || !cpu || !peak) return `failed (exit ${r.status}): ${err.trim().split('\n').slice(-3).join(' | ')}`;
  return { wall_s, cpu_s: Number(cpu[1]), peak_mib: Number(peak[1]) / 1024, load: load(), phases };
}

function parseBaseline(s: string | undefined): Map<string, number> {
  const m = new Map<string, number>();
  for (const part of (s ?? '').split(',').filter(Boolean)) {
    const [k, v] = part.split('=');
    if (!EXPERIMENTS.some((e) => e.name === k) || !(Number(v) > 0)) throw new UsageError(`--baseline takes NAME=SECONDS pairs (names: induction, ioi), got ${JSON.stringify(part)}`);
    m.set(k, Number(v));
  }
  return m;
}

const phaseList = (p: Record<string, number>) => Object.entries(p).filter(([k]) => k !== 'total' && k !== 'cpu').map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ');

async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return void process.stdout.write(helpText(COMMAND));
  const baseline = parseBaseline(a.baseline);
  const tree = a['baseline-tree'] === undefined ? null : path.resolve(a['baseline-tree']);
  if (tree && !EXPERIMENTS.every((e) => fs.existsSync(path.join(tree, e.script)))) throw new UsageError(`--baseline-tree ${tree}: no experiment scripts there`);
  if (!fs.existsSync(path.join(CKPT, 'model.safetensors'))) {
    console.log(`no ${path.relative(root, CKPT)}/ yet: bench/bench.ts makes it (once)`);
    const r = spawnSync(process.execPath, [...process.execArgv, path.join(root, 'bench', 'bench.ts'), '--make-checkpoint'], { stdio: 'inherit', cwd: root });
    if (r.status !== 0) throw new Error('making the checkpoint failed');
  }
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} cores, load average ${load()}`);
  console.log(`the experiments' default runs on ${path.relative(root, CKPT)} (random weights, GPT-2 small's shape), each a child process; wall / processor time (all threads)\n`);
  const summary: string[] = [];
  for (const e of EXPERIMENTS.filter((x) => a.only === undefined || x.name === a.only)) {
    console.log(`${e.what}: npx tsx ${e.script} --weights ${path.relative(root, CKPT)}`);
    let base = baseline.get(e.name) ?? null, baseCpu: number | null = null, baseWhat = 'given';
    if (tree) {
      const old = runOnce(e, tree);
      if (typeof old === 'string') console.log(`  ${tree}: ${old}`);
      else {
        console.log(`  ${tree}: ${old.wall_s.toFixed(1)} s (cpu ${old.cpu_s.toFixed(1)} s, peak ${old.peak_mib.toFixed(0)} MiB; load ${old.load})`);
        console.log(`    phases (s): ${phaseList(old.phases)}`);
        base = old.wall_s;
        baseCpu = old.cpu_s;
        baseWhat = path.basename(tree);
      }
    }
    const t = runOnce(e, root);
    if (typeof t === 'string') {
      console.log(`  this checkout: ${t}\n`);
      summary.push(`  ${e.name.padEnd(10)} failed`);
      continue;
    }
    console.log(`  this checkout: ${t.wall_s.toFixed(1)} s (cpu ${t.cpu_s.toFixed(1)} s, peak ${t.peak_mib.toFixed(0)} MiB; load ${t.load})`);
    console.log(`    phases (s): ${phaseList(t.phases)}`);
    const vsIssue = `issue's ${e.issue_s} s / ${t.wall_s.toFixed(1)} s = ${(e.issue_s / t.wall_s).toFixed(2)}× (target ≤ ${(e.issue_s / 2).toFixed(1)} s: ${t.wall_s <= e.issue_s / 2 ? 'met' : 'MISSED'})`;
    const vsBase = base === null ? '' : `; before the work ${base.toFixed(1)} s (${baseWhat}) / ${t.wall_s.toFixed(1)} s = ${(base / t.wall_s).toFixed(2)}× (target ≤ ${(base / 2).toFixed(1)} s: ${t.wall_s <= base / 2 ? 'met' : 'MISSED'})`;
    const vsCpu = baseCpu === null ? '' : `; processor time ${baseCpu.toFixed(1)} s / ${t.cpu_s.toFixed(1)} s = ${(baseCpu / t.cpu_s).toFixed(2)}×`;
    console.log(`  ${vsIssue}${vsBase}${vsCpu}\n`);
    const ratios = [`${(e.issue_s / t.wall_s).toFixed(2)}× the issue's`];
    if (base !== null) ratios.push(`${(base / t.wall_s).toFixed(2)}× the baseline's`);
    if (baseCpu !== null) ratios.push(`${(baseCpu / t.cpu_s).toFixed(2)}× in processor time`);
    summary.push(`  ${e.name.padEnd(10)} ${`${t.wall_s.toFixed(1)} s`.padEnd(10)} cpu ${`${t.cpu_s.toFixed(1)} s`.padEnd(10)} ${ratios.join(', ')} (target 2×)`);
  }
  console.log('summary');
  for (const s of summary) console.log(s);
  console.log(`  (load average now ${load()}; wall time counts other processes' load, processor time does not)`);
}

await main(process.argv.slice(2));
