/**
 * Getting the OpenAI GPT-2 weights onto disk, the way minGPT's `GPT.from_pretrained` gets them
 * through Hugging Face's `transformers`: we look, in order, at
 *
 *   1. weights/<name>/{model.safetensors, config.json} in this repository (see weights/README.md);
 *   2. the user's Hugging Face cache ($HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else
 *      $HF_HOME/hub, else ~/.cache/huggingface/hub), where `huggingface-cli download
 *      openai-community/gpt2` or any Python `from_pretrained("gpt2")` will have put them;
 *   3. a download from the Hugging Face Hub ($HF_ENDPOINT, default https://huggingface.co) into
 *      weights/<name>/, unless HF_HUB_OFFLINE=1. download.ts checks every byte against the
 *      sha256 the Hub announces before a file gets its final name; $HF_TOKEN is sent to the Hub
 *      for gated or private repositories. The two files are also checked against each other
 *      before the second one gets its final name, so weights/<name>/ never holds a pair that
 *      fails every later run; what a failed check downloaded is deleted again.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checkpoint, CheckpointError, checkConfigAgainstTensors, parseConfig } from './checkpoint.ts';
import { DownloadError, downloadVerified } from './download.ts';
import { openSafetensors, SafetensorsError } from './safetensors.ts';
import { shown } from './show.ts';

export const PRETRAINED = ['gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'] as const;

export class PretrainedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PretrainedError';
  }
}

export interface EnsurePretrainedOptions {
  /** where downloads go and local copies are looked for (default <repo>/weights) */
  weightsDir?: string;
  /** environment to read HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME, HF_ENDPOINT,
   *  HF_TOKEN, HF_HUB_OFFLINE, MINGPT_ALLOW_UNVERIFIED, MINGPT_QUIET from (default process.env) */
  env?: NodeJS.ProcessEnv;
  fetchImpl?: typeof fetch;
  /** no progress bar */
  quiet?: boolean;
  /** passed to downloadVerified (tests make them small) */
  retries?: number;
  retryDelayMs?: number;
  stallMs?: number;
  /** where the warning about a file accepted unverified goes (default stderr) */
  warn?: (message: string) => void;
}

const FILES = ['config.json', 'model.safetensors'] as const;

/** <repo>/weights, next to mingpt/. */
export function defaultWeightsDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'weights');
}

/** The Hugging Face hub cache directory, resolved as huggingface_hub does. */
export function hfHubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE; // the older name of the same setting
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, 'huggingface', 'hub');
  return path.join(env.HOME || env.USERPROFILE || os.homedir(), '.cache', 'huggingface', 'hub');
}

/** Both files there and readable (existsSync follows the cache's symlinks; an unreadable file is as good as none). */
const hasBoth = (dir: string) => FILES.every((f) => {
  try {
    fs.accessSync(path.join(dir, f), fs.constants.R_OK);
    return true;
  } catch {
    return false;
  }
});

/** A git commit hash: the only thing refs/main may hold (never a path to follow). */
const COMMIT = /^[0-9a-f]{40}$/;

/**
 * A snapshot directory of the Hugging Face cache holding both files for `name`, or null.
 * The revision named by refs/main is preferred; otherwise the most recent complete snapshot.
 * A cache entry we cannot read is passed over (so a download can still go ahead), never fatal.
 */
export function findInHFCache(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const hub = hfHubCacheDir(env);
  for (const repo of [`models--openai-community--${name}`, `models--${name}`]) {
    try {
      const snapshots = path.join(hub, repo, 'snapshots');
      if (!fs.existsSync(snapshots)) continue;
      let main: string | null = null;
      try {
        main = fs.readFileSync(path.join(hub, repo, 'refs', 'main'), 'utf8').trim();
      } catch { /* no refs/main */ }
      if (main && COMMIT.test(main) && hasBoth(path.join(snapshots, main))) return path.join(snapshots, main);
      const others = fs.readdirSync(snapshots)
        .filter((rev) => COMMIT.test(rev))
        .map((rev) => path.join(snapshots, rev))
        .filter(hasBoth)
        .map((dir) => ({ dir, mtime: fs.statSync(dir).mtimeMs }))
        .sort((a, b) => b.mtime - a.mtime);
      if (others.length > 0) return others[0].dir;
    } catch {
      // an unreadable folder in the cache: as if the model were not there
    }
  }
  return null;
}

/**
 * The files `--model name` reads, wherever they are or would be downloaded to: weights/<name>/
 * and the Hugging Face cache's snapshot (so that nothing is ever written over them).
 */
export function pretrainedFiles(name: string, env: NodeJS.ProcessEnv = process.env, weightsDir = defaultWeightsDir()): string[] {
  const dirs = [path.join(weightsDir, name)];
  const cached = findInHFCache(name, env);
  if (cached) dirs.push(cached);
  return dirs.flatMap((d) => FILES.map((f) => path.join(d, f)));
}

const truthy = (v: string | undefined) => !!v && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());

/** $HF_ENDPOINT (default https://huggingface.co) without trailing slashes, if it is an http(s) address. */
function hubEndpoint(env: NodeJS.ProcessEnv): string {
  const raw = env.HF_ENDPOINT || 'https://huggingface.co';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new PretrainedError(`HF_ENDPOINT is not a valid address (${shown(raw)}): set it to the Hub's address, e.g. https://huggingface.co, or unset it`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new PretrainedError(`HF_ENDPOINT must be an http:// or https:// address, not ${shown(raw)}: set it to the Hub's address, e.g. https://huggingface.co, or unset it`);
  }
  if (u.username || u.password) {
    throw new PretrainedError('HF_ENDPOINT holds a user name or password (not shown here), which cannot be sent that way: remove them from it, and give an access token in HF_TOKEN instead');
  }
  return raw.replace(/\/+$/, '');
}

