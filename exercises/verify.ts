/**
 * The exercises' own checks, for CI (.ci/run) and for whoever changes a task region:
 *
 *   npx tsx exercises/verify.ts            # everything (about 3 minutes on 2 cores)
 *   npx tsx exercises/verify.ts --no-install   # link node_modules into the starter instead of npm install
 *
 * 1. the catalogue, the regions in the source and the mutants agree;
 * 2. `npm run starter` builds a copy in which npm install and tsc --noEmit pass;
 * 3. grading that copy gives 0 points, every task stopping at its own stub (so that no task's
 *    checks lean on another task: restoring one region cannot earn another task's points);
 * 4. grading the solution gives full marks, the optional model track included;
 * 5. each task's solution region copied alone into the starter earns that task's points;
 * 6. a region replaced by an endless loop costs that task only, and grading finishes;
 * 7. every mutant earns its task nothing, with a hint that names the mistake;
 * 8. a key made from another GPT-2-layout checkpoint (random weights, other texts) gives the
 *    solution full marks and the starter none.
 * Every problem is listed (not only the first); the exit code is 1 if there is one.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT } from '../mingpt/model.ts';
import { RNG } from '../mingpt/utils.ts';
import { gpt2Config, writeCheckpoint } from '../io/checkpoint_writer.ts';
import { makeDataset } from '../assignments/ioi/dataset.ts';
import { EXPERIMENTS, TASKS, tracksFrom, type Task } from './catalogue.ts';
import { TEACHER_FILES, writeCopy } from './copy.ts';
import { findRegions, regionsByTask, stubLines, type Region } from './regions.ts';
import { MUTANTS, mutantRewriter } from './mutants.ts';
import { gradeTasks, pointsOf } from './grade.ts';
import { makeKey } from './make_key.ts';
import type { TaskResult } from './run_task.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const problems: string[] = [];
const timings: [string, number][] = [];
const JOBS = 2;

async function phase<T>(name: string, body: () => Promise<T> | T): Promise<T | undefined> {
  const start = performance.now();
  process.stdout.write(`${name} …\n`);
  try {
    return await body();
  } catch (err) {
    problems.push(`${name}: ${(err as Error).stack ?? err}`);
    return undefined;
  } finally {
    const s = (performance.now() - start) / 1000;
    timings.push([name, s]);
    process.stdout.write(`  (${s.toFixed(1)} s)\n`);
  }
}

function problem(text: string): void {
  problems.push(text);
  process.stdout.write(`  PROBLEM: ${text}\n`);
}

/** Runs a command; its output is shown only when it fails. */
function run(cmd: string, args: string[], cwd: string): boolean {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, MINGPT_QUIET: '1' }, maxBuffer: 64 << 20 });
  if (r.status === 0) return true;
  problem(`${cmd} ${args.join(' ')} in ${cwd} failed (${r.status ?? r.signal}):\n${(r.stdout + r.stderr).trim().split('\n').slice(-30).join('\n')}`);
  return false;
}

/** Grading jobs over several copies at once, `JOBS` at a time. */
async function gradeAll(jobs: { dir: string; tasks: Task[]; key?: string; timeout?: number }[]): Promise<TaskResult[][]> {
  const out: TaskResult[][] = jobs.map(() => []);
  let next = 0;
  const flat = jobs.flatMap((j, i) => j.tasks.map((t) => ({ i, j, t })));
  const worker = async () => {
    while (next < flat.length) {
      const { i, j, t } = flat[next++];
      const [r] = await gradeTasks({ root: j.dir, tasks: [t], key: j.key, timeout: j.timeout ?? 120, jobs: 1 });
      out[i].push(r);
    }
  };
  await Promise.all(Array.from({ length: JOBS }, worker));
  return out.map((rs, i) => jobs[i].tasks.map((t) => rs.find((r) => r.task === t.id)!));
}

const required = TASKS.filter((t) => tracksFrom(undefined).includes(t.experiment));
const firstHint = (r: TaskResult) => r.tests.find((t) => t.status !== 'passed')?.hint ?? r.message ?? '';

