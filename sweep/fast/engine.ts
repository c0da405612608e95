/**
 * The arithmetic of the fast patching engine (see ../fast_patching.ts for the idea and the
 * numbers). Everything here is synchronous and allocation-free once warm, and runs the same in
 * the main thread (workers: 1) and in a worker thread (./worker.ts).
 *
 * The weights are never copied: `FastGPT` holds Float32Array views into the model's single
 * parameter buffer (shared memory, so a worker sees the very same numbers). The kernels come from
 * ../backend.ts: the SIMD ones by default, the readable ones with `setKernels('js')`.
 *
 * Shapes: T = tokens, C = n_embd, NH = n_head, hs = C / NH, L = n_layer, V = vocab_size,
 * R = rows of a batch (several patched runs stacked, see `runUnit`).
 */
import type { GPT } from '../../mingpt/model.ts';
import type { GPT2HParams } from '../../io/checkpoint.ts';
import { matmulForward, layernormForward, geluForward } from '../../mingpt/kernels/index.ts';

// -----------------------------------------------------------------------------------------------
// The model, as plain views into the parameter buffer

/** What a worker needs: the model's hyper-parameters and where each weight sits in the shared parameter buffer. */
export interface ModelSpec extends Omit<GPT2HParams, 'raw'> {
  /** minGPT name -> [offset, length] in float32 elements into `model.params` */
  offsets: Record<string, [number, number]>;
  /** the parameter the logits are read from: 'lm_head.weight', or 'transformer.wte.weight' when tied */
  lm_head: string;
}

/** The spec of a model: offsets are taken from the views themselves, so they cannot drift. */
export function modelSpec(model: GPT): ModelSpec {
  const offsets: Record<string, [number, number]> = {};
  for (const [name, view] of model.named_parameters) {
    if (view.buffer !== model.params.buffer) throw new Error(`internal: parameter ${name} is not a view into model.params`);
    offsets[name] = [(view.byteOffset - model.params.byteOffset) / 4, view.length];
  }
  const c = model.config;
  return {
    n_layer: c.n_layer, n_head: c.n_head, n_embd: c.n_embd, vocab_size: c.vocab_size,
    block_size: c.block_size, layer_norm_epsilon: c.layer_norm_epsilon, offsets,
    lm_head: 'lm_head.weight' in offsets ? 'lm_head.weight' : 'transformer.wte.weight',
  };
}

interface BlockWeights {
  ln_1_w: Float32Array; ln_1_b: Float32Array; // (C)
  c_attn_w: Float32Array; c_attn_b: Float32Array; // (3C, C), (3C)
  c_attn_q_w: Float32Array; c_attn_q_b: Float32Array; // (C, C), (C): the rows of c_attn that make q...
  c_attn_kv_w: Float32Array; c_attn_kv_b: Float32Array; // (2C, C), (2C): ...and those that make k, v
  attn_proj_w: Float32Array; attn_proj_b: Float32Array; // (C, C), (C)
  ln_2_w: Float32Array; ln_2_b: Float32Array; // (C)
  c_fc_w: Float32Array; c_fc_b: Float32Array; // (4C, C), (4C)
  mlp_proj_w: Float32Array; mlp_proj_b: Float32Array; // (C, 4C), (C)
}

/** A base run (clean or corrupted) as the patched runs need it. */
export interface RunCache {
  /** (L + 1, T, C): resid[k] is the input of block k (resid[0] the embeddings), resid[L] the last block's output */
  resid: Float32Array;
  /** (L, T, 3C): block k's c_attn output [q | k | v]; only the corrupted run keeps it (else length 0) */
  qkv: Float32Array;
  /** (V): the logits at the last position */
  lastLogits: Float32Array;
}

/** A batch of patched runs that share the patched layer (see runUnit). */
export interface Unit {
  /** the block whose output is patched */
  layer: number;
  /** the patched positions, increasing; one patched run each */
  positions: number[];
}

/** What a unit needs besides the model: the two base runs and the two target tokens. */
export interface SweepContext {
  T: number;
  clean: RunCache;
  corrupt: RunCache;
  clean_token_id: number;
  corrupt_token_id: number;
}

