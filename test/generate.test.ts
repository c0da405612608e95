// Tests for generate.ts, the activation-patching assignment end to end, and for its helpers in
// cli/args.ts and cli/command.ts (arguments, error messages), io/output.ts (atomic output) and
// cli/terminal.ts (tables, heatmap, colours).
//
// The end-to-end tests run the real command line as a child process on the fixture checkpoint
// test/fixtures/gpt2-tiny. Expected numbers come from test/fixtures/gpt2-tiny/reference.json,
// written by an independent PyTorch implementation (see test/fixtures/README.md): ids exact,
// probabilities to 1e-6 (measured 6e-8), logit differences and the matrix to FLOAT32_TOL.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { compile } from 'vega-lite';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { InputError, UsageError } from '../io/errors.ts';
import { OutputWriter, atomicWrite } from '../io/output.ts';
import { colorDepth, displayWidth, formatHeatmap, formatTokenList, formatTopTable, stripAnsi, visibleToken } from '../cli/terminal.ts';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { COMMAND, readingAid, targetTokenId, tokenizeInputs, topTokens } from '../generate.ts';
import { runScript, type Run } from './run_script.ts';
import { FIXTURE_ARG, FLOAT32_TOL, REFERENCE, ROOT, close, closeAll, tempDir } from './helpers.ts';

const reference = REFERENCE;
const tmp = tempDir('generate-test-');

// -----------------------------------------------------------------------------------------------
// running the command line

/** generate.ts in a child process, colours off, progress bar quiet. */
const runCli = (args: string[]): Promise<Run> => runScript('generate.ts', args);

/** Runs at most two command lines at a time (the CI machine has two cores). */
const queue: (() => void)[] = [];
let running = 0;
function scheduled(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = () => {
      running++;
      runCli(args)
        .then(resolve, reject)
        .finally(() => {
          running--;
          queue.shift()?.();
        });
    };
    if (running < 2) start();
    else queue.push(start);
  });
}

/** Each run's output folder: fresh, and not created in advance. */
const outDir = (name: string) => path.join(tmp, name, 'out');

// Every run the tests look at, started together in the background so that they overlap.
const runs = new Map<string, { out: string; args: string[]; result?: Promise<Run> }>();
function plan(name: string, args: string[]) {
  const out = outDir(name);
  runs.set(name, { out, args: [...args, '--out', out] });
}
function result(name: string): Promise<Run> {
  const r = runs.get(name)!;
  r.result ??= scheduled(r.args);
  return r.result;
}

const weights = ['--weights', FIXTURE_ARG];
const caseArgs = (c: { clean: string; corrupt: string; clean_token: string; corrupt_token: string }) => [
  '--clean', c.clean, '--corrupt', c.corrupt, '--clean-token', c.clean_token, '--corrupt-token', c.corrupt_token,
];
reference.cases.forEach((c: any, i: number) => plan(`case${i}`, [...weights, ...caseArgs(c), ...(i === 0 ? ['--engine', 'reference'] : [])]));