/**
 * The access token ($HF_TOKEN, or the older $HUGGING_FACE_HUB_TOKEN), without surrounding white
 * space, as huggingface_hub reads it. One that cannot be sent in an HTTP header (a line break or
 * other control character inside it, a character outside ASCII) is refused, and never printed.
 */
function hubToken(env: NodeJS.ProcessEnv): string | undefined {
  const name = env.HF_TOKEN ? 'HF_TOKEN' : 'HUGGING_FACE_HUB_TOKEN';
  const token = (env[name] ?? '').trim();
  if (token === '') return undefined;
  const bad = [...token].findIndex((ch) => !/^[\x21-\x7e]$/.test(ch));
  if (bad >= 0) {
    const ch = [...token][bad];
    const what = ch === '\n' || ch === '\r' ? 'a line break' : /\s/.test(ch) ? 'a space' : ch < ' ' || ch === '\x7f' ? 'a control character' : 'a character outside ASCII';
    throw new PretrainedError(`${name} is malformed: it holds ${what} (character ${bad + 1} of ${[...token].length}; the token itself is not shown). `
      + `A token is one word of letters and digits: copy it again from https://huggingface.co/settings/tokens, or unset ${name}`);
  }
  return token;
}

/**
 * Checks a downloaded file against its partner before it gets its final name: a config.json on
 * its own (and against the model, if that is there), a model against the config.json beside it.
 */
function checkPair(configFile: string, modelFile: string, name: string): void {
  const hp = parseConfig(fs.readFileSync(configFile, 'utf8'), `${name}/config.json`);
  if (!fs.existsSync(modelFile)) return;
  const st = openSafetensors(modelFile);
  try {
    // (the memory check waits for the final open: a model too large for this machine is still the right file)
    checkConfigAgainstTensors(hp, st.tensors, `${name}/config.json`, `${name}/model.safetensors`, Infinity);
  } finally {
    st.close();
  }
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
  const help = manualHelp(model_type, dir);
  if (truthy(env.HF_HUB_OFFLINE)) {
    throw new PretrainedError(`${model_type} is not on this machine (not in ${dir}, nor in the Hugging Face cache ${hfHubCacheDir(env)}), `
      + `and HF_HUB_OFFLINE is set, so it is not downloaded.\n${help}`);
  }
  const endpoint = hubEndpoint(env);
  const token = hubToken(env);
  const madeDir = !fs.existsSync(dir);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new PretrainedError(`cannot create ${dir} to download ${model_type} into (${code}): make ${weightsDir} writable, or\n${help}`, { cause: err });
  }
  const downloaded: string[] = [];
  const found = FILES.filter((f) => fs.existsSync(path.join(dir, f)));
  try {
    for (const file of FILES) {
      const dest = path.join(dir, file);
      if (fs.existsSync(dest)) continue;
      await downloadVerified(`${endpoint}/openai-community/${model_type}/resolve/main/${file}`, dest, {
        fetchImpl: opts.fetchImpl,
        token,
        quiet: !!opts.quiet,
        env,
        label: `${model_type}/${file}`,
        retries: opts.retries,
        retryDelayMs: opts.retryDelayMs,
        stallMs: opts.stallMs,
        allowUnverified: truthy(env.MINGPT_ALLOW_UNVERIFIED),
        warn: opts.warn,
        validate: file === 'config.json'
          ? (f) => checkPair(f, path.join(dir, 'model.safetensors'), model_type)
          : (f) => checkPair(path.join(dir, 'config.json'), f, model_type),
      });
      downloaded.push(dest);
    }
  } catch (err) {
    let note = '';
    const cause = (err as Error).cause;
    if (err instanceof DownloadError && (cause instanceof CheckpointError || cause instanceof SafetensorsError)) {
      // the two files do not go together: what this run downloaded goes (a half pair would fail
      // every later run); a file that was there before is the user's to judge
      for (const f of downloaded) fs.rmSync(f, { force: true });
      if (downloaded.length) note += ` ${downloaded.map((f) => path.basename(f)).join(' and ')}, downloaded with it, was deleted too.`;
      if (found.length) note += ` ${found.map((f) => path.join(dir, f)).join(' and ')} was there before this download: if it is not the Hub's file, delete it (or the folder ${dir}) and run again.`;
    }
    // nothing downloaded at all: leave no empty weights/<name>/ behind (a .partial stays, to resume)
    try {
      if (madeDir && fs.readdirSync(dir).length === 0) fs.rmdirSync(dir);
    } catch { /* leave it */ }
    if (err instanceof DownloadError || err instanceof CheckpointError) {
      throw new PretrainedError(`could not download ${model_type}: ${err.message}${note}\n${help}`, { cause: err });
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code) throw new PretrainedError(`could not download ${model_type} into ${dir}: ${(err as Error).message}\n${help}`, { cause: err });
    throw err;
  }
  // both files are the Hub's, byte for byte; still, do they agree with each other?
  try {
    Checkpoint.open(dir).close();
  } catch (err) {
    if (err instanceof CheckpointError) throw new PretrainedError(`the downloaded ${model_type} cannot be used: ${err.message}\nDelete the folder ${dir} to download it again.`, { cause: err });
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
