/**
 * `npm run grade`: grade the copy of the repository it runs in (a starter, a student's work, or
 * the solution), task by task, each task's checks in a process of their own with a time limit.
 *
 *   npm run grade                                   # every task of the four experiments
 *   npm run grade -- --task 1.2                     # one task (or a list: 1.2,1.3)
 *   npm run grade -- --json results.json            # Gradescope's results format
 *   npm run grade -- --key ../key                   # against a teacher's key instead of the fixtures
 *   npm run grade -- --make-key --weights DIR --out ../key [--cases FILE] [--prompts FILE]
 *
 * It prints a table (task, points, status) and, for every failed test, what was expected, what
 * came out and a hint. The exit code is 0 whenever grading ran, whatever the points; 1 or 2 only
 * when it could not run (a bad option, a missing key).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { runCli } from '../cli/command.ts';
import { InputError, UsageError } from '../io/errors.ts';
import { EXPERIMENTS, TASKS, experimentById, taskById, tracksFrom, type Task } from './catalogue.ts';
import { loadReference } from './reference.ts';
import type { TaskResult } from './run_task.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const COMMAND: CommandSpec = {
  usage: 'npm run grade --',
  description: `
Grades the exercises of this copy of the repository (exercises/README.md): every task's checks run
in a process of their own, with a time limit, against the fixtures in test/fixtures/ or a teacher's
key. Prints the points per task and, for each failed test, what was expected, what came out and a
hint. Exit code 0 whenever grading ran.`,
  options: {
    task: { type: 'string', metavar: 'ID[,ID…]', help: 'grade these tasks only, e.g. 1.2 or 1.2,1.3' },
    tracks: { type: 'string', default: 'required', metavar: 'LIST', help: "which experiments: 'required' (all but the optional model track), 'all', or a comma-separated list (activation-patching, induction-heads, ioi, circuits, model)" },
    key: { type: 'string', metavar: 'DIR', help: "grade against a teacher's key (made with --make-key) instead of the fixtures" },
    json: { type: 'string', metavar: 'FILE', help: "also write the results in Gradescope's format (results.json)" },
    timeout: { type: 'number', min: 1, metavar: 'S', help: "each task's time limit in seconds (an endless loop costs that task only); default 60 s plus 1 s per 4 MB of the checkpoint (63 s for the fixtures, about 200 s for a key made from GPT-2 small)" },
    jobs: { type: 'int', default: 1, min: 1, max: 16, metavar: 'N', help: 'tasks graded at the same time' },
    list: { type: 'boolean', help: 'print the catalogue (every task: where, points, what to read first, what grades it, the mistakes it names) and exit' },
    'make-key': { type: 'boolean', help: "teacher: write a key (expected numbers only) for --weights into --out; run it in the solution" },
    weights: { type: 'string', metavar: 'DIR', help: 'with --make-key: the GPT-2-layout checkpoint (model.safetensors and config.json)' },
    cases: { type: 'string', metavar: 'FILE', help: 'with --make-key: the activation-patching cases, in the format of test/fixtures/gpt2-tiny/cases.json' },
    prompts: { type: 'string', metavar: 'FILE', help: 'with --make-key: the IOI prompts, in the format of test/fixtures/ioi-group.json (or of ioi.ts --prompts)' },
    out: { type: 'string', metavar: 'DIR', help: 'with --make-key: the folder to write the key into (must not exist)' },
  },
  epilog: `
examples:
  npm run grade
  npm run grade -- --task 1.3
  npm run grade -- --json /autograder/results/results.json
  npm run grade -- --make-key --weights weights/gpt2 --cases my-cases.json --out ../key
  npm run grade -- --key ../key`,
};

// -----------------------------------------------------------------------------------------------
// running the tasks

interface GradeOptions {
  root: string;
  tasks: Task[];
  key?: string;
  timeout: number;
  jobs: number;
  /** called as each task finishes */
  onResult?: (r: TaskResult) => void;
}

/** The tail of a stream we keep for a crash report, at most `max` characters. */
function keepTail(max: number) {
  let text = '';
  return { add: (chunk: Buffer) => { text = (text + chunk.toString()).slice(-max); }, get: () => text };
}

