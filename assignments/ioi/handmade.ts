/**
 * A three-layer, attention-only GPT with GPT-2's vocabulary whose indirect-object circuit we know,
 * because every weight is set by hand. It answers IOI prompts built from the names it was made
 * for, and the README's section "A model whose circuit we know" explains it in words.
 *
 *   npx tsx assignments/ioi/handmade.ts --out out/ioi-handmade
 *
 * The checkpoint is an ordinary GPT-2-layout one (model.safetensors + config.json, GPT-2's 50257
 * tokens, the unembedding tied to the embedding as in GPT-2, MLP weights zero). The algorithm is
 * the paper's three steps, one layer each:
 *
 *   layer 0, duplicate-token head: a name attends to an earlier copy of itself (never to itself)
 *            and writes "I am a duplicate" into the DUP flag; anything else rests on position 0.
 *   layer 1, S-inhibition head:    every position attends to the duplicated name, if one came
 *            before, and copies its identity into the INH ("inhibit") subspace; at END that is S.
 *   layer 2, name-mover head:      END attends to the names, except the one INH holds, and copies
 *            that name's identity into the NAME subspace, which is exactly what the unembedding of
 *            a name reads (W_U = W_Eᵀ): the logit of the IO goes up.
 *
 *   residual stream (n_embd 256; 4 heads of 64 per layer), subspaces that never overlap:
 *     NAME  [0, 41)     the token: one slot per name (up to 39), a WORD slot for every other token,
 *                       and a balance channel; written by the embedding and by the name mover
 *     IS    41, 42      "is a name" / "is not a name" (+1 on one, −1 on the other)
 *     POS   [43, 67)    the position, one-hot (context 24), and its balance channel 67
 *     DUP   68, 69      "is a repeated name" / "is not" (written by the duplicate-token head)
 *     INH   [70, 111)   a copy of the NAME block: the name to inhibit (written by S-inhibition)
 *     INH_IS 111, 112   a copy of the IS pair, moved along with it
 *     ONE   113         always 0 in the stream; the layer norms' bias puts a constant 1 here
 *
 * Every code is zero-mean (each +1 has a −1 partner), so a layer norm's mean subtraction leaves
 * it alone; and every position carries the same squared norm at each layer (6, 8, 12), so a
 * layer norm whose gain equals that known scale hands the block its input unchanged.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { GPT } from '../../mingpt/model.ts';
import { BPETokenizer } from '../../mingpt/bpe.ts';
import { RNG } from '../../mingpt/utils.ts';
import { checkpointFiles, gpt2Config } from '../../io/checkpoint_writer.ts';
import { helpText, parseArgs, type CommandSpec } from '../../cli/args.ts';
import { runCli } from '../../cli/command.ts';
import { InputError, UsageError } from '../../io/errors.ts';
import { OutputWriter } from '../../io/output.ts';
import { headName, type HeadRef } from '../../lens/heads.ts';
import { NAMES, makeDataset, tokenizePrompts, type Encoder } from './dataset.ts';

// -----------------------------------------------------------------------------------------------
// The shape of the model and the layout of its residual stream

export const N_LAYER = 3;
export const N_HEAD = 4;
export const HEAD_SIZE = 64;
export const N_EMBD = N_HEAD * HEAD_SIZE; // 256
export const BLOCK_SIZE = 24; // the longest template is 20 tokens
export const VOCAB_SIZE = 50257; // GPT-2's
/** The duplicate-token head's query/key uses one dimension per name, per position, and one more. */
export const MAX_NAMES = HEAD_SIZE - BLOCK_SIZE - 1; // 39
/** The first 32 names of the dataset: they include the eight of ioi-group.json. */
export const DEFAULT_NAMES: readonly string[] = NAMES.slice(0, 32);

/** The heads that do the work (not all head 0, so "always head 0" is no detector). */
export const DUP_HEAD: HeadRef = { layer: 0, head: 1 };
export const SINH_HEAD: HeadRef = { layer: 1, head: 3 };
export const NAME_MOVER: HeadRef = { layer: 2, head: 2 };

