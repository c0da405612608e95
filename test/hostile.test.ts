// Small hostile inputs of issue #13 that belong to no larger file: seeds beyond the RNG's 32 bits,
// the tokenizer's memo on a text of endlessly many distinct words, and `--out ''` on a real script.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import { parseArgs, SEED_MAX, type CommandSpec } from '../cli/args.ts';
import { UsageError } from '../io/errors.ts';
import { get_encoder, BPE_CACHE_MAX } from '../mingpt/bpe.ts';
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

test.run();