// Bad inputs: [name, args, exit code, what stderr must say]
const clean = reference.cases[0].clean as string;
const longText = Array.from({ length: 70 }, () => 'word').join(' '); // 70 tokens, the fixture's context is 64
const badInputs: [string, string[], number, (string | RegExp)[]][] = [
  ['unequal token counts', [...weights, '--corrupt', 'Michelle Smithereens was a top-notch student. Michelle'], 1,
    ['same number of tokens', 'clean   (11): 0:Michelle 1:␣Jones', 'corrupt (14): 0:Michelle 1:␣Sm 2:it 3:here 4:ens']],
  ['a target of several tokens', [...weights, '--corrupt-token', ' Smithereens'], 1,
    ['--corrupt-token " Smithereens" is not a single GPT-2 token', 'splits into 4 tokens, " Sm" + "it" + "here" + "ens"']],
  ['a target that is one token only with a leading space', [...weights, '--clean-token', 'Rome', '--corrupt-token', ' Paris'], 1,
    ['"Rome" is not a single GPT-2 token', 'With a leading space, " Rome" is one token (id 10598)', '--clean-token " Rome"']],
  ['a target that is one token only without its leading space', [...weights, '--corrupt-token', ' anyahu'], 1,
    ['" anyahu" is not a single GPT-2 token', 'Without the leading space, "anyahu" is one token (id 15966)']],
  ['an empty target', [...weights, '--clean-token', ''], 1, ['--clean-token is empty']],
  ['the same target twice', [...weights, '--corrupt-token', ' Jones'], 1, ['are the same token']],
  ['an empty clean text', [...weights, '--clean', ''], 1, ['the clean text (--clean) is empty']],
  ['an empty corrupted text', [...weights, '--corrupt', ''], 1, ['the corrupted text (--corrupt) is empty']],
  ['texts longer than the context', [...weights, '--clean', longText, '--corrupt', longText], 1, ['70 tokens, more than the 64 positions']],
  ['a checkpoint path that does not exist', ['--weights', 'test/fixtures/no-such-checkpoint'], 1, ['no-such-checkpoint']],
  ['an unknown pretrained model name', ['--model', 'gpt5'], 1, ["unknown pretrained model 'gpt5'"]],
  ['both --model and --weights', ['--model', 'gpt2', ...weights], 2, ['either --model or --weights, not both']],
  ['an unknown option', [...weights, '--tpo', '5'], 2, ['unknown option --tpo (did you mean --top?)', '--help']],
  ['a --top that is not a whole number', [...weights, '--top', 'many'], 2, ['--top expects a number (got "many")']],
  ['a --top below 1', [...weights, '--top', '0'], 2, ['--top must be at least 1']],
  ['an unknown engine', [...weights, '--engine', 'turbo'], 2, ['--engine must be one of fast, reference']],
  ['an unknown --patch', [...weights, '--patch', 'heads'], 2, ['--patch must be one of resid_pre, resid_mid, resid_post, attn_out, mlp_out, head, head-pos']],
  ['an unknown --scale', [...weights, '--scale', 'log'], 2, ['--scale must be one of zero, runs']],
  ['unknown kernels', [...weights, '--kernels', 'gpu'], 2, ['--kernels must be one of simd, js']],
  ['an empty --save-cache', [...weights, '--save-cache', ''], 1, ['--save-cache needs a file name']],
  ['an option without its value', [...weights, '--clean'], 2, ['--clean needs a value']],
  ['a stray argument', [...weights, 'Michelle'], 2, ['unexpected argument "Michelle"']],
];
for (const [name, args] of badInputs) plan(name, args);
plan('help', ['--help']);
test.before(() => {
  for (const name of runs.keys()) void result(name); // start them all; each test awaits its own
});

// -----------------------------------------------------------------------------------------------
// end to end on the fixture checkpoint

const CHART_FILES = (name: string) => ['html', 'png', 'svg', 'vl.json'].map((ext) => `${name}.${ext}`);
const FILES = [...CHART_FILES('dla'), ...CHART_FILES('heatmap'), ...CHART_FILES('logit_lens'), 'patching.json'].sort();

