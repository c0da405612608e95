/**
 * The numerical kernels of the forward pass, on plain Float32Arrays, in the style of llm.c:
 * one function per operation, output first, then inputs, then the sizes spelled out.
 *
 *   BT = number of rows (batch × time), C = channels in, OC = channels out,
 *   B = batch, T = time (sequence length), NH = number of heads, hs = C / NH.
 *
 * Every array is row-major and contiguous. Weights are in PyTorch's nn.Linear layout
 * (OC, C), so the inner loop of a matmul walks along memory for the input and the weight
 * alike. Where a fast kernel exists, its plain twin (`...Naive`) stays beside it: the tests
 * check one against the other, and a reader can learn the operation from the naive one.
 */

/** out (BT, OC) = inp (BT, C) · weight (OC, C)ᵀ + bias (OC). The reference version. */
export function matmulForwardNaive(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  for (let i = 0; i < BT; i++) {
    for (let o = 0; o < OC; o++) {
      let sum = bias ? bias[o] : 0;
      for (let k = 0; k < C; k++) sum += inp[i * C + k] * weight[o * C + k];
      out[i * OC + o] = sum;
    }
  }
}

/**
 * The same product, fast. The ideas are llm.c's CPU matmul, fitted to what V8 compiles well:
 *
 *  1. A register tile. The innermost loop computes a 4 × 2 block of outputs (4 input rows ×
 *     2 output channels) in 8 local variables that stay in registers. One step along k loads
 *     6 numbers and does 16 flops; the naive loop loads 2 numbers for 2 flops. (Measured on the
 *     project's 2-core AMD EPYC, Node 20: 4×2 beat 4×3, 4×4, 6×2 and 8×2, whose accumulators no
 *     longer fit in the 16 floating-point registers and spill to the stack.)
 *  2. Packed rows. The 4 input rows of a tile are copied once into a Float64Array, interleaved,
 *     packed[b][k][r] = inp[4b + r][k], so the tile reads its 4 inputs at one running index, and
 *     they are already doubles. JavaScript multiplies and adds in double precision anyway, so
 *     packing changes no result; it only saves work in the innermost loop.
 *  3. Cache panels. Output channels are visited PANEL at a time: those PANEL weight rows
 *     (96 KiB at C = 768) stay in the L2 cache while every row tile passes over them, so each
 *     weight is fetched from memory once per call instead of once per tile of 4 rows.
 *
 * BT is padded to a multiple of 4 with zero rows (their outputs are computed and dropped).
 * Below 4 rows that would waste most of the work, so 1 to 3 rows take `matvecRows` instead.
 * Every output is a sum over k in the same order as the naive kernel, in doubles, rounded once
 * to float32 at the end; only the bias is added last instead of first.
 */
export function matmulForward(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  if (BT < 4) {
    matvecRows(out, inp, weight, bias, BT, C, OC);
    return;
  }
  const packed = packRows4(inp, BT, C); // (ceil(BT/4), C, 4)
  const nTiles = (BT + 3) >> 2;
  for (let o0 = 0; o0 < OC; o0 += PANEL) {
    const o1 = Math.min(OC, o0 + PANEL);
    for (let t = 0; t < nTiles; t++) {
      const x0 = t * 4 * C; // where this tile's packed rows start
      const i = t * 4; // its first row
      let o = o0;
      for (; o + 2 <= o1; o += 2) {
        const w0 = o * C, w1 = w0 + C;
        let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
        // (the `| 0` tell V8 these are small integers, which spares an overflow check per index)
        for (let k = 0, x = x0; k < C; k = (k + 1) | 0, x = (x + 4) | 0) {
          const a = weight[(w0 + k) | 0], b = weight[(w1 + k) | 0];
          const r0 = packed[x], r1 = packed[(x + 1) | 0], r2 = packed[(x + 2) | 0], r3 = packed[(x + 3) | 0];
          s00 += r0 * a; s01 += r0 * b;
          s10 += r1 * a; s11 += r1 * b;
          s20 += r2 * a; s21 += r2 * b;
          s30 += r3 * a; s31 += r3 * b;
        }
        const b0 = bias ? bias[o] : 0, b1 = bias ? bias[o + 1] : 0;
        storeTile(out, OC, BT, i, o, s00 + b0, s10 + b0, s20 + b0, s30 + b0);
        storeTile(out, OC, BT, i, o + 1, s01 + b1, s11 + b1, s21 + b1, s31 + b1);
      }
      if (o < o1) { // an odd last channel: a 4 × 1 tile
        const w0 = o * C;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0, x = x0; k < C; k = (k + 1) | 0, x = (x + 4) | 0) {
          const a = weight[(w0 + k) | 0];
          s0 += packed[x] * a; s1 += packed[(x + 1) | 0] * a; s2 += packed[(x + 2) | 0] * a; s3 += packed[(x + 3) | 0] * a;
        }
        const b0 = bias ? bias[o] : 0;
        storeTile(out, OC, BT, i, o, s0 + b0, s1 + b0, s2 + b0, s3 + b0);
      }
    }
  }
}

