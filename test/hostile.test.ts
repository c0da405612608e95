// Small hostile inputs of issues #13 and #18 that belong to no larger file: seeds beyond the RNG's
// 32 bits, the tokenizer's memo on a text of endlessly many distinct words, `--out ''`, and (#18)
// the command line's refusals before any work: --save-cache paths that would destroy a file,
// texts too long, a config.json that is a FIFO, a message longer than a pipe holds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, SEED_MAX, type CommandSpec } from '../cli/args.ts';
import { InputError, UsageError } from '../io/errors.ts';
import { get_encoder, BPE_CACHE_MAX, BPETokenizer } from '../mingpt/bpe.ts';
import type { GPT } from '../mingpt/model.ts';
import { checkAgainstModel, tokenizeInputs, topTokens } from '../assignments/activation-patching/experiment.ts';
import { runScript } from './run_script.ts';
import { FIXTURE_ARG } from './helpers.ts';

const SPEC: CommandSpec = {
  usage: 'x',
  options: {
    seed: { type: 'int', default: 0, min: 0, help: 'seed' },
    count: { type: 'int', default: 1, help: 'a count' },
    small: { type: 'int', default: 1, max: 10, help: 'at most 10' },
  },
};

test('--seed above 2^32 - 1 is refused (the RNG keeps 32 bits: 2^32 would quietly be seed 0)', () => {
  assert.is(SEED_MAX, 4294967295);
  assert.is(parseArgs(['--seed', '4294967295'], SPEC).seed, 4294967295);
  for (const big of ['4294967296', '1e12']) {
    assert.throws(() => parseArgs(['--seed', big], SPEC), (e: Error) => e instanceof UsageError && e.message.includes('--seed must be at most 4294967295'));
  }
  // an explicit max still wins, and any int beyond 2^53 is refused as inexact
  assert.throws(() => parseArgs(['--small', '11'], SPEC), (e: Error) => e instanceof UsageError && e.message.includes('at most 10'));
  assert.throws(() => parseArgs(['--count', '1e300'], SPEC), (e: Error) => e instanceof UsageError && e.message.includes('too large'));
  assert.is(parseArgs(['--count', String(2 ** 40)], SPEC).count, 2 ** 40);
});

test('the BPE memo stays bounded on a text of many distinct words, and encoding stays right', () => {
  const enc = get_encoder();
  enc.cache.clear();
  // 3 * BPE_CACHE_MAX distinct words ("qa", "qb", ... in base 26)
  const words: string[] = [];
  for (let i = 0; words.length < 3 * BPE_CACHE_MAX; i++) words.push('q' + i.toString(26).replace(/./g, (d) => String.fromCharCode(97 + parseInt(d, 26))));
  enc.encode(words.join(' '));
  assert.ok(enc.cache.size <= BPE_CACHE_MAX, `cache holds ${enc.cache.size} words`);
  // a forgotten word is merged again to the same tokens: "hello world" is GPT-2's [31373, 995]
  enc.cache.clear();
  assert.equal(enc.encode('hello world'), [31373, 995]);
  for (let i = 0; i < BPE_CACHE_MAX; i++) enc.bpe('Ġw' + i);
  assert.equal(enc.encode('hello world'), [31373, 995]);
});

test('generate.ts --out \'\' is refused with a message, exit 1, nothing written in the current folder', async () => {
  const before = fs.readdirSync(process.cwd()).sort();
  const r = await runScript('generate.ts', ['--weights', FIXTURE_ARG, '--out', '']);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /output folder name is empty/);
  assert.equal(fs.readdirSync(process.cwd()).sort(), before);
});

// ------------------------------------------------------------------------------------------------
// issue 18

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = path.join(root, 'test', 'fixtures', 'gpt2-tiny');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mingpt-hostile-test-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const W = ['--weights', FIXTURE];

test('--save-cache onto the checkpoint being loaded is refused before the run; the checkpoint stays intact (item 3)', async () => {
  const ck = path.join(tmp, 'ck');
  fs.cpSync(FIXTURE, ck, { recursive: true });
  const before = crypto.createHash('sha256').update(fs.readFileSync(path.join(ck, 'model.safetensors'))).digest('hex');
  const r = await runScript('generate.ts', ['--weights', ck, '--out', path.join(tmp, 'o3'), '--save-cache', path.join(ck, 'model.safetensors')]);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /a file the model is read from: writing the cache there would destroy it/);
  assert.not.match(r.stdout, /model: /, 'refused before the model was loaded');
  const after = crypto.createHash('sha256').update(fs.readFileSync(path.join(ck, 'model.safetensors'))).digest('hex');
  assert.is(after, before);
  assert.not.ok(fs.existsSync(path.join(tmp, 'o3')));
});

test('--save-cache onto a file of the output set, or onto a folder, is refused before the run (item 3)', async () => {
  const out = path.join(tmp, 'o3b');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'patching.json'), 'an earlier result');
  const cases: [string, RegExp][] = [
    [path.join(out, 'patching.json'), /would be in the output folder .* under a name its results may use/],
    [out, /is a folder; the cache is one file/],
    [path.join(tmp, 'new-folder') + '/', /is a folder; the cache is one file/],
  ];
  const results = await Promise.all(cases.map(([cache]) => runScript('generate.ts', [...W, '--out', out, '--save-cache', cache])));
  results.forEach((r, i) => {
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, cases[i][1]);
    assert.not.match(r.stdout, /model: /, 'refused before the model was loaded');
  });
  assert.equal(fs.readdirSync(out), ['patching.json']);
  assert.is(fs.readFileSync(path.join(out, 'patching.json'), 'utf8'), 'an earlier result');
  assert.not.ok(fs.existsSync(path.join(tmp, 'new-folder')));
});

