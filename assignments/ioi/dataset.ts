/**
 * The prompts of the indirect-object-identification (IOI) experiment, after Wang et al. 2022,
 * "Interpretability in the Wild" (arXiv 2211.00593).
 *
 * An IOI prompt introduces two people and then has one of them (the subject, S) do something
 * for the other (the indirect object, IO); the sentence stops just before the IO's name:
 *
 *     "Then, John and Mary went to the store. John gave a drink to"       -> " Mary"
 *
 * The metric is logit(IO) − logit(S) at the last position (END). Each prompt has an "ABC twin":
 * the same sentence with three other distinct names in the three name slots, so nothing in it
 * says which name is the answer. The experiments use the twins as the corrupted runs and as the
 * reference for mean ablation.
 *
 * This module is a library: it makes prompts (`makeDataset`), reads them from a file
 * (`loadPromptsFile`, the format of `--prompts FILE`) and turns them into token ids grouped by
 * token length, with the positions of IO, S1, S1+1, S2 and END (`tokenizePrompts`). Bad prompts
 * are refused with a message that names the prompt and the problem (an InputError).
 */
import fs from 'node:fs';
import { RNG } from '../../mingpt/utils.ts';
import { InputError } from '../../io/errors.ts';
import { notRegularFile } from '../../io/files.ts';
import { quotedText, shown } from '../../io/show.ts';

// -----------------------------------------------------------------------------------------------
// Templates, names, places and objects

/**
 * Fifteen sentence templates in the paper's form, written in their "BABA" order: the subject B
 * is named first, the indirect object A second, then B again. The "ABBA" prompt of a template
 * swaps the first two names. Every template starts with a word (so every name has its leading
 * space) and ends right before the IO's name would come.
 */
export const TEMPLATES: readonly string[] = [
  'Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to',
  'Then, [B] and [A] had a great time at the [PLACE]. [B] handed a [OBJECT] to',
  'Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to',
  'Then, [B] and [A] were planning a trip to the [PLACE]. [B] wanted to give a [OBJECT] to',
  'Then, [B] and [A] had a long argument, and afterwards [B] said to',
  'After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to',
  'When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to',
  'When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to',
  'While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to',
  'While [B] and [A] were walking to the [PLACE], [B] gave a [OBJECT] to',
  'After lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to',
  'Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to',
  'Then, [B] and [A] had a long argument. Afterwards [B] said to',
  'The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to',
  'Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to',
];

/**
 * First names, each a single GPT-2 token when written with its leading space (" Mary" is one
 * token; test/ioi_dataset.test.ts checks every one with the tokenizer). Names that are also
 * common words (Mark, Rose, Grace, Bill, Max...) are left out, so a name is only ever a name.
 */
export const NAMES: readonly string[] = [
  'Mary', 'John', 'Tom', 'James', 'Sarah', 'Paul', 'Anna', 'David', 'Michael', 'Robert',
  'William', 'Richard', 'Thomas', 'Charles', 'Daniel', 'Matthew', 'Steven', 'Andrew', 'Kevin', 'Brian',
  'George', 'Edward', 'Jason', 'Ryan', 'Jacob', 'Eric', 'Jonathan', 'Stephen', 'Justin', 'Scott',
  'Peter', 'Adam', 'Henry', 'Kate', 'Lisa', 'Emma', 'Laura', 'Amy', 'Rachel', 'Emily',
  'Alice', 'Susan', 'Karen', 'Nancy', 'Helen', 'Sandra', 'Carol', 'Ruth', 'Sharon', 'Michelle',
  'Linda', 'Elizabeth', 'Jennifer', 'Maria', 'Jessica', 'Martin', 'Patrick', 'Alex', 'Chris', 'Joe',
  'Mike', 'Jim', 'Tim', 'Lucy', 'Jane', 'Anne', 'Julia', 'Victoria', 'Claire', 'Sophie',
  'Ian', 'Sean', 'Carl', 'Roger', 'Arthur', 'Tony', 'Harry', 'Simon', 'Louis', 'Dave',
];