reference.cases.forEach((ref: any, i: number) => {
  const label = `${JSON.stringify(ref.corrupt)} (${i === 0 ? 'reference engine' : 'default engine'})`;

  test(`CLI case ${i}: exits 0 and writes patching.json and the three charts: ${label}`, async () => {
    const r = await result(`case${i}`);
    assert.is(r.code, 0, r.stderr);
    assert.equal(fs.readdirSync(runs.get(`case${i}`)!.out).sort(), FILES);
  });

  test(`CLI case ${i}: patching.json matches reference.json (ids exact, probabilities, differences, matrix)`, async () => {
    await result(`case${i}`);
    const got = JSON.parse(fs.readFileSync(path.join(runs.get(`case${i}`)!.out, 'patching.json'), 'utf8'));
    assert.is(got.clean_text, ref.clean);
    assert.is(got.corrupt_text, ref.corrupt);
    assert.is(got.model, FIXTURE_ARG);
    assert.equal(got.clean_ids, ref.clean_ids);
    assert.equal(got.corrupt_ids, ref.corrupt_ids);
    assert.equal(got.clean_tokens, ref.clean_tokens);
    assert.is(got.clean_token_id, ref.clean_token_id);
    assert.is(got.corrupt_token_id, ref.corrupt_token_id);
    assert.is(got.clean_top.length, 20);
    got.clean_top.forEach((row: any, k: number) => {
      const want = ref.clean_top20[k];
      assert.is(row.rank, k + 1);
      assert.is(row.id, want.id, `clean_top[${k}].id`);
      assert.is(row.token, want.token, `clean_top[${k}].token is the plain decoded string`);
      close(row.prob, want.prob, 1e-6, `clean_top[${k}].prob`);
    });
    close(got.clean_logit_diff, ref.clean_logit_diff, FLOAT32_TOL, 'clean_logit_diff');
    close(got.corrupt_logit_diff, ref.corrupt_logit_diff, FLOAT32_TOL, 'corrupt_logit_diff');
    assert.is(got.matrix.length, reference.config.n_layer);
    closeAll(got.matrix, ref.patch_matrix, FLOAT32_TOL, 'matrix');
    assert.type(got.timing.load_s, 'number');
    assert.type(got.timing.sweep_s, 'number');
  });

  test(`CLI case ${i}: the vega-lite spec compiles and the SVG has one cell per layer × position`, async () => {
    await result(`case${i}`);
    const out = runs.get(`case${i}`)!.out;
    const spec = JSON.parse(fs.readFileSync(path.join(out, 'heatmap.vl.json'), 'utf8'));
    compile(spec);
    const L = reference.config.n_layer, T = ref.clean_ids.length;
    assert.is(spec.data.values.length, L * T);
    const svg = fs.readFileSync(path.join(out, 'heatmap.svg'), 'utf8');
    const group = svg.match(/<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)<\/g>/s);
    assert.ok(group, 'no rect mark in the SVG');
    const cells = group[1].match(/<path [^>]*>/g) ?? [];
    assert.is(cells.length, L * T);
    const places = new Set(cells.map((c) => c.match(/layer: (\d+); position: (\d+);/)!.slice(1).join(',')));
    assert.is(places.size, L * T, 'every (layer, position) exactly once');
    const png = fs.readFileSync(path.join(out, 'heatmap.png'));
    assert.is(png.subarray(1, 4).toString('latin1'), 'PNG');
    const html = fs.readFileSync(path.join(out, 'heatmap.html'), 'utf8');
    assert.not.match(html, /<script[^>]+src=/i);
    assert.match(html, ref.corrupt);
  });

  test(`CLI case ${i}: the terminal report has the token listings, the table, the heatmap and the reading aid`, async () => {
    const r = await result(`case${i}`);
    const o = r.stdout;
    assert.match(o, '0:Michelle 1:␣Jones 2:␣was 3:␣a 4:␣top 5:- 6:not 7:ch 8:␣student 9:. 10:␣Michelle');
    assert.match(o, /rank\s+token id\s+token\s+probability/);
    assert.match(o, /\n\s+1\s+1541\s+"␣already"\s+0\.0233/, 'first row of the top-20 table');
    assert.match(o, `logit(" Smith") − logit(" Jones") = ${ref.clean_logit_diff.toFixed(3)}`);
    assert.match(o, `logit(" Smith") − logit(" Jones") = ${ref.corrupt_logit_diff.toFixed(3)}`);
    for (let l = 0; l < reference.config.n_layer; l++) assert.match(o, new RegExp(`\\nlayer ${l}\\s+-?\\d`));
    assert.match(o, '• Unpatched, the corrupted run gives');
    assert.not.match(o, /\x1b\[/, 'no colour codes when NO_COLOR is set and stdout is a pipe');
  });
});