test('a text of 100,000 characters in one word is refused by its length before tokenizing (item 8)', async () => {
  const word = 'ab'.repeat(50_000);
  const r = await runScript('generate.ts', [...W, '--clean', word, '--corrupt', word]);
  assert.is(r.code, 1, r.stderr);
  // the tiny model's context is 64 tokens; a token stands for at most 128 bytes
  assert.match(r.stderr, /the clean text \(--clean\) is 100000 bytes long: no GPT-2 token stands for more than 128 bytes, so it is at least 782 tokens, more than the 64 positions/);
});

test('a token-count mismatch of two 120 KB texts gives a short message, whole through a pipe (item 15)', async () => {
  const clean = 'x '.repeat(60_000) + 'x'; // "x", then " x" 60,000 times: 60,001 tokens
  const r = await runScript('generate.ts', ['--model', 'gpt2', '--clean', clean, '--corrupt', clean + ' y'],
    { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: path.join(tmp, 'no-hub'), HF_HOME: path.join(tmp, 'no-home') });
  assert.is(r.code, 1, r.stderr.slice(0, 500));
  assert.ok(r.stderr.length < 4000, `the message is ${r.stderr.length} characters`);
  assert.match(r.stderr, /the clean text has 60001 and the corrupted text 60002 \(they differ first at token 60001\)/);
  assert.match(r.stderr, /Change a word for one that splits into as many tokens as the word it replaces\.\n/);
});

test('runCli: an error message longer than a pipe holds reaches the reader whole before the exit (item 15)', () => {
  const script = `
    import { runCli } from ${JSON.stringify(path.join(root, 'cli', 'command.ts'))};
    import { InputError } from ${JSON.stringify(path.join(root, 'io', 'errors.ts'))};
    await runCli(async () => { throw new InputError('x'.repeat(600000) + ' END'); }, 'x');
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', maxBuffer: 4e6 });
  assert.is(r.status, 1);
  assert.is(r.stderr.length, 'error: '.length + 600000 + ' END\n'.length);
  assert.ok(r.stderr.endsWith(' END\n'));
});

test('a config.json that is a FIFO is refused at once by what it is, instead of hanging (item 9)', () => {
  const dir = path.join(tmp, 'fifo-ck');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIXTURE, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  const made = spawnSync('mkfifo', [path.join(dir, 'config.json')]);
  if (made.status !== 0) return; // no mkfifo here
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'generate.ts', '--weights', dir, '--out', path.join(tmp, 'o9')],
    { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, MINGPT_QUIET: '1', NO_COLOR: '1' } });
  assert.is(r.signal, null, 'it did not hang (killed after 60 s)');
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /config\.json is a FIFO \(named pipe\), not a config\.json file/);
});

test('token ids of the texts beyond the checkpoint\'s vocabulary are refused before running (item 7)', () => {
  const t = tokenizeInputs(new BPETokenizer(), { clean: 'Michelle Jones was here', corrupt: 'Michelle Smith was here', cleanToken: ' A', corruptToken: ' B' });
  const small = { block_size: 64, config: { vocab_size: 1000 } } as unknown as GPT;
  // GPT-2's ids: "Michelle" 48736, " Jones" 5437 (both past 1000)
  assert.throws(() => checkAgainstModel(t, small), (e: Error) => e instanceof InputError
    && e.message.includes('the clean text (--clean) has token 0, "Michelle" (id 48736), outside this model\'s vocabulary of 1000 tokens'));
});

test('a padded vocabulary (50304 rows, nanoGPT style): the padded rows are no tokens and never listed (item 7)', () => {
  const logits = new Float32Array(50304);
  logits.fill(-10);
  for (let i = 50257; i < 50304; i++) logits[i] = 50; // the padding would win everything
  logits[464] = 5; // "The"
  logits[11] = 4; // ","
  const top = topTokens(logits, 3);
  assert.equal(top.map((r) => r.id), [464, 11, 0]);
  assert.ok(top[0].prob > 0.7, `P(The) ${top[0].prob}: the padding takes no probability`);
});

test('circuits --batch: refused above 4096, and above what fits in step 7\'s 1 GiB, with the limit named (item 10)', async () => {
  const [big, heavy] = await Promise.all([
    runScript('assignments/circuits/circuits.ts', [...W, '--batch', '100000', '--out', path.join(tmp, 'c1')]),
    runScript('assignments/circuits/circuits.ts', [...W, '--batch', '4000', '--seq-len', '30', '--out', path.join(tmp, 'c2')]),
  ]);
  assert.is(big.code, 2, big.stderr);
  assert.match(big.stderr, /--batch must be at most 4096 \(got 100000\)/);
  // per sequence: 4 bytes × (30 positions × 50257 logits + 61 positions × 3 layers × 20 × 32 activations) = 6,499,320 bytes; 2^30 / that = 165.2
  assert.is(heavy.code, 1, heavy.stderr);
  assert.match(heavy.stderr, /at most 165 fit in the 1 GiB it may use: give --batch 165 or fewer/);
  assert.not.ok(fs.existsSync(path.join(tmp, 'c2')));
});

test.run();
