/**
 * Simple training loop; boilerplate that could apply to any arbitrary neural network, so nothing
 * in this file really has anything to do with GPT specifically. The TypeScript port of minGPT's
 * mingpt/trainer.py: read the two side by side.
 *
 * What differs from minGPT, and why:
 * - No device and no data-loader worker processes: everything runs in this process, on the
 *   kernels ./kernels/index.ts chooses. PyTorch's DataLoader and RandomSampler are written out
 *   below, small: a dataset is any object with `length` and `get(i)` returning (x, y).
 * - run() is async: between two steps it lets Node deliver what is waiting (a Ctrl-C, a timer),
 *   which a Python loop gets from the interpreter for free. A callback that throws stops the run,
 *   as a KeyboardInterrupt stops minGPT's.
 * - The gradient clipping runs over the parameters the optimizer updates. In minGPT that is
 *   model.parameters(): configure_optimizers puts every parameter in one of its two groups. A
 *   parameter left out of training (requires_grad False in PyTorch) has no gradient there, so it
 *   counts in neither norm.
 */
import { CfgNode, rng as globalRng, type RNG } from './utils.ts';
import { clip_grad_norm_, type AdamW } from './optim.ts';
import type { GPT } from './model.ts';

// -----------------------------------------------------------------------------------------------
// data: PyTorch's Dataset, RandomSampler and DataLoader, as small as minGPT needs them

/** A training set: `length` examples, example i being (x, y), the input ids and their targets (each T). */
export interface Dataset {
  readonly length: number;
  get(i: number): [number[], number[]];
}

/** A batch: x (B, T) and y (B, T). */
export type Batch = [number[][], number[][]];

/**
 * torch.utils.data.RandomSampler(data_source, replacement=True, num_samples): `num_samples`
 * indices, each drawn uniformly from 0 … length − 1 independently of the others (so an example
 * may come twice before another comes once). Seeded through `generator`.
 */
export function* RandomSampler(length: number, num_samples: number, generator: RNG): Generator<number> {
  if (!(Number.isInteger(length) && length > 0)) throw new Error(`the dataset must hold at least one example (length ${length})`);
  for (let n = 0; n < num_samples; n++) yield generator.randint(0, length);
}

/**
 * torch.utils.data.DataLoader(dataset, sampler, batch_size): the examples the sampler names,
 * `batch_size` at a time, stacked into a batch (the last batch may be smaller).
 */
export function* DataLoader(dataset: Dataset, sampler: Iterator<number>, batch_size: number): Generator<Batch> {
  for (;;) {
    const x: number[][] = [], y: number[][] = [];
    while (x.length < batch_size) {
      const next = sampler.next();
      if (next.done) break;
      const [xi, yi] = dataset.get(next.value);
      x.push(xi);
      y.push(yi);
    }
    if (x.length === 0) return;
    yield [x, y];
  }
}

// -----------------------------------------------------------------------------------------------

/** The trainer's settings (get_default_config() gives minGPT's defaults). */
export interface TrainerConfigFields {
  /** stop after this many steps (null: never, until a callback stops the run) */
  max_iters: number | null;
  batch_size: number;
  learning_rate: number;
  betas: [number, number];
  /** only applied on matmul weights */
  weight_decay: number;
  grad_norm_clip: number;
}
export type TrainerConfig = CfgNode & TrainerConfigFields;

/** What a callback receives: the trainer, with iter_num, loss, grad_norm, ... */
export type Callback = (trainer: Trainer) => void;

export class Trainer {
  readonly config: TrainerConfig;
  readonly model: GPT;
  optimizer: AdamW | null = null;
  readonly train_dataset: Dataset;
  readonly callbacks = new Map<string, Callback[]>();

  // variables that will be assigned to trainer class later for logging and etc
  iter_num = 0;
  iter_time = 0.0;
  iter_dt = 0.0;
  /** the loss of the last batch, before its step */
  loss = NaN;
  /** the gradient's global norm of the last batch, before clipping (minGPT drops it; the log wants it) */
  grad_norm = NaN;

  static get_default_config(): TrainerConfig {
    return new CfgNode({
      // (minGPT: device to train on, and data-loader worker processes; neither exists here)
      // optimizer parameters
      max_iters: null,
      batch_size: 64,
      learning_rate: 3e-4,
      betas: [0.9, 0.95],
      weight_decay: 0.1, // only applied on matmul weights
      grad_norm_clip: 1.0,
    }) as TrainerConfig;
  }

  constructor(config: TrainerConfig, model: GPT, train_dataset: Dataset) {
    this.config = config;
    this.model = model;
    this.train_dataset = train_dataset;
  }

  add_callback(onevent: string, callback: Callback): void {
    this.callbacks.set(onevent, [...(this.callbacks.get(onevent) ?? []), callback]);
  }

  set_callback(onevent: string, callback: Callback): void {
    this.callbacks.set(onevent, [callback]);
  }

  trigger_callbacks(onevent: string): void {
    for (const callback of this.callbacks.get(onevent) ?? []) callback(this);
  }

  /**
   * The batches to train on: minGPT's DataLoader over a RandomSampler that draws with replacement
   * (as good as for ever: 1e10 examples), from the generator that set_seed seeds. A method of its
   * own (minGPT builds the loader inside run()) so that a subclass can train on other batches:
   * the conformance command repeats one fixed batch.
   */
  protected batches(): Iterator<Batch> {
    const sampler = RandomSampler(this.train_dataset.length, 1e10, globalRng);
    return DataLoader(this.train_dataset, sampler, this.config.batch_size);
  }

  async run(): Promise<void> {
    const { model, config } = this;

    // setup the optimizer
    const optimizer = (this.optimizer = model.configure_optimizers(config));

    // setup the dataloader
    let data_iter = this.batches();

    this.iter_num = 0;
    this.iter_time = performance.now() / 1000;
    for (;;) {
      // fetch the next batch (x, y) and re-init iterator if needed
      let batch = data_iter.next();
      if (batch.done) {
        data_iter = this.batches();
        batch = data_iter.next();
        if (batch.done) throw new Error('the data loader gives no batches (is the dataset empty?)');
      }
      const [x, y] = batch.value;

      // forward the model
      this.loss = model.forward(x, { targets: y }).loss!;

      // backprop and update the parameters
      model.zero_grad();
      model.backward();
      this.grad_norm = clip_grad_norm_(optimizer.parameters(), config.grad_norm_clip);
      optimizer.step();

      this.trigger_callbacks('on_batch_end');
      this.iter_num += 1;
      const tnow = performance.now() / 1000;
      this.iter_dt = tnow - this.iter_time;
      this.iter_time = tnow;

      // termination conditions
      if (config.max_iters !== null && this.iter_num >= config.max_iters) break;
      // let Node deliver a waiting signal or timer before the next step
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