test('CLI case 0: the first column equals the corrupted run (the shared prefix cannot differ)', async () => {
  await result('case0');
  const got = JSON.parse(fs.readFileSync(path.join(runs.get('case0')!.out, 'patching.json'), 'utf8'));
  for (const row of got.matrix) close(row[0], got.corrupt_logit_diff, 1e-5, 'matrix[l][0]');
  const last = got.matrix.at(-1).at(-1);
  close(last, got.clean_logit_diff, 1e-5, 'last layer, last position = the clean run');
});

test('CLI --help prints the usage with every option and exits 0', async () => {
  const r = await result('help');
  assert.is(r.code, 0);
  for (const opt of ['--model', '--weights', '--kernels', '--clean', '--corrupt', '--clean-token', '--corrupt-token', '--patch', '--scale', '--top', '--out', '--save-cache', '--engine', '--help']) {
    assert.match(r.stdout, opt);
  }
  assert.match(r.stdout, '[default: " Jones"]');
  assert.not.ok(fs.existsSync(runs.get('help')!.out));
});

for (const [name, , code, messages] of badInputs) {
  test(`CLI refuses ${name}: exit ${code}, a clear message, nothing written`, async () => {
    const r = await result(name);
    assert.is(r.code, code, `exit code; stderr: ${r.stderr}`);
    assert.match(r.stderr, /^error: /m);
    for (const m of messages) assert.match(r.stderr, m);
    const out = runs.get(name)!.out;
    assert.not.ok(fs.existsSync(out), `${out} was created`);
    assert.not.ok(fs.existsSync(path.dirname(out)) && fs.readdirSync(path.dirname(out)).length, 'something was written beside it');
  });
}

test('CLI refuses an --out that is a file, and leaves the file alone', async () => {
  const file = path.join(tmp, 'a-file');
  fs.writeFileSync(file, 'keep me');
  const r = await scheduled([...weights, '--out', file]);
  assert.is(r.code, 1);
  assert.match(r.stderr, 'exists and is not a folder');
  assert.is(fs.readFileSync(file, 'utf8'), 'keep me');
});

// -----------------------------------------------------------------------------------------------
// generate.ts helpers, in process

const bpe = new BPETokenizer();

test('targetTokenId: a single token gives its id', () => {
  assert.is(targetTokenId(bpe, ' Jones', '--clean-token'), 5437); // the assignment's table
  assert.is(targetTokenId(bpe, ' Smith', '--corrupt-token'), 4176);
});

test('targetTokenId: several tokens throw an InputError naming the pieces', () => {
  assert.throws(() => targetTokenId(bpe, ' Smithereens', '--x'), (e: Error) => e instanceof InputError && e.message.includes('4 tokens'));
});

test('tokenizeInputs: the assignment example has 11 tokens in each text and a leading-space note for "Jones"', () => {
  const t = tokenizeInputs(bpe, { clean: clean, corrupt: reference.cases[0].corrupt, cleanToken: 'Jones', corruptToken: ' Smith' });
  assert.is(t.clean_ids.length, 11);
  assert.is(t.corrupt_ids.length, 11);
  assert.is(t.notes.length, 1);
  assert.match(t.notes[0], 'has no leading space');
});

test('topTokens: probabilities are a softmax, sorted, ranks from 1', () => {
  const logits = new Float32Array(50257).fill(-10);
  logits[373] = 5; // " was"
  logits[5437] = 4; // " Jones"
  const top = topTokens(logits, 3);
  assert.equal(top.map((r) => [r.rank, r.id, r.token]), [[1, 373, ' was'], [2, 5437, ' Jones'], [3, 0, '!']]);
  const z = Math.exp(5) + Math.exp(4) + 50255 * Math.exp(-10);
  close(top[0].prob, Math.exp(5) / z, 1e-9, 'P(" was")');
});

