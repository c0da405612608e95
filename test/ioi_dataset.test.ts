// Tests for assignments/ioi/dataset.ts, the IOI prompts. Expected values come from the GPT-2
// tokenizer itself (every name, place and object one token), from a sentence tokenized by hand
// (the positions), and from the fixture test/fixtures/ioi-group.json with the token ids the
// independent PyTorch implementation recorded in test/fixtures/gpt2-tiny/analysis.json.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { InputError } from '../io/errors.ts';
import {
  NAMES, OBJECTS, PLACES, TEMPLATES, fillTemplate, loadPromptsFile, makeDataset, parsePrompts, tokenizePrompts, type IOIPrompt,
} from '../assignments/ioi/dataset.ts';
import { ANALYSIS, IOI_GROUP_FILE, tempDir } from './helpers.ts';

const tok = new BPETokenizer();
const tmp = tempDir('ioi-dataset-test-');

/** The InputError message `fn` throws (fails the test if it throws nothing or something else). */
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.instance(err, InputError, `expected an InputError, got ${err}`);
    return (err as Error).message;
  }
  assert.unreachable('expected an InputError');
  return '';
}

test('every name, place and object is one GPT-2 token with its leading space', () => {
  for (const list of [NAMES, PLACES, OBJECTS]) {
    for (const w of list) assert.is(tok.encode(' ' + w).length, 1, `" ${w}" is ${tok.encode(' ' + w).length} tokens`);
    assert.is(new Set(list).size, list.length, 'no duplicates');
  }
  assert.ok(NAMES.length >= 50);
  // the objects follow "a", so none may start with a vowel
  for (const o of OBJECTS) assert.not.match(o, /^[aeiou]/i);
});

