import { BPETokenizer } from '../mingpt/bpe.ts';
import { DEFAULT_NAMES, buildHandmade } from '../assignments/ioi/handmade.ts';
import { makeDataset, tokenizePrompts } from '../assignments/ioi/dataset.ts';
import { edge_attribution_patching, rankEdges } from '../lens/eap.ts';
import { logitDiffMetric } from '../lens/patching.ts';
const tok = new BPETokenizer();
const model = buildHandmade({ tokenizer: tok }).model;
const groups = tokenizePrompts(makeDataset({ n: 150, seed: 1, names: DEFAULT_NAMES }), tok);
const g = groups[0];
const clean = g.prompts.map((p) => p.clean_ids), corrupt = g.prompts.map((p) => p.corrupt_ids);
const m = logitDiffMetric(g.prompts.map((p) => p.io_id), g.prompts.map((p) => p.s_id));
for (const steps of [1, 4, 16, 64]) {
  const t0 = Date.now();
  const r = edge_attribution_patching(model, clean, corrupt, m, { steps });
  const ranked = rankEdges(r);
  const rank = (f: string, t: string) => ranked.findIndex((e) => e.from === f && e.to === t);
  console.log(steps, Date.now() - t0, 'ms', ranked.slice(0, 6).map((e) => `${e.from}→${e.to} ${e.score.toFixed(3)}`).join(', '));
  console.log('   ranks: 0.1→1.3.k', rank('a0.1', 'a1.3.k'), '0.1→1.3.q', rank('a0.1', 'a1.3.q'), '1.3→2.2.q', rank('a1.3', 'a2.2.q'), '2.2→logits', rank('a2.2', 'logits'));
}