test('readingAid: finds the strongest cell, the pale prefix and the direction', () => {
  // corrupted run prefers " Smith" by +2, clean run prefers " Jones" by -2
  const matrix = [
    [2, -1.5, 2, 2],
    [2, -1, 2, 1.9],
    [2, 2, 2, -2],
  ];
  const aid = readingAid({
    matrix, tokens: ['A', ' B', ' C', ' D'], clean_ids: [1, 2, 3, 4], corrupt_ids: [1, 9, 3, 4],
    clean_logit_diff: -2, corrupt_logit_diff: 2, cleanToken: ' Jones', corruptToken: ' Smith',
  }).join('\n');
  assert.match(aid, 'corrupted run gives +2.00 (it prefers " Smith") and the clean run -2.00 (it prefers " Jones")');
  assert.match(aid, 'the strongest cell is layer 0, position 1 (" B")');
  assert.match(aid, '(toward " Jones")');
  assert.match(aid, 'Position 0 comes before the first token that differs');
  assert.match(aid, 'At position 1 (" B"), patching layers 0, 1 recovers at least half of the gap');
  assert.match(aid, 'Patching position 2 moves the difference by less than 5%');
});

test('readingAid: identical runs say so instead of inventing structure', () => {
  const aid = readingAid({
    matrix: [[1, 1]], tokens: ['a', 'b'], clean_ids: [1, 2], corrupt_ids: [1, 2],
    clean_logit_diff: 1, corrupt_logit_diff: 1, cleanToken: ' x', corruptToken: ' y',
  });
  assert.match(aid.join(' '), 'practically the same difference');
});

// -----------------------------------------------------------------------------------------------
// cli/args.ts

const SPEC: CommandSpec = {
  usage: 'prog',
  options: {
    name: { type: 'string', default: 'x', help: 'a name' },
    count: { type: 'int', default: 3, min: 1, help: 'a count' },
    mode: { type: 'string', default: 'a', choices: ['a', 'b'], help: 'a mode' },
    loud: { type: 'boolean', help: 'a switch' },
  },
};

test('parseArgs: defaults, --opt value, --opt=value, switches, values that start with "-"', () => {
  const a = parseArgs([], SPEC);
  assert.equal({ ...a }, { name: 'x', count: 3, mode: 'a', loud: false, help: false });
  const b = parseArgs(['--name', '-leading dash', '--count=7', '--loud', '--mode', 'b'], SPEC);
  assert.equal({ ...b }, { name: '-leading dash', count: 7, mode: 'b', loud: true, help: false });
  assert.is(parseArgs(['--name='], SPEC).name, '');
  assert.ok(parseArgs(['-h'], SPEC).help);
});

test('parseArgs: every mistake is a UsageError that names the option', () => {
  const cases: [string[], string][] = [
    [['--nmae', 'y'], 'unknown option --nmae (did you mean --name?)'],
    [['--zzzzzz'], 'unknown option --zzzzzz'],
    [['--count', '2.5'], '--count expects a whole number'],
    [['--count', '0'], '--count must be at least 1'],
    [['--count', ''], '--count expects a number'],
    [['--mode', 'c'], '--mode must be one of a, b'],
    [['--name'], '--name needs a value'],
    [['--name', '--count', '2'], '--name needs a value'],
    [['--name', 'a', '--name', 'b'], '--name was given twice'],
    [['--loud=yes'], '--loud is a switch'],
    [['stray'], 'unexpected argument "stray"'],
    // names that every object answers to, but that are no options (issue #18, item 15)
    [['--toString', '5'], 'unknown option --toString'],
    [['--__proto__', '5'], 'unknown option --__proto__'],
    [['--constructor'], 'unknown option --constructor'],
    [['--hasOwnProperty=1'], 'unknown option --hasOwnProperty'],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseArgs(argv, SPEC), (e: Error) => e instanceof UsageError && e.message.includes(message), `${argv.join(' ')} → ${message}`);
  }
});

