/**
 * The model's weights seen the way circuit analysis reads them: one matrix per head, with
 * TransformerLens's names and shapes, raw or "processed".
 *
 * Row-vector convention throughout (as minGPT and TransformerLens): the residual stream is x (C),
 * and a head's query is x W_Q. Every matrix is a row-major Float64Array with its shape noted.
 *
 *   name          shape        where it comes from in our GPT (nn.Linear keeps weight as (out, in))
 *   W_Q[l][h]     (C, hs)      rows h·hs … (h+1)·hs of attn.c_attn.weight (3C, C), transposed
 *   W_K[l][h]     (C, hs)      the same rows shifted by C
 *   W_V[l][h]     (C, hs)      shifted by 2C
 *   b_Q, b_K, b_V (hs)         the matching slices of attn.c_attn.bias (3C)
 *   W_O[l][h]     (hs, C)      columns h·hs … (h+1)·hs of attn.c_proj.weight (C, C), transposed
 *   b_O[l]        (C)          attn.c_proj.bias
 *   W_in[l]       (C, 4C)      mlp.c_fc.weight (4C, C), transposed;  b_in[l] (4C)
 *   W_out[l]      (4C, C)      mlp.c_proj.weight (C, 4C), transposed; b_out[l] (C)
 *   W_E           (V, C)       transformer.wte
 *   W_pos         (n_ctx, C)   transformer.wpe
 *   W_U           (C, V)       lm_head.weight (V, C), transposed (GPT-2 ties it to wte)
 *
 * These are exactly TransformerLens's `model.W_Q[l, h]` … `model.W_U` of a HookedTransformer loaded
 * from GPT-2, one head at a time (TransformerLens stacks them into (n_layers, n_heads, C, hs)
 * tensors; we hand out one (l, h) matrix per call, because that is what every analysis loops over).
 *
 * "Processed" weights are what TransformerLens gives by default (`fold_ln=True,
 * center_writing_weights=True, center_unembed=True`), and what ANALYSIS.md's "Weight circuits"
 * defines, done here on float64 copies (the model itself is never changed):
 *   - fold_ln: a layer norm's gain γ multiplies the weights that read its output (W_Q, W_K, W_V
 *     by γ1, W_in by γ2, W_U by γf, row by row), its bias β moves into their biases
 *     (b_Q ← b_Q + β W_Q, …, and a b_U = βf W_U that we don't need), and then each reading weight
 *     is centred over its C input rows (subtract from every column its mean): the layer norm
 *     removes the mean of x anyway, so the weights may as well ignore it.
 *   - center_writing_weights: each row of W_E, W_pos, W_O[l][h], W_out[l] (and b_O, b_out) has its
 *     mean over the C channels subtracted: what a component writes then has zero mean, as the
 *     next layer norm would make it.
 *   - center_unembed: each row of W_U has its mean over the vocabulary subtracted (softmax cannot
 *     see a constant added to every logit).
 * Conventions that differ from TransformerLens: none in the numbers; in the packaging, TL's
 * processed model no longer has layer-norm gains at all (they become 1), while here the model
 * keeps its own and only these views are processed. W_E and W_U (V × C, 300 MB each in float64 for
 * GPT-2) are never processed as a whole: `W_E_rows`, `W_U_cols` process the rows or columns asked
 * for, and `W_U_W_E` gives the (C, C) product the full OV circuit needs.
 */
import type { GPT } from '../mingpt/model.ts';
import { matmulForward } from '../mingpt/kernels/index.ts';

/** One head's weights, (C, hs) for W_Q/W_K/W_V and (hs, C) for W_O. */
export interface HeadWeights {
  W_Q: Float64Array; // (C, hs)
  W_K: Float64Array; // (C, hs)
  W_V: Float64Array; // (C, hs)
  W_O: Float64Array; // (hs, C)
  b_Q: Float64Array; // (hs)
  b_K: Float64Array; // (hs)
  b_V: Float64Array; // (hs)
}

/** Subtract from every column of a (rows, cols) matrix its mean over the rows. */
function centreColumns(w: Float64Array, rows: number, cols: number): void {
  const mean = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) mean[j] += w[i * cols + j];
  for (let j = 0; j < cols; j++) mean[j] /= rows;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) w[i * cols + j] -= mean[j];
}