/** Output channels per cache panel in matmulForward: 32 rows of weights, 96 KiB at C = 768. */
const PANEL = 32;

/** Scratch for packRows4, grown on demand and reused: no allocation per call once warm. */
let packScratch = new Float64Array(0);

/** inp (BT, C) -> packed (ceil(BT/4), C, 4) doubles, zero rows after BT. Returns the scratch. */
export function packRows4(inp: Float32Array, BT: number, C: number): Float64Array {
  const nTiles = (BT + 3) >> 2;
  if (packScratch.length < nTiles * 4 * C) packScratch = new Float64Array(nTiles * 4 * C);
  const packed = packScratch;
  for (let t = 0; t < nTiles; t++) {
    const base = t * 4 * C;
    for (let r = 0; r < 4; r++) {
      const row = t * 4 + r;
      if (row < BT) {
        const src = row * C;
        for (let k = 0; k < C; k++) packed[base + 4 * k + r] = inp[src + k];
      } else {
        for (let k = 0; k < C; k++) packed[base + 4 * k + r] = 0;
      }
    }
  }
  return packed;
}

/** out[i..i+3, o] = s0..s3, skipping the padding rows at or after BT. */
function storeTile(out: Float32Array, OC: number, BT: number, i: number, o: number, s0: number, s1: number, s2: number, s3: number): void {
  out[i * OC + o] = s0;
  if (i + 1 < BT) out[(i + 1) * OC + o] = s1;
  if (i + 2 < BT) out[(i + 2) * OC + o] = s2;
  if (i + 3 < BT) out[(i + 3) * OC + o] = s3;
}

/**
 * out (BT, OC) = inp (BT, C) · weight (OC, C)ᵀ + bias (OC) one row at a time, 4 output channels
 * per pass: the kernel for very few rows (the last position's logits over the whole vocabulary).
 * Each weight is used once whatever we do, so the aim is just few loads per flop (5 per 8).
 */
export function matvecRows(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  for (let i = 0; i < BT; i++) {
    const x0 = i * C;
    let o = 0;
    for (; o + 4 <= OC; o += 4) {
      const w0 = o * C, w1 = w0 + C, w2 = w1 + C, w3 = w2 + C;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < C; k = (k + 1) | 0) {
        const x = inp[(x0 + k) | 0];
        s0 += x * weight[(w0 + k) | 0]; s1 += x * weight[(w1 + k) | 0];
        s2 += x * weight[(w2 + k) | 0]; s3 += x * weight[(w3 + k) | 0];
      }
      out[i * OC + o] = s0 + (bias ? bias[o] : 0);
      out[i * OC + o + 1] = s1 + (bias ? bias[o + 1] : 0);
      out[i * OC + o + 2] = s2 + (bias ? bias[o + 2] : 0);
      out[i * OC + o + 3] = s3 + (bias ? bias[o + 3] : 0);
    }
    for (; o < OC; o++) {
      const w0 = o * C;
      let s = 0;
      for (let k = 0; k < C; k++) s += inp[x0 + k] * weight[w0 + k];
      out[i * OC + o] = s + (bias ? bias[o] : 0);
    }
  }
}

