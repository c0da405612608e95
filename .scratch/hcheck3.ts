import { BPETokenizer } from '../mingpt/bpe.ts';
import { DEFAULT_NAMES, buildHandmade } from '../assignments/ioi/handmade.ts';
import { makeDataset, tokenizePrompts } from '../assignments/ioi/dataset.ts';
import { edge_attribution_patching, rankEdges } from '../lens/eap.ts';
import { logitDiffMetric } from '../lens/patching.ts';
const tok = new BPETokenizer();
const model = buildHandmade({ tokenizer: tok }).model;
const groups = tokenizePrompts(makeDataset({ n: 150, seed: 1, names: DEFAULT_NAMES }), tok);
for (const gi of [0, 5]) {
const g = groups[gi];
const clean = g.prompts.map((p) => p.clean_ids), corrupt = g.prompts.map((p) => p.corrupt_ids);
const m = logitDiffMetric(g.prompts.map((p) => p.io_id), g.prompts.map((p) => p.s_id));
for (const steps of [8, 16, 32]) {
  const t0 = Date.now();
  const r = edge_attribution_patching(model, clean, corrupt, m, { steps });
  const ranked = rankEdges(r);
  console.log(gi, g.T, steps, Date.now() - t0, 'ms');
  console.log('  ' + ranked.slice(0, 14).map((e) => `${e.from}→${e.to} ${e.score.toFixed(2)}`).join(', '));
}
}