/** Places, one GPT-2 token each with the leading space, so every prompt of a template has one length. */
export const PLACES: readonly string[] = [
  'store', 'garden', 'restaurant', 'school', 'hospital', 'office', 'house', 'park', 'station', 'market',
  'beach', 'library', 'church', 'hotel', 'museum', 'airport', 'zoo', 'farm', 'gym', 'mall',
];

/** Objects, one GPT-2 token each; none starts with a vowel, since the templates say "a [OBJECT]". */
export const OBJECTS: readonly string[] = [
  'drink', 'ring', 'kiss', 'bone', 'basketball', 'computer', 'necklace', 'snack', 'book', 'ball',
  'letter', 'bag', 'cup', 'hat', 'gift', 'card', 'toy', 'flower', 'phone', 'cake',
];

// -----------------------------------------------------------------------------------------------
// Prompts

/** One IOI prompt as text. `io` and `s` are the names as tokens, with their leading space. */
export interface IOIPrompt {
  clean: string;
  /** the ABC twin: the same sentence with three other distinct names */
  corrupt: string;
  io: string;
  s: string;
  /** index into TEMPLATES, for generated prompts */
  template?: number;
  /** which name comes first: 'ABBA' (the IO) or 'BABA' (the subject), for generated prompts */
  order?: 'ABBA' | 'BABA';
  /** prompts with the same group are batched together and must have one token length */
  group?: string;
}

export interface DatasetOptions {
  /** how many prompts (spread evenly over the templates, half ABBA and half BABA) */
  n: number;
  seed: number;
  /** indices into TEMPLATES (default: all fifteen) */
  templates?: readonly number[];
  /** the names to draw from (default NAMES); at least 5, since a prompt and its twin use 5 */
  names?: readonly string[];
  places?: readonly string[];
  objects?: readonly string[];
}

/** The key of the group a generated prompt of template `t` belongs to. */
export function templateGroup(t: number): string {
  return `template ${t}`;
}

/**
 * A template with its slots filled in: first, second and third name slot, place and object,
 * each given as a plain word (the template has the space before every slot).
 */
export function fillTemplate(template: string, first: string, second: string, third: string, place: string, object: string): string {
  // [B] occurs twice in a template: the first time in the first name slot, the second time in
  // the third. [A] is the second slot.
  let k = 0;
  return template
    .replace(/\[B\]/g, () => (k++ === 0 ? first : third))
    .replace(/\[A\]/g, second)
    .replace(/\[PLACE\]/g, place)
    .replace(/\[OBJECT\]/g, object);
}

/** `k` distinct items of `pool`, none of them in `avoid`, drawn with `rng`. */
function drawDistinct(rng: RNG, pool: readonly string[], k: number, avoid: readonly string[] = []): string[] {
  const out: string[] = [];
  while (out.length < k) {
    const x = pool[rng.randint(0, pool.length)];
    if (!out.includes(x) && !avoid.includes(x)) out.push(x);
  }
  return out;
}

/**
 * `n` IOI prompts with their ABC twins, reproducible from `seed`. Prompt i uses template
 * `templates[i mod #templates]`, and alternates ABBA and BABA from one round of templates to
 * the next; the names, place and object are drawn at random (the two names of a prompt and the
 * three of its twin are five different names).
 */
