/**
 * What minGPT takes from PyTorch to train with, written out: the AdamW optimizer
 * (torch.optim.AdamW) and gradient clipping by the global norm (torch.nn.utils.clip_grad_norm_).
 * ./model.ts's GPT.configure_optimizers builds the optimizer; ./trainer.ts's Trainer calls both.
 *
 * A parameter is a Float32Array view into model.params, and its gradient the view of the same
 * place in model.grads (GPT.grad_of): the optimizer changes the model's weights in place, as
 * PyTorch's does.
 */

/** A parameter as an optimizer sees it: its name, its values, and its gradient (same length). */
export interface Parameter {
  name: string;
  data: Float32Array;
  grad: Float32Array;
}

/** One group of parameters sharing a weight decay (minGPT makes two: decayed and not). */
export interface ParamGroup {
  params: Parameter[];
  weight_decay: number;
}

export interface AdamWOptions {
  lr: number;
  /** decay rates of the running means of the gradient and of its square */
  betas: readonly [number, number];
  /** added to the denominator so that a parameter with no gradient history does not divide by zero */
  eps?: number;
}

/** What AdamW remembers for one parameter between steps (PyTorch's optimizer.state[p]). */
interface AdamWState {
  /** steps taken so far */
  step: number;
  /** running mean of the gradient (the first moment) */
  exp_avg: Float32Array;
  /** running mean of the gradient squared, element by element (the second moment) */
  exp_avg_sq: Float32Array;
}

/**
 * Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
 * 2019), as torch.optim.AdamW computes it. For each parameter p with gradient g, at step t:
 *
 *   p ← p − lr·wd·p                            decay: shrink the weight, apart from the gradient
 *   m ← β1·m + (1 − β1)·g                      running mean of the gradient
 *   v ← β2·v + (1 − β2)·g²                     running mean of its square
 *   m̂ = m / (1 − β1ᵗ),  v̂ = v / (1 − β2ᵗ)      bias correction: m and v start at 0, too small at first
 *   p ← p − lr · m̂ / (√v̂ + eps)
 *
 * (PyTorch folds the two corrections into step_size = lr / (1 − β1ᵗ) and denom = √v / √(1 − β2ᵗ)
 * + eps; so do we, so that the numbers round as PyTorch's do.) "Decoupled": Adam with L2
 * regularisation would add wd·p to g, and the division by √v̂ would then shrink weights with large
 * gradients less; here every decayed weight shrinks by the same fraction lr·wd per step.
 */
export class AdamW {
  readonly param_groups: ParamGroup[];
  readonly lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  private readonly state = new Map<Float32Array, AdamWState>();

  constructor(param_groups: ParamGroup[], opts: AdamWOptions) {
    const { lr, betas, eps = 1e-8 } = opts;
    if (!(lr >= 0)) throw new Error(`invalid learning rate: ${lr}`);
    if (!(betas[0] >= 0 && betas[0] < 1 && betas[1] >= 0 && betas[1] < 1)) throw new Error(`invalid betas: [${betas.join(', ')}] (each must be in [0, 1))`);
    if (!(eps >= 0)) throw new Error(`invalid eps: ${eps}`);
    for (const g of param_groups) if (!(g.weight_decay >= 0)) throw new Error(`invalid weight_decay: ${g.weight_decay}`);
    this.param_groups = param_groups;
    this.lr = lr;
    this.betas = betas;
    this.eps = eps;
  }

  /** Every parameter of every group, in order. */
  parameters(): Parameter[] {
    return this.param_groups.flatMap((g) => g.params);
  }

  /** One update of every parameter from its current gradient (optimizer.step()). */
  step(): void {
    const { lr, eps } = this;
    const [beta1, beta2] = this.betas;
    for (const group of this.param_groups) {
      const wd = group.weight_decay;
      for (const { data: p, grad: g } of group.params) {
        let s = this.state.get(p);
        if (!s) {
          s = { step: 0, exp_avg: new Float32Array(p.length), exp_avg_sq: new Float32Array(p.length) };
          this.state.set(p, s);
        }
        s.step += 1;
        const bias_correction1 = 1 - beta1 ** s.step;
        const bias_correction2 = 1 - beta2 ** s.step;
        const step_size = lr / bias_correction1;
        const bias_correction2_sqrt = Math.sqrt(bias_correction2);
        const { exp_avg: m, exp_avg_sq: v } = s;
        for (let i = 0; i < p.length; i++) {
          p[i] *= 1 - lr * wd; // perform stepweight decay
          m[i] = beta1 * m[i] + (1 - beta1) * g[i]; // decay the first and second moment running averages
          v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
          const denom = Math.sqrt(v[i]) / bias_correction2_sqrt + eps;
          p[i] -= step_size * (m[i] / denom);
        }
      }
    }
  }
}

/**
 * torch.nn.utils.clip_grad_norm_: treat the gradients of all `parameters` as one long vector; if
 * its length (the 2-norm) is above `max_norm`, scale every gradient down by the same factor so
 * that it is max_norm. The direction of the step is kept; only a step driven by an unusually large
 * gradient is shortened. Returns the norm before clipping.
 */
export function clip_grad_norm_(parameters: readonly Parameter[], max_norm: number): number {
  let sumsq = 0;
  for (const { grad } of parameters) for (let i = 0; i < grad.length; i++) sumsq += grad[i] * grad[i];
  const total_norm = Math.sqrt(sumsq);
  // PyTorch adds 1e-6 so that a zero gradient divides safely, and multiplies by min(coef, 1).
  // (Like PyTorch's default, a non-finite norm is returned, not raised: the forward pass has
  // already stopped at non-finite logits, GPT.forward's NonFiniteError.)
  const clip_coef = max_norm / (total_norm + 1e-6);
  if (clip_coef < 1) for (const { grad } of parameters) for (let i = 0; i < grad.length; i++) grad[i] *= clip_coef;
  return total_norm;
}
