/**
 * The exercises' tools (exercises/): the region markers, the stubs, the catalogue against the
 * source, the mutants against the regions, the copy a starter is, the grader's reports and one real
 * grading run. The long checks (every task graded on the starter, the solution, each mutant, a key
 * from another checkpoint) are exercises/verify.ts's, which CI runs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TASK_NOT_DONE } from '../cli/command.ts';
import { EXPERIMENTS, TASKS, taskById, tracksFrom } from '../exercises/catalogue.ts';
import { RegionError, findRegions, parseRegions, regionsByTask, rewriteRegions, stubLines } from '../exercises/regions.ts';
import { TEACHER_FILES, writeCopy } from '../exercises/copy.ts';
import { MUTANTS, mutantRewriter } from '../exercises/mutants.ts';
import { gradeTasks, gradescope, pointsOf, report } from '../exercises/grade.ts';
import { Mismatch, expectGridNear, recognise } from '../exercises/harness.ts';
import type { TaskResult } from '../exercises/run_task.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const regions = findRegions(root);
const byTask = regionsByTask(regions);

const SRC = [
  'function f(x: number): number {',
  '  // BEGIN TASK 1.2: something',
  '  const y = x + 1;',
  '  return y;',
  '  // END TASK 1.2',
  '}',
  'function g(): void {',
  '    // BEGIN TASK 2.1',
  '    console.log(1);',
  '    // END TASK 2.1',
  '}',
].join('\n');

test('parseRegions: the tasks, their lines, indentation and bodies', () => {
  const r = parseRegions('x.ts', SRC);
  assert.equal(r.map((x) => [x.task, x.begin, x.end, x.indent, x.body.length]), [['1.2', 1, 4, '  ', 2], ['2.1', 7, 9, '    ', 1]]);
});

test('parseRegions refuses markers that do not pair up, naming file and line', () => {
  const bad = (text: string, re: RegExp) => assert.throws(() => parseRegions('y.ts', text), (e: unknown) => e instanceof RegionError && re.test((e as Error).message));
  bad('// END TASK 1.1', /y\.ts:1: END TASK 1\.1 without a BEGIN/);
  bad('// BEGIN TASK 1.1\n// BEGIN TASK 1.2', /y\.ts:2: BEGIN TASK 1\.2 inside TASK 1\.1/);
  bad('// BEGIN TASK 1.1\n// END TASK 1.2', /closes TASK 1\.1/);
  bad('x\n// BEGIN TASK 1.1\n', /y\.ts:2: BEGIN TASK 1\.1 is never closed/);
  assert.equal(parseRegions('z.ts', "const s = '// BEGIN TASK 1.1';\n"), [], 'a marker inside a string is not a marker');
});

test('rewriteRegions: bodies replaced, markers and everything else kept; null keeps a body', () => {
  assert.is(rewriteRegions('x.ts', SRC, () => null), SRC);
  const out = rewriteRegions('x.ts', SRC, (r) => (r.task === '1.2' ? [`${r.indent}STUB`] : null)).split('\n');
  assert.equal(out.slice(0, 4), ['function f(x: number): number {', '  // BEGIN TASK 1.2: something', '  STUB', '  // END TASK 1.2']);
  assert.equal(out.slice(4), SRC.split('\n').slice(5));
});

test('stubs: a throw that names the task, the file and where; an unset value for 1.4', () => {
  const [r] = byTask.get('1.2')!;
  const [line] = stubLines(r);
  assert.match(line, /^\s+throw new Error\(/);
  const msg = JSON.parse(line.slice(line.indexOf('(') + 1, line.lastIndexOf(')')));
  assert.ok(TASK_NOT_DONE.test(msg), msg);
  assert.match(msg, /mingpt\/model\.ts \(GPT\.flagHooks, the save flag\)/);
  const [u] = stubLines(byTask.get('1.4')![0]);
  assert.match(u, /this\.lastLogits = new Proxy\(new Float32Array\(0\)/);
});

test('the catalogue: every experiment adds up to 100 points, ids are unique, tracks', () => {
  for (const e of EXPERIMENTS) assert.is(TASKS.filter((t) => t.experiment === e.id).reduce((a, t) => a + t.points, 0), 100, e.id);
  assert.is(new Set(TASKS.map((t) => t.id)).size, TASKS.length);
  assert.equal(tracksFrom(undefined), ['activation-patching', 'induction-heads', 'ioi', 'circuits']);
  assert.equal(tracksFrom('all').length, 5);
  assert.throws(() => tracksFrom('nope'), /no experiment "nope"/);
});

test('the source: every task has its regions where the catalogue says, and nothing else is marked', () => {
  for (const t of TASKS) {
    const rs = byTask.get(t.id);
    assert.ok(rs, `task ${t.id} has no region`);
    assert.is([...new Set(rs!.map((r) => r.file))].join(' and '), t.file, `task ${t.id}'s file`);
  }
  assert.equal([...byTask.keys()].filter((id) => !TASKS.some((t) => t.id === id)), []);
});

test('the mutants: each applies to its task\'s regions (each edit exactly once), and the catalogue lists it', () => {
  for (const t of TASKS) assert.equal(MUTANTS.filter((m) => m.task === t.id).map((m) => m.id).sort(), Object.keys(t.mutants).sort(), `task ${t.id}`);
  for (const m of MUTANTS) {
    const rw = mutantRewriter(m);
    const changed = regions.map((r) => rw.region(r)).filter((x) => x !== null);
    rw.check();
    assert.ok(changed.length > 0, m.id);
  }
  const stale = mutantRewriter({ id: 'x', task: '1.2', edits: [['no such text', '']], hint: /x/ });
  for (const r of regions) stale.region(r);
  assert.throws(() => stale.check(), /mutant x does not apply any more/);
});

test("a student's copy: stubs in every region, the teacher's files left out, the rest as it was", () => {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'exercises-copy-')), 'starter');
  try {
    const files = writeCopy(root, dir, { student: true, region: stubLines });
    for (const f of TEACHER_FILES) assert.not.ok(files.includes(f), f);
    assert.ok(files.includes('exercises/grade.ts') && files.includes('test/fixtures/gpt2-tiny/model.safetensors'));
    assert.not.ok(files.some((f) => f.startsWith('node_modules/') || f.startsWith('.git/')));
    const copied = findRegions(dir);
    assert.is(copied.length, regions.length);
    for (const r of copied) assert.equal(r.body, stubLines(r), `${r.file}:${r.begin + 1}`);
    assert.is(fs.readFileSync(path.join(dir, 'README.md'), 'utf8'), fs.readFileSync(path.join(root, 'README.md'), 'utf8'));
  } finally {
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  }
});

test('harness: a grid mismatch names the cell, and a known wrong answer its mistake', () => {
  const want = [[1, 2], [3, 4]];
  assert.throws(() => expectGridNear('m', [[1, 2], [3, 5]], want, 1e-6, 'generic'), (e: unknown) => e instanceof Mismatch && e.expected === 'm[1][1] = 4' && e.got === '5' && e.hint === 'generic');
  assert.throws(() => expectGridNear('m', [[-1, -2], [-3, -4]], want, 1e-6, 'generic', () => [{ values: [-1, -2, -3, -4], hint: 'sign' }]), (e: unknown) => e instanceof Mismatch && e.hint === 'sign');
  assert.is(recognise([1, 2], [1, 2], [{ values: [1, 2], hint: 'same as want' }], 1e-6), undefined, 'an alternative equal to the answer names nothing');
  expectGridNear('m', want, want, 0, 'x');
});

const fake = (task: string, status: TaskResult['status']): TaskResult => ({
  task, status, seconds: 0.1, tests: status === 'passed' ? [{ name: 't', status: 'passed' }] : [{ name: 't', status: 'failed', expected: 'a = 1', got: '2', hint: 'the sign' }],
});

test("reports: the table, the failures, and Gradescope's results format", () => {
  const rs = [fake('1.1', 'passed'), fake('1.2', 'failed'), fake('2.1', 'not done')];
  assert.equal(rs.map(pointsOf), [10, 0, 0]);
  const text = report(rs);
  assert.match(text, /1\.1 .* 10\/10 {2}passed/);
  assert.match(text, /expected: a = 1\n\s+got: {6}2\n\s+hint: {5}the sign/);
  assert.match(text, /total: 10\/45/);
  const g = gradescope(rs, 'the fixtures') as { score: number; max_score: number; tests: Record<string, unknown>[] };
  assert.is(g.score, 10);
  assert.is(g.max_score, 45);
  assert.equal(g.tests.map((t) => [t.number, t.score, t.max_score, t.visibility]), [['1.1', 10, 10, 'visible'], ['1.2', 0, 20, 'visible'], ['2.1', 0, 15, 'visible']]);
  assert.equal(Object.keys(g.tests[1]).sort(), ['max_score', 'name', 'number', 'output', 'score', 'status', 'visibility']);
  assert.match(String(g.tests[1].output), /^failed\n[\s\S]*hint: {5}the sign/);
});

test('the README lists every task with its points and file', () => {
  const readme = fs.readFileSync(path.join(root, 'exercises', 'README.md'), 'utf8');
  for (const t of TASKS) {
    const row = readme.split('\n').find((l) => l.startsWith(`| ${t.id} |`));
    assert.ok(row, `task ${t.id} has no row`);
    const cells = row!.split(' | ');
    assert.is(cells[1], t.title, `${t.id}: title`);
    assert.is(Number(cells[3]), t.points, `${t.id}: points`);
    for (const f of t.file.split(' and ')) assert.ok(cells[2].includes(`\`${f}\``), `${t.id}: ${f}`);
  }
});

test('grading for real: a task of the solution passes in a process of its own', async () => {
  const [r] = await gradeTasks({ root, tasks: [taskById('2.3')], timeout: 60, jobs: 1 });
  assert.is(r.status, 'passed', JSON.stringify(r));
  assert.ok(r.tests.length > 0);
});

test.run();