/**
 * The backward pass of the matmul (llm.c's matmul_backward). Given dout (BT, OC), the gradient of
 * a loss with respect to out, it ADDS to
 *   dinp    (BT, C)  += dout · weight      how the loss changes with each input
 *   dweight (OC, C)  += doutᵀ · inp        ... with each weight
 *   dbias   (OC)     += Σ over rows of dout
 * Adding (not overwriting) is what a backward pass needs where one value feeds several places: the
 * contributions meet in one buffer. Pass null for what is not wanted: attribution needs dinp only,
 * and the weight gradients cost as much again. Each sum is taken in doubles, then added once.
 */
export function matmulBackward(
  dinp: Float32Array | null, dweight: Float32Array | null, dbias: Float32Array | null,
  dout: Float32Array, inp: Float32Array, weight: Float32Array, BT: number, C: number, OC: number,
): void {
  const acc = new Float64Array(C);
  if (dinp) {
    for (let i = 0; i < BT; i++) {
      acc.fill(0);
      for (let o = 0; o < OC; o++) {
        const d = dout[i * OC + o];
        if (d === 0) continue;
        const w = o * C;
        for (let k = 0; k < C; k++) acc[k] += d * weight[w + k];
      }
      for (let k = 0; k < C; k++) dinp[i * C + k] += acc[k];
    }
  }
  if (dweight || dbias) {
    for (let o = 0; o < OC; o++) {
      acc.fill(0);
      let db = 0;
      for (let i = 0; i < BT; i++) {
        const d = dout[i * OC + o];
        db += d;
        if (d === 0 || !dweight) continue;
        const x = i * C;
        for (let k = 0; k < C; k++) acc[k] += d * inp[x + k];
      }
      if (dweight) for (let k = 0; k < C; k++) dweight[o * C + k] += acc[k];
      if (dbias) dbias[o] += db;
    }
  }
}

const GELU_SCALE = Math.sqrt(2 / Math.PI);
/** GPT-2's GELU, the tanh approximation (minGPT's NewGELU), elementwise over N values. */
export function geluForward(out: Float32Array, inp: Float32Array, N: number): void {
  // BEGIN TASK M.3: the GELU of the MLP
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x)));
  }
  // END TASK M.3
}

/**
 * The GELU's backward: dinp (N) += dout (N) · GELU'(inp). With u = √(2/π)·(x + 0.044715·x³),
 * GELU(x) = ½·x·(1 + tanh u), so GELU'(x) = ½·(1 + tanh u) + ½·x·(1 − tanh² u)·du/dx.
 */
export function geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    // ½(1 + tanh u) = 1 / (1 + e^{−2u}) (Math.exp is much faster than Math.tanh); e^{−2u} is capped
    // where the sigmoid is 0 to double precision anyway, so that e·e below cannot overflow
    const e = Math.exp(Math.min(-2 * GELU_SCALE * (x + 0.044715 * x * x * x), 700));
    const half = 1 / (1 + e); // ½(1 + tanh u)
    const du = GELU_SCALE * (1 + 3 * 0.044715 * x * x);
    dinp[i] += dout[i] * (half + 2 * x * half * half * e * du); // ½(1 − tanh² u) = 2·half²·e
  }
}

/** out (N) = inp (N) + other (N). The residual connection. */
export function residualForward(out: Float32Array, inp: Float32Array, other: Float32Array, N: number): void {
  for (let i = 0; i < N; i++) out[i] = inp[i] + other[i];
}

