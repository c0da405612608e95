/**
 * The pieces of the induction-formation experiment (README.md beside this file explains it):
 *
 *   AttentionOnlyGPT   minGPT's GPT in GPT-2's layout with its MLPs held at zero: their weights
 *                      are zero and left out of the optimizer, so training never moves them
 *   RecurringPairs     the training set: random tokens among which a few two-token spans of
 *                      each sequence's own come back again and again
 *   measure            one forward pass over a fixed batch of [BOS, x, x] sequences: the loss on
 *                      each half and every head's induction and previous-token score
 *   phaseChange        where, in the log, the second half's loss falls and the induction score
 *                      rises, and whether they do it together
 *
 * The measurements are the induction-heads experiment's own (../induction-heads/circuit.ts's
 * cleanRun, whose scores are lens/head_detector.ts's), so that what training shows here is what
 * `induction.ts --weights` finds in the checkpoint afterwards.
 */
import { GPT } from '../../mingpt/model.ts';
import type { Dataset } from '../../mingpt/trainer.ts';
import { RNG } from '../../mingpt/utils.ts';
import { headName } from '../../lens/heads.ts';
import { cleanRun, summarize } from '../induction-heads/circuit.ts';
import { repeatedTokens } from '../induction-heads/scores.ts';

// -----------------------------------------------------------------------------------------------
// the model

export interface ModelShape {
  n_layer: number;
  n_head: number;
  n_embd: number;
  /** token ids the data is drawn from, [lo, hi); BOS is hi, so the vocabulary is hi + 1 */
  lo: number;
  hi: number;
  /** the measuring batch's copies are seq_len tokens long; every sequence, and the context, is 2 · seq_len + 1 tokens */
  seq_len: number;
}

const isMlp = (name: string) => name.includes('.mlp.');

/**
 * A two-layer attention-only transformer in GPT-2's layout. GPT-2's blocks always have an MLP;
 * here its four tensors are zero and stay zero: configure_optimizers leaves them out (PyTorch
 * would say requires_grad=False), so no step, and no weight decay, ever touches them, and the
 * trainer's gradient clipping does not count them. A zero MLP adds exactly zero to the residual
 * stream (GELU(0) = 0), so every block is attention only, and the checkpoint loads anywhere a
 * GPT-2 does. lm_head is a parameter of its own, as in a minGPT model trained from scratch.
 */
export class AttentionOnlyGPT extends GPT {
  constructor(shape: ModelShape, seed: number) {
    const config = GPT.get_default_config();
    config.model_type = null;
    config.merge_from_dict({
      n_layer: shape.n_layer, n_head: shape.n_head, n_embd: shape.n_embd,
      vocab_size: shape.hi + 1, block_size: 2 * shape.seq_len + 1,
    });
    super(config, { tie_lm_head: false, rng: new RNG(seed) });
    for (const [name, p] of this.named_parameters) if (isMlp(name)) p.fill(0);
  }

  override configure_optimizers(train_config: Parameters<GPT['configure_optimizers']>[0]): ReturnType<GPT['configure_optimizers']> {
    const optimizer = super.configure_optimizers(train_config);
    for (const group of optimizer.param_groups) group.params = group.params.filter((p) => !isMlp(p.name));
    return optimizer;
  }
}

// -----------------------------------------------------------------------------------------------
// the data

