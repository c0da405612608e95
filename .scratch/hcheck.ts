import { BPETokenizer } from '../mingpt/bpe.ts';
import { DEFAULT_NAMES, buildHandmade } from '../assignments/ioi/handmade.ts';
import { makeDataset, tokenizePrompts } from '../assignments/ioi/dataset.ts';
import { edge_attribution_patching, rankEdges } from '../lens/eap.ts';
import { logitDiffMetric } from '../lens/patching.ts';
const tok = new BPETokenizer();
const model = buildHandmade({ tokenizer: tok }).model;
const groups = tokenizePrompts(makeDataset({ n: 30, seed: 1, names: DEFAULT_NAMES }), tok);
for (const g of groups.slice(0, 3)) {
  const clean = g.prompts.map((p) => p.clean_ids), corrupt = g.prompts.map((p) => p.corrupt_ids);
  const m = logitDiffMetric(g.prompts.map((p) => p.io_id), g.prompts.map((p) => p.s_id));
  for (const steps of [1, 8]) {
  const r = edge_attribution_patching(model, clean, corrupt, m, { steps });
  console.log(g.T, g.prompts.length, steps, r.metric, rankEdges(r).slice(0, 8).map((e) => `${e.from}→${e.to} ${e.score.toFixed(3)}`).join(', '));
  }
}