/** One task in a child process, killed at the time limit. */
function gradeOne(root: string, id: string, key: string | undefined, timeout: number): Promise<TaskResult> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'grade-'));
  const resultFile = path.join(tmp, 'result.json');
  const start = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'exercises', 'run_task.ts'), id, resultFile, key ?? ''], {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MINGPT_QUIET: '1' },
    });
    const out = keepTail(2000);
    child.stdout.on('data', out.add);
    child.stderr.on('data', out.add);
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeout * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - start) / 1000;
      let result: TaskResult;
      if (timedOut) result = { task: id, status: 'timeout', tests: [], seconds, message: `stopped after the time limit of ${timeout} s: an endless loop, or far too slow` };
      else if (fs.existsSync(resultFile)) result = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as TaskResult;
      else result = { task: id, status: 'crashed', tests: [], seconds, message: `the task's process ended (${signal ?? `exit code ${code}`}) without a result:\n${out.get().trim()}` };
      fs.rmSync(tmp, { recursive: true, force: true });
      resolve(result);
    });
  });
}

/** Every task, `jobs` at a time; results in the order of `tasks`. */
export async function gradeTasks(o: GradeOptions): Promise<TaskResult[]> {
  const results: TaskResult[] = new Array(o.tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < o.tasks.length) {
      const i = next++;
      results[i] = await gradeOne(o.root, o.tasks[i].id, o.key, o.timeout);
      o.onResult?.(results[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, o.tasks.length) }, worker));
  return results;
}

// -----------------------------------------------------------------------------------------------
// reporting

export const pointsOf = (r: TaskResult): number => (r.status === 'passed' ? taskById(r.task).points : 0);

/** What went wrong in a task, as lines (empty when it passed). */
function failureLines(r: TaskResult): string[] {
  if (r.status === 'passed') return [];
  const lines: string[] = [];
  if (r.message) lines.push(r.message);
  for (const t of r.tests) {
    if (t.status === 'passed') { lines.push(`✓ ${t.name}`); continue; }
    lines.push(`✗ ${t.name}`);
    if (t.expected !== undefined) lines.push(`    expected: ${t.expected}`);
    if (t.got !== undefined) lines.push(`    got:      ${t.got}`);
    if (t.hint) lines.push(`    hint:     ${t.hint}`);
  }
  return lines;
}

