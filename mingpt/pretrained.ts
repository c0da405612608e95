/**
 * Getting the OpenAI GPT-2 weights onto disk, the way minGPT's `GPT.from_pretrained` gets them
 * through Hugging Face's `transformers`: we look, in order, at
 *
 *   1. weights/<name>/{model.safetensors, config.json} in this repository (see weights/README.md);
 *   2. the user's Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
 *      ~/.cache/huggingface/hub), where `huggingface-cli download openai-community/gpt2` or any
 *      Python `from_pretrained("gpt2")` will have put them;
 *   3. a download from the Hugging Face Hub ($HF_ENDPOINT, default https://huggingface.co) into
 *      weights/<name>/, resumable: bytes arrive in `<file>.partial`, which is renamed into place
 *      only once it is complete, so a half-downloaded file never poses as a checkpoint.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProgressBar } from './progress.ts';
import { openSafetensors } from './safetensors.ts';

export const PRETRAINED = ['gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'] as const;
export type PretrainedName = (typeof PRETRAINED)[number];

export class PretrainedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PretrainedError';
  }
}

export interface EnsurePretrainedOptions {
  /** where downloads go and local copies are looked for (default <repo>/weights) */
  weightsDir?: string;
  /** environment to read HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME, HF_ENDPOINT, MINGPT_QUIET from (default process.env) */
  env?: NodeJS.ProcessEnv;
  fetchImpl?: typeof fetch;
  /** no progress bar */
  quiet?: boolean;
}

const FILES = ['config.json', 'model.safetensors'] as const;

/** <repo>/weights, next to mingpt/. */
export function defaultWeightsDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'weights');
}

/** The Hugging Face hub cache directory, resolved as huggingface_hub does. */
export function hfHubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, 'huggingface', 'hub');
  return path.join(env.HOME || env.USERPROFILE || os.homedir(), '.cache', 'huggingface', 'hub');
}

const hasBoth = (dir: string) => FILES.every((f) => fs.existsSync(path.join(dir, f))); // existsSync follows the cache's symlinks

/**
 * A snapshot directory of the Hugging Face cache holding both files for `name`, or null.
 * The revision named by refs/main is preferred; otherwise the most recent complete snapshot.
 */
export function findInHFCache(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const hub = hfHubCacheDir(env);
  for (const repo of [`models--openai-community--${name}`, `models--${name}`]) {
    const snapshots = path.join(hub, repo, 'snapshots');
    if (!fs.existsSync(snapshots)) continue;
    let main: string | null = null;
    try {
      main = fs.readFileSync(path.join(hub, repo, 'refs', 'main'), 'utf8').trim();
    } catch { /* no refs/main */ }
    if (main && hasBoth(path.join(snapshots, main))) return path.join(snapshots, main);
    const others = fs.readdirSync(snapshots)
      .map((rev) => path.join(snapshots, rev))
      .filter(hasBoth)
      .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
    if (others.length > 0) return others[0];
  }
  return null;
}

/**
 * Makes sure GPT-2 `model_type` is on disk and returns a directory that Checkpoint.open accepts.
 * Throws PretrainedError for an unknown name, or when a download fails (with what to do by hand).
 */