// The types are the test here: tsc (npm run typecheck, CI) fails if the result's type does not
// follow the spec, or if a line marked @ts-expect-error stops being an error.
const TYPED = {
  usage: 'prog',
  options: {
    n: { type: 'int', help: 'no default' },
    x: { type: 'number', default: 0.5, help: 'a default' },
    mode: { type: 'string', default: 'a', choices: ['a', 'b'], help: 'choices' },
    name: { type: 'string', help: 'text' },
    on: { type: 'boolean', help: 'a switch' },
  },
} as const satisfies CommandSpec;

test('parseArgs: the result is typed from the spec (no casts): choices, defaults, switches', () => {
  const a = parseArgs(['--n', '2', '--mode', 'b', '--on'], TYPED);
  const n: number | undefined = a.n;
  const x: number = a.x;
  const mode: 'a' | 'b' = a.mode;
  const name: string | undefined = a.name;
  const on: boolean = a.on;
  // @ts-expect-error: an option without a default may be absent
  const mustBeThere: number = a.n;
  // @ts-expect-error: there is no such option
  const unknown = a.nope;
  assert.equal([n, x, mode, name, on, mustBeThere, unknown], [2, 0.5, 'b', undefined, true, 2, undefined]);
});

test('a text-length mismatch names the counts and lists only the tokens around the difference (issue #18, item 15)', () => {
  const words = 'word '.repeat(20000);
  const err = (() => {
    try {
      tokenizeInputs(bpe, { clean: words + 'end', corrupt: words + 'Smithereens end', cleanToken: ' Jones', corruptToken: ' Smith' });
    } catch (e) {
      return e as Error;
    }
  })();
  assert.instance(err, InputError);
  assert.match(err!.message, 'the clean text has 20001 and the corrupted text 20005');
  assert.match(err!.message, '20000:␣end');
  assert.ok(err!.message.length < 2000, `a message of ${err!.message.length} characters`);
});