const WORD = MAX_NAMES; // the NAME-block slot of every token that is not a name
const NAME_BAL = MAX_NAMES + 1; // the NAME block's balance channel
const NAME_BLOCK = MAX_NAMES + 2; // 41
export const LAYOUT = {
  NAME: 0,
  IS_NAME: NAME_BLOCK, // 41
  NOT_NAME: NAME_BLOCK + 1, // 42
  POS: NAME_BLOCK + 2, // 43: BLOCK_SIZE one-hot channels
  POS_BAL: NAME_BLOCK + 2 + BLOCK_SIZE, // 67
  DUP: NAME_BLOCK + 3 + BLOCK_SIZE, // 68
  NOT_DUP: NAME_BLOCK + 4 + BLOCK_SIZE, // 69
  INH: NAME_BLOCK + 5 + BLOCK_SIZE, // 70: a copy of the NAME block
  INH_IS: 2 * NAME_BLOCK + 5 + BLOCK_SIZE, // 111, 112: a copy of IS_NAME, NOT_NAME
  ONE: 2 * NAME_BLOCK + 7 + BLOCK_SIZE, // 113
} as const;

/** The attention logits of the design (after the 1/√hs of the kernel, which the queries undo). */
const DUP_MATCH = 24; // duplicate-token head: a key with my name
const DUP_SELF = 24; // ... minus this for my own position
const DUP_REST = 12; // ... a key at position 0, where a query with no match rests
const SINH_DUP = 16; // S-inhibition head: +16 for a key flagged duplicate, −16 for one that is not
const SINH_REST = 24; // ... plus this at position 0, the resting place before any duplicate
const NM_NAME = 8; // name mover: +8 for a name, −8 for a token that is not a name
const NM_INHIBIT = 16; // ... minus this for the inhibited name
/** What the name mover adds to logit(IO) − logit(S): its output is NM_GAIN · (IO's name code). */
export const NM_GAIN = 5;
const DECOY_STD = 0.3; // random query/key weights of the heads that do nothing

/**
 * Squared norms at each layer norm: token code 4 (2 for NAME, 2 for IS), position 2, DUP 2,
 * INH 4. At END the name mover then adds g·(e_IO − e_bal) to the token's e_WORD − e_bal, which
 * gives the NAME block 1 + g² + (g + 1)² = 2g² + 2g + 2 instead of 2; and it turns END's IS pair
 * from (−1, +1) into (+1, −1), which keeps its norm.
 */
const NORM2 = { layer0: 6, layer1: 8, layer2: 12, final: 12 + 2 * NM_GAIN * NM_GAIN + 2 * NM_GAIN };

export interface HandmadeOptions {
  /** the names it is built for, as plain words ("Mary"); each must be one GPT-2 token with its leading space */
  names?: readonly string[];
  /** seed of the decoy heads' random query and key weights */
  seed?: number;
  tokenizer?: Encoder;
}

// -----------------------------------------------------------------------------------------------
// Building it

/** Weight matrices are (out, in), row-major, as nn.Linear keeps them. */
function setW(w: Float32Array, inFeatures: number, row: number, col: number, value: number): void {
  w[row * inFeatures + col] = value;
}

/**
 * Layer norm computes (x − mean) / sqrt(var + eps) · gain + bias. Every code in the stream has
 * zero mean and every position has the squared norm `norm2`, so sqrt(var + eps) is one known
 * number; using it as the gain hands the block its input unchanged. The bias adds the constant 1
 * in ONE that the queries use for "always".
 */
function setLayerNorm(weight: Float32Array, bias: Float32Array, norm2: number, eps: number, one: boolean): void {
  weight.fill(Math.sqrt(norm2 / N_EMBD + eps));
  bias.fill(0);
  if (one) bias[LAYOUT.ONE] = 1;
}

/** The random query and key weights of a head that does nothing (its values stay zero). */
function setDecoy(c_attn: Float32Array, head: number, rng: RNG): void {
  const C = N_EMBD;
  for (const part of [0, 1]) { // 0: query rows, 1: key rows
    for (let i = 0; i < HEAD_SIZE; i++) {
      const row = part * C + head * HEAD_SIZE + i;
      for (let c = 0; c < C; c++) setW(c_attn, C, row, c, DECOY_STD * rng.randn());
    }
  }
}

/** Token ids of the names (with their leading space), checked to be single, distinct tokens. */
export function nameTokenIds(names: readonly string[], tokenizer: Encoder): number[] {
  if (names.length < 5) throw new InputError(`the model needs at least 5 names (a prompt and its ABC twin use 5); got ${names.length}`);
  if (names.length > MAX_NAMES) throw new InputError(`the model has room for ${MAX_NAMES} names; got ${names.length}`);
  const ids = names.map((n) => {
    const t = tokenizer.encode(' ' + n);
    if (t.length !== 1) throw new InputError(`the name ${JSON.stringify(n)} is ${t.length} GPT-2 tokens with its leading space; every name must be one token`);
    return t[0];
  });
  const seen = new Set<number>();
  ids.forEach((id, i) => {
    if (seen.has(id)) throw new InputError(`the name ${JSON.stringify(names[i])} is given twice`);
    seen.add(id);
  });
  return ids;
}