/** A 32-bit hash of (seed, i), so that example i of a seed is the same whenever it is drawn. */
function exampleSeed(seed: number, i: number): number {
  let h = Math.imul(seed ^ 0x3c6ef372, 0x9e3779b1) ^ Math.imul(i, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** How the training sequences are made (RecurringPairs). */
export interface PairsSettings {
  /** each sequence has 1 … max_pairs pairs of its own */
  max_pairs: number;
  /** the chance that the next place in a sequence starts one of its pairs rather than a random token */
  pair_rate: number;
}

/**
 * The training set: 2^31 sequences of T = 2 · seq_len + 1 tokens, example i made from (seed, i)
 * when it is asked for. Each sequence is BOS, then random tokens from [lo, hi) among which a few
 * two-token spans of its own, pairs (a, b), come back again and again: at each place, with
 * probability pair_rate, one of the sequence's pairs is written, else one random token. Every
 * sequence picks new pairs (1 … max_pairs of them, the first tokens all different), so no weight
 * can remember them: the only way to predict the b after a recurring a is to look back for an
 * earlier a and copy what followed it. That is what an induction head does.
 *
 * Why pairs at random places, rather than the measuring batch's [BOS, x, x] layout: with the copy
 * always seq_len positions after the original, a head in layer 0 learns to look seq_len − 1
 * positions back by position alone, and solves that task without an induction head. With each
 * pair recurring several times per sequence, the first gradients towards looking back to the
 * right place add up over the recurrences, and the induction head forms in a few hundred steps,
 * not tens of thousands.
 */
export class RecurringPairs implements Dataset {
  readonly length = 2 ** 31;
  readonly T: number;
  constructor(readonly shape: Pick<ModelShape, 'lo' | 'hi' | 'seq_len'>, readonly pairs: PairsSettings, readonly seed: number) {
    if (!(pairs.max_pairs >= 1 && pairs.max_pairs <= shape.hi - shape.lo)) throw new Error(`max_pairs ${pairs.max_pairs} must be in 1 … ${shape.hi - shape.lo} (the pairs' first tokens differ)`);
    if (!(pairs.pair_rate >= 0 && pairs.pair_rate <= 1)) throw new Error(`pair_rate ${pairs.pair_rate} must be in [0, 1]`);
    this.T = 2 * shape.seq_len + 1;
  }

  /** Example i as one sequence of T tokens. */
  sequence(i: number): number[] {
    const { lo, hi } = this.shape;
    const rng = new RNG(exampleSeed(this.seed, i));
    const K = rng.randint(1, this.pairs.max_pairs + 1);
    const first: number[] = [];
    while (first.length < K) {
      const a = rng.randint(lo, hi);
      if (!first.includes(a)) first.push(a);
    }
    const second = first.map(() => rng.randint(lo, hi));
    const s = [hi]; // BOS
    while (s.length < this.T) {
      if (rng.random() < this.pairs.pair_rate) {
        const k = rng.randint(0, K);
        s.push(first[k], second[k]);
      } else {
        s.push(rng.randint(lo, hi));
      }
    }
    return s.slice(0, this.T);
  }

  /** (x, y): the sequence without its last token, and without its first (the next-token targets). */
  get(i: number): [number[], number[]] {
    const s = this.sequence(i);
    return [s.slice(0, -1), s.slice(1)];
  }
}

/**
 * The fixed batch every measurement is made on: the induction-heads experiment's sequences,
 * BOS + seq_len random tokens + the same again, so that "first half" and "second half" mean
 * what they mean there (and the training data never has this layout).
 */
export function evalTokens(shape: Pick<ModelShape, 'lo' | 'hi' | 'seq_len'>, batch: number, seed: number): number[][] {
  return repeatedTokens({ batch, seqLen: shape.seq_len, lo: shape.lo, hi: shape.hi, bos: shape.hi, seed: exampleSeed(seed, -1) });
}

// -----------------------------------------------------------------------------------------------
// measuring

/** One measurement of the model on the fixed batch. */
export interface Measurement {
  /** mean cross-entropy (nats) of the first copy's tokens: nothing to copy from yet */
  first_half_loss: number;
  /** mean cross-entropy of the second copy's tokens (its first excepted): each followed the current token before */
  second_half_loss: number;
  /** [layer][head]: mean attention from the second copy to the token after the current token's first occurrence */
  induction: number[][];
  /** [layer][head]: mean attention to the previous position */
  previous_token: number[][];
  /** [layer]: the attention pattern (nh, T, T) of the batch's first sequence */
  patterns: Float32Array[];
}

export function measure(model: GPT, tokens: number[][], seq_len: number): Measurement {
  const run = cleanRun(model, tokens, seq_len);
  const s = summarize(run);
  return {
    first_half_loss: -s.first_half_logprob,
    second_half_loss: -s.second_half_logprob,
    induction: run.scores.induction,
    previous_token: run.scores.previous_token,
    patterns: run.patterns,
  };
}

// -----------------------------------------------------------------------------------------------
// reading the log

/** One line of training.json's log. */
export interface LogEntry {
  /** optimizer steps taken */
  step: number;
  /** mean training loss of the steps since the previous entry (at step 0: the first batch's, before any step) */
  loss: number;
  first_half_loss: number;
  second_half_loss: number;
  induction: number[][];
  previous_token: number[][];
  /** processor seconds since training began */
  cpu_s: number;
}

/** The best head by a score, "layer.head", among layers [fromLayer, toLayer), at one entry. */
export function topHead(scores: number[][], fromLayer = 0, toLayer = scores.length): { head: string; layer: number; index: number; score: number } {
  let best = { head: '', layer: -1, index: -1, score: -Infinity };
  for (let l = fromLayer; l < toLayer; l++) scores[l].forEach((score, h) => {
    if (score > best.score) best = { head: headName({ layer: l, head: h }), layer: l, index: h, score };
  });
  return best;
}

/** The first logged step at which `values` (one per entry) has gone `fraction` of the way from its first value to its last. */
function crossing(log: readonly LogEntry[], values: readonly number[], fraction: number): number | null {
  const first = values[0], last = values[values.length - 1], level = first + fraction * (last - first);
  const i = values.findIndex((v) => (last >= first ? v >= level : v <= level));
  return i < 0 ? null : log[i].step;
}

/** A curve's change over the run: where it went 10 %, 50 % and 90 % of the way from start to end. */
export interface Jump {
  start: number;
  end: number;
  /** logged steps of the 10 %, 50 % and 90 % crossings */
  at10: number | null;
  at50: number | null;
  at90: number | null;
}

function jump(log: readonly LogEntry[], values: readonly number[]): Jump {
  return {
    start: values[0], end: values[values.length - 1],
    at10: crossing(log, values, 0.1), at50: crossing(log, values, 0.5), at90: crossing(log, values, 0.9),
  };
}

export interface PhaseChange {
  /** the strongest induction head at the end (a layer above the first), and its previous-token partner in the layer below */
  induction_head: string;
  previous_token_head: string;
  second_half_loss: Jump;
  induction_score: Jump;
  previous_token_score: Jump;
  /** whether induction heads formed: the induction head attends mostly to the right token, and the second half is predicted far better than the first */
  formed: boolean;
  /** the half-way points of the loss's fall and of the induction score's rise, in steps apart */
  apart_steps: number | null;
}

/** Minimum induction score, and minimum gap between the halves' losses (nats), for "formed". */
export const FORMED = { induction_score: 0.4, loss_gap: 1 };

export function phaseChange(log: readonly LogEntry[]): PhaseChange {
  const last = log[log.length - 1];
  const ind = topHead(last.induction, 1);
  const prev = topHead(last.previous_token, 0, ind.layer);
  const indScore = log.map((e) => e.induction[ind.layer][ind.index]);
  const prevScore = log.map((e) => e.previous_token[prev.layer][prev.index]);
  const loss = jump(log, log.map((e) => e.second_half_loss));
  const induction_score = jump(log, indScore);
  const formed = ind.score >= FORMED.induction_score && last.first_half_loss - last.second_half_loss >= FORMED.loss_gap;
  return {
    induction_head: ind.head,
    previous_token_head: prev.head,
    second_half_loss: loss,
    induction_score,
    previous_token_score: jump(log, prevScore),
    formed,
    apart_steps: loss.at50 !== null && induction_score.at50 !== null ? Math.abs(loss.at50 - induction_score.at50) : null,
  };
}
