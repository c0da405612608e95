/**
 * A two-layer, attention-only GPT whose induction circuit we know exactly, because we write
 * every weight by hand. No training, no data: the weights below *are* the explanation.
 *
 *   npx tsx assignments/induction-heads/handmade.ts --out out/handmade
 *   npx tsx assignments/induction-heads/induction.ts --weights out/handmade --token-range 256,1256
 *
 * The model is an ordinary GPT-2-layout checkpoint (model.safetensors + config.json, loadable by
 * GPT.from_safetensors), with the MLP weights all zero. It has one previous-token head in layer
 * 0 and one induction head in layer 1; the other six heads look around at random and write
 * nothing. README.md walks through the construction; the short version:
 *
 *   residual stream (n_embd 256), split into subspaces that never overlap:
 *     TOK   [0, 36)    the current token, written by the token embedding
 *     PREV  [36, 72)   the previous token, written by the previous-token head (layer 0)
 *     OUT   [72, 105)  the predicted next token, written by the induction head (layer 1)
 *     POS   [105, 137) the position, written by the position embedding
 *     ONE   137        always 0 in the stream; the layer norms' bias puts a constant 1 here
 *     (138..255 stay empty: n_embd must be n_head × head size = 4 × 64)
 *
 *   token code: the token's offset in the range (0..999) as three decimal digits, each digit a
 *   one-hot block of 10 channels (plus a BOS slot and a balance channel, see below).
 *   position code: eight "clock hands" (cos, sin) turning 1/2, 1/4, ..., 1/256 of a turn per
 *   position: the sinusoidal encoding of "Attention is all you need".
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { GPT } from '../../mingpt/model.ts';
import { RNG } from '../../mingpt/utils.ts';
import { checkpointFiles, gpt2Config } from '../../io/checkpoint_writer.ts';
import { helpText, optionValue, parseArgs, type CommandSpec } from '../../cli/args.ts';
import { runCli } from '../../cli/command.ts';
import { InputError, UsageError } from '../../io/errors.ts';
import { OutputWriter } from '../../io/output.ts';
import { headName, type HeadRef } from '../../lens/heads.ts';
import { parseTokenRange } from './scores.ts';

// -----------------------------------------------------------------------------------------------
// The shape of the model and the layout of its residual stream

export const N_LAYER = 2;
export const N_HEAD = 4;
export const HEAD_SIZE = 64;
export const N_EMBD = N_HEAD * HEAD_SIZE; // 256
export const BLOCK_SIZE = 128; // longest sequence: BOS + 2 × 63 tokens
export const DIGITS = 3; // token offsets are written with 3 decimal digits: up to 1000 tokens
export const MAX_RANGE = 10 ** DIGITS;

/** Which heads do the work. Not head 0, so that a detector cannot succeed by always saying "head 0". */
export const PREV_HEAD: HeadRef = { layer: 0, head: 2 };
export const INDUCTION_HEAD: HeadRef = { layer: 1, head: 1 };

/** A token code has, per digit, 10 digit slots, one BOS slot and one balance channel. */
const TOK_BLOCK = 12;
const BOS_SLOT = 10;
const TOK_BALANCE = 11;
/** The prediction code has, per digit, 10 digit slots and one balance channel. */
const OUT_BLOCK = 11;
const OUT_BALANCE = 10;
/** Clock hands for the position: periods 2, 4, ..., 256 positions. */
const N_CLOCKS = 8;

export const LAYOUT = {
  TOK: 0, // 3 × 12 channels: the current token
  PREV: DIGITS * TOK_BLOCK, // 36: 3 × 12 channels, the previous token (same code as TOK)
  OUT: 2 * DIGITS * TOK_BLOCK, // 72: 3 × 11 channels, the predicted next token
  POS: 2 * DIGITS * TOK_BLOCK + DIGITS * OUT_BLOCK, // 105: 8 × (cos, sin) and their mirror images
  ONE: 2 * DIGITS * TOK_BLOCK + DIGITS * OUT_BLOCK + 4 * N_CLOCKS, // 137
} as const;

/** Sizes of the sharp softmaxes, in logits per unit of match (see the README). */
const PREV_SHARPNESS = 6; // the nearest wrong position scores ≥ 3 units lower: 18 logits
const INDUCTION_SHARPNESS = 20; // full match 3 units, BOS 2.5, two digits 2: 10 logits apart
const BOS_FALLBACK = 2.5; // units a BOS key scores with every query
const OUT_LOGIT = 10; // logit per digit of the prediction that matches a token
const OFF_RANGE_LOGIT = -30; // logit of every token the model was not built for
const DECOY_STD = 0.3; // random query/key weights of the heads that do nothing

