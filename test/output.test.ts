// The output writer (io/output.ts): a run's files appear as a set or not at all. Everything is
// written under a temporary folder, removed at the end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { OutputWriter, atomicWrite } from '../io/output.ts';
import { InputError } from '../io/errors.ts';
import { ROOT } from './helpers.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mingpt-output-test-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const fresh = (name: string) => path.join(tmp, `${counter++}-${name}`);

test('OutputWriter refuses an empty folder name (--out \'\') at once, instead of writing into the current folder', () => {
  for (const bad of ['', '   ']) {
    assert.throws(() => new OutputWriter(bad), (e: Error) => e instanceof InputError && e.message.includes('output folder name is empty') && e.message.includes('--out'));
  }
  new OutputWriter('.').check(); // the current folder, asked for by name, is fine
});

test('a new output folder appears whole: its files are staged next to it and one rename puts it in place', () => {
  const parent = fresh('parent');
  fs.mkdirSync(parent);
  const dir = path.join(parent, 'out');
  const w = new OutputWriter(dir);
  w.add('patching.json', '{"a":1}');
  w.add('heatmap.svg', '<svg/>');
  // watch the parent while committing: the only new entry is `out` itself (staging renamed onto it)
  const written = w.commit();
  assert.equal(written, [path.join(dir, 'patching.json'), path.join(dir, 'heatmap.svg')]);
  assert.equal(fs.readdirSync(parent), ['out']);
  assert.equal(fs.readdirSync(dir).sort(), ['heatmap.svg', 'patching.json']);
  assert.is(fs.readFileSync(path.join(dir, 'patching.json'), 'utf8'), '{"a":1}');
});

test('an existing output folder keeps the files (and folders) of other runs; ours are replaced; no staging left', () => {
  const dir = fresh('existing');
  fs.mkdirSync(path.join(dir, 'handmade'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'handmade', 'model.safetensors'), 'other run');
  fs.writeFileSync(path.join(dir, 'patching.json'), 'old');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
  const w = new OutputWriter(dir);
  w.add('patching.json', 'new');
  w.add('heatmap.png', new Uint8Array([137, 80, 78, 71]));
  w.commit();
  assert.equal(fs.readdirSync(dir).sort(), ['handmade', 'heatmap.png', 'notes.txt', 'patching.json']);
  assert.is(fs.readFileSync(path.join(dir, 'patching.json'), 'utf8'), 'new');
  assert.is(fs.readFileSync(path.join(dir, 'handmade', 'model.safetensors'), 'utf8'), 'other run');
});

test('a failure while staging leaves nothing: no folder it made, no staging folder, old files untouched', () => {
  const parent = fresh('fail');
  fs.mkdirSync(parent);
  const w = new OutputWriter(path.join(parent, 'a', 'b'));
  w.add('good.txt', 'fine');
  w.add('bad.txt', 42 as unknown as string); // writeFileSync refuses a number
  assert.throws(() => w.commit());
  assert.equal(fs.readdirSync(parent), []);
  const existing = fresh('fail-existing');
  fs.mkdirSync(existing);
  fs.writeFileSync(path.join(existing, 'good.txt'), 'old');
  const v = new OutputWriter(existing);
  v.add('good.txt', 'new');
  v.add('bad.txt', 42 as unknown as string);
  assert.throws(() => v.commit());
  assert.equal(fs.readdirSync(existing), ['good.txt']);
  assert.is(fs.readFileSync(path.join(existing, 'good.txt'), 'utf8'), 'old', 'the set is all or nothing');
});

test('a staging folder left by a process that died (kill -9) is removed by the next commit beside it', () => {
  const parent = fresh('stale');
  fs.mkdirSync(parent);
  const dead = spawnSync(process.execPath, ['-e', '0']).pid; // has exited: its pid runs nothing now
  const stale = path.join(parent, `.out.${dead}.0.partial`);
  fs.mkdirSync(stale);
  fs.writeFileSync(path.join(stale, 'patching.json'), 'half');
  const w = new OutputWriter(path.join(parent, 'out'));
  w.add('x.txt', 'x');
  w.commit();
  assert.equal(fs.readdirSync(parent), ['out']);
});

test('atomicWrite replaces a file whole and leaves no temporary file', () => {
  const dir = fresh('atomic');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'f.txt');
  atomicWrite(file, 'one');
  atomicWrite(file, new Uint8Array([116, 119, 111]));
  assert.is(fs.readFileSync(file, 'utf8'), 'two');
  assert.equal(fs.readdirSync(dir), ['f.txt']);
});

/**
 * A child that commits a large set into an existing folder holding an older set, and is sent
 * SIGINT / SIGTERM the moment it says it is committing. The set must come out whole (all new),
 * the staging folder gone, and the process must still end by that signal.
 */
async function interrupted(signal: 'SIGINT' | 'SIGTERM'): Promise<void> {
  const dir = fresh(`signal-${signal}`);
  fs.mkdirSync(dir);
  const N = 40;
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(dir, `f${i}.bin`), 'old');
  const script = `
    import { OutputWriter } from ${JSON.stringify(path.join(ROOT, 'io', 'output.ts'))};
    const w = new OutputWriter(${JSON.stringify(dir)});
    const big = new Uint8Array(2 * 1024 * 1024).fill(7);
    for (let i = 0; i < ${N}; i++) w.add('f' + i + '.bin', big);
    process.stdout.write('committing\\n');
    w.commit();
    process.stdout.write('committed\\n');
    setTimeout(() => process.stdout.write('still alive\\n'), 2000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const ended = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  child.stdout.on('data', (d) => {
    out += d;
    if (out.includes('committing')) child.kill(signal);
  });
  const { code, sig } = await ended;
  assert.is(sig, signal, `the child should end by ${signal} (exit ${code}, stdout ${JSON.stringify(out)}, stderr ${err})`);
  assert.not.ok(out.includes('still alive'));
  const names = fs.readdirSync(dir).sort();
  assert.is(names.length, N, `no staging folder or temporary file left: ${names.filter((n) => !/^f\d+\.bin$/.test(n))}`);
  const sizes = names.map((n) => fs.statSync(path.join(dir, n)).size);
  // all old (the signal came before commit began) or all new; never a mix
  const allNew = sizes.every((s) => s === 2 * 1024 * 1024);
  const allOld = sizes.every((s) => s === 3);
  assert.ok(allNew || allOld, `a mix of old and new files: ${sizes.join(' ')}`);
  assert.ok(allNew, 'the commit was under way, so it finished');
}

test('SIGINT during commit: the set is finished, the staging folder removed, then the process ends by SIGINT', async () => {
  await interrupted('SIGINT');
});

test('SIGTERM during commit: the same', async () => {
  await interrupted('SIGTERM');
});

test.run();
