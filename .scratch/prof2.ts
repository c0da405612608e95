import { BPETokenizer } from '../mingpt/bpe.ts';
import { loadGPT } from '../io/load.ts';
import { logitDiffMetric } from '../lens/patching.ts';
import { profile } from '../bench/profile.ts';
import { setKernelThreads } from '../mingpt/kernels/simd/threads.ts';
setKernelThreads(1);
const bpe = new BPETokenizer();
const clean = 'Michelle Jones was a top-notch student who always finished her homework early, helped her friends with mathematics, and never missed a single class. When the teacher asked who had won the prize, everyone said Michelle';
const d = bpe.encode(clean.replace('Jones', 'Smith'));
const model = loadGPT('.bench/gpt2-random');
const m = logitDiffMetric(bpe.encode(' Smith')[0], bpe.encode(' Jones')[0]);
const T = d.length;
const cpu = (f: () => void) => { const c0 = process.cpuUsage(); f(); const c = process.cpuUsage(c0); return (c.user + c.system) / 1000; };
for (let i = 0; i < 3; i++) {
  const f = cpu(() => model.forward(d, { logits_at: [T - 1] }));
  let r: any; const fr = cpu(() => { r = model.forward(d, { logits_at: [T - 1], grad: true }); });
  const b = cpu(() => model.backward(m.backward!(r.logits), { params: false }));
  console.log('1 thread: forward', f.toFixed(0), 'recording forward', fr.toFixed(0), 'backward', b.toFixed(0));
}
const p = await profile(() => { for (let i = 0; i < 3; i++) { const r = model.forward(d, { logits_at: [T - 1], grad: true }); model.backward(m.backward!(r.logits), { params: false }); } });
for (const [k, s] of p.slice(0, 12)) console.log((s * 100).toFixed(1).padStart(5), k);
