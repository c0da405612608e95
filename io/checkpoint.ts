/**
 * A GPT-2 checkpoint in the Hugging Face layout (model.safetensors + config.json), seen through
 * minGPT's parameter names. This is the TypeScript half of minGPT's `GPT.from_pretrained`:
 *
 *   - the file's keys may or may not carry the `transformer.` prefix: openai-community/gpt2's
 *     model.safetensors says `h.0.attn.c_attn.weight`, a GPT2LMHeadModel saved by transformers
 *     says `transformer.h.0.attn.c_attn.weight` (and may add `lm_head.weight`);
 *   - the `attn.bias` / `attn.masked_bias` causal-mask buffers are not parameters: ignored;
 *   - "the openai checkpoints use a Conv1D module, but we only want to use a vanilla Linear,
 *     this means that we have to transpose these weights when we import them" (minGPT): the four
 *     Conv1D weights are stored [in, out] and readInto hands them out as [out, in];
 *   - no `lm_head.weight` means the head is tied to `wte.weight` (has() says false; the model
 *     decides what to do).
 *
 * Like minGPT, we are defensive: every tensor the model asks for must exist with exactly the
 * shape the model expects, or we refuse naming the tensor and both shapes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { notRegularFile } from './files.ts';
import { openSafetensors, SafetensorsError, type SafetensorsFile, type TensorInfo } from './safetensors.ts';
import { preview, quoted } from './show.ts';

export class CheckpointError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CheckpointError';
  }
}

export interface GPT2HParams {
  n_layer: number;
  n_head: number;
  n_embd: number;
  vocab_size: number;
  /** config.json's n_positions: the longest context the position embedding covers */
  block_size: number;
  layer_norm_epsilon: number;
  /** config.json as parsed, for anything else (activation_function, ...) */
  raw: Record<string, unknown>;
}

/** The four weights GPT-2 keeps in Conv1D modules, stored [in, out] instead of Linear's [out, in]. */
export const CONV1D_WEIGHTS = ['attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight'];
export const isConv1D = (key: string) => CONV1D_WEIGHTS.some((w) => key.endsWith('.' + w));
/** Buffers (the causal mask), not parameters: never read, never reported as unused. */
const isBuffer = (key: string) => /(^|\.)attn\.(bias|masked_bias)$/.test(key);

/** Elements of the scratch buffer that Conv1D weights are transposed through (4 MiB of float32). */
const DEFAULT_SCRATCH_ELEMENTS = 1 << 20;

const showShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export interface CheckpointOptions {
  /** float32 elements of the transpose scratch buffer (default 1Mi); tests make it small */
  scratchElements?: number;
}

export class Checkpoint {
  /** the .safetensors path */
  readonly file: string;
  readonly hparams: GPT2HParams;
  private readonly st: SafetensorsFile;
  private readonly read = new Set<string>();
  private readonly scratchElements: number;
  private scratch: Float32Array | null = null;

  private constructor(file: string, hparams: GPT2HParams, st: SafetensorsFile, scratchElements: number) {
    this.file = file;
    this.hparams = hparams;
    this.st = st;
    this.scratchElements = scratchElements;
  }