/** The residual connection's backward: the sum passes its gradient to both terms, dinp1 += dout, dinp2 += dout. */
export function residualBackward(dinp1: Float32Array, dinp2: Float32Array, dout: Float32Array, N: number): void {
  for (let i = 0; i < N; i++) {
    dinp1[i] += dout[i];
    dinp2[i] += dout[i];
  }
}

/** In place, for each of the `rows` rows of length `n`: x ← softmax(x). Returns nothing. */
export function softmaxRows(x: Float32Array, rows: number, n: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let max = -Infinity;
    for (let k = 0; k < n; k++) if (x[o + k] > max) max = x[o + k];
    let sum = 0;
    for (let k = 0; k < n; k++) {
      const e = Math.exp(x[o + k] - max);
      x[o + k] = e;
      sum += e;
    }
    for (let k = 0; k < n; k++) x[o + k] /= sum;
  }
}

/**
 * The softmax's backward, row by row: given the softmax's output `out` and dout, the gradient with
 * respect to it, dinp += out ⊙ (dout − Σ_k dout_k·out_k). Where out is 0 (a masked key) the input's
 * gradient is 0, whatever dout says there.
 */
export function softmaxRowsBackward(dinp: Float32Array, dout: Float32Array, out: Float32Array, rows: number, n: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let dot = 0;
    for (let k = 0; k < n; k++) dot += dout[o + k] * out[o + k];
    for (let k = 0; k < n; k++) dinp[o + k] += out[o + k] * (dout[o + k] - dot);
  }
}

/**
 * The layer norm in two steps, so that the scale can be seen (and replaced) between them:
 * scale (BT) = sqrt(var + eps) for each row of inp (BT, C), biased variance as torch.nn.LayerNorm.
 * The scale is rounded to float32 here, like every activation we keep.
 */
export function layernormScale(scale: Float32Array, inp: Float32Array, BT: number, C: number, eps: number): void {
  // BEGIN TASK M.1: layer norm: each row's scale
  for (let i = 0; i < BT; i++) {
    const x = i * C;
    let mean = 0;
    for (let k = 0; k < C; k++) mean += inp[x + k];
    mean /= C;
    let v = 0;
    for (let k = 0; k < C; k++) {
      const d = inp[x + k] - mean;
      v += d * d;
    }
    scale[i] = Math.sqrt(v / C + eps);
  }
  // END TASK M.1
}

/** out (BT, C) = (inp − mean) / scale · weight + bias, with the row means of inp and the given scale (BT). */
export function layernormApply(
  out: Float32Array, inp: Float32Array, scale: Float32Array, weight: Float32Array, bias: Float32Array,
  BT: number, C: number,
): void {
  // BEGIN TASK M.1: layer norm: normalise, then gain and bias
  for (let i = 0; i < BT; i++) {
    const x = i * C;
    let mean = 0;
    for (let k = 0; k < C; k++) mean += inp[x + k];
    mean /= C;
    const s = scale[i];
    for (let k = 0; k < C; k++) out[x + k] = ((inp[x + k] - mean) / s) * weight[k] + bias[k];
  }
  // END TASK M.1
}

/**
 * The backward of layernormApply, with the scale as an input of its own (as the forward pass
 * shows it: hook_scale sits between the two steps). With x̂ = (inp − mean) / scale and
 * out = x̂ · weight + bias, given dout (BT, C), it adds to
 *   dinp (BT, C)   the gradient through the centring alone, the scale held fixed:
 *                  (dx̂ − mean(dx̂)) / scale, where dx̂ = dout · weight
 *   dscale (BT)    −Σ_c dx̂_c · x̂_c / scale
 *   dweight (C)    Σ over rows of dout · x̂;  dbias (C): Σ over rows of dout   (null: not wanted)
 * layernormScaleBackward then adds the path through the scale to dinp.
 */