export function makeDataset(opts: DatasetOptions): IOIPrompt[] {
  const names = opts.names ?? NAMES, places = opts.places ?? PLACES, objects = opts.objects ?? OBJECTS;
  const templates = opts.templates ?? TEMPLATES.map((_, i) => i);
  if (!(Number.isInteger(opts.n) && opts.n >= 1)) throw new InputError(`the number of prompts must be a positive integer, not ${opts.n}`);
  if (new Set(names).size < 5) throw new InputError(`an IOI prompt and its ABC twin need 5 different names; only ${new Set(names).size} were given`);
  if (templates.length === 0) throw new InputError('no templates chosen');
  for (const t of templates) {
    if (!(Number.isInteger(t) && t >= 0 && t < TEMPLATES.length)) throw new InputError(`template ${t} does not exist (there are ${TEMPLATES.length}, numbered 0..${TEMPLATES.length - 1})`);
  }
  const rng = new RNG(opts.seed);
  const prompts: IOIPrompt[] = [];
  for (let i = 0; i < opts.n; i++) {
    const t = templates[i % templates.length];
    const order: 'ABBA' | 'BABA' = Math.floor(i / templates.length) % 2 === 0 ? 'ABBA' : 'BABA';
    const [io, s] = drawDistinct(rng, names, 2);
    const [x, y, z] = drawDistinct(rng, names, 3, [io, s]);
    const place = places[rng.randint(0, places.length)];
    const object = objects[rng.randint(0, objects.length)];
    const [first, second] = order === 'ABBA' ? [io, s] : [s, io];
    prompts.push({
      clean: fillTemplate(TEMPLATES[t], first, second, s, place, object),
      corrupt: fillTemplate(TEMPLATES[t], x, y, z, place, object),
      io: ' ' + io,
      s: ' ' + s,
      template: t,
      order,
      group: templateGroup(t),
    });
  }
  return prompts;
}

// -----------------------------------------------------------------------------------------------
// Reading prompts from a file (--prompts FILE)

/**
 * The prompts of a JSON file: either a list of {clean, corrupt, io, s} (with an optional
 * `group`), or an object holding such a list under `prompts` (like ioi-group.json, whose other
 * fields are left for the caller). Throws InputError naming the file and the entry on bad input.
 */
export function loadPromptsFile(file: string): IOIPrompt[] {
  let text: string;
  try {
    const what = notRegularFile(fs.statSync(file)); // a FIFO would wait for a writer forever
    if (what) throw new InputError(`the prompts file ${shown(file)} is ${what}, not a JSON file`);
    text = fs.readFileSync(file, 'utf-8');
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot read the prompts file ${shown(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InputError(`the prompts file ${shown(file)} is not valid JSON: ${shown((err as Error).message, 200)}`);
  }
  return parsePrompts(json, file);
}

/** The checks of loadPromptsFile on already-parsed JSON; `where` names the source in messages. */
export function parsePrompts(json: unknown, where = 'the prompts'): IOIPrompt[] {
  const list = Array.isArray(json) ? json : (json !== null && typeof json === 'object' ? (json as Record<string, unknown>).prompts : undefined);
  if (!Array.isArray(list))
    throw new InputError(`${where}: expected a JSON list of prompts {clean, corrupt, io, s}, or an object with such a list under "prompts"`);
  if (list.length === 0) throw new InputError(`${where}: the list of prompts is empty`);
  return list.map((entry, i) => {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry))
      throw new InputError(`${where}: prompt ${i} is not an object with the fields clean, corrupt, io, s`);
    const e = entry as Record<string, unknown>;
    for (const field of ['clean', 'corrupt', 'io', 's']) {
      const text = e[field];
      if (typeof text !== 'string' || text === '')
        throw new InputError(`${where}: prompt ${i} has no "${field}" text (clean, corrupt, io and s must all be non-empty strings)`);
      // half of a UTF-16 pair (a "\ud800" escape in the JSON) is no character: it cannot be tokenized
      const lone = text.search(/\p{Surrogate}/u);
      if (lone >= 0)
        throw new InputError(`${where}: prompt ${i}'s "${field}" text holds a lone surrogate at character ${lone + 1} (\\u${text.charCodeAt(lone).toString(16)}, half of a UTF-16 pair), which is no character; fix the text: ${quotedText(text)}`);
    }
    if (e.group !== undefined && typeof e.group !== 'string' && typeof e.group !== 'number')
      throw new InputError(`${where}: prompt ${i} has a "group" that is neither a string nor a number`);
    const p: IOIPrompt = { clean: e.clean as string, corrupt: e.corrupt as string, io: e.io as string, s: e.s as string };
    if (e.group !== undefined) p.group = String(e.group);
    return p;
  });
}

// -----------------------------------------------------------------------------------------------
// Tokenizing and grouping

/** Anything with GPT-2's encode (BPETokenizer). */
export interface Encoder {
  encode(text: string): number[];
}