  /**
   * Opens a directory holding model.safetensors and config.json, or a .safetensors file with
   * config.json beside it. Validates the config and the whole safetensors header.
   */
  static open(fileOrDir: string, opts: CheckpointOptions = {}): Checkpoint {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(fileOrDir);
    } catch {
      throw new CheckpointError(`checkpoint not found: ${fileOrDir} does not exist (expected a directory with model.safetensors and config.json, or a .safetensors file)`);
    }
    const dir = stat.isDirectory() ? fileOrDir : path.dirname(fileOrDir);
    const file = stat.isDirectory() ? path.join(fileOrDir, 'model.safetensors') : fileOrDir;
    if (!fs.existsSync(file)) throw new CheckpointError(`checkpoint not found: ${file} does not exist`);
    const configPath = path.join(dir, 'config.json');
    const hparams = readConfig(configPath);
    let st: SafetensorsFile;
    try {
      st = openSafetensors(file);
    } catch (err) {
      if (err instanceof SafetensorsError) throw new CheckpointError(`cannot load checkpoint: ${err.message}`, { cause: err });
      throw err;
    }
    try {
      // before the model allocates a single weight: do config.json and the tensors agree?
      checkConfigAgainstTensors(hparams, st.tensors, configPath, file);
    } catch (err) {
      st.close();
      throw err;
    }
    return new Checkpoint(file, hparams, st, opts.scratchElements ?? DEFAULT_SCRATCH_ELEMENTS);
  }

  /** The checkpoint's own key for a minGPT name, or undefined: `transformer.X` may be stored as `X`. */
  private key(name: string): string | undefined {
    if (this.st.tensors.has(name)) return name;
    if (name.startsWith('transformer.')) {
      const short = name.slice('transformer.'.length);
      if (this.st.tensors.has(short)) return short;
    }
    return undefined;
  }

  /** Whether the checkpoint holds `name` (minGPT's naming, e.g. 'lm_head.weight'). */
  has(name: string): boolean {
    return this.key(name) !== undefined;
  }

  /**
   * Reads parameter `name` (minGPT's naming) into `out`, whose shape is `shape` in minGPT's
   * layout: Linear weights (out, in). Conv1D weights are transposed on the way.
   */
  readInto(name: string, out: Float32Array, shape: number[]): void {
    const key = this.key(name);
    if (key === undefined) {
      const tried = name.startsWith('transformer.') ? `'${name}' or '${name.slice('transformer.'.length)}'` : `'${name}'`;
      throw new CheckpointError(`${this.file}: missing tensor '${name}' (looked for ${tried})`);
    }
    if (out.length !== product(shape)) {
      throw new CheckpointError(`${this.file}: tensor '${name}': the destination holds ${out.length} elements but shape ${showShape(shape)} has ${product(shape)}`);
    }
    const t = this.st.tensors.get(key)!;
    const conv = isConv1D(key);
    if (conv && shape.length !== 2) {
      throw new CheckpointError(`${this.file}: tensor '${name}' is a 2-D Conv1D weight, but the model asks for shape ${showShape(shape)}`);
    }
    const expectedStored = conv ? [shape[1], shape[0]] : shape;
    if (t.shape.length !== expectedStored.length || t.shape.some((d, i) => d !== expectedStored[i])) {
      const stored = key === name ? '' : ` (stored as '${key}')`;
      const how = conv
        ? `the model expects ${showShape(shape)} as (out, in), i.e. ${showShape(expectedStored)} as the Conv1D (in, out) stored in the file`
        : `the model expects ${showShape(shape)}`;
      throw new CheckpointError(`${this.file}: tensor '${name}'${stored} has shape ${showShape(t.shape)} in the file, but ${how} (from config.json: n_embd ${this.hparams.n_embd}, vocab_size ${this.hparams.vocab_size}, n_positions ${this.hparams.block_size})`);
    }
    try {
      if (conv) this.readTransposed(key, t, out);
      else this.st.readF32(key, out);
    } catch (err) {
      if (err instanceof SafetensorsError) throw new CheckpointError(err.message, { cause: err });
      throw err;
    }
    this.read.add(key);
  }

  /**
   * out (O, I) = transpose of the stored (I, O) tensor. We read a band of stored rows at a time
   * into a scratch buffer (never a second full copy of the weight) and transpose it eight columns
   * at a time: each stored row gives 8 contiguous floats, which go to 8 output rows, and those
   * 8 output rows are written sequentially. Both sides stay in cache; about 2x faster than the
   * element-by-element tiled loop, which matters for the ~85M Conv1D weights of GPT-2 small.
   */
  private readTransposed(key: string, t: TensorInfo, out: Float32Array): void {
    const [I, O] = t.shape;
    const rowsPerBand = Math.max(1, Math.min(I, Math.floor(this.scratchElements / Math.max(1, O))));
    if (!this.scratch || this.scratch.length < rowsPerBand * O) this.scratch = new Float32Array(rowsPerBand * O);
    for (let i0 = 0; i0 < I; i0 += rowsPerBand) {
      const rows = Math.min(rowsPerBand, I - i0);
      const band = this.scratch.subarray(0, rows * O); // (rows, O): stored rows i0 .. i0+rows
      this.st.readF32Range(key, i0 * O, band);
      transposeBand(out, band, I, O, i0, rows);
    }
  }

  /** Checkpoint keys never read by readInto (the attn.bias / attn.masked_bias buffers excepted). */
  unusedTensors(): string[] {
    return [...this.st.tensors.keys()].filter((k) => !this.read.has(k) && !isBuffer(k));
  }

  close(): void {
    this.st.close();
    this.scratch = null;
  }
}