/** Views over one sequence-sized scratch area; grown on demand, reused across calls. */
class Scratch {
  rows = 0;
  x = new Float32Array(0); // (R, C) residual stream of the batched runs
  h = new Float32Array(0); // (R, C) layer-norm output
  qkv = new Float32Array(0); // (R, 3C)
  z = new Float32Array(0); // (R, C) attention output, heads side by side
  a = new Float32Array(0); // (R, C) c_proj output, then the MLP output
  f = new Float32Array(0); // (R, 4C) MLP hidden layer
  last = new Float32Array(0); // (R, C) the last position's residual, one row per run (last block)
  q = new Float32Array(0); // (R, C) last block: the query of the last position, one row per run
  hq = new Float32Array(0); // (R, C) last block: the layer-norm output that query is made from
  constructor(private C: number) {}
  ensure(rows: number): void {
    if (rows <= this.rows) return;
    const C = this.C;
    this.rows = rows;
    this.x = new Float32Array(rows * C);
    this.h = new Float32Array(rows * C);
    this.qkv = new Float32Array(rows * 3 * C);
    this.z = new Float32Array(rows * C);
    this.a = new Float32Array(rows * C);
    this.f = new Float32Array(rows * 4 * C);
    this.last = new Float32Array(rows * C);
    this.q = new Float32Array(rows * C);
    this.hq = new Float32Array(rows * C);
  }
}

export class FastGPT {
  readonly L: number;
  readonly C: number;
  readonly NH: number;
  readonly V: number;
  readonly eps: number;
  readonly wte: Float32Array; // (V, C)
  readonly wpe: Float32Array; // (block_size, C)
  readonly h: BlockWeights[];
  readonly ln_f_w: Float32Array; // (C)
  readonly ln_f_b: Float32Array; // (C)
  readonly lm_head: Float32Array; // (V, C)

  private readonly s: Scratch;
  private scores = new Float64Array(0); // (T) one head's attention scores for one query
  private zAcc = new Float64Array(0); // (hs) one head's output for one query, in doubles
  private kvArr: Float32Array[] = []; // (T) where the key/value of each position lives...
  private kvOff = new Int32Array(0); // (T) ...and at which offset (k there, v C further on)
  private row = new Float32Array(0); // (C) one final layer-norm output

  constructor(params: Float32Array, readonly spec: ModelSpec) {
    const view = (name: string) => {
      const o = spec.offsets[name];
      if (!o) throw new Error(`fast engine: the model has no parameter ${name}`);
      return params.subarray(o[0], o[0] + o[1]);
    };
    this.L = spec.n_layer;
    this.C = spec.n_embd;
    this.NH = spec.n_head;
    this.V = spec.vocab_size;
    this.eps = spec.layer_norm_epsilon;
    this.wte = view('transformer.wte.weight');
    this.wpe = view('transformer.wpe.weight');
    this.h = Array.from({ length: this.L }, (_, l) => {
      const p = `transformer.h.${l}`;
      const C = this.C, c_attn_w = view(`${p}.attn.c_attn.weight`), c_attn_b = view(`${p}.attn.c_attn.bias`);
      return {
        ln_1_w: view(`${p}.ln_1.weight`), ln_1_b: view(`${p}.ln_1.bias`),
        c_attn_w, c_attn_b,
        c_attn_q_w: c_attn_w.subarray(0, C * C), c_attn_q_b: c_attn_b.subarray(0, C),
        c_attn_kv_w: c_attn_w.subarray(C * C), c_attn_kv_b: c_attn_b.subarray(C),
        attn_proj_w: view(`${p}.attn.c_proj.weight`), attn_proj_b: view(`${p}.attn.c_proj.bias`),
        ln_2_w: view(`${p}.ln_2.weight`), ln_2_b: view(`${p}.ln_2.bias`),
        c_fc_w: view(`${p}.mlp.c_fc.weight`), c_fc_b: view(`${p}.mlp.c_fc.bias`),
        mlp_proj_w: view(`${p}.mlp.c_proj.weight`), mlp_proj_b: view(`${p}.mlp.c_proj.bias`),
      };
    });
    this.ln_f_w = view('transformer.ln_f.weight');
    this.ln_f_b = view('transformer.ln_f.bias');
    this.lm_head = view(spec.lm_head);
    this.s = new Scratch(this.C);
  }

  private ensureT(T: number): void {
    if (this.kvOff.length >= T) return;
    this.scores = new Float64Array(T);
    this.kvOff = new Int32Array(T);
    this.kvArr = new Array(T).fill(this.wte);
    this.zAcc = new Float64Array(this.C / this.NH);
    this.row = new Float32Array(this.C);
  }