/** The table, then the failures. */
export function report(results: readonly TaskResult[]): string {
  const rows = results.map((r) => {
    const t = taskById(r.task);
    return [t.id, t.title.length > 52 ? t.title.slice(0, 51) + '…' : t.title, `${pointsOf(r)}/${t.points}`, r.status];
  });
  const head = ['task', 'title', 'points', 'status'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  const byExperiment = new Map<string, [number, number]>();
  for (const r of results) {
    const t = taskById(r.task), s = byExperiment.get(t.experiment) ?? [0, 0];
    byExperiment.set(t.experiment, [s[0] + pointsOf(r), s[1] + t.points]);
  }
  out.push('');
  for (const [e, [got, max]] of byExperiment) out.push(`${experimentById(e as Task['experiment']).title}: ${got}/${max}`);
  const total = results.reduce((a, r) => a + pointsOf(r), 0), max = results.reduce((a, r) => a + taskById(r.task).points, 0);
  out.push(`total: ${total}/${max}`);
  for (const r of results) {
    const f = failureLines(r);
    if (f.length) out.push('', `task ${r.task} (${taskById(r.task).title}): ${r.status}`, ...f.map((l) => `  ${l}`));
  }
  return out.join('\n') + '\n';
}

/** Gradescope's results.json: score, max_score, and one test per task. */
export function gradescope(results: readonly TaskResult[], source: string): Record<string, unknown> {
  const score = results.reduce((a, r) => a + pointsOf(r), 0), max_score = results.reduce((a, r) => a + taskById(r.task).points, 0);
  return {
    score,
    max_score,
    output: `graded against ${source}: ${score}/${max_score}`,
    visibility: 'visible',
    stdout_visibility: 'hidden',
    tests: results.map((r) => {
      const t = taskById(r.task);
      return {
        number: t.id,
        name: t.title,
        score: pointsOf(r),
        max_score: t.points,
        status: r.status === 'passed' ? 'passed' : 'failed',
        output: r.status === 'passed' ? `passed (${r.tests.length} tests)` : `${r.status}\n${failureLines(r).join('\n')}`,
        visibility: 'visible',
      };
    }),
  };
}

/** The catalogue as text, experiment by experiment. */
function catalogueText(): string {
  const out: string[] = [];
  for (const e of EXPERIMENTS) {
    out.push(`${e.title}${e.optional ? ' (optional: --tracks all)' : ''}, ${e.readme}`);
    for (const t of TASKS.filter((x) => x.experiment === e.id)) {
      out.push(`  ${t.id}  ${t.title} (${t.points} points)`, `       where:  ${t.file}, ${t.where}`, `       read:   ${t.read}`,
        `       graded: ${t.graded} (exercises/checks/${t.experiment.replace('-', '_')}.ts)`, `       names:  ${Object.values(t.mutants).join('; ')}`);
    }
    out.push('');
  }
  return out.join('\n');
}

// -----------------------------------------------------------------------------------------------
// the command line

function selectTasks(taskList: string | undefined, tracks: string): Task[] {
  if (taskList !== undefined) {
    return taskList.split(',').map((s) => {
      try {
        return taskById(s.trim());
      } catch (err) {
        throw new UsageError(`--task: ${(err as Error).message}`);
      }
    });
  }
  let chosen;
  try {
    chosen = tracksFrom(tracks);
  } catch (err) {
    throw new UsageError(`--tracks: ${(err as Error).message}`);
  }
  return TASKS.filter((t) => chosen.includes(t.experiment));
}

/** A task's time limit: a minute, and more for a bigger checkpoint (the checks run the model). */
function defaultTimeout(weights: string): number {
  const mb = fs.statSync(path.join(weights, 'model.safetensors')).size / 1e6;
  return Math.round(60 + mb / 4);
}

async function main(argv: string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  if (a.list) {
    process.stdout.write(catalogueText());
    return;
  }
  const keyOnly = ['weights', 'cases', 'prompts', 'out'].filter((n) => a[n] !== undefined);
  if (a['make-key']) {
    if (a.weights === undefined || a.out === undefined) throw new UsageError('--make-key needs --weights DIR (the checkpoint) and --out DIR (where the key goes)');
    const { makeKey } = await import('./make_key.ts');
    const r = await makeKey({ root: ROOT, weights: a.weights as string, out: a.out as string, cases: a.cases as string | undefined, prompts: a.prompts as string | undefined });
    process.stdout.write(`wrote the key for ${a.weights} into ${r.dir} (${r.files.join(', ')}) in ${r.seconds.toFixed(1)} s\n` +
      `grade with: npm run grade -- --key ${a.out}\n`);
    return;
  }
  if (keyOnly.length) throw new UsageError(`${keyOnly.map((n) => `--${n}`).join(', ')} ${keyOnly.length > 1 ? 'go' : 'goes'} with --make-key`);
  const tasks = selectTasks(a.task as string | undefined, a.tracks as string);
  const key = a.key as string | undefined;
  const ref = loadReference(ROOT, key); // a missing or broken key stops here, before any task runs
  const timeout = (a.timeout as number | undefined) ?? defaultTimeout(ref.weights);
  const json = a.json as string | undefined;
  if (json !== undefined) {
    if (json === '') throw new UsageError('--json needs a file name');
    const dir = path.dirname(path.resolve(json));
    if (!fs.existsSync(dir)) throw new InputError(`--json ${json}: the folder ${dir} does not exist`);
  }
  const source = key ? `the key ${key}` : 'the fixtures (test/fixtures/)';
  process.stderr.write(`grading ${tasks.length} task${tasks.length > 1 ? 's' : ''} against ${source}\n`);
  const results = await gradeTasks({
    root: ROOT, tasks, key: key && path.resolve(key), timeout, jobs: a.jobs as number,
    onResult: (r) => process.stderr.write(`  ${r.task.padEnd(4)} ${r.status} (${r.seconds.toFixed(1)} s)\n`),
  });
  process.stdout.write('\n' + report(results));
  if (json !== undefined) fs.writeFileSync(json, JSON.stringify(gradescope(results, source), null, 2) + '\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, 'npm run grade --');
}