/** Subtract from every row of a (rows, cols) matrix its mean over the columns. */
function centreRows(w: Float64Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    let m = 0;
    for (let j = 0; j < cols; j++) m += w[i * cols + j];
    m /= cols;
    for (let j = 0; j < cols; j++) w[i * cols + j] -= m;
  }
}

/**
 * Weight views of a GPT: raw (`processed = false`, the checkpoint's numbers) or processed as
 * TransformerLens does by default. Per-layer attention weights are computed on first use and kept
 * (float64: 226 MB for all of GPT-2 small's heads); MLP weights one layer at a time.
 */
export class Weights {
  readonly n_layers: number;
  readonly n_heads: number;
  readonly d_model: number; // C
  readonly d_head: number; // hs
  readonly d_mlp: number; // 4C
  readonly d_vocab: number; // V
  readonly n_ctx: number;
  private heads = new Map<number, HeadWeights[]>();
  private b_Os = new Map<number, Float64Array>();
  /** the MLP of one layer at a time (GPT-2 small's are 38 MB each in float64; all twelve would be 450 MB) */
  private lastMlp: { layer: number; w: { W_in: Float64Array; W_out: Float64Array; b_in: Float64Array; b_out: Float64Array } } | null = null;
  private pos: Float64Array | null = null;
  private uMean: Float64Array | null = null;

  constructor(readonly model: GPT, readonly processed = true) {
    const c = model.config as unknown as { n_layer: number; n_head: number; n_embd: number; vocab_size: number; block_size: number };
    this.n_layers = c.n_layer;
    this.n_heads = c.n_head;
    this.d_model = c.n_embd;
    this.d_head = c.n_embd / c.n_head;
    this.d_mlp = 4 * c.n_embd;
    this.d_vocab = c.vocab_size;
    this.n_ctx = c.block_size;
  }

  private checkHead(l: number, h: number): void {
    if (!(Number.isInteger(l) && l >= 0 && l < this.n_layers && Number.isInteger(h) && h >= 0 && h < this.n_heads))
      throw new Error(`head ${l}.${h} does not exist: the model has ${this.n_layers} layers of ${this.n_heads} heads`);
  }

  /** Every head of layer l. */
  layerHeads(l: number): HeadWeights[] {
    this.checkHead(l, 0);
    let hw = this.heads.get(l);
    if (!hw) {
      hw = this.computeHeads(l);
      this.heads.set(l, hw);
    }
    return hw;
  }

  head(l: number, h: number): HeadWeights {
    this.checkHead(l, h);
    return this.layerHeads(l)[h];
  }

  W_Q(l: number, h: number): Float64Array { return this.head(l, h).W_Q; }
  W_K(l: number, h: number): Float64Array { return this.head(l, h).W_K; }
  W_V(l: number, h: number): Float64Array { return this.head(l, h).W_V; }
  W_O(l: number, h: number): Float64Array { return this.head(l, h).W_O; }
  b_Q(l: number, h: number): Float64Array { return this.head(l, h).b_Q; }
  b_K(l: number, h: number): Float64Array { return this.head(l, h).b_K; }
  b_V(l: number, h: number): Float64Array { return this.head(l, h).b_V; }

  /** (C): attn.c_proj.bias, centred when processed. */
  b_O(l: number): Float64Array {
    this.checkHead(l, 0);
    let b = this.b_Os.get(l);
    if (!b) {
      b = Float64Array.from(this.model.transformer.h[l].attn.c_proj.bias!);
      if (this.processed) centreRows(b, 1, this.d_model);
      this.b_Os.set(l, b);
    }
    return b;
  }