/**
 * The model, in memory, with every weight set, and the config.json that describes it
 * (Hugging Face's GPT2Config names, plus the names and heads it was built with).
 */
export function buildHandmade(opts: HandmadeOptions = {}): { model: GPT; config: Record<string, unknown> } {
  const names = opts.names ?? DEFAULT_NAMES;
  const ids = nameTokenIds(names, opts.tokenizer ?? new BPETokenizer());
  const C = N_EMBD, hs = HEAD_SIZE, P = BLOCK_SIZE, N = names.length;
  const eps = 1e-5;
  const rootHs = Math.sqrt(hs); // the kernel divides scores by √hs; the queries multiply it back

  const cfg = GPT.get_default_config();
  cfg.model_type = null;
  cfg.merge_from_dict({ n_layer: N_LAYER, n_head: N_HEAD, n_embd: C, vocab_size: VOCAB_SIZE, block_size: P, layer_norm_epsilon: eps });
  // tied, as GPT-2: the unembedding of a name is its embedding row
  const model = new GPT(cfg, { init: false, tie_lm_head: true });
  const { wte, wpe, h, ln_f } = model.transformer;
  const rng = new RNG(opts.seed ?? 0);
  const slotOf = new Map(ids.map((id, i) => [id, i]));

  // --- embeddings ---------------------------------------------------------------------------
  // a name: +1 on its slot, −1 on the balance channel, and the IS pair (+1, −1);
  // every other token: +1 on WORD, −1 on the balance channel, and the IS pair (−1, +1)
  for (let id = 0; id < VOCAB_SIZE; id++) {
    const row = wte.subarray(id * C, (id + 1) * C);
    const slot = slotOf.get(id);
    row[LAYOUT.NAME + (slot ?? WORD)] = 1;
    row[LAYOUT.NAME + NAME_BAL] = -1;
    row[LAYOUT.IS_NAME] = slot === undefined ? -1 : 1;
    row[LAYOUT.NOT_NAME] = slot === undefined ? 1 : -1;
  }
  // a position: +1 on its one-hot channel, −1 on the balance channel. Two different positions
  // share nothing on the one-hot channels: what lets a head tell "me" from "an earlier me"
  for (let t = 0; t < P; t++) {
    wpe[t * C + LAYOUT.POS + t] = 1;
    wpe[t * C + LAYOUT.POS_BAL] = -1;
  }

  // --- layer 0: the duplicate-token head ------------------------------------------------------
  {
    const blk = h[0], W = blk.attn.c_attn.weight, O = blk.attn.c_proj.weight, hd = DUP_HEAD.head;
    setLayerNorm(blk.ln_1.weight, blk.ln_1.bias, NORM2.layer0, eps, true);
    const q = (i: number, c: number, v: number) => setW(W, C, hd * hs + i, c, v * rootHs);
    const k = (i: number, c: number, v: number) => setW(W, C, C + hd * hs + i, c, v);
    // dims 0..N−1: my name's slot against the key's name slot (+DUP_MATCH for the same name)
    for (let n = 0; n < N; n++) { q(n, LAYOUT.NAME + n, DUP_MATCH); k(n, LAYOUT.NAME + n, 1); }
    // dims N..N+P−1: my position against the key's (−DUP_SELF for myself)
    for (let t = 0; t < P; t++) { q(N + t, LAYOUT.POS + t, -DUP_SELF); k(N + t, LAYOUT.POS + t, 1); }
    // dim N+P: every query likes position 0 a little (a non-name: value −1, "not a duplicate")
    q(N + P, LAYOUT.ONE, DUP_REST); k(N + P, LAYOUT.POS + 0, 1);
    // value: (IS − NOT)/2, +1 for a name and −1 for anything else; output into the DUP pair
    setW(W, C, 2 * C + hd * hs, LAYOUT.IS_NAME, 0.5);
    setW(W, C, 2 * C + hd * hs, LAYOUT.NOT_NAME, -0.5);
    setW(O, C, LAYOUT.DUP, hd * hs, 1);
    setW(O, C, LAYOUT.NOT_DUP, hd * hs, -1);
    for (let hh = 0; hh < N_HEAD; hh++) if (hh !== hd) setDecoy(W, hh, rng);
    blk.ln_2.weight.fill(1); // the MLP is all zeros; its layer norm is left plain
  }

  // --- layer 1: the S-inhibition head ---------------------------------------------------------
  {
    const blk = h[1], W = blk.attn.c_attn.weight, O = blk.attn.c_proj.weight, hd = SINH_HEAD.head;
    setLayerNorm(blk.ln_1.weight, blk.ln_1.bias, NORM2.layer1, eps, true);
    const q = (i: number, c: number, v: number) => setW(W, C, hd * hs + i, c, v * rootHs);
    const k = (i: number, c: number, v: number) => setW(W, C, C + hd * hs + i, c, v);
    // dim 0: every query wants the key flagged duplicate: (DUP − NOT_DUP)/2 is ±1
    q(0, LAYOUT.ONE, SINH_DUP); k(0, LAYOUT.DUP, 0.5); k(0, LAYOUT.NOT_DUP, -0.5);
    // dim 1: position 0 is the resting place before any duplicate has been seen
    q(1, LAYOUT.ONE, SINH_REST); k(1, LAYOUT.POS + 0, 1);
    // value: the key's whole NAME block and IS pair; output: the same numbers into INH, INH_IS
    for (let i = 0; i < NAME_BLOCK; i++) {
      setW(W, C, 2 * C + hd * hs + i, LAYOUT.NAME + i, 1);
      setW(O, C, LAYOUT.INH + i, hd * hs + i, 1);
    }
    for (let i = 0; i < 2; i++) {
      setW(W, C, 2 * C + hd * hs + NAME_BLOCK + i, LAYOUT.IS_NAME + i, 1);
      setW(O, C, LAYOUT.INH_IS + i, hd * hs + NAME_BLOCK + i, 1);
    }
    for (let hh = 0; hh < N_HEAD; hh++) if (hh !== hd) setDecoy(W, hh, rng);
    blk.ln_2.weight.fill(1);
  }

  // --- layer 2: the name-mover head -----------------------------------------------------------
  {
    const blk = h[2], W = blk.attn.c_attn.weight, O = blk.attn.c_proj.weight, hd = NAME_MOVER.head;
    setLayerNorm(blk.ln_1.weight, blk.ln_1.bias, NORM2.layer2, eps, true);
    const q = (i: number, c: number, v: number) => setW(W, C, hd * hs + i, c, v * rootHs);
    const k = (i: number, c: number, v: number) => setW(W, C, C + hd * hs + i, c, v);
    // dims 0..N−1: the inhibited name (INH slot n) against the key's name slot: −NM_INHIBIT
    for (let n = 0; n < N; n++) { q(n, LAYOUT.INH + n, -NM_INHIBIT); k(n, LAYOUT.NAME + n, 1); }
    // dim N: every query wants names: (IS − NOT)/2 is +1 for a name, −1 otherwise
    q(N, LAYOUT.ONE, NM_NAME); k(N, LAYOUT.IS_NAME, 0.5); k(N, LAYOUT.NOT_NAME, -0.5);
    // value: the key's name slots; output: NM_GAIN on the same slot of NAME, −NM_GAIN on its
    // balance channel, i.e. NM_GAIN times the name's own code (zero-mean)
    for (let n = 0; n < N; n++) {
      setW(W, C, 2 * C + hd * hs + n, LAYOUT.NAME + n, 1);
      setW(O, C, LAYOUT.NAME + n, hd * hs + n, NM_GAIN);
      setW(O, C, LAYOUT.NAME + NAME_BAL, hd * hs + n, -NM_GAIN);
    }
    // and "what I copied is a name": (IS − NOT)/2 of the key, written twice into END's IS pair.
    // That flips END's own (−1, +1) to (+1, −1): every name's logit rises above every other
    // token's, so the IO is the model's top prediction, not merely ahead of S
    setW(W, C, 2 * C + hd * hs + N, LAYOUT.IS_NAME, 0.5);
    setW(W, C, 2 * C + hd * hs + N, LAYOUT.NOT_NAME, -0.5);
    setW(O, C, LAYOUT.IS_NAME, hd * hs + N, 2);
    setW(O, C, LAYOUT.NOT_NAME, hd * hs + N, -2);
    for (let hh = 0; hh < N_HEAD; hh++) if (hh !== hd) setDecoy(W, hh, rng);
    blk.ln_2.weight.fill(1);
  }

  // --- final layer norm: END holds the token, position, DUP and INH codes and the copied name
  setLayerNorm(ln_f.weight, ln_f.bias, NORM2.final, eps, false);

  const config = gpt2Config(model, {
    tie_word_embeddings: true,
    names: names.map((n) => ' ' + n),
    name_ids: ids,
    known_heads: {
      duplicate_token: [headName(DUP_HEAD)],
      s_inhibition: [headName(SINH_HEAD)],
      name_mover: [headName(NAME_MOVER)],
    },
    handmade: {
      description: 'hand-set weights, no training: assignments/ioi/README.md explains them',
      seed: opts.seed ?? 0,
      layout: LAYOUT,
      name_mover_gain: NM_GAIN,
    },
  });
  return { model, config };
}