/** Squared norm of each code: token 3 × (1² + 1²), position 8 × 2 × (cos² + sin²). */
const TOK_NORM2 = 2 * DIGITS;
const POS_NORM2 = 2 * N_CLOCKS;

export interface HandmadeOptions {
  /** the token ids it is built for, [lo, hi): at most 1000 of them; BOS is hi */
  lo: number;
  hi: number;
  /** seed of the decoy heads' random query and key weights */
  seed: number;
}

export const DEFAULT_RANGE: [number, number] = [256, 1256];

/** The three decimal digits of a token's offset in its range: 347 -> [3, 4, 7]. */
export function digitsOf(offset: number): number[] {
  const d: number[] = [];
  for (let i = DIGITS - 1; i >= 0; i--) d.push(Math.floor(offset / 10 ** i) % 10);
  return d;
}

// -----------------------------------------------------------------------------------------------
// Building it

/** Weight matrices are (out, in), row-major, as nn.Linear keeps them. */
function setW(w: Float32Array, inFeatures: number, row: number, col: number, value: number): void {
  w[row * inFeatures + col] = value;
}

/**
 * Layer norm computes (x − mean) / sqrt(var + eps) · gain + bias. Every vector we write into the
 * stream has zero mean, and every position carries codes of the same total squared norm, so
 * sqrt(var + eps) is one known number; using it as the gain makes the layer norm hand the block
 * its input unchanged. The bias puts a constant 1 into the ONE channel.
 */
function setLayerNorm(weight: Float32Array, bias: Float32Array, norm2: number, eps: number): void {
  weight.fill(Math.sqrt(norm2 / N_EMBD + eps));
  bias.fill(0);
  bias[LAYOUT.ONE] = 1;
}

/** The random query and key weights of a head that does nothing in particular (values: zero). */
function setDecoy(c_attn: Float32Array, head: number, rng: RNG): void {
  const C = N_EMBD;
  for (const part of [0, 1]) { // 0: query rows, 1: key rows
    for (let i = 0; i < HEAD_SIZE; i++) {
      const row = part * C + head * HEAD_SIZE + i;
      for (let c = 0; c < C; c++) setW(c_attn, C, row, c, DECOY_STD * rng.randn());
    }
  }
}

/**
 * The model, in memory, with every weight set. Returns the model and the config.json that
 * describes it (Hugging Face's GPT2Config names, plus what we built it for).
 */
