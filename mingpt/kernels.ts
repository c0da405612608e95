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
 * The same product, register-blocked: a tile of 4 input rows × 2 output channels is held in
 * eight local accumulators, so every weight value loaded from memory is used four times and
 * every input value twice. Rows left over (BT not a multiple of 4) take the one-row path.
 */
export function matmulForward(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  let i = 0;
  for (; i + 4 <= BT; i += 4) {
    const x0 = i * C, x1 = x0 + C, x2 = x1 + C, x3 = x2 + C;
    let o = 0;
    for (; o + 2 <= OC; o += 2) {
      const w0 = o * C, w1 = w0 + C;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let k = 0; k < C; k++) {
        const a = weight[w0 + k], b = weight[w1 + k];
        const i0 = inp[x0 + k], i1 = inp[x1 + k], i2 = inp[x2 + k], i3 = inp[x3 + k];
        s00 += i0 * a; s01 += i0 * b;
        s10 += i1 * a; s11 += i1 * b;
        s20 += i2 * a; s21 += i2 * b;
        s30 += i3 * a; s31 += i3 * b;
      }
      const b0 = bias ? bias[o] : 0, b1 = bias ? bias[o + 1] : 0;
      out[i * OC + o] = s00 + b0; out[i * OC + o + 1] = s01 + b1;
      out[(i + 1) * OC + o] = s10 + b0; out[(i + 1) * OC + o + 1] = s11 + b1;
      out[(i + 2) * OC + o] = s20 + b0; out[(i + 2) * OC + o + 1] = s21 + b1;
      out[(i + 3) * OC + o] = s30 + b0; out[(i + 3) * OC + o + 1] = s31 + b1;
    }
    for (; o < OC; o++) {
      const w0 = o * C;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < C; k++) {
        const a = weight[w0 + k];
        s0 += inp[x0 + k] * a; s1 += inp[x1 + k] * a; s2 += inp[x2 + k] * a; s3 += inp[x3 + k] * a;
      }
      const b0 = bias ? bias[o] : 0;
      out[i * OC + o] = s0 + b0; out[(i + 1) * OC + o] = s1 + b0;
      out[(i + 2) * OC + o] = s2 + b0; out[(i + 3) * OC + o] = s3 + b0;
    }
  }
  for (; i < BT; i++) {
    const x0 = i * C;
    for (let o = 0; o < OC; o++) {
      const w0 = o * C;
      let s0 = 0, s1 = 0;
      let k = 0;
      for (; k + 2 <= C; k += 2) {
        s0 += inp[x0 + k] * weight[w0 + k];
        s1 += inp[x0 + k + 1] * weight[w0 + k + 1];
      }
      for (; k < C; k++) s0 += inp[x0 + k] * weight[w0 + k];
      out[i * OC + o] = s0 + s1 + (bias ? bias[o] : 0);
    }
  }
}

/** out (BT, C) = (inp − mean) / sqrt(var + eps) · weight + bias, statistics over each row. */
export function layernormForward(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array,
  BT: number, C: number, eps: number,
): void {
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
    const rstd = 1 / Math.sqrt(v / C + eps); // biased variance, as torch.nn.LayerNorm
    for (let k = 0; k < C; k++) out[x + k] = (inp[x + k] - mean) * rstd * weight[k] + bias[k];
  }
}

const GELU_SCALE = Math.sqrt(2 / Math.PI);
/** GPT-2's GELU, the tanh approximation (minGPT's NewGELU), elementwise over N values. */
export function geluForward(out: Float32Array, inp: Float32Array, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x)));
  }
}

/** out (N) = inp (N) + other (N). The residual connection. */
export function residualForward(out: Float32Array, inp: Float32Array, other: Float32Array, N: number): void {
  for (let i = 0; i < N; i++) out[i] = inp[i] + other[i];
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
 * The attention pattern: att (B, NH, T, T) = softmax(q · kᵀ / √hs) with the causal mask,
 * where q and k are read from qkv (B, T, 3C) = [q | k | v] along the last axis.
 * Row t of a head's pattern says how much position t reads from each earlier position;
 * entries above the diagonal (the future) are exactly zero.
 */
export function attentionPatternForward(
  att: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number,
): void {
  const hs = C / NH, C3 = 3 * C;
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const q = b * T * C3 + t * C3 + h * hs;       // q[b, t, h, :]
        const row = ((b * NH + h) * T + t) * T;        // att[b, h, t, :]
        let max = -Infinity;
        for (let t2 = 0; t2 <= t; t2++) {
          const k = b * T * C3 + t2 * C3 + C + h * hs; // k[b, t2, h, :]
          let dot = 0;
          for (let i = 0; i < hs; i++) dot += qkv[q + i] * qkv[k + i];
          const s = dot * scale;
          att[row + t2] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const e = Math.exp(att[row + t2] - max);
          att[row + t2] = e;
          sum += e;
        }
        for (let t2 = 0; t2 <= t; t2++) att[row + t2] /= sum;
        for (let t2 = t + 1; t2 < T; t2++) att[row + t2] = 0; // masked: no peeking ahead
      }
    }
  }
}

/**
 * Each head's weighted sum of values: z (B, T, NH, hs) = att (B, NH, T, T) · v,
 * with v read from qkv (B, T, 3C). z laid out (B, T, NH, hs) is the same memory as (B, T, C):
 * minGPT's `y.transpose(1, 2).contiguous().view(B, T, C)` "re-assemble all head outputs side by side".
 */
export function attentionValuesForward(
  z: Float32Array, att: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number,
): void {
  const hs = C / NH, C3 = 3 * C;
  z.fill(0, 0, B * T * C);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const out = b * T * C + t * C + h * hs;     // z[b, t, h, :]
        const row = ((b * NH + h) * T + t) * T;      // att[b, h, t, :]
        for (let t2 = 0; t2 <= t; t2++) {
          const a = att[row + t2];
          if (a === 0) continue;
          const v = b * T * C3 + t2 * C3 + 2 * C + h * hs; // v[b, t2, h, :]
          for (let i = 0; i < hs; i++) z[out + i] += a * qkv[v + i];
        }
      }
    }
  }
}
