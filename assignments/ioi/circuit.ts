/**
 * The IOI circuit of GPT-2 small as Wang et al. 2022 report it, and the classes of heads the
 * experiment reads from other places (a checkpoint's config.json `known_heads`, a prompts file).
 *
 * The 26 heads and their classes are those of the paper (Figure 2 and section 3), as listed in
 * the ACDC code (github.com/ArthurConmy/Automatic-Circuit-Discovery, acdc/ioi/utils.py). The
 * positions at which each class is kept in the paper's knockouts follow the paper's code
 * (Easy-Transformer, easy_transformer/ioi_circuit_extraction.py, RELEVANT_TOKENS): heads that
 * write to the answer and the S-inhibition heads at END, induction and duplicate-token heads at
 * S2, previous-token heads at S1+1.
 */
import { quotedText, shown } from '../../io/show.ts';
import { headExists, headName, parseHead, type HeadRef } from '../../lens/heads.ts';
import type { KeptHead } from '../../lens/knockout.ts';
import { InputError } from '../../io/errors.ts';

/** The classes of the paper's circuit, in the order information flows backwards from the answer. */
export const HEAD_CLASSES = [
  'name_mover', 'backup_name_mover', 'negative_name_mover', 's_inhibition', 'induction', 'duplicate_token', 'previous_token',
] as const;
export type HeadClass = (typeof HEAD_CLASSES)[number];

/** GPT-2 small's IOI circuit: 26 heads in 7 classes ("layer.head"). */
export const PAPER_CIRCUIT: Record<HeadClass, string[]> = {
  name_mover: ['9.9', '10.0', '9.6'],
  backup_name_mover: ['10.10', '10.6', '10.2', '10.1', '11.2', '9.7', '9.0', '11.9'],
  negative_name_mover: ['10.7', '11.10'],
  s_inhibition: ['7.3', '7.9', '8.6', '8.10'],
  induction: ['5.5', '5.8', '5.9', '6.9'],
  duplicate_token: ['0.1', '0.10', '3.0'],
  previous_token: ['2.2', '4.11'],
};

/** The paper's name movers on GPT-2 small, the default receivers of path patching there. */
export const PAPER_NAME_MOVERS = ['9.9', '9.6', '10.0'];

/** Where the paper keeps a head of each class in its knockouts (names of IOIPositions fields). */
export const CLASS_POSITIONS: Record<HeadClass, string[]> = {
  name_mover: ['END'],
  backup_name_mover: ['END'],
  negative_name_mover: ['END'],
  s_inhibition: ['END'],
  induction: ['S2'],
  duplicate_token: ['S2'],
  previous_token: ['S1p1'],
};

/** A circuit: its heads, their classes when known, and where it came from. */
export interface Circuit {
  heads: HeadRef[];
  /** class of each head ("layer.head" -> class); empty when the circuit was given as a plain list */
  classes: Record<string, string>;
  source: string;
}

/** A circuit from a { class: ["l.h", ...] } record (the paper's, or config.json's known_heads). */
export function circuitFromClasses(byClass: Record<string, unknown>, source: string, L: number, nh: number): Circuit {
  const heads: HeadRef[] = [];
  const classes: Record<string, string> = {};
  for (const [cls, list] of Object.entries(byClass)) {
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string'))
      throw new InputError(`${source}: the heads of class ${quotedText(cls)} must be a list of "layer.head" strings`);
    for (const name of list as string[]) {
      const h = parseHeadOrThrow(name, source);
      if (!headExists(h, L, nh)) throw new InputError(`${source}: head ${name} (class ${shown(cls)}) does not exist in a model of ${L} layers × ${nh} heads`);
      const key = headName(h);
      if (classes[key] === undefined) heads.push(h);
      classes[key] = classes[key] === undefined ? cls : classes[key];
    }
  }
  if (heads.length === 0) throw new InputError(`${source}: the circuit has no heads`);
  return { heads, classes, source };
}

/** "l.h,l.h,..." -> heads, checked against the model's shape. `what` names the option in messages. */
export function parseHeadList(text: string, what: string, L: number, nh: number): HeadRef[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new InputError(`${what}: no heads given (write them as layer.head, e.g. 9.9,10.0)`);
  const seen = new Set<string>();
  return parts.map((p) => {
    const h = parseHeadOrThrow(p, what);
    if (!headExists(h, L, nh)) throw new InputError(`${what}: head ${p} does not exist in a model of ${L} layers × ${nh} heads`);
    if (seen.has(p)) throw new InputError(`${what}: head ${p} is listed twice`);
    seen.add(p);
    return h;
  });
}

function parseHeadOrThrow(text: string, where: string): HeadRef {
  try {
    return parseHead(text);
  } catch (err) {
    throw new InputError(`${where}: ${(err as Error).message}`);
  }
}

/**
 * The circuit's heads as knockouts keep them: everywhere (positions 'all'), or, with 'paper',
 * each at its class's positions. Throws InputError when a head has no class the paper places.
 */
export function keptHeads(c: Circuit, positions: 'all' | 'paper'): KeptHead[] {
  if (positions === 'all') return c.heads.map((h) => ({ ...h }));
  return c.heads.map((h) => {
    const cls = c.classes[headName(h)];
    const at = (CLASS_POSITIONS as Record<string, string[]>)[cls];
    if (!at) {
      throw new InputError(cls === undefined
        ? `--positions paper keeps each head at its class's positions, but head ${headName(h)} of ${c.source} has no class (use --circuit paper, a config.json with known_heads, or --positions all)`
        : `--positions paper: head ${headName(h)} has the class "${cls}", which the paper gives no positions (classes: ${HEAD_CLASSES.join(', ')})`);
    }
    return { ...h, positions: at };
  });
}
