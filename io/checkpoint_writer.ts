/**
 * Writing a model as a GPT-2 checkpoint in the Hugging Face layout, the inverse of
 * ./checkpoint.ts: `model.safetensors` with openai-community/gpt2's tensor names (no
 * `transformer.` prefix, the four Conv1D weights stored [in, out]) and a `config.json` in
 * GPT2Config's naming. The hand-built models of the experiments and the benchmark's random
 * checkpoint are written with it, so whatever loads real GPT-2 loads them too.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isConv1D } from './checkpoint.ts';
import { writeSafetensors, type TensorToWrite } from './safetensors.ts';

/** What the writer needs of a model (a GPT satisfies it). */
export interface WritableModel {
  /** [minGPT name, data, shape (Linear layout: out, in)] for every parameter */
  readonly named_parameters: ReadonlyArray<readonly [string, Float32Array, readonly number[]]>;
  readonly config: { n_layer: number; n_head: number; n_embd: number; vocab_size: number; block_size: number; layer_norm_epsilon: number };
}

export interface WriteOptions {
  /** also write each layer's `h.{l}.attn.bias` causal-mask buffer, as the real GPT-2 file does */
  maskBuffers?: boolean;
  /** the `__metadata__` of the safetensors file */
  metadata?: Record<string, string>;
}

/** The model's parameters under the names and layouts of openai-community/gpt2's file. */
export function gpt2Tensors(model: WritableModel, opts: WriteOptions = {}): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  const T = model.config.block_size;
  let mask: Float32Array | null = null; // (1, 1, T, T): ones on and below the diagonal
  for (const [name, data, shape] of model.named_parameters) {
    const key = name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
    if (isConv1D(key)) {
      // "the openai checkpoints use a Conv1D module": store (in, out), the transpose of ours
      const [O, I] = shape;
      const t = new Float32Array(O * I);
      for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) t[i * O + o] = data[o * I + i];
      out[key] = { dtype: 'F32', shape: [I, O], data: t };
    } else {
      out[key] = { dtype: 'F32', shape: shape.slice(), data };
    }
    const m = opts.maskBuffers ? key.match(/^h\.(\d+)\.ln_1\.bias$/) : null;
    if (m) {
      if (!mask) {
        mask = new Float32Array(T * T);
        for (let i = 0; i < T; i++) mask.fill(1, i * T, i * T + i + 1);
      }
      out[`h.${m[1]}.attn.bias`] = { dtype: 'F32', shape: [1, 1, T, T], data: mask };
    }
  }
  return out;
}

/** config.json for the model, in Hugging Face's GPT2Config naming, with `extra` fields added. */
export function gpt2Config(model: WritableModel, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const c = model.config;
  return {
    activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], model_type: 'gpt2',
    bos_token_id: 50256, eos_token_id: 50256, layer_norm_epsilon: c.layer_norm_epsilon,
    n_ctx: c.block_size, n_positions: c.block_size, n_embd: c.n_embd, n_head: c.n_head, n_layer: c.n_layer,
    vocab_size: c.vocab_size,
    ...extra,
  };
}

/** Writes the checkpoint's two files, model.safetensors and config.json, into `dir` (made if missing). */
export function writeCheckpoint(dir: string, model: WritableModel, config: Record<string, unknown>, opts: WriteOptions = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, data] of checkpointFiles(model, config, opts)) fs.writeFileSync(path.join(dir, name), data);
}

/** The two files of the checkpoint as bytes, for an output set that is written all at once. */
export function checkpointFiles(model: WritableModel, config: Record<string, unknown>, opts: WriteOptions = {}): Map<string, Uint8Array | string> {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'checkpoint-'));
  try {
    const file = path.join(tmpDir, 'model.safetensors');
    writeSafetensors(file, gpt2Tensors(model, opts), opts.metadata ?? { format: 'pt' });
    return new Map<string, Uint8Array | string>([
      ['model.safetensors', fs.readFileSync(file)],
      ['config.json', JSON.stringify(config, null, 2) + '\n'],
    ]);
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

/**
 * A model's checkpoint files, as training leaves it: lm_head.weight is written only when it
 * differs from wte.weight (minGPT trains the two apart; a head still equal to the embedding is
 * GPT-2's tying, and is left to the loader), and config.json's tie_word_embeddings says which, so
 * that Hugging Face's loader does not tie a head the file holds. `extra` adds config.json fields.
 */
export function modelCheckpointFiles(model: WritableModel, extra: Record<string, unknown> = {}, opts: WriteOptions = {}): Map<string, Uint8Array | string> {
  const find = (name: string) => model.named_parameters.find(([n]) => n === name)?.[1];
  const head = find('lm_head.weight'), wte = find('transformer.wte.weight') ?? find('wte.weight');
  const ownHead = head !== undefined && !(wte !== undefined && head.length === wte.length && head.every((v, i) => v === wte[i]));
  const written: WritableModel = ownHead ? model : { config: model.config, named_parameters: model.named_parameters.filter(([n]) => n !== 'lm_head.weight') };
  return checkpointFiles(written, gpt2Config(model, { tie_word_embeddings: !ownHead, ...extra }), opts);
}