export async function ensurePretrained(model_type: string, opts: EnsurePretrainedOptions = {}): Promise<string> {
  if (!(PRETRAINED as readonly string[]).includes(model_type)) {
    throw new PretrainedError(`unknown pretrained model '${model_type}': choose one of ${PRETRAINED.join(', ')}`);
  }
  const env = opts.env ?? process.env;
  const weightsDir = path.resolve(opts.weightsDir ?? defaultWeightsDir());
  const dir = path.join(weightsDir, model_type);

  // 1. already in weights/<name>/
  if (hasBoth(dir)) return dir;
  // 2. already in the Hugging Face cache
  const cached = findInHFCache(model_type, env);
  if (cached) return cached;
  // 3. download whatever is missing
  const endpoint = (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
  const help = manualHelp(model_type, dir);
  const madeDir = !fs.existsSync(dir);
  fs.mkdirSync(dir, { recursive: true });
  try {
    for (const file of FILES) {
      const dest = path.join(dir, file);
      if (fs.existsSync(dest)) continue;
      await download(`${endpoint}/openai-community/${model_type}/resolve/main/${file}`, dest, {
        fetchImpl: opts.fetchImpl ?? fetch,
        quiet: !!opts.quiet,
        env,
        label: `${model_type}/${file}`,
        help,
        validate: file === 'config.json' ? validateConfig : validateSafetensors,
      });
    }
  } catch (err) {
    // offline at the first byte: leave no empty weights/<name>/ behind (a .partial stays, to resume)
    if (madeDir && fs.readdirSync(dir).length === 0) fs.rmdirSync(dir);
    throw err;
  }
  return dir;
}

function manualHelp(name: string, dir: string): string {
  return `To do without the network, download the two files by hand (from https://huggingface.co/openai-community/${name}/tree/main) and place them at\n`
    + `  ${path.join(dir, 'model.safetensors')}\n`
    + `  ${path.join(dir, 'config.json')}\n`
    + `or point at a checkpoint elsewhere with --weights PATH (a directory holding model.safetensors and config.json).`;
}

function validateConfig(file: string): void {
  JSON.parse(fs.readFileSync(file, 'utf8'));
}

function validateSafetensors(file: string): void {
  openSafetensors(file).close(); // checks the whole header against the file's size
}

/** "fetch failed: ECONNREFUSED connect ECONNREFUSED 127.0.0.1:9" from undici's error and its cause. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as { code?: string; message?: string } | undefined;
  return cause?.message ? `${err.message}: ${cause.message}` : err.message;
}

interface DownloadOptions {
  fetchImpl: typeof fetch;
  quiet: boolean;
  env: NodeJS.ProcessEnv;
  label: string;
  help: string;
  validate: (file: string) => void;
}

/** `Content-Range: bytes 100-199/1000` -> {start: 100, total: 1000}; total null for `/*`. */
function parseContentRange(h: string | null): { start: number; total: number | null } | null {
  const m = h?.match(/^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i);
  if (!m) return null;
  return { start: m[1] === undefined ? -1 : Number(m[1]), total: m[2] === '*' ? null : Number(m[2]) };
}

/**
 * Streams `url` into `dest + '.partial'` (resuming it with a Range request if it exists) and
 * renames it to `dest` once it has exactly the expected size and passes `validate`.
 */
async function download(url: string, dest: string, o: DownloadOptions): Promise<void> {
  const partial = dest + '.partial';
  const offline = (reason: string, cause?: unknown) => new PretrainedError(
    `could not download ${url} (${reason}).\nThis machine seems to be offline, or the server refused the request.\n${o.help}`, { cause });

  // At most one restart: when the partial file turns out to be unusable we start over once.
  for (let attempt = 0; attempt < 2; attempt++) {
    const have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    // identity: content-length must count the bytes we store, not gzip's
    const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'mingpt-ts' };
    if (have > 0) headers.range = `bytes=${have}-`;
    let res: Response;
    try {
      res = await o.fetchImpl(url, { headers, redirect: 'follow' });
    } catch (err) {
      throw offline(describe(err), err);
    }

    if (res.status === 416 && have > 0) {
      // Range Not Satisfiable: the partial file is already complete, or longer than the file.
      await res.body?.cancel();
      const total = parseContentRange(res.headers.get('content-range'))?.total;
      if (total === have) return finish(partial, dest, url, o);
      fs.rmSync(partial, { force: true });
      continue;
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw offline(`HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`);
    }

    const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
    const lengthHeader = res.headers.get('content-length');
    const length = lengthHeader !== null && !encoded ? Number(lengthHeader) : null;
    let start = 0;
    let expected: number | null = length;
    if (res.status === 206) {
      const range = parseContentRange(res.headers.get('content-range'));
      if (!range || range.start !== have) { // not the range we asked for: start over
        await res.body.cancel();
        fs.rmSync(partial, { force: true });
        continue;
      }
      start = have;
      expected = range.total ?? (length !== null ? have + length : null);
    }
    // A 200 answer to a Range request means the server ignored it: the body is the whole file.

    const bar = new ProgressBar({ total: expected ?? 0, label: o.label, unit: 'B', quiet: o.quiet, env: o.env });
    const fd = fs.openSync(partial, start > 0 ? 'a' : 'w');
    let received = start;
    bar.update(received);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        for (let done = 0; done < chunk.length;) done += fs.writeSync(fd, chunk, done, chunk.length - done);
        received += chunk.length;
        bar.update(received);
        if (expected !== null && received > expected) break;
      }
      fs.fsyncSync(fd);
    } catch (err) {
      throw new PretrainedError(`download of ${url} was interrupted after ${received} of ${expected ?? '?'} bytes (${describe(err)}).\n`
        + `The bytes received so far are kept in ${partial}; run again to resume.\n`
        + `If this machine is offline or the server refuses the request: ${o.help}`, { cause: err });
    } finally {
      fs.closeSync(fd);
      bar.done();
    }
    if (expected !== null && received !== expected) {
      if (received > expected) fs.rmSync(partial, { force: true }); // more than announced: useless
      throw new PretrainedError(`download of ${url} is incomplete: received ${received} bytes, expected ${expected}; `
        + `${dest} was not created.${received < expected ? ` The partial download is kept in ${partial}; run again to resume.` : ''}\n${o.help}`);
    }
    return finish(partial, dest, url, o);
  }
  throw new PretrainedError(`download of ${url} failed: the server's answers to a resumed download did not make sense; ${dest} was not created.\n${o.help}`);
}

function finish(partial: string, dest: string, url: string, o: DownloadOptions): void {
  try {
    o.validate(partial);
  } catch (err) {
    fs.rmSync(partial, { force: true });
    throw new PretrainedError(`the file downloaded from ${url} is not valid (${(err as Error).message}); it was deleted.\n${o.help}`, { cause: err });
  }
  fs.renameSync(partial, dest);
}
