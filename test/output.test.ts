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

// ------------------------------------------------------------------------------------------------
// issue 18: a set replaced whole or not at all, one run per folder, temporaries that never outlive
// their process, and --out paths refused at the start

/** Runs `body` with fs.renameSync failing with EPERM for any source path `fails` says, as for a file owned by another user in a sticky folder. */
function withRenameFailing(fails: (from: string) => boolean, body: () => void): void {
  const real = fs.renameSync;
  fs.renameSync = ((from: fs.PathLike, to: fs.PathLike) => {
    if (fails(String(from))) throw Object.assign(new Error(`EPERM: operation not permitted, rename '${from}'`), { code: 'EPERM' });
    return real(from, to);
  }) as typeof fs.renameSync;
  try {
    body();
  } finally {
    fs.renameSync = real;
  }
}

test('an old file of the set that cannot be replaced: nothing is replaced, and the message says the folder is as before (item 2)', () => {
  const dir = fresh('sticky');
  fs.mkdirSync(dir);
  for (const f of ['patching.json', 'heatmap.vl.json', 'heatmap.svg', 'notes.txt']) fs.writeFileSync(path.join(dir, f), `old ${f}`);
  const w = new OutputWriter(dir);
  for (const f of ['patching.json', 'heatmap.vl.json', 'heatmap.svg']) w.add(f, `new ${f}`);
  withRenameFailing((from) => from === path.join(dir, 'heatmap.svg'), () => {
    assert.throws(() => w.commit(), (e: Error) => e instanceof InputError && e.message.includes(`cannot replace ${path.join(dir, 'heatmap.svg')} (EPERM)`)
      && e.message.includes('holds the same files as before the run'));
  });
  assert.equal(fs.readdirSync(dir).sort(), ['heatmap.svg', 'heatmap.vl.json', 'notes.txt', 'patching.json'], 'no staging folder, no lock left');
  for (const f of ['patching.json', 'heatmap.vl.json', 'heatmap.svg', 'notes.txt']) assert.is(fs.readFileSync(path.join(dir, f), 'utf8'), `old ${f}`, `${f} is the old one`);
  // the same set commits once the file can be replaced
  w.commit();
  for (const f of ['patching.json', 'heatmap.vl.json', 'heatmap.svg']) assert.is(fs.readFileSync(path.join(dir, f), 'utf8'), `new ${f}`);
});

test('a set that cannot be put back either: the message says it is mixed and where the old files are (item 2)', () => {
  const dir = fresh('mixed');
  fs.mkdirSync(dir);
  for (const f of ['a.json', 'b.json']) fs.writeFileSync(path.join(dir, f), `old ${f}`);
  const w = new OutputWriter(dir);
  for (const f of ['c.json', 'a.json', 'b.json']) w.add(f, `new ${f}`); // c.json has no old copy
  // c.json and a.json move in, b.json cannot; then moving c.json back out fails too
  withRenameFailing((from) => from.endsWith(`.partial${path.sep}b.json`) || from === path.join(dir, 'c.json'), () => {
    assert.throws(() => w.commit(), (e: Error) => e instanceof InputError && /failed too \(for c\.json\): .* now holds a mix of old and new files/.test(e.message)
      && /the old files are in .*\.old/.test(e.message));
  });
  assert.is(fs.readFileSync(path.join(dir, 'a.json'), 'utf8'), 'old a.json', 'the old files that could be put back are back');
  assert.is(fs.readFileSync(path.join(dir, 'c.json'), 'utf8'), 'new c.json');
  assert.ok(fs.readdirSync(dir).some((n) => n.endsWith('.partial')), 'the staging folder is kept, as the message says');
});