/** config.json in Hugging Face's GPT2Config naming -> GPT2HParams. */
function readConfig(configPath: string): GPT2HParams {
  let text: string;
  try {
    // a FIFO would make readFileSync wait for a writer forever
    const what = notRegularFile(fs.statSync(configPath));
    if (what) throw new CheckpointError(`${configPath} is ${what}, not a config.json file`);
    text = fs.readFileSync(configPath, 'utf8');
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CheckpointError(`missing config.json: ${configPath} does not exist (it must sit beside model.safetensors)`);
    throw new CheckpointError(`missing config.json: ${configPath} cannot be read (${code ?? (err as Error).message}; it must sit beside model.safetensors)`);
  }
  return parseConfig(text, configPath);
}

/**
 * Largest values we accept, far above GPT-2 XL (48 layers, 25 heads, 1600 wide, 50257 tokens,
 * 1024 positions) yet small enough that a typo or a damaged file cannot ask for terabytes.
 */
const LIMITS: Record<string, number> = { n_layer: 1024, n_head: 1024, n_embd: 65536, vocab_size: 1 << 24, n_positions: 1 << 20 };
/** The activation GPT-2 uses (tanh-approximated GELU, our NewGELU), under both of transformers' names for it. */
const GPT2_ACTIVATIONS = ['gelu_new', 'gelu_pytorch_tanh'];
/** GPT2Config switches that change the computation; our model implements only these values. */
const GPT2_SWITCHES: Record<string, unknown> = {
  scale_attn_weights: true, scale_attn_by_inverse_layer_idx: false, reorder_and_upcast_attn: false, add_cross_attention: false,
};

/**
 * Checks the text of a config.json (required fields, types, ranges, and that it describes a
 * GPT-2) and returns its hyperparameters; `where` names the file in the messages. Used on every
 * load, and by the downloader before a config.json is saved.
 */