// -----------------------------------------------------------------------------------------------
// Checking it

/**
 * Accuracy (share of prompts with logit(IO) > logit(S) at END) and F (the mean of
 * logit(IO) − logit(S)) of `model` on `n` generated prompts made of `names`.
 */
export function checkHandmade(model: GPT, names: readonly string[], tokenizer: Encoder, n = 150, seed = 0): { n: number; accuracy: number; F: number } {
  let right = 0, sum = 0, count = 0;
  for (const g of tokenizePrompts(makeDataset({ n, seed, names }), tokenizer)) {
    const { logits } = model.forward(g.prompts.map((p) => p.clean_ids), { logits_at: [g.T - 1] }); // (B, 1, V)
    const V = logits.shape[2];
    g.prompts.forEach((p, b) => {
      const d = logits.data[b * V + p.io_id] - logits.data[b * V + p.s_id];
      right += d > 0 ? 1 : 0;
      sum += d;
      count++;
    });
  }
  return { n: count, accuracy: right / count, F: sum / count };
}

// -----------------------------------------------------------------------------------------------
// The command line

export const COMMAND = {
  usage: 'npx tsx assignments/ioi/handmade.ts',
  description: `
Build, without training, a 3-layer attention-only GPT-2-layout checkpoint (GPT-2's vocabulary,
tied unembedding, MLPs zero) that does indirect-object identification on prompts made of the
names it is built for, with one duplicate-token head (${headName(DUP_HEAD)}), one S-inhibition head (${headName(SINH_HEAD)})
and one name-mover head (${headName(NAME_MOVER)}); the other heads write nothing. Writes model.safetensors
and config.json, which lists the names ("names", "name_ids") and the heads by class ("known_heads").`,
  options: {
    out: { type: 'string', default: 'out/ioi-handmade', metavar: 'DIR', help: 'folder for model.safetensors and config.json (created when missing)' },
    names: { type: 'string', metavar: 'A,B,...', help: `the names to build it for, comma-separated, 5 to ${MAX_NAMES} single-token names (default: ${DEFAULT_NAMES.length} common first names, ${DEFAULT_NAMES.slice(0, 4).join(', ')}, ...)` },
    seed: { type: 'int', default: 0, min: 0, metavar: 'N', help: 'seed of the random query/key weights of the heads that do nothing' },
  },
} as const satisfies CommandSpec;