export function layernormApplyBackward(
  dinp: Float32Array, dscale: Float32Array, dweight: Float32Array | null, dbias: Float32Array | null,
  dout: Float32Array, inp: Float32Array, scale: Float32Array, weight: Float32Array, BT: number, C: number,
): void {
  for (let i = 0; i < BT; i++) {
    const x = i * C;
    let mean = 0;
    for (let k = 0; k < C; k++) mean += inp[x + k];
    mean /= C;
    const s = scale[i];
    let sum = 0, dot = 0; // Σ dx̂ and Σ dx̂ · x̂
    for (let k = 0; k < C; k++) {
      const xhat = (inp[x + k] - mean) / s, d = dout[x + k], dxhat = d * weight[k];
      sum += dxhat;
      dot += dxhat * xhat;
      if (dweight) dweight[k] += d * xhat;
      if (dbias) dbias[k] += d;
    }
    for (let k = 0; k < C; k++) dinp[x + k] += (dout[x + k] * weight[k] - sum / C) / s;
    dscale[i] -= dot / s;
  }
}

/**
 * The backward of layernormScale: scale = sqrt(mean((inp − mean)²) + eps) changes with each input
 * by (inp − mean) / (C · scale) (the mean's own change drops out, as the deviations sum to 0), so
 * dinp (BT, C) += dscale (BT) · (inp − mean) / (C · scale).
 */
export function layernormScaleBackward(dinp: Float32Array, dscale: Float32Array, inp: Float32Array, scale: Float32Array, BT: number, C: number): void {
  for (let i = 0; i < BT; i++) {
    const x = i * C;
    let mean = 0;
    for (let k = 0; k < C; k++) mean += inp[x + k];
    mean /= C;
    const f = dscale[i] / (C * scale[i]);
    for (let k = 0; k < C; k++) dinp[x + k] += f * (inp[x + k] - mean);
  }
}

/**
 * The whole layer norm's backward in one call, given the forward's scale (BT): the two steps
 * above. dinp += the gradient with respect to inp; dweight, dbias as in layernormApplyBackward.
 */
export function layernormBackward(
  dinp: Float32Array, dweight: Float32Array | null, dbias: Float32Array | null,
  dout: Float32Array, inp: Float32Array, scale: Float32Array, weight: Float32Array, BT: number, C: number,
): void {
  const dscale = new Float32Array(BT); // (BT)
  layernormApplyBackward(dinp, dscale, dweight, dbias, dout, inp, scale, weight, BT, C);
  layernormScaleBackward(dinp, dscale, inp, scale, BT, C);
}

/** q, k, v (BT, C) each = the three C-wide column blocks of qkv (BT, 3C): torch's `.split(C, dim=2)`. */
export function splitQKV(q: Float32Array, k: Float32Array, v: Float32Array, qkv: Float32Array, BT: number, C: number): void {
  for (let i = 0; i < BT; i++) {
    const o = i * 3 * C;
    q.set(qkv.subarray(o, o + C), i * C);
    k.set(qkv.subarray(o + C, o + 2 * C), i * C);
    v.set(qkv.subarray(o + 2 * C, o + 3 * C), i * C);
  }
}

/** splitQKV's backward: dqkv (BT, 3C) += the three gradients side by side (torch's split, undone). */
export function splitQKVBackward(dqkv: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array, BT: number, C: number): void {
  for (let i = 0; i < BT; i++) {
    const o = i * 3 * C;
    for (let c = 0; c < C; c++) {
      dqkv[o + c] += dq[i * C + c];
      dqkv[o + C + c] += dk[i * C + c];
      dqkv[o + 2 * C + c] += dv[i * C + c];
    }
  }
}

/**
 * The attention scores: att (B, NH, Tq, Tk) = q · kᵀ / √hs with the causal mask, where q is
 * (B, Tq, NH, hs) and k is (B, Tk, NH, hs) (the same memory as (B, T, C)). The Tq queries are the
 * last Tq positions of the Tk: query i sits at position Tk − Tq + i (Tq = Tk = T in an ordinary
 * run; fewer queries when earlier keys come from a cache). Row i of a head says how much that query
 * matches each key; keys after the query's position (the future) are −∞, so the softmax gives them
 * exactly 0.
 */