  /** Scratch and caches for a sequence of T tokens; `keepQkv` for the corrupted run. */
  static newRunCache(spec: ModelSpec, T: number, keepQkv: boolean, shared: boolean): RunCache {
    const { n_layer: L, n_embd: C, vocab_size: V } = spec;
    const alloc = (n: number) => new Float32Array(shared ? new SharedArrayBuffer(4 * n) : new ArrayBuffer(4 * n));
    return { resid: alloc((L + 1) * T * C), qkv: alloc(keepQkv ? L * T * 3 * C : 0), lastLogits: alloc(V) };
  }

  // ---------------------------------------------------------------------------------------------
  // One ordinary forward pass, keeping what the patched runs reuse

  /** The whole model on `ids`, filling `cache` (every block's input, the qkv if kept, the last logits). */
  baseRun(ids: number[], cache: RunCache): void {
    const { L, C, V } = this;
    const T = ids.length, TC = T * C;
    this.ensureT(T);
    this.s.ensure(T);
    const { h, z, a } = this.s;
    const keepQkv = cache.qkv.length > 0;
    // token and position embeddings: resid[0] (T, C)
    for (let t = 0; t < T; t++) {
      const id = ids[t], o = t * C;
      for (let c = 0; c < C; c++) cache.resid[o + c] = this.wte[id * C + c] + this.wpe[o + c];
    }
    for (let k = 0; k < L; k++) {
      const w = this.h[k];
      const xin = cache.resid.subarray(k * TC, (k + 1) * TC); // (T, C)
      const x = cache.resid.subarray((k + 1) * TC, (k + 2) * TC); // (T, C), becomes block k's output
      const qkv = keepQkv ? cache.qkv.subarray(k * 3 * TC, (k + 1) * 3 * TC) : this.s.qkv; // (T, 3C)
      layernormForward(h, xin, w.ln_1_w, w.ln_1_b, T, C, this.eps);
      matmulForward(qkv, h, w.c_attn_w, w.c_attn_b, T, C, 3 * C);
      for (let t = 0; t < T; t++) {
        this.kvArr[t] = qkv;
        this.kvOff[t] = t * 3 * C + C;
      }
      for (let t = 0; t < T; t++) this.attendRow(z, t * C, qkv, t * 3 * C, t + 1);
      matmulForward(a, z, w.attn_proj_w, w.attn_proj_b, T, C, C);
      for (let i = 0; i < TC; i++) x[i] = xin[i] + a[i];
      this.mlp(x, T, w);
    }
    // ln_f and the full vocabulary, at the last position only
    layernormForward(this.row, cache.resid.subarray(L * TC + (T - 1) * C, L * TC + TC), this.ln_f_w, this.ln_f_b, 1, C, this.eps);
    matmulForward(cache.lastLogits, this.row, this.lm_head, null, 1, C, V);
    this.kvArr.fill(this.wte); // drop references to the caller's buffers
  }

  /** x (rows, C) += mlp(ln_2(x)) with block w's weights, in place, through the scratch buffers. */
  private mlp(x: Float32Array, rows: number, w: BlockWeights): void {
    const { C } = this;
    const { h, a, f } = this.s;
    layernormForward(h, x, w.ln_2_w, w.ln_2_b, rows, C, this.eps);
    matmulForward(f, h, w.c_fc_w, w.c_fc_b, rows, C, 4 * C); // (rows, 4C)
    geluForward(f, f, rows * 4 * C);
    matmulForward(a, f, w.mlp_proj_w, w.mlp_proj_b, rows, 4 * C, C); // (rows, C)
    for (let i = 0; i < rows * C; i++) x[i] += a[i];
  }