export function buildHandmade(opts: HandmadeOptions): { model: GPT; config: Record<string, unknown> } {
  const { lo, hi } = opts;
  if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && hi > lo + 1))
    throw new InputError(`the token range [${lo}, ${hi}) must hold at least two token ids`);
  if (hi - lo > MAX_RANGE) throw new InputError(`the token range [${lo}, ${hi}) holds ${hi - lo} ids; the construction writes ${DIGITS} digits, so at most ${MAX_RANGE}`);
  if (hi > 50256) throw new InputError(`the token range must end at 50256 or below (ids of GPT-2's vocabulary; BOS takes the id ${hi})`);
  const bos = hi;
  const V = hi + 1;
  const C = N_EMBD, hs = HEAD_SIZE, T = BLOCK_SIZE;
  const eps = 1e-5;

  const cfg = GPT.get_default_config();
  cfg.model_type = null;
  cfg.merge_from_dict({ n_layer: N_LAYER, n_head: N_HEAD, n_embd: C, vocab_size: V, block_size: T, layer_norm_epsilon: eps });
  // untied: the unembedding reads the OUT subspace, the embedding writes the TOK subspace
  const model = new GPT(cfg, { init: false, tie_lm_head: false });
  const { wte, wpe, h, ln_f } = model.transformer;
  const rng = new RNG(opts.seed);

  // --- embeddings ---------------------------------------------------------------------------
  // token code: per digit block, +1 on the digit's slot and −1 on the block's balance channel,
  // so the code has zero mean (layer norm's mean subtraction then does nothing to it)
  const tokCode = (row: Float32Array, base: number, slots: number[]) => {
    slots.forEach((slot, d) => {
      row[base + d * TOK_BLOCK + slot] = 1;
      row[base + d * TOK_BLOCK + TOK_BALANCE] = -1;
    });
  };
  for (let id = lo; id < hi; id++) tokCode(wte.subarray(id * C, (id + 1) * C), LAYOUT.TOK, digitsOf(id - lo));
  tokCode(wte.subarray(bos * C, (bos + 1) * C), LAYOUT.TOK, Array(DIGITS).fill(BOS_SLOT));
  // position code: clock hand f turns by 2π / 2^(f+1) per position; each channel has a mirror
  // channel holding its negative, again for zero mean
  for (let t = 0; t < T; t++) {
    const row = wpe.subarray(t * C, (t + 1) * C);
    for (let f = 0; f < N_CLOCKS; f++) {
      const angle = (2 * Math.PI * t) / 2 ** (f + 1);
      row[LAYOUT.POS + 2 * f] = Math.cos(angle);
      row[LAYOUT.POS + 2 * f + 1] = Math.sin(angle);
      row[LAYOUT.POS + 2 * N_CLOCKS + 2 * f] = -Math.cos(angle);
      row[LAYOUT.POS + 2 * N_CLOCKS + 2 * f + 1] = -Math.sin(angle);
    }
  }

  // --- layer 0: the previous-token head -------------------------------------------------------
  // every position holds TOK + POS: squared norm 6 + 16
  {
    const blk = h[0], W = blk.attn.c_attn.weight, P = blk.attn.c_proj.weight, hd = PREV_HEAD.head;
    setLayerNorm(blk.ln_1.weight, blk.ln_1.bias, TOK_NORM2 + POS_NORM2, eps);
    const qScale = PREV_SHARPNESS * Math.sqrt(hs); // the kernel divides scores by √hs
    for (let f = 0; f < N_CLOCKS; f++) {
      const c = LAYOUT.POS + 2 * f, s = c + 1; // cos and sin channel of hand f
      const step = (2 * Math.PI) / 2 ** (f + 1);
      // query: the clock at t
      setW(W, C, hd * hs + 2 * f, c, qScale);
      setW(W, C, hd * hs + 2 * f + 1, s, qScale);
      // key: the clock at s turned one step forward, i.e. the clock at s + 1
      setW(W, C, C + hd * hs + 2 * f, c, Math.cos(step));
      setW(W, C, C + hd * hs + 2 * f, s, -Math.sin(step));
      setW(W, C, C + hd * hs + 2 * f + 1, c, Math.sin(step));
      setW(W, C, C + hd * hs + 2 * f + 1, s, Math.cos(step));
    }
    // value: the whole TOK block; output: the same numbers into the PREV block
    for (let i = 0; i < DIGITS * TOK_BLOCK; i++) {
      setW(W, C, 2 * C + hd * hs + i, LAYOUT.TOK + i, 1);
      setW(P, C, LAYOUT.PREV + i, hd * hs + i, 1);
    }
    for (let hh = 0; hh < N_HEAD; hh++) if (hh !== hd) setDecoy(W, hh, rng);
    blk.ln_2.weight.fill(1); // the MLP is all zeros; its layer norm is left plain
  }

  // --- layer 1: the induction head ------------------------------------------------------------
  // every position holds TOK + POS + PREV: squared norm 6 + 16 + 6
  {
    const blk = h[1], W = blk.attn.c_attn.weight, P = blk.attn.c_proj.weight, hd = INDUCTION_HEAD.head;
    setLayerNorm(blk.ln_1.weight, blk.ln_1.bias, 2 * TOK_NORM2 + POS_NORM2, eps);
    const qScale = INDUCTION_SHARPNESS * Math.sqrt(hs);
    for (let d = 0; d < DIGITS; d++) {
      for (let k = 0; k < 10; k++) {
        const i = d * 10 + k;
        // query: my token's digits; key: the digits of the token before the key's position
        setW(W, C, hd * hs + i, LAYOUT.TOK + d * TOK_BLOCK + k, qScale);
        setW(W, C, C + hd * hs + i, LAYOUT.PREV + d * TOK_BLOCK + k, 1);
        // value: the key position's own digits; output: those digits into OUT
        setW(W, C, 2 * C + hd * hs + i, LAYOUT.TOK + d * TOK_BLOCK + k, 1);
        setW(P, C, LAYOUT.OUT + d * OUT_BLOCK + k, hd * hs + i, 1);
        setW(P, C, LAYOUT.OUT + d * OUT_BLOCK + OUT_BALANCE, hd * hs + i, -1);
      }
    }
    // one more query/key pair: every query (the constant ONE) likes the BOS key, a bit less than
    // a full match, so a token seen for the first time rests on BOS, whose value is zero
    const extra = DIGITS * 10;
    setW(W, C, hd * hs + extra, LAYOUT.ONE, qScale * BOS_FALLBACK);
    setW(W, C, C + hd * hs + extra, LAYOUT.TOK + BOS_SLOT, 1);
    for (let hh = 0; hh < N_HEAD; hh++) if (hh !== hd) setDecoy(W, hh, rng);
    blk.ln_2.weight.fill(1);
  }

  // --- final layer norm and unembedding -------------------------------------------------------
  // TOK + POS + PREV + OUT: squared norm 6 + 16 + 6 + 6 once the induction head has fired
  setLayerNorm(ln_f.weight, ln_f.bias, 3 * TOK_NORM2 + POS_NORM2, eps);
  const U = model.lm_head.weight;
  for (let id = 0; id < V; id++) {
    if (id >= lo && id < hi) digitsOf(id - lo).forEach((digit, d) => setW(U, C, id, LAYOUT.OUT + d * OUT_BLOCK + digit, OUT_LOGIT));
    else setW(U, C, id, LAYOUT.ONE, OFF_RANGE_LOGIT); // reads the constant 1: a fixed low logit
  }

  // Hugging Face's GPT2Config names (io/checkpoint_writer.ts), plus what we built it for
  const config: Record<string, unknown> = gpt2Config(model, {
    tie_word_embeddings: false,
    bos_token_id: bos,
    eos_token_id: bos,
    token_range: [lo, hi],
    known_heads: {
      previous_token: [headName(PREV_HEAD)],
      induction: [headName(INDUCTION_HEAD)],
      duplicate_token: [],
    },
    handmade: {
      description: 'hand-set weights, no training: assignments/induction-heads/README.md explains them',
      seed: opts.seed,
      layout: LAYOUT,
    },
  });
  return { model, config };
}