export function attentionScoresForward(
  att: Float32Array, q: Float32Array, k: Float32Array, B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  // BEGIN TASK M.2: causal attention: the masked scores
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < Tq; i++) {
        const t = Tk - Tq + i;                          // the query's position
        const qo = (b * Tq + i) * C + h * hs;          // q[b, i, h, :]
        const row = ((b * NH + h) * Tq + i) * Tk;      // att[b, h, i, :]
        for (let t2 = 0; t2 <= t; t2++) {
          const ko = (b * Tk + t2) * C + h * hs;       // k[b, t2, h, :]
          let dot = 0;
          for (let c = 0; c < hs; c++) dot += q[qo + c] * k[ko + c];
          att[row + t2] = dot * scale;
        }
        for (let t2 = t + 1; t2 < Tk; t2++) att[row + t2] = -Infinity; // masked: no peeking ahead
      }
    }
  }
  // END TASK M.2
}

/**
 * The backward of attentionScoresForward: given datt (B, NH, Tq, Tk), the gradient of the scores,
 * dq += datt · k / √hs and dk += dattᵀ · q / √hs, head by head. Masked scores (the future) are
 * constants −∞: nothing flows through them.
 */
export function attentionScoresBackward(
  dq: Float32Array, dk: Float32Array, datt: Float32Array, q: Float32Array, k: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < Tq; i++) {
        const t = Tk - Tq + i;
        const qo = (b * Tq + i) * C + h * hs;
        const row = ((b * NH + h) * Tq + i) * Tk;
        for (let t2 = 0; t2 <= t; t2++) {
          const g = datt[row + t2] * scale;
          if (g === 0) continue;
          const ko = (b * Tk + t2) * C + h * hs;
          for (let c = 0; c < hs; c++) {
            dq[qo + c] += g * k[ko + c];
            dk[ko + c] += g * q[qo + c];
          }
        }
      }
    }
  }
}

/**
 * Each head's weighted sum of values: z (B, Tq, NH, hs) = att (B, NH, Tq, Tk) · v, v (B, Tk, NH, hs).
 * z laid out (B, Tq, NH, hs) is the same memory as (B, Tq, C): minGPT's
 * `y.transpose(1, 2).contiguous().view(B, T, C)` "re-assemble all head outputs side by side".
 */
export function attentionValuesForward(
  z: Float32Array, att: Float32Array, v: Float32Array, B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const hs = C / NH;
  z.fill(0, 0, B * Tq * C);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Tq; i++) {
      for (let h = 0; h < NH; h++) {
        const out = (b * Tq + i) * C + h * hs;       // z[b, i, h, :]
        const row = ((b * NH + h) * Tq + i) * Tk;     // att[b, h, i, :]
        for (let t2 = 0; t2 < Tk; t2++) {
          const a = att[row + t2];
          if (a === 0) continue; // the masked future, mostly
          const vo = (b * Tk + t2) * C + h * hs;     // v[b, t2, h, :]
          for (let c = 0; c < hs; c++) z[out + c] += a * v[vo + c];
        }
      }
    }
  }
}

/**
 * The backward of attentionValuesForward: given dz (B, Tq, NH, hs),
 *   datt (B, NH, Tq, Tk) += dz · vᵀ for every key, the masked ones too (the pattern's gradient
 *                          there says what a weight on a future key would do; the softmax's
 *                          backward then stops it, since the pattern is 0 there)
 *   dv   (B, Tk, NH, hs) += attᵀ · dz
 */
export function attentionValuesBackward(
  datt: Float32Array, dv: Float32Array, dz: Float32Array, att: Float32Array, v: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const hs = C / NH;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Tq; i++) {
      for (let h = 0; h < NH; h++) {
        const zo = (b * Tq + i) * C + h * hs;
        const row = ((b * NH + h) * Tq + i) * Tk;
        for (let t2 = 0; t2 < Tk; t2++) {
          const vo = (b * Tk + t2) * C + h * hs;
          let dot = 0;
          for (let c = 0; c < hs; c++) dot += dz[zo + c] * v[vo + c];
          datt[row + t2] += dot;
          const a = att[row + t2];
          if (a !== 0) for (let c = 0; c < hs; c++) dv[vo + c] += a * dz[zo + c];
        }
      }
    }
  }
}