test('two processes, one --out: the second is refused at its check, naming the first; a lock left by a dead process is taken over (item 5)', async () => {
  const parent = fresh('two-runs');
  fs.mkdirSync(parent);
  const dir = path.join(parent, 'out');
  const script = `
    import { OutputWriter } from ${JSON.stringify(path.join(ROOT, 'io', 'output.ts'))};
    new OutputWriter(${JSON.stringify(dir)}).check();
    process.stdout.write('checked\\n');
    setTimeout(() => {}, 60_000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve) => child.stdout.on('data', (d) => { if (String(d).includes('checked')) resolve(); }));
  const ended = new Promise((resolve) => child.on('exit', resolve));
  try {
    assert.throws(() => new OutputWriter(dir).check(),
      (e: Error) => e instanceof InputError && e.message.includes(`another run (process ${child.pid}) is writing into the output folder ${dir}`));
    const w = new OutputWriter(dir);
    w.add('x.txt', 'x');
    assert.throws(() => w.commit(), /another run/);
    assert.not.ok(fs.existsSync(dir), 'the refused run wrote nothing');
  } finally {
    child.kill('SIGTERM');
  }
  await ended;
  assert.equal(fs.readdirSync(parent), [], 'the killed run left no lock');
  // a lock whose process is gone (kill -9) does not block the folder
  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  fs.writeFileSync(path.join(parent, '.out.writing.lock'), `${dead}\n`);
  const w = new OutputWriter(dir);
  w.add('x.txt', 'x');
  w.commit();
  assert.equal(fs.readdirSync(parent), ['out']);
  assert.equal(fs.readdirSync(dir), ['x.txt']);
});

test('check() refuses at the start: a dangling symbolic link, a folder under /proc, a name longer than 255 bytes (item 14)', () => {
  const parent = fresh('paths');
  fs.mkdirSync(parent);
  const link = path.join(parent, 'link');
  fs.symlinkSync(path.join(parent, 'gone'), link);
  assert.throws(() => new OutputWriter(link).check(), (e: Error) => e instanceof InputError && e.message.includes(`${link} is a symbolic link to ${path.join(parent, 'gone')}, which does not exist`));
  assert.throws(() => new OutputWriter(path.join(link, 'sub')).check(), /is a symbolic link/);
  if (fs.existsSync('/proc/self')) {
    assert.throws(() => new OutputWriter('/proc/mingpt-out').check(), (e: Error) => e instanceof InputError && e.message.includes('cannot write to the output folder /proc/mingpt-out'));
  }
  const long = path.join(parent, 'x'.repeat(256));
  assert.throws(() => new OutputWriter(long).check(), (e: Error) => e instanceof InputError && e.message.includes('256 bytes long, more than the 255'));
  assert.equal(fs.readdirSync(parent), ['link'], 'the checks leave nothing behind');
});

test('folder names of 239 to 255 bytes work: the staging name beside them is shortened (item 14)', () => {
  const parent = fresh('long');
  fs.mkdirSync(parent);
  for (const n of [239, 250, 255]) {
    const dir = path.join(parent, 'y'.repeat(n));
    const w = new OutputWriter(dir);
    w.add('a.txt', 'a');
    w.commit();
    w.add('a.txt', 'b');
    w.commit(); // into the existing folder: staged inside it
    assert.is(fs.readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'b');
  }
  const multibyte = path.join(parent, 'é'.repeat(127)); // 254 bytes
  const w = new OutputWriter(multibyte);
  w.add('a.txt', 'a');
  w.commit();
  assert.equal(fs.readdirSync(multibyte), ['a.txt']);
});

test('a temporary (the cache staged before the charts) is removed when SIGTERM or SIGINT ends the process, and a stale one is recognised later (item 4)', async () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const dir = fresh(`tmp-${signal}`);
    fs.mkdirSync(dir);
    const script = `
      import fs from 'node:fs';
      import { OutputWriter, temporaryFor } from ${JSON.stringify(path.join(ROOT, 'io', 'output.ts'))};
      new OutputWriter(${JSON.stringify(path.join(dir, 'out'))}).check();
      const tmp = temporaryFor(${JSON.stringify(path.join(dir, 'cache.safetensors'))});
      fs.writeFileSync(tmp, 'x'.repeat(1000));
      process.stdout.write('staged\\n');
      setTimeout(() => {}, 60_000); // the charts render
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const ended = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
    child.stdout.on('data', (d) => { if (String(d).includes('staged')) child.kill(signal); });
    assert.is(await ended, signal);
    assert.equal(fs.readdirSync(dir), [], `left behind: ${fs.readdirSync(dir)}`);
  }
  // one left by kill -9 (a dead pid in its name) goes when the next temporary is made beside it
  const dir = fresh('tmp-stale');
  fs.mkdirSync(dir);
  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  fs.writeFileSync(path.join(dir, `.cache.safetensors.${dead}.0.partial`), 'left by kill -9');
  atomicWrite(path.join(dir, 'f.txt'), 'f');
  assert.equal(fs.readdirSync(dir), ['f.txt']);
});

test('SIGINT during commit: the set is finished, the staging folder removed, then the process ends by SIGINT', async () => {
  await interrupted('SIGINT');
});

test('SIGTERM during commit: the same', async () => {
  await interrupted('SIGTERM');
});

test.run();
