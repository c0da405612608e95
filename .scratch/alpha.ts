import { BPETokenizer } from '../mingpt/bpe.ts';
import { DEFAULT_NAMES, buildHandmade } from '../assignments/ioi/handmade.ts';
import { makeDataset, tokenizePrompts } from '../assignments/ioi/dataset.ts';
import { edge_attribution_patching, rankEdges } from '../lens/eap.ts';
import { logitDiffMetric } from '../lens/patching.ts';
import { setKernelThreads } from '../mingpt/kernels/simd/threads.ts';
setKernelThreads(1);
const tok = new BPETokenizer();
const model = buildHandmade({ tokenizer: tok }).model;
const g = tokenizePrompts(makeDataset({ n: 150, seed: 1, names: DEFAULT_NAMES }), tok)[0];
const p = g.prompts[0];
const m = logitDiffMetric(p.io_id, p.s_id);
for (const steps of [50, 64, 100, 128, 200]) {
  const t0 = Date.now();
  const r = edge_attribution_patching(model, p.clean_ids, p.corrupt_ids, m, { steps });
  const ranked = rankEdges(r);
  const rank = (f: string, t: string) => ranked.findIndex((e) => e.from === f && e.to === t);
  const sc = (f: string, t: string) => ranked.find((e) => e.from === f && e.to === t)!.score.toFixed(3);
  console.log(steps, Date.now() - t0, 'ms', '0.1→1.3.k', rank('a0.1', 'a1.3.k'), sc('a0.1', 'a1.3.k'), '0.1→1.3.q', rank('a0.1', 'a1.3.q'), '1.3→2.2.q', rank('a1.3', 'a2.2.q'), 'top', ranked.slice(0, 8).map((e) => `${e.from}→${e.to} ${e.score.toFixed(2)}`).join(', '));
}