  /**
   * Causal self-attention for one query: z[zOff .. zOff+C) = softmax(q·kᵀ/√hs) · v over the
   * keys 0..n-1, each head separately. The query is q at qArr[qOff ..]; key t2 is at
   * kvArr[t2][kvOff[t2] ..] and its value C further on (the qkv layout [q | k | v]).
   * Sums in doubles (the readable kernels round the pattern to float32 first: 1e-7 apart).
   */
  private attendRow(z: Float32Array, zOff: number, qArr: Float32Array, qOff: number, n: number): void {
    const { C, NH } = this;
    const hs = C / NH, scale = 1 / Math.sqrt(hs);
    const scores = this.scores, acc = this.zAcc, kvArr = this.kvArr, kvOff = this.kvOff;
    for (let hd = 0; hd < NH; hd++) {
      const q = qOff + hd * hs;
      let max = -Infinity;
      for (let t2 = 0; t2 < n; t2++) {
        const kv = kvArr[t2], k = kvOff[t2] + hd * hs;
        let dot = 0;
        for (let i = 0; i < hs; i++) dot += qArr[q + i] * kv[k + i];
        const s = dot * scale;
        scores[t2] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let t2 = 0; t2 < n; t2++) {
        const e = Math.exp(scores[t2] - max);
        scores[t2] = e;
        sum += e;
      }
      acc.fill(0);
      for (let t2 = 0; t2 < n; t2++) {
        const p = scores[t2] / sum, kv = kvArr[t2], v = kvOff[t2] + C + hd * hs;
        for (let i = 0; i < hs; i++) acc[i] += p * kv[v + i];
      }
      const o = zOff + hd * hs;
      for (let i = 0; i < hs; i++) z[o + i] = acc[i];
    }
  }

  // ---------------------------------------------------------------------------------------------
  // A batch of patched runs

  /**
   * The patched runs (unit.layer, p) for p in unit.positions, batched: block by block, every run
   * adds its rows to one matrix, so each weight matrix is streamed once per block for the whole
   * batch. Run (l, p) only has rows p..T-1 (earlier positions equal the corrupted run's), laid out
   * run after run:
   *
   *     x (R, C):  [ run p₀: rows p₀..T-1 | run p₁: rows p₁..T-1 | ... ]   R = Σ (T - pⱼ)
   *
   * Block l+1 (the first after the patch): only row p has a new input, so only row p needs q, k, v
   * (rows after p reuse the corrupted run's); the attention of rows p..T-1 changes.
   * The last block: only row T-1 feeds the logits, so attention, c_proj and MLP run for that row
   * alone; rows p..T-2 still need their keys and values, but not their queries (the q third of
   * c_attn is computed for row T-1 only).
   * Returns logit(corrupt token) − logit(clean token) at the last position for each run.
   */
  runUnit(unit: Unit, ctx: SweepContext): number[] {
    const { L, C } = this;
    const { T, clean, corrupt } = ctx;
    const l = unit.layer, P = unit.positions, m = P.length;
    if (!(l >= 0 && l < L - 1)) throw new Error(`internal: runUnit for layer ${l} of ${L}`);
    const TC = T * C;
    const base: number[] = []; // first row of each run in the batch
    let R = 0;
    for (const p of P) {
      base.push(R);
      R += T - p;
    }
    this.ensureT(T);
    this.s.ensure(R);
    const { x, h, qkv, z, a, last, q, hq } = this.s;

    // the block-(l+1) input: the corrupted run's, but the clean run's value at the patched position
    for (let j = 0; j < m; j++) {
      const p = P[j];
      x.set(corrupt.resid.subarray((l + 1) * TC + p * C, (l + 2) * TC), base[j] * C);
      x.set(clean.resid.subarray((l + 1) * TC + p * C, (l + 1) * TC + (p + 1) * C), base[j] * C);
    }

    for (let k = l + 1; k < L; k++) {
      const w = this.h[k];
      const first = k === l + 1, lastBlock = k === L - 1;
      const cq = corrupt.qkv.subarray(k * 3 * TC, (k + 1) * 3 * TC); // (T, 3C) the corrupted run's q, k, v
      const splitQ = lastBlock && !first; // q for row T-1 only, k and v for every row

      // 1. q, k, v: for the patched row only in the first block, for every row after that
      if (first) {
        for (let j = 0; j < m; j++) {
          const r = base[j] * C;
          layernormForward(h.subarray(j * C, (j + 1) * C), x.subarray(r, r + C), w.ln_1_w, w.ln_1_b, 1, C, this.eps);
        }
        matmulForward(qkv, h, w.c_attn_w, w.c_attn_b, m, C, 3 * C); // (m, 3C), row j = run j's row p
      } else if (splitQ) {
        layernormForward(h, x, w.ln_1_w, w.ln_1_b, R, C, this.eps);
        matmulForward(qkv, h, w.c_attn_kv_w, w.c_attn_kv_b, R, C, 2 * C); // (R, 2C) = [k | v]
        for (let j = 0; j < m; j++) hq.set(h.subarray((base[j] + T - 1 - P[j]) * C, (base[j] + T - P[j]) * C), j * C);
        matmulForward(q, hq, w.c_attn_q_w, w.c_attn_q_b, m, C, C); // (m, C) = q of row T-1 of each run
      } else {
        layernormForward(h, x, w.ln_1_w, w.ln_1_b, R, C, this.eps);
        matmulForward(qkv, h, w.c_attn_w, w.c_attn_b, R, C, 3 * C); // (R, 3C)
      }

      // 2. attention, each run against its own keys: the corrupted run's before p, its own from p on
      //    (k sits at kvOff, v C further on, in either layout [q | k | v] or [k | v])
      let zRows = 0;
      for (let j = 0; j < m; j++) {
        const p = P[j];
        for (let t = 0; t < T; t++) {
          if (t < p || (first && t > p)) {
            this.kvArr[t] = cq;
            this.kvOff[t] = t * 3 * C + C;
          } else if (first) {
            this.kvArr[t] = qkv;
            this.kvOff[t] = j * 3 * C + C;
          } else if (splitQ) {
            this.kvArr[t] = qkv;
            this.kvOff[t] = (base[j] + t - p) * 2 * C;
          } else {
            this.kvArr[t] = qkv;
            this.kvOff[t] = (base[j] + t - p) * 3 * C + C;
          }
        }
        for (let t = lastBlock ? T - 1 : p; t < T; t++) {
          if (splitQ) this.attendRow(z, zRows * C, q, j * C, t + 1);
          else this.attendRow(z, zRows * C, this.kvArr[t], this.kvOff[t] - C, t + 1); // q sits just before k
          zRows++;
        }
      }

      // 3. output projection and residual; in the last block only row T-1 of each run goes on
      matmulForward(a, z, w.attn_proj_w, w.attn_proj_b, zRows, C, C);
      if (lastBlock) {
        for (let j = 0; j < m; j++) {
          const r = (base[j] + T - 1 - P[j]) * C; // row T-1 of run j
          for (let c = 0; c < C; c++) last[j * C + c] = x[r + c] + a[j * C + c];
        }
        this.mlp(last, m, w);
      } else {
        for (let i = 0; i < R * C; i++) x[i] += a[i];
        this.mlp(x, R, w);
      }
    }
    this.kvArr.fill(this.wte); // drop references to the caller's buffers

    // 4. ln_f at the last position, and only the two logits we compare
    const A = ctx.corrupt_token_id * C, B = ctx.clean_token_id * C, W = this.lm_head;
    const diffs: number[] = [];
    for (let j = 0; j < m; j++) {
      layernormForward(this.row, last.subarray(j * C, (j + 1) * C), this.ln_f_w, this.ln_f_b, 1, C, this.eps);
      let la = 0, lb = 0;
      for (let c = 0; c < C; c++) {
        la += this.row[c] * W[A + c];
        lb += this.row[c] * W[B + c];
      }
      diffs.push(Math.fround(la) - Math.fround(lb)); // as the logits are float32 in the readable path
    }
    return diffs;
  }
}