  private computeHeads(l: number): HeadWeights[] {
    const C = this.d_model, hs = this.d_head, nh = this.n_heads;
    const blk = this.model.transformer.h[l];
    const W = blk.attn.c_attn.weight; // (3C, C)
    const bias = blk.attn.c_attn.bias!; // (3C)
    const P = blk.attn.c_proj.weight; // (C, C): P[c, h·hs + i] is W_O[h][i, c]
    const gamma = blk.ln_1.weight, beta = blk.ln_1.bias;
    const out: HeadWeights[] = [];
    for (let h = 0; h < nh; h++) {
      const read = (part: number) => { // (C, hs) and (hs) of block `part` (0 q, 1 k, 2 v)
        const w = new Float64Array(C * hs), b = new Float64Array(hs);
        for (let i = 0; i < hs; i++) {
          const row = (part * C + h * hs + i) * C;
          b[i] = bias[part * C + h * hs + i];
          for (let c = 0; c < C; c++) w[c * hs + i] = W[row + c];
        }
        if (this.processed) {
          // fold ln_1: the bias β enters as β W, the gain scales row c by γ_c; then centre the columns
          for (let c = 0; c < C; c++) for (let i = 0; i < hs; i++) b[i] += beta[c] * w[c * hs + i];
          for (let c = 0; c < C; c++) for (let i = 0; i < hs; i++) w[c * hs + i] *= gamma[c];
          centreColumns(w, C, hs);
        }
        return { w, b };
      };
      const q = read(0), k = read(1), v = read(2);
      const W_O = new Float64Array(hs * C);
      for (let i = 0; i < hs; i++) for (let c = 0; c < C; c++) W_O[i * C + c] = P[c * C + h * hs + i];
      if (this.processed) centreRows(W_O, hs, C);
      out.push({ W_Q: q.w, W_K: k.w, W_V: v.w, W_O, b_Q: q.b, b_K: k.b, b_V: v.b });
    }
    return out;
  }

  /** Layer l's MLP: W_in (C, 4C), W_out (4C, C), b_in (4C), b_out (C). Only the latest layer asked for is kept. */
  mlp(l: number): { W_in: Float64Array; W_out: Float64Array; b_in: Float64Array; b_out: Float64Array } {
    this.checkHead(l, 0);
    if (this.lastMlp?.layer === l) return this.lastMlp.w;

    const C = this.d_model, D = this.d_mlp;
    const blk = this.model.transformer.h[l];
    const fc = blk.mlp.c_fc.weight, proj = blk.mlp.c_proj.weight; // (4C, C), (C, 4C)
    const W_in = new Float64Array(C * D), W_out = new Float64Array(D * C);
    for (let n = 0; n < D; n++) for (let c = 0; c < C; c++) W_in[c * D + n] = fc[n * C + c];
    for (let c = 0; c < C; c++) for (let n = 0; n < D; n++) W_out[n * C + c] = proj[c * D + n];
    const b_in = Float64Array.from(blk.mlp.c_fc.bias!), b_out = Float64Array.from(blk.mlp.c_proj.bias!);
    if (this.processed) {
      const gamma = blk.ln_2.weight, beta = blk.ln_2.bias;
      for (let c = 0; c < C; c++) for (let n = 0; n < D; n++) b_in[n] += beta[c] * W_in[c * D + n];
      for (let c = 0; c < C; c++) for (let n = 0; n < D; n++) W_in[c * D + n] *= gamma[c];
      centreColumns(W_in, C, D);
      centreRows(W_out, D, C);
      centreRows(b_out, 1, C);
    }
    const m = { W_in, W_out, b_in, b_out };
    this.lastMlp = { layer: l, w: m };
    return m;
  }

  W_in(l: number): Float64Array { return this.mlp(l).W_in; }
  W_out(l: number): Float64Array { return this.mlp(l).W_out; }
  b_in(l: number): Float64Array { return this.mlp(l).b_in; }
  b_out(l: number): Float64Array { return this.mlp(l).b_out; }

  /** W_pos (n_ctx, C), centred over C when processed. */
  W_pos(): Float64Array {
    if (!this.pos) {
      this.pos = Float64Array.from(this.model.transformer.wpe);
      if (this.processed) centreRows(this.pos, this.n_ctx, this.d_model);
    }
    return this.pos;
  }

  /** Rows of W_E for the given token ids: (n, C). */
  W_E_rows(ids: readonly number[]): Float64Array {
    const C = this.d_model, wte = this.model.transformer.wte;
    const out = new Float64Array(ids.length * C);
    ids.forEach((id, r) => {
      this.checkToken(id);
      for (let c = 0; c < C; c++) out[r * C + c] = wte[id * C + c];
    });
    if (this.processed) centreRows(out, ids.length, C);
    return out;
  }

