/**
 * A matrix kept as a product of two thin matrices, M = A B with A (m, r) and B (r, n), r small.
 *
 * Attention heads are full of such matrices. A head's OV circuit W_V W_O is (C, C) but has rank at
 * most hs (64 in GPT-2 small), and the "full" OV circuit W_E W_V W_O W_U is (50257, 50257): 20 GB
 * in float64 if we wrote it out, yet everything we want from it (its norm, its eigenvalues, its
 * singular values, what it does to a few tokens) is decided by small r × r matrices. This class
 * does that arithmetic without ever forming the m × n product, unless `AB()` asks for it.
 * (TransformerLens's FactoredMatrix is the same idea; names follow it: AB, BA, T, eigenvalues, S.)
 *
 * Storage: every matrix here is a row-major Float64Array plus its number of rows and columns.
 * The small dense linear algebra (eigenvalues of a real non-symmetric matrix, the singular value
 * decomposition) comes from ml-matrix, a well-kept JavaScript library (the JAMA algorithms:
 * Hessenberg reduction + shifted QR for eigenvalues, Golub–Kahan for the SVD): writing and
 * testing our own would be a project in itself, and these are the textbook methods.
 */
import { EigenvalueDecomposition, Matrix, QrDecomposition, SingularValueDecomposition } from 'ml-matrix';

/** A dense row-major matrix of doubles. */
export interface Dense {
  readonly data: Float64Array;
  readonly rows: number;
  readonly cols: number;
}

export function dense(data: Float64Array, rows: number, cols: number): Dense {
  if (data.length !== rows * cols) throw new Error(`a ${rows} × ${cols} matrix needs ${rows * cols} numbers, got ${data.length}`);
  return { data, rows, cols };
}

/** a (m, k) · b (k, n) -> (m, n), row-major, in doubles. */
export function matmul(a: Dense, b: Dense): Dense {
  const m = a.rows, k = a.cols, n = b.cols;
  if (b.rows !== k) throw new Error(`cannot multiply (${a.rows} × ${a.cols}) by (${b.rows} × ${b.cols})`);
  const out = new Float64Array(m * n);
  const A = a.data, B = b.data;
  // i-k-j order: the inner loop runs along a row of b and a row of out, both contiguous
  for (let i = 0; i < m; i++) {
    const o = i * n;
    for (let p = 0; p < k; p++) {
      const s = A[i * k + p];
      if (s === 0) continue;
      const r = p * n;
      for (let j = 0; j < n; j++) out[o + j] += s * B[r + j];
    }
  }
  return { data: out, rows: m, cols: n };
}

/** aᵀ (k, m) · b (k, n) -> (m, n): the product of a transposed matrix without forming it. */
export function matmulTN(a: Dense, b: Dense): Dense {
  const k = a.rows, m = a.cols, n = b.cols;
  if (b.rows !== k) throw new Error(`cannot multiply (${a.cols} × ${a.rows}) by (${b.rows} × ${b.cols})`);
  const out = new Float64Array(m * n);
  const A = a.data, B = b.data;
  for (let p = 0; p < k; p++) {
    const r = p * n;
    for (let i = 0; i < m; i++) {
      const s = A[p * m + i];
      if (s === 0) continue;
      const o = i * n;
      for (let j = 0; j < n; j++) out[o + j] += s * B[r + j];
    }
  }
  return { data: out, rows: m, cols: n };
}

/** a (m, k) · bᵀ (k, n) where b is (n, k): rows of a dotted with rows of b. */
export function matmulNT(a: Dense, b: Dense): Dense {
  const m = a.rows, k = a.cols, n = b.rows;
  if (b.cols !== k) throw new Error(`cannot multiply (${a.rows} × ${a.cols}) by (${b.cols} × ${b.rows})`);
  const out = new Float64Array(m * n);
  const A = a.data, B = b.data;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += A[i * k + p] * B[j * k + p];
      out[i * n + j] = s;
    }
  }
  return { data: out, rows: m, cols: n };
}

export function transpose(a: Dense): Dense {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j];
  return { data: out, rows: a.cols, cols: a.rows };
}

/** Σ a_ij b_ij: the Frobenius inner product tr(aᵀ b) of two matrices of the same shape. */
export function frobeniusDot(a: Dense, b: Dense): number {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error('frobeniusDot needs two matrices of the same shape');
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += a.data[i] * b.data[i];
  return s;
}

export function frobeniusNorm(a: Dense): number {
  return Math.sqrt(frobeniusDot(a, a));
}

const toMl = (a: Dense) => new Matrix(Array.from({ length: a.rows }, (_, i) => Array.from(a.data.subarray(i * a.cols, (i + 1) * a.cols))));

/** Eigenvalues of a square real matrix (complex in general): real and imaginary parts. */
export function eigenvalues(a: Dense): { re: Float64Array; im: Float64Array } {
  if (a.rows !== a.cols) throw new Error(`eigenvalues need a square matrix, got ${a.rows} × ${a.cols}`);
  if (a.rows === 0) return { re: new Float64Array(0), im: new Float64Array(0) };
  const e = new EigenvalueDecomposition(toMl(a), { assumeSymmetric: false });
  return { re: Float64Array.from(e.realEigenvalues), im: Float64Array.from(e.imaginaryEigenvalues) };
}