export function parseConfig(text: string, where: string): GPT2HParams {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(`${where}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CheckpointError(`${where}: not a JSON object`);
  const cfg = raw as Record<string, unknown>;
  const bad = (msg: string): never => { throw new CheckpointError(`${where}: ${msg}`); };
  // a login page or an error answered with "200 OK" is JSON too, but says nothing of a model
  if (!['n_layer', 'n_head', 'n_embd', 'vocab_size', 'n_positions'].some((k) => k in cfg)) {
    bad(`this is not a GPT-2 config.json: none of n_layer, n_head, n_embd, vocab_size, n_positions is in it (it says ${preview(cfg, 200)})`);
  }
  if (cfg.model_type !== undefined && cfg.model_type !== 'gpt2') {
    bad(`'model_type' is ${preview(cfg.model_type)}, but this loader reads only GPT-2 ("gpt2") checkpoints`);
  }
  if (cfg.activation_function !== undefined && !GPT2_ACTIVATIONS.includes(cfg.activation_function as string)) {
    bad(`'activation_function' is ${preview(cfg.activation_function)}, but GPT-2 (and our model) uses "gelu_new"`);
  }
  for (const [key, want] of Object.entries(GPT2_SWITCHES)) {
    if (cfg[key] !== undefined && cfg[key] !== want) bad(`'${key}' is ${preview(cfg[key])}; our model computes only GPT-2's ${JSON.stringify(want)}`);
  }
  const int = (key: string): number => {
    const v = cfg[key];
    if (v === undefined) bad(`missing required hyperparameter '${key}'`);
    if (!Number.isSafeInteger(v) || (v as number) <= 0) bad(`'${key}' must be a positive integer, got ${preview(v)}`);
    if ((v as number) > LIMITS[key]) bad(`'${key}' is ${v}, out of range (at most ${LIMITS[key]}; GPT-2 XL has ${({ n_layer: 48, n_head: 25, n_embd: 1600, vocab_size: 50257, n_positions: 1024 } as Record<string, number>)[key]})`);
    return v as number;
  };
  const hp: GPT2HParams = {
    n_layer: int('n_layer'),
    n_head: int('n_head'),
    n_embd: int('n_embd'),
    vocab_size: int('vocab_size'),
    block_size: int('n_positions'),
    layer_norm_epsilon: 1e-5,
    raw: cfg,
  };
  if (cfg.layer_norm_epsilon !== undefined) {
    const eps = cfg.layer_norm_epsilon;
    if (typeof eps !== 'number' || !(eps > 0) || !(eps < 1)) bad(`'layer_norm_epsilon' must be a positive number below 1, got ${preview(eps)}`);
    hp.layer_norm_epsilon = eps as number;
  }
  // n_head appears in no tensor's shape, so this is the only check it gets
  if (hp.n_embd % hp.n_head !== 0) {
    bad(`n_embd ${hp.n_embd} is not divisible by n_head ${hp.n_head}: 'n_head' or 'n_embd' is wrong (each head gets n_embd / n_head dimensions)`);
  }
  if (cfg.n_inner !== undefined && cfg.n_inner !== null && cfg.n_inner !== 4 * hp.n_embd) {
    bad(`'n_inner' is ${preview(cfg.n_inner)}, but GPT-2's MLP is 4 * n_embd = ${4 * hp.n_embd} wide`);
  }
  if (cfg.n_ctx !== undefined && cfg.n_ctx !== hp.block_size) {
    bad(`'n_ctx' ${preview(cfg.n_ctx)} and 'n_positions' ${hp.block_size} disagree (GPT-2 has them equal)`);
  }
  return hp;
}

/** Float32 parameters of a GPT-2 with these hyperparameters (lm_head tied, as GPT-2's is). */
export function gpt2ParamCount(hp: Pick<GPT2HParams, 'n_layer' | 'n_embd' | 'vocab_size' | 'block_size'>): number {
  const C = hp.n_embd;
  return (hp.vocab_size + hp.block_size) * C + hp.n_layer * (12 * C * C + 13 * C) + 2 * C;
}

/**
 * config.json against the tensors' shapes, before any weight is allocated: wte is [vocab_size,
 * n_embd], wpe [n_positions, n_embd], and there are blocks h.0 .. h.{n_layer-1}. Names the field
 * that is wrong. Then the model's size against this machine's memory.
 */
