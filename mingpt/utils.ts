/**
 * Small helpers shared by the model and the experiments, after minGPT's mingpt/utils.py:
 * a seedable random number generator (`set_seed`) and `CfgNode`, a tiny config object.
 */

// ---------------------------------------------------------------------------------------------
// Random numbers. JavaScript's Math.random cannot be seeded, and an experiment a student can't
// reproduce is not worth much, so every random draw in this project goes through this generator.

/** A seedable pseudo-random generator (mulberry32: 32 bits of state, fast, good enough here). */
export class RNG {
  private state: number;
  private spare: number | null = null; // Box-Muller makes normals in pairs; keep the second one
  constructor(seed = 0) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  random(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal N(0, 1), by the Box-Muller transform. */
  randn(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.random();
    const v = this.random();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** Integer in [lo, hi). */
  randint(lo: number, hi: number): number {
    return lo + Math.floor(this.random() * (hi - lo));
  }
  /** Draw an index from a discrete distribution given by (unnormalised, non-negative) weights. */
  multinomial(weights: ArrayLike<number>): number {
    let total = 0;
    for (let i = 0; i < weights.length; i++) total += weights[i];
    let r = this.random() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return weights.length - 1; // only reached through rounding
  }
}

/** The generator used when a function is not handed one explicitly. */
export let rng = new RNG(0);

/** Like minGPT's set_seed: make every later random draw reproducible. */
export function set_seed(seed: number): void {
  rng = new RNG(seed);
}

// ---------------------------------------------------------------------------------------------
// Configuration.

/**
 * A lightweight configuration object in the spirit of minGPT's CfgNode (itself after yacs):
 * plain attributes, nested nodes allowed, printable, and updatable from a dictionary.
 */
export class CfgNode {
  [key: string]: unknown;

  constructor(values: Record<string, unknown> = {}) {
    Object.assign(this, values);
  }

  /** Update attributes from a dict; nested dicts update nested CfgNodes. */
  merge_from_dict(d: Record<string, unknown>): this {
    for (const [k, v] of Object.entries(d)) {
      const cur = this[k];
      if (cur instanceof CfgNode && v !== null && typeof v === 'object') cur.merge_from_dict(v as Record<string, unknown>);
      else this[k] = v;
    }
    return this;
  }

  /** Back to a plain (recursively) dictionary. */
  to_dict(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this)) out[k] = v instanceof CfgNode ? v.to_dict() : v;
    return out;
  }

  toString(): string {
    return JSON.stringify(this.to_dict(), null, 2);
  }
}