/** Singular values of a dense matrix, largest first. */
export function singularValues(a: Dense): Float64Array {
  if (a.rows === 0 || a.cols === 0) return new Float64Array(0);
  // ml-matrix's SVD wants rows ≥ columns; the singular values of aᵀ are the same
  const m = a.rows >= a.cols ? a : transpose(a);
  const s = new SingularValueDecomposition(toMl(m), { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true });
  return Float64Array.from(s.diagonal).sort().reverse();
}

/** The R of a thin QR decomposition of a (m, r), m ≥ r: an r × r matrix with aᵀa = Rᵀ R. */
function qrR(a: Dense): Dense {
  const R = new QrDecomposition(toMl(a)).upperTriangularMatrix; // (r, r)
  return { data: Float64Array.from(R.to1DArray()), rows: R.rows, cols: R.columns };
}

// -----------------------------------------------------------------------------------------------

/** M = A B, A (m, r), B (r, n), never formed unless asked. */
export class FactoredMatrix {
  readonly rows: number; // m
  readonly cols: number; // n
  readonly rank_bound: number; // r, the inner dimension (TransformerLens calls it mdim)
  constructor(readonly A: Dense, readonly B: Dense) {
    if (A.cols !== B.rows) throw new Error(`factors do not chain: A is ${A.rows} × ${A.cols}, B is ${B.rows} × ${B.cols}`);
    this.rows = A.rows;
    this.cols = B.cols;
    this.rank_bound = A.cols;
  }

  /** The m × n product itself. Only for small m, n: this is the one thing the class exists to avoid. */
  AB(): Dense {
    return matmul(this.A, this.B);
  }

  /** B A, (r, r): it has the same non-zero eigenvalues as A B. */
  BA(): Dense {
    if (this.rows !== this.cols) throw new Error(`BA needs a square product; this one is ${this.rows} × ${this.cols}`);
    return matmul(this.B, this.A);
  }

  /** (A B)ᵀ = Bᵀ Aᵀ */
  get T(): FactoredMatrix {
    return new FactoredMatrix(transpose(this.B), transpose(this.A));
  }

  /** (A B) x for a vector x (n) -> (m): two thin products. */
  mulVec(x: ArrayLike<number>): Float64Array {
    if (x.length !== this.cols) throw new Error(`vector of length ${x.length} times a ${this.rows} × ${this.cols} matrix`);
    const bx = matmul(this.B, dense(Float64Array.from(x), this.cols, 1));
    return matmul(this.A, bx).data;
  }

  /** x (m) (A B) -> (n), x as a row vector (the residual-stream convention). */
  vecMul(x: ArrayLike<number>): Float64Array {
    if (x.length !== this.rows) throw new Error(`vector of length ${x.length} times a ${this.rows} × ${this.cols} matrix`);
    const xa = matmul(dense(Float64Array.from(x), 1, this.rows), this.A);
    return matmul(xa, this.B).data;
  }

  /** (A B) M for a dense M (n, k): still factored, A (B M). */
  mul(M: Dense): FactoredMatrix {
    return new FactoredMatrix(this.A, matmul(this.B, M));
  }

  /** M (A B) for a dense M (k, m): (M A) B. */
  lmul(M: Dense): FactoredMatrix {
    return new FactoredMatrix(matmul(M, this.A), this.B);
  }

  /** (A B)(C D): keeps the smaller of the two inner dimensions as the new one. */
  mulFactored(o: FactoredMatrix): FactoredMatrix {
    if (this.cols !== o.rows) throw new Error(`cannot multiply (${this.rows} × ${this.cols}) by (${o.rows} × ${o.cols})`);
    const middle = matmul(this.B, o.A); // (r1, r2)
    return this.rank_bound <= o.rank_bound
      ? new FactoredMatrix(this.A, matmul(middle, o.B))
      : new FactoredMatrix(matmul(this.A, middle), o.B);
  }

  /**
   * ‖A B‖_F. Since ‖AB‖² = tr(Bᵀ Aᵀ A B) = tr((Aᵀ A)(B Bᵀ)), two r × r Gram matrices are enough.
   */
  norm(): number {
    const ata = matmulTN(this.A, this.A); // (r, r)
    const bbt = matmulNT(this.B, this.B); // (r, r)
    return Math.sqrt(Math.max(0, frobeniusDot(ata, bbt))); // both symmetric, so tr(XY) = Σ X∘Y
  }

  /** Eigenvalues of A B (square), from the r × r matrix B A: the m − r others are zero. */
  eigenvalues(): { re: Float64Array; im: Float64Array } {
    return eigenvalues(this.BA());
  }

  /**
   * Singular values of A B (at most r of them, largest first). With thin QR decompositions
   * A = Qa Ra and Bᵀ = Qb Rb, A B = Qa (Ra Rbᵀ) Qbᵀ; the outer factors have orthonormal columns,
   * so A B has the singular values of the r × r matrix Ra Rbᵀ.
   */
  S(): Float64Array {
    const r = this.rank_bound;
    if (this.rows < r || this.cols < r) return singularValues(this.AB()); // a fat factor: nothing to gain
    const Ra = qrR(this.A), Rb = qrR(transpose(this.B));
    return singularValues(matmulNT(Ra, Rb));
  }
}