  /** Columns of W_U for the given token ids: (C, n). */
  W_U_cols(ids: readonly number[]): Float64Array {
    const C = this.d_model, U = this.model.lm_head.weight, n = ids.length;
    const out = new Float64Array(C * n);
    ids.forEach((id, j) => {
      this.checkToken(id);
      for (let c = 0; c < C; c++) out[c * n + j] = U[id * C + c];
    });
    if (this.processed) {
      // W_U' = centre_C(diag(γf) W_U) − its mean over the vocabulary = centre_C(diag(γf) (W_U − ū))
      const gamma = this.model.transformer.ln_f.weight, u = this.unembedMean();
      for (let c = 0; c < C; c++) for (let j = 0; j < n; j++) out[c * n + j] = gamma[c] * (out[c * n + j] - u[c]);
      centreColumns(out, C, n);
    }
    return out;
  }

  /** ū (C): the mean over the vocabulary of the raw W_U's columns. */
  private unembedMean(): Float64Array {
    if (!this.uMean) {
      const C = this.d_model, V = this.d_vocab, U = this.model.lm_head.weight;
      const u = new Float64Array(C);
      for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) u[c] += U[v * C + c];
      for (let c = 0; c < C; c++) u[c] /= V;
      this.uMean = u;
    }
    return this.uMean;
  }

  private checkToken(id: number): void {
    if (!(Number.isInteger(id) && id >= 0 && id < this.d_vocab)) throw new Error(`token id ${id} is outside the vocabulary 0..${this.d_vocab - 1}`);
  }

  /**
   * W_U W_E (C, C), the middle of every full OV circuit W_E W_OV W_U, without forming the
   * processed V × C matrices: with P = I − 11ᵀ/C (centring over C) and Γ = diag(γf),
   *   W_U' W_E' = P Γ (W_U − ū 1ᵀ) W_E P = P Γ (W_U W_E − V ū ēᵀ) P,
   * where ē is the mean row of W_E. The one big product W_U W_E (a sum over the V tokens) runs
   * on the float32 matmul kernel of ./backend.ts, in chunks of 2048 tokens whose partial sums are
   * added in doubles (about 1e-5 relative error: far inside the 1e-3 the analyses need).
   */
  W_U_W_E(onChunk?: (done: number, total: number) => void): Float64Array {
    const C = this.d_model, V = this.d_vocab;
    const E = this.model.transformer.wte, U = this.model.lm_head.weight; // (V, C) both
    const G = new Float64Array(C * C);
    const CH = 2048;
    const uT = new Float32Array(C * CH), eT = new Float32Array(C * CH), part = new Float32Array(C * C);
    for (let v0 = 0; v0 < V; v0 += CH) {
      const n = Math.min(CH, V - v0);
      // the chunk's tokens as columns: uT (C, n) = rows v0… of U transposed, likewise eT
      for (let v = 0; v < n; v++) for (let c = 0; c < C; c++) {
        uT[c * n + v] = U[(v0 + v) * C + c];
        eT[c * n + v] = E[(v0 + v) * C + c];
      }
      // part (C, C)[i, j] = Σ_v uT[i, v] eT[j, v] = (W_U W_E)[i, j] over this chunk
      matmulForward(part, uT.subarray(0, C * n), eT.subarray(0, C * n), null, C, n, C);
      for (let i = 0; i < C * C; i++) G[i] += part[i];
      onChunk?.(Math.min(V, v0 + CH), V);
    }
    if (!this.processed) return G;
    const u = this.unembedMean(), e = new Float64Array(C);
    for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) e[c] += E[v * C + c];
    for (let c = 0; c < C; c++) e[c] /= V;
    const gamma = this.model.transformer.ln_f.weight;
    for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) G[i * C + j] = gamma[i] * (G[i * C + j] - V * u[i] * e[j]);
    centreColumns(G, C, C); // P on the left: centre over the rows (W_U's C inputs)
    centreRows(G, C, C); // P on the right: centre W_E's rows over C
    return G;
  }
}