/**
 * Causal self-attention in one call: z (B, Tq, C) = softmax(q · kᵀ / √hs, masked) · v, head by head,
 * with the shapes and positions of attentionScoresForward. The same numbers, bit for bit, as
 * attentionScoresForward, then softmaxRows, then attentionValuesForward, but one query row at a time,
 * so the (B, NH, Tq, Tk) scores never exist: one row of Tk numbers is all the memory it needs (the
 * model uses the three steps only when a hook wants to see the scores or the pattern).
 */
export function attentionForward(
  z: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  // BEGIN TASK M.2: causal attention: scores, mask, softmax, values
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const row = new Float32Array(Tk); // one query's scores, then its probabilities
  const acc = new Float32Array(hs); // one head's output for that query
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Tq; i++) {
      const t = Tk - Tq + i; // the query's position; keys 0..t are visible
      for (let h = 0; h < NH; h++) {
        const qo = (b * Tq + i) * C + h * hs;
        // scores q·k/√hs and their maximum
        let max = -Infinity;
        for (let t2 = 0; t2 <= t; t2++) {
          const ko = (b * Tk + t2) * C + h * hs;
          let dot = 0;
          for (let c = 0; c < hs; c++) dot += q[qo + c] * k[ko + c];
          row[t2] = dot * scale;
          if (row[t2] > max) max = row[t2];
        }
        // softmax over the visible keys (the masked ones would add exp(−∞) = 0)
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const e = Math.exp(row[t2] - max);
          row[t2] = e;
          sum += e;
        }
        // the weighted sum of the values
        acc.fill(0);
        for (let t2 = 0; t2 <= t; t2++) {
          row[t2] /= sum;
          const p = row[t2]; // read back: the probability as float32, as softmaxRows stores it
          if (p === 0) continue;
          const vo = (b * Tk + t2) * C + h * hs;
          for (let c = 0; c < hs; c++) acc[c] += p * v[vo + c];
        }
        z.set(acc, qo);
      }
    }
  }
  // END TASK M.2
}

/**
 * Mean cross-entropy of logits (B, T, V) against targets (B, T), skipping −1 targets: minGPT's
 * F.cross_entropy(logits, targets, ignore_index=-1). Each row's log-sum-exp is taken in doubles,
 * after subtracting its maximum.
 */
export function crossEntropyForward(logits: Float32Array, targets: number[][], B: number, T: number, V: number): number {
  let total = 0, count = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const y = targets[b][t];
      if (y === -1) continue;
      const o = (b * T + t) * V;
      total -= logits[o + y] - rowLogSumExp(logits, o, V);
      count++;
    }
  }
  return total / count;
}

/** log Σ exp over the row x[o … o + V), in doubles, after subtracting the row's maximum. */
function rowLogSumExp(x: Float32Array, o: number, V: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (x[o + i] > max) max = x[o + i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(x[o + i] - max);
  return max + Math.log(sum);
}

/**
 * The backward of the mean cross-entropy, through the softmax: dlogits (B, T, V) += (softmax(logits)
 * − onehot(target)) / count for every row with a target (count of them), 0 for −1 targets.
 */
export function crossEntropyBackward(dlogits: Float32Array, logits: Float32Array, targets: number[][], B: number, T: number, V: number): void {
  let count = 0;
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) if (targets[b][t] !== -1) count++;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const y = targets[b][t];
      if (y === -1) continue;
      const o = (b * T + t) * V, lse = rowLogSumExp(logits, o, V);
      for (let i = 0; i < V; i++) dlogits[o + i] += (Math.exp(logits[o + i] - lse) - (i === y ? 1 : 0)) / count;
    }
  }
}
