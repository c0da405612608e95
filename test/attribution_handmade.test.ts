/**
 * Attribution patching and edge attribution patching on the two models whose circuits are set by
 * hand (handmade.ts in assignments/induction-heads/ and assignments/ioi/; their READMEs explain the
 * constructions). Every expectation is a fact of the construction:
 *   - induction model: heads 0.2 (previous token) and 1.1 (induction) do the work and the six
 *     others write nothing, so AtP of the heads' outputs is exactly the corrupted metric for those
 *     six and ranks 0.2 and 1.1 first; exact patching of either restores the clean answer;
 *   - IOI model: the circuit is duplicate-token head 0.1 → S-inhibition head 1.3 (its keys read the
 *     duplicate flag) → name mover 2.2 (its queries read what 1.3 inhibits) → logits; the decoy heads
 *     write nothing. Its attention is saturated: in the ABC run the S-inhibition head rests on
 *     position 0 with a margin of 24 in its attention logits, so the corrupted run's gradient
 *     through 1.3's keys is e⁻²⁴-small and plain EAP cannot see the edge 0.1 → 1.3; EAP-IG, whose
 *     gradients are taken along the way from the corrupted to the clean input, does.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { RNG } from '../mingpt/utils.ts';
import { DEFAULT_RANGE, INDUCTION_HEAD, PREV_HEAD, buildHandmade as buildInduction } from '../assignments/induction-heads/handmade.ts';
import { DEFAULT_NAMES, DUP_HEAD, NAME_MOVER, SINH_HEAD, buildHandmade as buildIOI } from '../assignments/ioi/handmade.ts';
import { makeDataset, tokenizePrompts } from '../assignments/ioi/dataset.ts';
import { atp_runs, get_atp_attn_head_out_all_pos } from '../lens/attribution_patching.ts';
import { get_act_patch_attn_head_out_all_pos, logitDiffMetric } from '../lens/patching.ts';
import { run_with_cache } from '../lens/activation_cache.ts';
import { edge_attribution_patching, rankEdges } from '../lens/eap.ts';

test('induction model: AtP of the heads\' outputs ranks 0.2 and 1.1 first; the six other heads get exactly nothing', () => {
  const [LO, HI] = DEFAULT_RANGE; // HI is BOS
  const model = buildInduction({ lo: LO, hi: HI, seed: 0 }).model;
  const rng = new RNG(7);
  const a = Array.from({ length: 20 }, () => LO + Math.floor(rng.random() * (HI - LO)));
  // clean: a random sequence, then its first ten tokens again: at a₉ the induction head predicts a₁₀.
  // corrupted: a second a₉ in the first half (in a₁₅'s place), so the induction head splits between
  // what followed each a₉ (a₁₀ and a₁₆): its attention is not saturated there, and the previous-token
  // head's output matters to first order
  const clean = [HI, ...a, ...a.slice(0, 10)];
  const corrupt = clean.slice();
  corrupt[1 + 15] = a[9];
  const metric = logitDiffMetric(a[10], a[16]);
  const est = get_atp_attn_head_out_all_pos(atp_runs(model, clean, corrupt, metric, ['z']));
  const nh = est.shape[1], key = (i: number) => `${Math.floor(i / nh)}.${i % nh}`;
  const order = est.data.map((v, i) => [Math.abs(v - est.corrupted), i]).sort((x, y) => y[0] - x[0]).map(([, i]) => key(i));
  assert.equal(order.slice(0, 2).sort(), [`${PREV_HEAD.layer}.${PREV_HEAD.head}`, `${INDUCTION_HEAD.layer}.${INDUCTION_HEAD.head}`].sort());
  est.data.forEach((v, i) => { if (!order.slice(0, 2).includes(key(i))) assert.is(v, est.corrupted, `head ${key(i)} writes nothing`); });
  // the exact patches: either head alone brings the clean answer back
  const exact = get_act_patch_attn_head_out_all_pos(model, corrupt, run_with_cache(model, clean).cache, metric);
  for (const h of [PREV_HEAD, INDUCTION_HEAD]) {
    const v = exact.data[h.layer * nh + h.head];
    assert.ok(Math.abs(v - exact.clean) < 1e-3 * Math.abs(exact.clean), `exact patch of ${h.layer}.${h.head}: ${v} vs clean ${exact.clean}`);
  }
});

test('IOI model: EAP-IG\'s top edges are the circuit\'s, 0.1 → 1.3 (keys) → 2.2 (queries) → logits; plain EAP misses the saturated 0.1 → 1.3', () => {
  const tok = new BPETokenizer();
  const model = buildIOI({ tokenizer: tok }).model;
  const p = tokenizePrompts(makeDataset({ n: 15, seed: 1, names: DEFAULT_NAMES }), tok)[0].prompts[0];
  const metric = logitDiffMetric(p.io_id, p.s_id);
  const head = (x: { layer: number; head: number }) => `a${x.layer}.${x.head}`;
  const dup = head(DUP_HEAD), sinh = head(SINH_HEAD), mover = head(NAME_MOVER);
  const circuitNodes = new Set(['embed', 'logits', dup, sinh, mover]);
  const nodeOf = (n: string) => n.replace(/\.[qkv]$/, '');

  const ig = rankEdges(edge_attribution_patching(model, p.clean_ids, p.corrupt_ids, metric, { steps: 64 }));
  const top = ig.slice(0, 8);
  for (const e of top) assert.ok(circuitNodes.has(nodeOf(e.from)) && circuitNodes.has(nodeOf(e.to)), `a top edge off the circuit: ${e.from} → ${e.to}`);
  const inTop = (from: string, to: string[]) => top.some((e) => e.from === from && to.includes(e.to));
  assert.ok(inTop(dup, [`${sinh}.k`, `${sinh}.q`]), 'duplicate head → S-inhibition head');
  assert.ok(inTop(sinh, [`${mover}.q`]), 'S-inhibition head → name mover\'s queries');
  assert.ok(inTop(mover, ['logits']), 'name mover → logits');

  const plain = rankEdges(edge_attribution_patching(model, p.clean_ids, p.corrupt_ids, metric));
  const saturated = plain.find((e) => e.from === dup && e.to === `${sinh}.k`)!;
  assert.ok(Math.abs(saturated.score) < 1e-6, `plain EAP, ${dup} → ${sinh}.k: ${saturated.score}`);
  assert.is(plain[0].from + ' → ' + plain[0].to, `${mover} → logits`);
});

test.run();