test('fifteen templates of the paper\'s form: B, A, then B again, ending before the answer', () => {
  assert.is(TEMPLATES.length, 15);
  for (const t of TEMPLATES) {
    assert.is(t.match(/\[B\]/g)?.length, 2, t);
    assert.is(t.match(/\[A\]/g)?.length, 1, t);
    assert.ok(t.indexOf('[B]') < t.indexOf('[A]') && t.indexOf('[A]') < t.lastIndexOf('[B]'), t);
    assert.not.match(t, /^\[/); // a name never starts the text (it would lack its leading space)
  }
});

test('positions on a sentence tokenized by hand', () => {
  const clean = fillTemplate(TEMPLATES[0], 'John', 'Mary', 'John', 'store', 'drink');
  assert.is(clean, 'Then, John and Mary went to the store. John gave a drink to');
  // Then , ␣John ␣and ␣Mary ␣went ␣to ␣the ␣store . ␣John ␣gave ␣a ␣drink ␣to
  //  0   1   2     3     4     5    6    7     8   9   10    11   12   13    14
  const corrupt = fillTemplate(TEMPLATES[0], 'Tom', 'Anna', 'Paul', 'store', 'drink');
  const [g] = tokenizePrompts([{ clean, corrupt, io: ' Mary', s: ' John' }], tok);
  assert.is(g.T, 15);
  const p = g.prompts[0];
  assert.equal(p.pos, { IO: 4, S1: 2, S1p1: 3, S2: 10, END: 14 });
  assert.is(p.io_id, 5335); // " Mary"
  assert.is(p.s_id, 1757); // " John"
  // the BABA order: the subject first
  const [g2] = tokenizePrompts([{ clean: fillTemplate(TEMPLATES[0], 'Mary', 'John', 'John', 'store', 'drink'), corrupt, io: ' Mary', s: ' John' }], tok);
  assert.equal(g2.prompts[0].pos, { IO: 2, S1: 4, S1p1: 5, S2: 10, END: 14 });
});

test('makeDataset: groups of one token length per template, ABBA and BABA, all positions found', () => {
  const prompts = makeDataset({ n: 150, seed: 0 });
  assert.is(prompts.length, 150);
  const groups = tokenizePrompts(prompts, tok);
  assert.is(groups.length, 15);
  for (const g of groups) {
    assert.is(g.prompts.length, 10, g.key);
    for (const p of g.prompts) {
      assert.is(p.clean_ids.length, g.T);
      assert.is(p.corrupt_ids.length, g.T);
      assert.is(p.pos.END, g.T - 1);
      assert.is(p.clean_ids[p.pos.IO], p.io_id);
      assert.is(p.clean_ids[p.pos.S1], p.s_id);
      assert.is(p.clean_ids[p.pos.S2], p.s_id);
      assert.is(p.clean_ids[g.T - 1], tok.encode(' to')[0]); // every template ends with " to"
      // ABBA: the IO is named first; BABA: the subject
      assert.is(p.pos.IO < p.pos.S1, p.prompt.order === 'ABBA');
    }
    assert.is(g.prompts.filter((p) => p.prompt.order === 'ABBA').length, 5);
  }
});

test('ABC twins: the same sentence with three other distinct names in the three name slots', () => {
  for (const g of tokenizePrompts(makeDataset({ n: 60, seed: 3 }), tok)) {
    for (const p of g.prompts) {
      const slots = [p.pos.IO, p.pos.S1, p.pos.S2].sort((a, b) => a - b);
      const differ = p.clean_ids.map((id, t) => (id !== p.corrupt_ids[t] ? t : -1)).filter((t) => t >= 0);
      assert.equal(differ, slots, `${p.prompt.clean} / ${p.prompt.corrupt}`);
      const abc = slots.map((t) => p.corrupt_ids[t]);
      assert.is(new Set(abc).size, 3);
      assert.ok(!abc.includes(p.io_id) && !abc.includes(p.s_id));
    }
  }
});

test('seeded: the same seed gives the same prompts, another seed others', () => {
  const a = makeDataset({ n: 40, seed: 7 }), b = makeDataset({ n: 40, seed: 7 }), c = makeDataset({ n: 40, seed: 8 });
  assert.equal(a, b);
  assert.ok(a.some((p, i) => p.clean !== c[i].clean));
});

test('makeDataset restricted to a few names and templates uses only those', () => {
  const names = ['Mary', 'John', 'Tom', 'James', 'Sarah'];
  const prompts = makeDataset({ n: 20, seed: 1, names, templates: [0, 5] });
  const ids = new Set(names.map((n) => tok.encode(' ' + n)[0]));
  for (const g of tokenizePrompts(prompts, tok)) {
    assert.ok(g.key === 'template 0' || g.key === 'template 5');
    for (const p of g.prompts) for (const t of [p.pos.IO, p.pos.S1, p.pos.S2]) assert.ok(ids.has(p.clean_ids[t]) && ids.has(p.corrupt_ids[t]));
  }
  assert.match(messageOf(() => makeDataset({ n: 4, seed: 0, names: names.slice(0, 4) })), /5 different names/);
  assert.match(messageOf(() => makeDataset({ n: 4, seed: 0, templates: [15] })), /template 15 does not exist/);
});

test('ioi-group.json loads as one group of 4 prompts, T = 14, with the reference token ids', () => {
  const prompts = loadPromptsFile(IOI_GROUP_FILE);
  const groups = tokenizePrompts(prompts, tok);
  assert.is(groups.length, 1);
  const [g] = groups;
  assert.is(g.T, 14);
  assert.is(g.prompts.length, 4);
  const ref = ANALYSIS.knockout;
  assert.equal(g.prompts.map((p) => [p.clean_ids, p.corrupt_ids]), ref.group_ids);
  assert.equal(g.prompts.map((p) => p.io_id), ref.io_ids);
  assert.equal(g.prompts.map((p) => p.s_id), ref.s_ids);
  // "When Mary and John went to the store, John gave a drink to": IO 1, S1 3, S2 9, END 13
  assert.equal(g.prompts[0].pos, { IO: 1, S1: 3, S1p1: 4, S2: 9, END: 13 });
  assert.equal(g.prompts[1].pos, { IO: 3, S1: 1, S1p1: 2, S2: 9, END: 13 });
});

test('the --prompts format: a plain list, or an object with "prompts"; "group" splits lengths', () => {
  const list: IOIPrompt[] = [
    { clean: 'When Mary and John went to the store, John gave a drink to', corrupt: 'When Tom and James went to the store, Sarah gave a drink to', io: ' Mary', s: ' John' },
    { clean: 'Then, Tom and Anna went to the park. Tom gave a book to', corrupt: 'Then, Paul and David went to the park. James gave a book to', io: ' Anna', s: ' Tom', group: 'b' } as IOIPrompt,
  ];
  const file = path.join(tmp, 'list.json');
  fs.writeFileSync(file, JSON.stringify(list));
  const loaded = loadPromptsFile(file);
  assert.is(loaded[1].group, 'b');
  const groups = tokenizePrompts(loaded, tok);
  assert.equal(groups.map((g) => [g.key, g.T]), [['all', 14], ['b', 15]]);
  fs.writeFileSync(file, JSON.stringify({ prompts: list, circuit: ['0.1'] }));
  assert.is(loadPromptsFile(file).length, 2);
  // the same two prompts with no group: unequal lengths
  assert.match(messageOf(() => tokenizePrompts(list.map(({ clean, corrupt, io, s }) => ({ clean, corrupt, io, s })), tok)),
    /prompt 1 is 15 tokens but prompt 0 is 14: all of the prompts \(none has a "group" field\) must have one token length/);
});

test('bad --prompts files and bad prompts get messages naming the prompt and the problem', () => {
  const write = (name: string, text: string) => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, text);
    return f;
  };
  assert.match(messageOf(() => loadPromptsFile(path.join(tmp, 'missing.json'))), /cannot read the prompts file .*missing\.json: ENOENT/);
  assert.match(messageOf(() => loadPromptsFile(write('bad.json', '[{"clean": '))), /bad\.json is not valid JSON/);
  assert.match(messageOf(() => loadPromptsFile(write('obj.json', '{"cases": []}'))), /expected a JSON list of prompts/);
  assert.match(messageOf(() => loadPromptsFile(write('empty.json', '[]'))), /the list of prompts is empty/);
  assert.match(messageOf(() => loadPromptsFile(write('field.json', '[{"clean": "a", "corrupt": "b", "io": " Mary"}]'))), /prompt 0 has no "s" text/);
  assert.match(messageOf(() => parsePrompts([1])), /prompt 0 is not an object/);

  const good = { clean: 'When Mary and John went to the store, John gave a drink to', corrupt: 'When Tom and James went to the store, Sarah gave a drink to', io: ' Mary', s: ' John' };
  const bad = (change: Partial<IOIPrompt>) => messageOf(() => tokenizePrompts([good, { ...good, ...change }], tok));
  assert.match(bad({ io: ' Maryanne' }), /prompt 1: the indirect object \(io\) " Maryanne" is 2 tokens, it must be one/);
  assert.match(bad({ s: 'John and' }), /prompt 1: the subject \(s\) "John and" is 2 tokens/);
  assert.match(bad({ io: ' John' }), /prompt 1: io and s are the same name/);
  assert.match(bad({ io: ' Anna' }), /prompt 1: the indirect object " Anna" occurs 0 times .* it must occur once/);
  assert.match(bad({ clean: 'When Mary and John went to the store, Tom gave a drink to' }), /prompt 1: the subject " John" occurs 1 times .* it must occur twice/);
  assert.match(bad({ io: 'Mary' }), /prompt 1: the indirect object "Mary" occurs 0 times/); // no leading space: another token
  assert.match(bad({ corrupt: 'When Tom and James went to the big store, Sarah gave a drink to' }),
    /prompt 1: the clean text is 14 tokens but the corrupt text is 15/);
  assert.match(bad({ clean: 'When Mary and John went to the store, Mary gave a drink to John', corrupt: 'When Tom and James went to the store, Tom gave a drink to Sarah', io: ' Mary', s: ' John' }),
    /prompt 1: the indirect object " Mary" occurs 2 times/);
  assert.match(bad({ clean: 'When Mary and John went to the store and saw John', corrupt: 'When Tom and James went to the store and saw Sarah' }),
    /prompt 1: the clean text ends with the subject's second mention/);
});

test.run();
