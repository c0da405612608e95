import { matmulForward, matmulBackward, allocParams } from '../mingpt/kernels/index.ts';
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const inMem = (x: Float32Array) => { const y = allocParams(x.length); y.set(x); return y; };
for (const [BT, C, OC] of [[42, 768, 2304], [42, 768, 3072], [42, 3072, 768], [1, 768, 50257]]) {
  const inp = rand(BT * C), w = inMem(rand(OC * C)), out = new Float32Array(BT * OC), dout = rand(BT * OC), dinp = new Float32Array(BT * C);
  const t = (f: () => void) => { f(); const c0 = process.cpuUsage(); const t0 = performance.now(); for (let i = 0; i < 10; i++) f(); const cu = process.cpuUsage(c0); return [(performance.now() - t0) / 10, (cu.user + cu.system) / 10000]; };
  const flop = 2 * BT * C * OC / 1e9;
  const [fw, fc] = t(() => matmulForward(out, inp, w, null, BT, C, OC));
  const [bw, bc] = t(() => matmulBackward(dinp, null, null, dout, inp, w, BT, C, OC));
  console.log(`${BT}x${C}x${OC}: fwd ${(flop / fw * 1000).toFixed(1)} GFLOP/s wall (${(flop / fc * 1000).toFixed(1)} cpu); bwd-dinp ${(flop / bw * 1000).toFixed(1)} wall (${(flop / bc * 1000).toFixed(1)} cpu)`);
}