// -----------------------------------------------------------------------------------------------
// Planning the batches

/**
 * The patched runs that need computing, in batches: one batch per patched layer l < L-1, each
 * split into `parts` batches of about equal rows (so that workers can share a layer), none over
 * `maxRows` rows unless a single run is that long. Positions before `firstDiff` (where both texts
 * agree so far) and the last layer need no computing. Sorted by estimated cost, largest first,
 * so that workers taking batches from the front of the list end at about the same time.
 */
export function planUnits(L: number, T: number, firstDiff: number, parts: number, maxRows = 512): Unit[] {
  const units: Array<Unit & { cost: number }> = [];
  for (let l = 0; l < L - 1; l++) {
    const positions = [];
    for (let p = firstDiff; p < T; p++) positions.push(p);
    const total = positions.reduce((s, p) => s + T - p, 0);
    const target = Math.min(maxRows, Math.ceil(total / Math.max(1, parts)));
    let cur: number[] = [], rows = 0;
    const flush = () => {
      if (cur.length) units.push({ layer: l, positions: cur, cost: (L - 1 - l) * rows });
      cur = [];
      rows = 0;
    };
    for (const p of positions) {
      if (rows > 0 && rows + (T - p) > target + (T - p) / 2) flush();
      cur.push(p);
      rows += T - p;
    }
    flush();
  }
  units.sort((u, v) => v.cost - u.cost);
  return units.map(({ layer, positions }) => ({ layer, positions }));
}