export async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  const outDir = a.out;
  if (outDir === '') throw new UsageError('--out needs a folder');
  const names = a.names === undefined ? DEFAULT_NAMES : a.names.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const out = new OutputWriter(outDir);
  out.check();
  const tokenizer = new BPETokenizer();
  const { model, config } = buildHandmade({ names, seed: a.seed, tokenizer });
  const check = checkHandmade(model, names, tokenizer);
  for (const [name, data] of checkpointFiles(model, config, { metadata: { format: 'pt', source: 'assignments/ioi/handmade.ts' } })) out.add(name, data);
  const written = out.commit();
  const print = (s = '') => process.stdout.write(s + '\n');
  print(`handmade IOI model: ${N_LAYER} layers × ${N_HEAD} heads, n_embd ${N_EMBD}, context ${BLOCK_SIZE}, GPT-2's vocabulary (${VOCAB_SIZE}), MLPs zero`);
  print(`built for ${names.length} names: ${names.join(', ')}`);
  print(`duplicate-token head ${headName(DUP_HEAD)}, S-inhibition head ${headName(SINH_HEAD)}, name mover ${headName(NAME_MOVER)}; the other heads write nothing`);
  print(`check on ${check.n} prompts of these names (the 15 templates, seed 0): accuracy ${check.accuracy.toFixed(3)}, F = mean logit(IO) − logit(S) = ${check.F.toFixed(3)}`);
  for (const f of written) print(`  ${f}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, COMMAND.usage);
}