async function main(argv: string[]): Promise<void> {
  const install = !argv.includes('--no-install');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'exercises-verify-'));
  const copies = path.join(tmp, 'copies');
  fs.mkdirSync(copies);
  let n = 0;
  const variant = (name: string, region: (r: Region) => string[] | null) => {
    const dir = path.join(copies, `${++n}-${name}`);
    writeCopy(ROOT, dir, { region, link: true });
    return dir;
  };
  const stubFor = (tasks: readonly Task[]) => {
    const ids = new Set(tasks.filter((t) => !t.worked).map((t) => t.id));
    return (keep?: string) => (r: Region) => (ids.has(r.task) && r.task !== keep ? stubLines(r) : null);
  };
  const start = performance.now();
  try {
    // 1 ---------------------------------------------------------------------------------------
    await phase('1. catalogue, regions and mutants agree', () => {
      const regions = regionsByTask(findRegions(ROOT));
      for (const e of EXPERIMENTS) {
        const sum = TASKS.filter((t) => t.experiment === e.id).reduce((a, t) => a + t.points, 0);
        if (sum !== 100) problem(`${e.id}: the tasks add up to ${sum} points, not 100`);
      }
      for (const t of TASKS) {
        const rs = regions.get(t.id);
        if (!rs) { problem(`task ${t.id}: no region in the source`); continue; }
        const files = [...new Set(rs.map((r) => r.file))].join(' and ');
        if (files !== t.file) problem(`task ${t.id}: the catalogue says ${t.file}, the regions are in ${files}`);
        const mutants = MUTANTS.filter((m) => m.task === t.id).map((m) => m.id).sort();
        if (JSON.stringify(mutants) !== JSON.stringify(Object.keys(t.mutants).sort())) problem(`task ${t.id}: the catalogue lists mutants ${Object.keys(t.mutants).join(', ')}; mutants.ts has ${mutants.join(', ')}`);
        if (mutants.length === 0) problem(`task ${t.id}: no mutant`);
      }
    });

    // 2 ---------------------------------------------------------------------------------------
    const starter = path.join(tmp, 'starter');
    await phase('2. npm run starter; npm install and tsc --noEmit in it', () => {
      if (!run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'exercises', 'starter.ts'), starter], ROOT)) return;
      if (install) run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], starter);
      else fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(starter, 'node_modules'), 'dir');
      run('npx', ['tsc', '--noEmit'], starter);
      // every experiment's script stops at the first task it needs, says which, and writes nothing
      for (const script of [['generate.ts'], ['assignments/induction-heads/induction.ts', '--seq-len', '10', '--batch', '2'],
        ['assignments/ioi/ioi.ts', '--prompts', 'test/fixtures/ioi-group.json'], ['assignments/circuits/circuits.ts']]) {
        const out = path.join(tmp, `out-${path.basename(script[0], '.ts')}`);
        const r = spawnSync(process.execPath, ['--import', 'tsx', ...script, '--weights', 'test/fixtures/gpt2-tiny', '--out', out], { cwd: starter, encoding: 'utf8', env: { ...process.env, MINGPT_QUIET: '1' } });
        const said = /error: TASK ([\w.]+) not done: .* Write it in \S+/.exec(r.stderr);
        if (r.status !== 1 || !said) problem(`starter: ${script[0]} should stop with "TASK … not done" and exit code 1; it exited ${r.status}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
        else process.stdout.write(`  ${script[0]} stops at task ${said[1]}\n`);
        if (fs.existsSync(out)) problem(`starter: ${script[0]} wrote ${out} although it stopped`);
      }
      const leaked = TEACHER_FILES.filter((f) => fs.existsSync(path.join(starter, f)));
      if (leaked.length) problem(`the starter holds the teacher's files ${leaked.join(', ')}`);
    });

    // 3, 4 ------------------------------------------------------------------------------------
    await phase('3–4. the starter earns nothing (each task stops at its own stub); the solution earns everything', async () => {
      // the starter through the command itself, as a student runs it, with Gradescope's results file
      const json = path.join(tmp, 'results.json');
      if (run(process.execPath, ['--import', 'tsx', 'exercises/grade.ts', '--jobs', String(JOBS), '--json', json], starter)) {
        const res = JSON.parse(fs.readFileSync(json, 'utf8')) as { score: number; max_score: number; tests: Record<string, unknown>[] };
        const worked = required.filter((t) => t.worked).reduce((a, t) => a + t.points, 0);
        if (res.score !== worked || res.max_score !== 100 * tracksFrom(undefined).length) problem(`starter: results.json says ${res.score}/${res.max_score}, not ${worked}/${100 * tracksFrom(undefined).length}`);
        for (const test of res.tests) {
          const missing = ['number', 'name', 'score', 'max_score', 'output', 'visibility'].filter((f) => !(f in test));
          if (missing.length) problem(`results.json: test ${String(test.number)} lacks ${missing.join(', ')}`);
          const t = TASKS.find((x) => x.id === test.number);
          const status = String(test.output).split('\n')[0];
          if (!t) problem(`results.json: unknown task ${String(test.number)}`);
          else if (!(t.worked ? status.startsWith('passed') : status === 'not done')) problem(`starter: task ${t.id} is "${status}", not "not done" (its checks must meet its own stub first)`);
        }
        if (res.tests.length !== required.length) problem(`results.json: ${res.tests.length} tests, not ${required.length}`);
      }
      const [onSolution] = await gradeAll([{ dir: ROOT, tasks: [...TASKS] }]);
      for (const r of onSolution) if (r.status !== 'passed') problem(`solution: task ${r.task} is "${r.status}", not full marks: ${firstHint(r)} ${r.message ?? ''}`);
    });

    // 5 ---------------------------------------------------------------------------------------
    await phase('5. one solution region in the starter earns exactly that task', async () => {
      const req = stubFor(required), all = stubFor(TASKS);
      const jobs = [
        ...required.filter((t) => !t.worked).map((t) => ({ dir: variant(`restore-${t.id}`, req(t.id)), tasks: [t] })),
        // the optional track: a starter with every task stubbed, one model task restored
        ...TASKS.filter((t) => t.experiment === 'model').map((t) => ({ dir: variant(`restore-${t.id}`, all(t.id)), tasks: [t] })),
      ];
      const modelStarter = variant('model-starter', all());
      const probe = [TASKS.find((t) => t.experiment === 'model')!, required[2]];
      const results = await gradeAll([...jobs, { dir: modelStarter, tasks: probe }]);
      results.slice(0, jobs.length).forEach(([r]) => { if (r.status !== 'passed') problem(`task ${r.task} restored alone into the starter: "${r.status}", not its points: ${firstHint(r)} ${r.message ?? ''}`); });
      const [m, other] = results[jobs.length];
      if (m.status !== 'not done') problem(`model-track starter: task ${m.task} is "${m.status}", not "not done"`);
      if (other.status !== 'blocked') problem(`model-track starter: task ${other.task} is "${other.status}", not "blocked" by the model track`);
    });

    // 6 ---------------------------------------------------------------------------------------
    await phase('6. an endless loop in one region costs that task only', async () => {
      const loopTask = '1.5', around = ['1.4', '1.5', '1.6'].map((id) => TASKS.find((t) => t.id === id)!);
      const dir = variant('endless', (r) => (r.task === loopTask ? [`${r.indent}for (;;) { /* never ends */ }`] : null));
      const [rs] = await gradeAll([{ dir, tasks: around, timeout: 8 }]);
      for (const r of rs) {
        const want = r.task === loopTask ? 'timeout' : 'passed';
        if (r.status !== want) problem(`endless loop in ${loopTask}: task ${r.task} is "${r.status}", not "${want}"`);
      }
    });

    // 7 ---------------------------------------------------------------------------------------
    await phase(`7. every mutant (${MUTANTS.length}) is caught, with a hint that names it`, async () => {
      const jobs: { dir: string; tasks: Task[]; id: string }[] = [];
      for (const m of MUTANTS) {
        const rw = mutantRewriter(m);
        try {
          const dir = variant(m.id, rw.region);
          rw.check();
          jobs.push({ dir, tasks: [TASKS.find((t) => t.id === m.task)!], id: m.id });
        } catch (err) {
          problem((err as Error).message);
        }
      }
      const results = await gradeAll(jobs);
      results.forEach(([r], i) => {
        const m = MUTANTS.find((x) => x.id === jobs[i].id)!;
        const hints = [r.message ?? '', ...r.tests.map((t) => `${t.hint ?? ''} ${t.got ?? ''}`)].join(' | ');
        if (pointsOf(r) > 0) problem(`mutant ${m.id} earns task ${m.task}'s points: the checks do not catch it`);
        else if (!m.hint.test(hints)) problem(`mutant ${m.id} is caught (${r.status}) but no hint names it (${m.hint}): ${hints}`);
        else process.stdout.write(`  ${m.id}: caught — ${firstHint(r)}\n`);
      });
    });

    // 8 ---------------------------------------------------------------------------------------
    await phase('8. a key from another checkpoint: the solution earns everything, the starter nothing', async () => {
      const other = path.join(tmp, 'other');
      writeRandomCheckpoint(other);
      const prompts = path.join(tmp, 'prompts.json'), cases = path.join(tmp, 'cases.json');
      fs.writeFileSync(prompts, JSON.stringify({ prompts: makeDataset({ n: 30, seed: 7 }) }));
      fs.writeFileSync(cases, JSON.stringify([
        { clean: 'The capital of France is Paris, and the capital of France is', corrupt: 'The capital of Italy is Paris, and the capital of France is', clean_token: ' Paris', corrupt_token: ' Rome' },
        { clean: 'When Alice met Bob at the station, Alice thanked', corrupt: 'When Alice met Carl at the station, Alice thanked', clean_token: ' Bob', corrupt_token: ' Carl' },
      ]));
      const key = path.join(tmp, 'key');
      await makeKey({ root: ROOT, weights: other, out: key, cases, prompts });
      const code = fs.readdirSync(key).filter((f) => !/\.(json|safetensors)$/.test(f));
      if (code.length) problem(`the key holds files other than numbers and the checkpoint: ${code.join(', ')}`);
      const [onSolution, onStarter] = await gradeAll([{ dir: ROOT, tasks: [...TASKS], key }, { dir: starter, tasks: required, key }]);
      for (const r of onSolution) if (r.status !== 'passed') problem(`solution with the key: task ${r.task} is "${r.status}": ${firstHint(r)} ${r.message ?? ''}`);
      for (const r of onStarter) if (pointsOf(r) > 0 || r.status !== 'not done') problem(`starter with the key: task ${r.task} is "${r.status}"`);
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const total = (performance.now() - start) / 1000;
  process.stdout.write(`\ntimings: ${timings.map(([p, s]) => `${p.split(' ')[0]} ${s.toFixed(1)} s`).join(', ')}; total ${total.toFixed(1)} s\n`);
  if (problems.length) {
    process.stdout.write(`\n${problems.length} problem${problems.length > 1 ? 's' : ''}:\n${problems.map((p) => `- ${p}`).join('\n')}\n`);
    process.exit(1);
  }
  process.stdout.write('exercises: all checks passed\n');
}

/**
 * A GPT-2-layout checkpoint with random weights of the fixture's scale (embeddings N(0, 0.5),
 * weights N(0, 0.18), biases N(0, 0.1), gains 1 + N(0, 0.1)), another shape than gpt2-tiny, so that
 * a key made from it differs in every number.
 */
function writeRandomCheckpoint(dir: string): void {
  const config = GPT.get_default_config();
  config.model_type = null;
  config.merge_from_dict({ n_layer: 2, n_head: 2, n_embd: 24, vocab_size: 50257, block_size: 48 });
  const model = new GPT(config, { init: false });
  const rng = new RNG(424242);
  for (const [name, w] of model.named_parameters) {
    const gain = /ln_\w+\.weight$/.test(name), bias = name.endsWith('.bias');
    const std = /wte|wpe/.test(name) ? 0.5 : gain || bias ? 0.1 : 0.18;
    for (let i = 0; i < w.length; i++) w[i] = (gain ? 1 : 0) + std * rng.randn();
  }
  writeCheckpoint(dir, model, gpt2Config(model, { random_weights: true, _comment: 'random weights, made by exercises/verify.ts for a key from another checkpoint' }));
}

await main(process.argv.slice(2));
