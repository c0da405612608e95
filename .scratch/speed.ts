import { BPETokenizer } from '../mingpt/bpe.ts';
import { loadGPT } from '../io/load.ts';
import { logitDiffMetric } from '../lens/patching.ts';
import { atp_runs, get_atp_resid_post } from '../lens/attribution_patching.ts';
import { edge_attribution_patching } from '../lens/eap.ts';
import { run_with_grad_cache } from '../lens/gradients.ts';
const bpe = new BPETokenizer();
const clean = 'Michelle Jones was a top-notch student who always finished her homework early, helped her friends with mathematics, and never missed a single class. When the teacher asked who had won the prize, everyone said Michelle';
const corrupt = clean.replace('Jones', 'Smith');
const c = bpe.encode(clean), d = bpe.encode(corrupt);
console.log(c.length, d.length);
const model = loadGPT('.bench/gpt2-random');
const m = logitDiffMetric(bpe.encode(' Smith')[0], bpe.encode(' Jones')[0]);
const T = c.length;
const time = (what: string, n: number, f: () => void) => {
  f(); const ts: number[] = []; const cs: number[] = [];
  for (let i = 0; i < n; i++) { const c0 = process.cpuUsage(); const t0 = performance.now(); f(); ts.push(performance.now() - t0); const cu = process.cpuUsage(c0); cs.push((cu.user + cu.system) / 1000); }
  ts.sort((a, b) => a - b); cs.sort((a, b) => a - b);
  console.log(what.padEnd(40), 'wall', ts[n >> 1].toFixed(0), 'ms  cpu', cs[n >> 1].toFixed(0), 'ms');
  return ts[n >> 1];
};
time('forward (logits at last)', 5, () => model.forward(c, { logits_at: [T - 1] }));
time('forward+backward (grad cache)', 5, () => run_with_grad_cache(model, d, m, { names: (n) => n.endsWith('resid_post') }));
time('forward with grad record', 5, () => model.forward(d, { logits_at: [T - 1], grad: true }));
time('AtP resid_post (3 passes)', 5, () => get_atp_resid_post(atp_runs(model, c, d, m, ['resid_post'])));
const ioi = bpe.encode('When Mary and John went to the store, John gave a drink to');
const ioiC = bpe.encode('When Mary and John went to the store, Paul gave a drink to');
console.log('ioi', ioi.length, ioiC.length);
time('EAP one IOI prompt', 3, () => edge_attribution_patching(model, ioi, ioiC, logitDiffMetric(bpe.encode(' Mary')[0], bpe.encode(' John')[0])));