export function checkConfigAgainstTensors(hp: GPT2HParams, tensors: ReadonlyMap<string, TensorInfo>,
                                          configPath: string, file: string, memory = availableMemory()): void {
  const find = (name: string) => tensors.get(name) ?? tensors.get('transformer.' + name);
  const wrong = (field: string, says: number, tensor: string, shape: number[], meaning: string): never => {
    throw new CheckpointError(`${configPath}: '${field}' is ${says}, but ${file} has tensor ${quoted(tensor)} of shape ${showShape(shape)} `
      + `(${meaning}): config.json does not belong to this checkpoint`);
  };
  for (const [name, rows, rowField] of [['wte.weight', hp.vocab_size, 'vocab_size'], ['wpe.weight', hp.block_size, 'n_positions']] as const) {
    const t = find(name);
    if (!t) throw new CheckpointError(`${file}: no tensor '${name}' (nor 'transformer.${name}'): not a GPT-2 checkpoint`);
    if (t.shape.length !== 2) throw new CheckpointError(`${file}: tensor ${quoted(name)} has shape ${showShape(t.shape)}, expected 2 dimensions`);
    if (t.shape[0] !== rows) wrong(rowField, rows, name, t.shape, `${t.shape[0]} rows`);
    if (t.shape[1] !== hp.n_embd) wrong('n_embd', hp.n_embd, name, t.shape, `${t.shape[1]} columns`);
  }
  const layers = new Map<number, string[]>(); // block number -> its tensors
  for (const key of tensors.keys()) {
    const m = key.match(/^(?:transformer\.)?h\.(\d+)\./);
    if (m) layers.set(Number(m[1]), [...(layers.get(Number(m[1])) ?? []), key]);
  }
  const sorted = [...layers.keys()].sort((a, b) => a - b);
  if (sorted.length !== hp.n_layer || sorted.some((l, i) => l !== i)) {
    const have = sorted.length === 0 ? 'no blocks' : `${sorted.length} blocks (h.${sorted[0]} .. h.${sorted[sorted.length - 1]})`;
    // name what does not fit: tensors of a block past n_layer, or the first block that is missing
    const beyond = sorted.filter((l) => l >= hp.n_layer).flatMap((l) => layers.get(l)!);
    const missing = Array.from({ length: hp.n_layer }, (_, i) => i).find((i) => !layers.has(i));
    const detail = beyond.length > 0
      ? `; tensors past block h.${hp.n_layer - 1}: ${beyond.slice(0, 3).map((k) => quoted(k)).join(', ')}${beyond.length > 3 ? ` (and ${beyond.length - 3} more)` : ''}`
      : missing !== undefined ? `; no tensor of block h.${missing}` : '';
    throw new CheckpointError(`${configPath}: 'n_layer' is ${hp.n_layer}, but ${file} holds ${have}${detail}: config.json does not belong to this checkpoint`);
  }
  const bytes = 4 * gpt2ParamCount(hp);
  if (bytes > memory) {
    throw new CheckpointError(`${file}: the model needs ${(bytes / 2 ** 30).toFixed(1)} GiB as float32 (n_layer ${hp.n_layer}, n_embd ${hp.n_embd}, `
      + `vocab_size ${hp.vocab_size}), more than the ${(memory / 2 ** 30).toFixed(1)} GiB of memory this machine has available`);
  }
}

/**
 * Memory a new allocation can get: Linux's MemAvailable (free memory plus the page cache it can
 * drop) plus free swap, else the machine's total memory.
 */
export function availableMemory(): number {
  try {
    const info = fs.readFileSync('/proc/meminfo', 'utf8');
    const kB = (key: string) => Number(info.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'))?.[1]);
    const avail = kB('MemAvailable') + (kB('SwapFree') || 0);
    if (Number.isFinite(avail) && avail > 0) return avail * 1024;
  } catch { /* not Linux */ }
  return os.totalmem();
}

/**
 * out[o, i0 + r] = band[r, o] for r < rows, o < O: the band is stored rows i0 .. i0+rows of an
 * (I, O) matrix, out is its (O, I) transpose.
 */
export function transposeBand(out: Float32Array, band: Float32Array, I: number, O: number, i0: number, rows: number): void {
  const TILE = 64; // stored rows per pass, so the 8 output row segments stay in L1
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    let o = 0;
    for (; o + 8 <= O; o += 8) {
      const d0 = o * I + i0, d1 = d0 + I, d2 = d1 + I, d3 = d2 + I, d4 = d3 + I, d5 = d4 + I, d6 = d5 + I, d7 = d6 + I;
      for (let r = r0, s = r0 * O + o; r < r1; r++, s += O) {
        out[d0 + r] = band[s]; out[d1 + r] = band[s + 1]; out[d2 + r] = band[s + 2]; out[d3 + r] = band[s + 3];
        out[d4 + r] = band[s + 4]; out[d5 + r] = band[s + 5]; out[d6 + r] = band[s + 6]; out[d7 + r] = band[s + 7];
      }
    }
    for (; o < O; o++) { // the last O % 8 columns
      const d = o * I + i0;
      for (let r = r0; r < r1; r++) out[d + r] = band[r * O + o];
    }
  }
}