test('a long error message reaches a pipe whole before the process exits (issue #18, item 15)', () => {
  const script = `
    import { runCli } from ${JSON.stringify(path.join(ROOT, 'cli', 'command.ts'))};
    import { InputError } from ${JSON.stringify(path.join(ROOT, 'io', 'errors.ts'))};
    await runCli(async () => { throw new InputError('x'.repeat(1 << 20) + 'END'); }, 'cmd');
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', maxBuffer: 8 << 20 });
  assert.is(r.status, 1);
  assert.is(r.stderr.length, 'error: '.length + (1 << 20) + 'END\n'.length, 'the whole message');
  assert.ok(r.stderr.endsWith('END\n'));
});

test('helpText lists every option with its default, quoted when it is text', () => {
  const h = helpText(COMMAND);
  assert.match(h, 'usage: npx tsx generate.ts [options]');
  assert.match(h, '--clean TEXT');
  assert.match(h, `[default: ${JSON.stringify(clean)}]`);
  assert.match(h, '[default: 20]');
  assert.match(h, '--engine fast|reference');
  for (const line of h.split('\n')) assert.ok(line.length <= 100, `help line too long: ${line}`);
});

test('atomicWrite replaces a file whole and leaves no temporary file', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'atomic-'));
  const file = path.join(dir, 'f.txt');
  atomicWrite(file, 'one');
  atomicWrite(file, new Uint8Array([116, 119, 111]));
  assert.is(fs.readFileSync(file, 'utf8'), 'two');
  assert.equal(fs.readdirSync(dir), ['f.txt']);
  assert.throws(() => atomicWrite(path.join(dir, 'missing', 'g.txt'), 'x'));
  assert.equal(fs.readdirSync(dir), ['f.txt']);
});

test('OutputWriter: nothing on disk before commit, everything after, in a new nested folder', () => {
  const dir = path.join(tmp, 'writer', 'a', 'b');
  const w = new OutputWriter(dir);
  w.add('x.json', '{}');
  w.add('y.bin', new Uint8Array([1, 2, 3]));
  assert.not.ok(fs.existsSync(path.join(tmp, 'writer')));
  const written = w.commit();
  assert.equal(written, [path.join(dir, 'x.json'), path.join(dir, 'y.bin')]);
  assert.equal(fs.readdirSync(dir).sort(), ['x.json', 'y.bin']);
  assert.throws(() => w.add('../escape', 'x'));
});

test('OutputWriter: a failure while writing removes the temporary files and the folder it made', () => {
  const parent = path.join(tmp, 'writer-fail');
  const w = new OutputWriter(path.join(parent, 'out'));
  w.add('good.txt', 'fine');
  w.add('bad.txt', 42 as unknown as string); // writeFileSync refuses a number
  assert.throws(() => w.commit());
  assert.not.ok(fs.existsSync(parent), 'the folders commit created are gone');
});

test('OutputWriter: an existing folder keeps its other files when a write fails', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'writer-keep-'));
  fs.writeFileSync(path.join(dir, 'old.txt'), 'old');
  fs.mkdirSync(path.join(dir, 'in-the-way.txt'));
  const w = new OutputWriter(dir);
  w.add('new.txt', 'new');
  w.add('in-the-way.txt', 'x');
  assert.throws(() => w.commit(), (e: Error) => e instanceof InputError && e.message.includes('not a file'));
  assert.equal(fs.readdirSync(dir).sort(), ['in-the-way.txt', 'old.txt']);
});

test('OutputWriter.check: a folder under a file, or in /proc, is refused at once with InputError naming it', () => {
  const file = path.join(fs.mkdtempSync(path.join(tmp, 'writer-check-')), 'plain.txt');
  fs.writeFileSync(file, 'keep');
  const under = new OutputWriter(path.join(file, 'sub', 'dir'));
  assert.throws(() => under.check(), (e: Error) => e instanceof InputError && e.message.includes(file) && e.message.includes('is a file'));
  under.add('x.txt', 'x');
  assert.throws(() => under.commit(), (e: Error) => e instanceof InputError);
  assert.is(fs.readFileSync(file, 'utf8'), 'keep');
  new OutputWriter(path.join(tmp, 'not-yet', 'made')).check(); // a missing folder under a writable one is fine
  assert.not.ok(fs.existsSync(path.join(tmp, 'not-yet')), 'check creates nothing');
  if (process.platform === 'linux') {
    // Node 20's recursive mkdir never returns here; ours stops with a message
    const proc = new OutputWriter('/proc/mingpt-nope/out');
    proc.add('x.txt', 'x');
    assert.throws(() => proc.commit(), (e: Error) => e instanceof InputError && e.message.includes('/proc/mingpt-nope'));
  }
});

// -----------------------------------------------------------------------------------------------
// cli/terminal.ts

test('colorDepth: FORCE_COLOR wins, then NO_COLOR, then whether the stream is a terminal', () => {
  const tty = { isTTY: true, getColorDepth: () => 8 };
  const pipe = { isTTY: false };
  assert.is(colorDepth(tty, {}), 8);
  assert.is(colorDepth(tty, { COLORTERM: 'truecolor' }), 24);
  assert.is(colorDepth(pipe, {}), 0);
  assert.is(colorDepth(tty, { NO_COLOR: '1' }), 0);
  assert.is(colorDepth(tty, { NO_COLOR: '' }), 8, 'an empty NO_COLOR does not count');
  assert.is(colorDepth(pipe, { FORCE_COLOR: '1' }), 8);
  assert.is(colorDepth(pipe, { FORCE_COLOR: '3' }), 24);
  assert.is(colorDepth(tty, { FORCE_COLOR: '0' }), 0);
  assert.is(colorDepth(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' }), 8);
  assert.is(colorDepth({ isTTY: true, getColorDepth: () => 4 }, { TERM: 'xterm' }), 4, 'a 16-colour terminal (TERM=xterm) gets the 16-colour palette');
  assert.is(colorDepth({ isTTY: true, getColorDepth: () => 1 }, {}), 0, 'a monochrome terminal gets plain text');
});

test('visibleToken and displayWidth', () => {
  assert.is(visibleToken(' Jones'), '␣Jones');
  assert.is(visibleToken('\n\n'), '↵↵');
  assert.is(visibleToken('\x00'), '\\x00');
  assert.is(displayWidth('か'), 2);
  assert.is(displayWidth('\x1b[1mab\x1b[0m'), 2);
});

test('formatTokenList: index:token pairs, wrapped, differing positions bold only with colour', () => {
  assert.is(formatTokenList(['Michelle', ' Jones', '.']), '0:Michelle 1:␣Jones 2:.');
  assert.is(formatTokenList(['aaaa', 'bbbb', 'cccc'], { width: 13 }), '0:aaaa 1:bbbb\n2:cccc');
  const coloured = formatTokenList(['a', ' b'], { highlight: new Set([1]), color: 8 });
  assert.match(coloured, '\x1b[1;4m1:␣b');
  assert.is(stripAnsi(coloured), '0:a 1:␣b');
});

test('formatTopTable: aligned columns, 4-decimal probabilities, marks on chosen ids', () => {
  const rows = [
    { rank: 1, id: 373, token: ' was', prob: 0.1634 },
    { rank: 2, id: 5437, token: ' Jones', prob: 0.1396 },
    { rank: 3, id: 27370, token: 'か', prob: 0.01 },
  ];
  const lines = formatTopTable(rows, { marks: new Map([[5437, '← clean target']]) }).split('\n');
  assert.match(lines[0], /rank\s+token id\s+token\s+probability/);
  assert.match(lines[1], /^\s+1\s+373\s+"␣was"\s+0\.1634\s+█+$/);
  assert.match(lines[2], /0\.1396\s+█+\s+← clean target$/);
  // the probability column lines up even after a double-width token
  const col = (l: string) => displayWidth(l.slice(0, l.indexOf('0.')));
  assert.is(col(lines[3]), col(lines[1]));
});

test('formatHeatmap: plain numbers without colour, ANSI cells and a legend with colour', () => {
  const m = [[0, -1.5], [2, 0.25]];
  const opts = { rowLabels: ['layer 0', 'layer 1'], columnLabels: ['A', ' B'], negativeLabel: 'clean', positiveLabel: 'corrupt' };
  const plain = formatHeatmap(m, opts);
  assert.not.match(plain, /\x1b/);
  assert.match(plain, /layer 0\s+0\.00\s+-1\.50/);
  assert.match(plain, /layer 1\s+\+2\.00\s+\+0\.25/);
  assert.match(plain, 'negative (-2.00 … 0) = clean; positive (0 … +2.00) = corrupt');
  const coloured = formatHeatmap(m, { ...opts, color: 24 });
  assert.match(coloured, '\x1b[48;2;153;74;7m', 'the largest value gets the darkest orange');
  assert.match(coloured, /legend: ← clean -2\.00 .*\+2\.00 corrupt →/);
  assert.match(stripAnsi(coloured), /layer 1\s+\+2\.00/);
});

test('formatHeatmap: a grid too wide for numbers keeps one coloured block per cell and lists the tokens below', () => {
  const T = 60;
  const m = [Array.from({ length: T }, (_, i) => i - 30)];
  const out = formatHeatmap(m, { rowLabels: ['layer 0'], columnLabels: Array(T).fill(' x'), color: 8, width: 100 });
  const row = out.split('\n').find((l) => l.startsWith('layer 0'))!;
  assert.is((row.match(/\x1b\[48;5;\d+m/g) ?? []).length, T);
  assert.ok(displayWidth(row) <= 100, `row is ${displayWidth(row)} columns wide`);
  assert.match(out, 'columns: 0:␣x 1:␣x');
});

test.run();
