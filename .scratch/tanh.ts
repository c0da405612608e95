const N = 129024, x = Float32Array.from({ length: N }, () => Math.random() * 6 - 3), d = new Float32Array(N);
const S = Math.sqrt(2 / Math.PI);
function a() { for (let i = 0; i < N; i++) { const v = x[i]; d[i] += Math.tanh(S * (v + 0.044715 * v * v * v)); } }
function b() { for (let i = 0; i < N; i++) { const v = x[i]; d[i] += 1 / (1 + Math.exp(-2 * S * (v + 0.044715 * v * v * v))); } }
for (let r = 0; r < 3; r++) for (const [n, f] of [['tanh', a], ['exp', b]] as const) { for (let i = 0; i < 5; i++) f(); const t0 = performance.now(); for (let i = 0; i < 60; i++) f(); console.log(n, ((performance.now() - t0) / 60 * 12).toFixed(1), 'ms/12 layers'); }
