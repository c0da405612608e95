/**
 * The hand-built induction model of assignments/induction-heads/handmade.ts, with MLP neurons
 * added whose cosine between input and output direction we know, so that step 6 of the circuits
 * experiment (memory-management neurons) has a right answer to find.
 *
 *   npx tsx assignments/circuits/handmade_erasers.ts --out out/handmade-erasers
 *   npx tsx assignments/circuits/circuits.ts --weights out/handmade-erasers
 *
 * The induction model leaves the channels 138 … 255 of its residual stream empty, and its MLPs
 * are all zeros. Each neuron added here reads a direction d inside those empty channels, with zero
 * mean over the C channels (so the weight processing of ./README.md leaves it as it is), and writes:
 *   ERASERS       −d             cosine −1: reads d, writes back minus it
 *   partial       −0.6 d + 0.8 e cosine −0.6 (e ⟂ d): half an eraser, a distractor
 *   copier        +d             cosine +1
 *   random        a random direction of the empty channels: cosine near 0
 * Since nothing ever writes into the empty channels, every neuron's input is 0, GELU(0) = 0, and the
 * model computes exactly what the induction model computes: the neurons show in the weights only.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { RNG } from '../../mingpt/utils.ts';
import type { GPT } from '../../mingpt/model.ts';
import { checkpointFiles } from '../../io/checkpoint_writer.ts';
import { OutputWriter } from '../../io/output.ts';
import { helpText, optionValue, parseArgs, type CommandSpec } from '../../cli/args.ts';
import { UsageError } from '../../io/errors.ts';
import { runCli } from '../../cli/command.ts';
import { buildHandmade, DEFAULT_RANGE, LAYOUT, N_EMBD } from '../induction-heads/handmade.ts';
import { parseTokenRange } from '../induction-heads/scores.ts';

/** The first channel nothing writes to, and the number of empty channels after it. */
const EMPTY = LAYOUT.ONE + 1; // 138
const N_EMPTY = N_EMBD - EMPTY; // 118

/** The neurons that erase (layer, neuron): what step 6 must list, and nothing else. */
export const ERASERS: ReadonlyArray<{ layer: number; neuron: number }> = [
  { layer: 0, neuron: 17 },
  { layer: 0, neuron: 400 },
  { layer: 1, neuron: 3 },
  { layer: 1, neuron: 777 },
];
const PARTIAL = [{ layer: 0, neuron: 18 }, { layer: 1, neuron: 4 }];
const COPIERS = [{ layer: 0, neuron: 19 }, { layer: 1, neuron: 5 }];
const N_RANDOM = 20; // random neurons per layer, at neurons 100 … 119

/** A unit vector (C) inside the empty channels with zero mean over all C channels. */
function emptyDirection(rng: RNG): Float64Array {
  const d = new Float64Array(N_EMBD);
  let m = 0;
  for (let i = 0; i < N_EMPTY; i++) m += (d[EMPTY + i] = rng.randn());
  m /= N_EMPTY;
  let n = 0;
  for (let i = 0; i < N_EMPTY; i++) n += (d[EMPTY + i] -= m) ** 2;
  n = Math.sqrt(n);
  for (let i = 0; i < N_EMPTY; i++) d[EMPTY + i] /= n;
  return d;
}

/** Sets neuron n of layer l to read `din` and write `dout` (both (C)). */
function setNeuron(model: GPT, l: number, n: number, din: Float64Array, dout: Float64Array): void {
  const C = N_EMBD, D = 4 * C;
  const { c_fc, c_proj } = model.transformer.h[l].mlp; // (4C, C) and (C, 4C), nn.Linear layout
  for (let c = 0; c < C; c++) {
    c_fc.weight[n * C + c] = din[c];
    c_proj.weight[c * D + n] = dout[c];
  }
}

export function buildHandmadeWithErasers(opts: { lo: number; hi: number; seed: number }): { model: GPT; config: Record<string, unknown> } {
  const { model, config } = buildHandmade(opts);
  const rng = new RNG(opts.seed + 1);
  for (const { layer, neuron } of ERASERS) {
    const d = emptyDirection(rng);
    setNeuron(model, layer, neuron, d, d.map((v) => -v));
  }
  for (const { layer, neuron } of PARTIAL) {
    const d = emptyDirection(rng);
    let e = emptyDirection(rng);
    const de = d.reduce((s, v, i) => s + v * e[i], 0); // make e orthogonal to d (both zero-mean, so e stays zero-mean)
    e = e.map((v, i) => v - de * d[i]);
    const en = Math.sqrt(e.reduce((s, v) => s + v * v, 0));
    setNeuron(model, layer, neuron, d, d.map((v, i) => -0.6 * v + (0.8 * e[i]) / en));
  }
  for (const { layer, neuron } of COPIERS) {
    const d = emptyDirection(rng);
    setNeuron(model, layer, neuron, d, d);
  }
  for (let l = 0; l < 2; l++) for (let k = 0; k < N_RANDOM; k++) setNeuron(model, l, 100 + k, emptyDirection(rng), emptyDirection(rng));
  return {
    model,
    config: {
      ...config,
      memory_management_neurons: ERASERS.map(({ layer, neuron }) => `${layer}.${neuron}`),
      handmade: { ...(config.handmade as object), erasers: 'assignments/circuits/handmade_erasers.ts adds MLP neurons reading the empty channels' },
    },
  };
}

export const COMMAND = {
  usage: 'npx tsx assignments/circuits/handmade_erasers.ts',
  description: `
The hand-built induction model (assignments/induction-heads/handmade.ts) plus MLP neurons whose
input and output directions are known: ${ERASERS.length} erasers (cosine −1), and distractors with cosine
−0.6, +1 and near 0. They read only residual channels nothing writes to, so the model's
behaviour is unchanged. Run the circuits experiment on it with
  npx tsx assignments/circuits/circuits.ts --weights DIR`,
  options: {
    out: { type: 'string', default: 'out/handmade-erasers', metavar: 'DIR', help: 'folder for model.safetensors and config.json (created when missing)' },
    'token-range': { type: 'string', default: DEFAULT_RANGE.join(','), metavar: 'LO,HI', help: 'the token ids [LO, HI) the induction model is built for; BOS gets the id HI' },
    seed: { type: 'int', default: 0, min: 0, metavar: 'N', help: 'seed of the random weights (decoy heads, neuron directions)' },
  },
} as const satisfies CommandSpec;

export async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  const [lo, hi] = optionValue('--token-range', a['token-range'], parseTokenRange);
  const outDir = a.out;
  if (outDir === '') throw new UsageError('--out needs a folder');
  const out = new OutputWriter(outDir);
  out.check();
  const { model, config } = buildHandmadeWithErasers({ lo, hi, seed: a.seed });
  for (const [name, data] of checkpointFiles(model, config)) out.add(name, data);
  const written = out.commit();
  process.stdout.write(`handmade induction model with eraser neurons ${ERASERS.map(({ layer, neuron }) => `${layer}.${neuron}`).join(', ')}\n`);
  for (const f of written) process.stdout.write(`  ${f}\n`);
  process.stdout.write(`next: npx tsx assignments/circuits/circuits.ts --weights ${outDir}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, COMMAND.usage);
}