/** Positions (token indices into the clean prompt) of the parts the analysis looks at. */
export interface IOIPositions {
  /** the indirect object's name */
  IO: number;
  /** the subject's first mention */
  S1: number;
  /** the token after it */
  S1p1: number;
  /** the subject's second mention */
  S2: number;
  /** the last token, where the model should predict the IO */
  END: number;
}

export interface TokenizedPrompt {
  /** where the prompt was in the list given to tokenizePrompts */
  index: number;
  prompt: IOIPrompt;
  clean_ids: number[]; // (T,)
  corrupt_ids: number[]; // (T,)
  io_id: number;
  s_id: number;
  pos: IOIPositions;
}

/** Prompts of one token length, to be run as one batch. */
export interface PromptGroup {
  key: string;
  T: number;
  prompts: TokenizedPrompt[];
}

/** Every index at which `id` occurs in `ids`. */
function occurrences(ids: readonly number[], id: number): number[] {
  const at: number[] = [];
  ids.forEach((x, i) => { if (x === id) at.push(i); });
  return at;
}

/**
 * Token ids and positions of every prompt, in groups of one token length. Prompts with a `group`
 * field are grouped by it (and each group must have one length); prompts without one form a
 * single group, which must have one length too. Groups come in order of first appearance.
 *
 * Refuses (InputError, naming the prompt's index): an io or s that is not one token; io equal
 * to s; a clean text in which io does not occur exactly once or s not exactly twice; S2 at the
 * last position; clean and corrupt texts of different lengths; a group of unequal lengths.
 */
export function tokenizePrompts(prompts: readonly IOIPrompt[], tokenizer: Encoder): PromptGroup[] {
  if (prompts.length === 0) throw new InputError('no prompts given');
  const groups = new Map<string, PromptGroup>();
  prompts.forEach((p, i) => {
    const name = (what: string, text: string): number => {
      const ids = tokenizer.encode(text);
      if (ids.length !== 1)
        throw new InputError(`prompt ${i}: the ${what} ${quotedText(text)} is ${ids.length} tokens, it must be one (names need their leading space, e.g. " Mary")`);
      return ids[0];
    };
    const io_id = name('indirect object (io)', p.io);
    const s_id = name('subject (s)', p.s);
    if (io_id === s_id) throw new InputError(`prompt ${i}: io and s are the same name ${quotedText(p.io)}`);
    const clean_ids = tokenizer.encode(p.clean);
    const corrupt_ids = tokenizer.encode(p.corrupt);
    const ioAt = occurrences(clean_ids, io_id), sAt = occurrences(clean_ids, s_id);
    if (ioAt.length !== 1)
      throw new InputError(`prompt ${i}: the indirect object ${quotedText(p.io)} occurs ${ioAt.length} times as a token in the clean text ${quotedText(p.clean)}; it must occur once`);
    if (sAt.length !== 2)
      throw new InputError(`prompt ${i}: the subject ${quotedText(p.s)} occurs ${sAt.length} times as a token in the clean text ${quotedText(p.clean)}; it must occur twice`);
    const T = clean_ids.length;
    if (sAt[1] === T - 1)
      throw new InputError(`prompt ${i}: the clean text ends with the subject's second mention; it must end where the indirect object is expected (e.g. "... gave a drink to")`);
    if (corrupt_ids.length !== T)
      throw new InputError(`prompt ${i}: the clean text is ${T} tokens but the corrupt text is ${corrupt_ids.length}; a prompt and its twin must have one token length`);
    const key = p.group ?? 'all';
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { key, T, prompts: [] }));
    if (g.T !== T) {
      const first = g.prompts[0];
      const label = p.group === undefined ? 'the prompts (none has a "group" field)' : `group ${quotedText(key)}`;
      throw new InputError(`prompt ${i} is ${T} tokens but prompt ${first.index} is ${g.T}: all of ${label} must have one token length (give prompts of other lengths their own "group")`);
    }
    g.prompts.push({
      index: i, prompt: p, clean_ids, corrupt_ids, io_id, s_id,
      pos: { IO: ioAt[0], S1: sAt[0], S1p1: sAt[0] + 1, S2: sAt[1], END: T - 1 },
    });
  });
  return [...groups.values()];
}