// -----------------------------------------------------------------------------------------------
// The command line

export const COMMAND = {
  usage: 'npx tsx assignments/induction-heads/handmade.ts',
  description: `
Build, without training, a 2-layer attention-only GPT-2-layout checkpoint with one
previous-token head (layer ${PREV_HEAD.layer}, head ${PREV_HEAD.head}) and one induction head (layer ${INDUCTION_HEAD.layer}, head ${INDUCTION_HEAD.head}).
Writes model.safetensors and config.json; config.json records the token ids it was built for
("token_range") and its known heads. Run the experiment on it with
  npx tsx assignments/induction-heads/induction.ts --weights DIR --token-range LO,HI
(--token-range may be left out: induction.ts reads it from config.json)`,
  options: {
    out: { type: 'string', default: 'out/handmade', metavar: 'DIR', help: 'folder for model.safetensors and config.json (created when missing)' },
    'token-range': { type: 'string', default: DEFAULT_RANGE.join(','), metavar: 'LO,HI', help: `the token ids [LO, HI) to build it for (at most ${MAX_RANGE}); BOS gets the id HI` },
    seed: { type: 'int', default: 0, min: 0, metavar: 'N', help: 'seed of the random query/key weights of the heads that do nothing' },
  },
} as const satisfies CommandSpec;

export async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  const [lo, hi] = optionValue('--token-range', a['token-range'], parseTokenRange);
  const outDir = a.out;
  if (outDir === '') throw new UsageError('--out needs a folder');
  const out = new OutputWriter(outDir);
  out.check(); // a bad --out is refused before anything is built
  const { model, config } = buildHandmade({ lo, hi, seed: a.seed });
  // the one checkpoint writer: openai-community/gpt2's tensor names and Conv1D layout
  for (const [name, data] of checkpointFiles(model, config, { metadata: { format: 'pt', source: 'assignments/induction-heads/handmade.ts' } })) out.add(name, data);
  const written = out.commit();
  const print = (s = '') => process.stdout.write(s + '\n');
  print(`handmade induction model: ${N_LAYER} layers × ${N_HEAD} heads, n_embd ${N_EMBD}, context ${BLOCK_SIZE}, vocabulary ${hi + 1}`);
  print(`built for token ids [${lo}, ${hi}) (${hi - lo} tokens); BOS is id ${hi}`);
  print(`previous-token head ${headName(PREV_HEAD)}, induction head ${headName(INDUCTION_HEAD)}; the other heads write nothing; MLPs are zero`);
  for (const f of written) print(`  ${f}`);
  print(`next: npx tsx assignments/induction-heads/induction.ts --weights ${outDir} --token-range ${lo},${hi}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, 'npx tsx assignments/induction-heads/handmade.ts');
}
