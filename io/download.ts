/**
 * Downloading one file from the Hugging Face Hub so that what ends up on disk is exactly the Hub's
 * file, or nothing. The rules are the ones the official client (huggingface_hub's file_download.py)
 * follows, written out here in small steps:
 *
 *   1. Ask the `resolve` URL for its headers (HEAD) without following the redirect. For a large
 *      file kept in Git LFS the Hub answers with a redirect to its CDN and says what the file is:
 *      `X-Linked-Etag` is the file's sha256 and `X-Linked-Size` its size. For a small file kept in
 *      git itself (config.json) it answers 200 and its `ETag` is the git blob's sha1.
 *   2. Bytes arrive in `<file>.partial`. Beside it, `<file>.partial.json` says which version of the
 *      file those bytes belong to (the Hub's etag and size). A `.partial` of another version, or
 *      one with no such note, is thrown away rather than resumed: appending the new version's
 *      bytes to the old one's would make a hybrid that loads without error and computes nonsense.
 *   3. A resumed request says `Range: bytes=<have>-` and `If-Range: <what the server called this
 *      file last time>`, so a server whose file changed sends the whole new file instead of a tail.
 *   4. The finished file's hash must equal the etag (sha256, or git's sha1 of a small file) before
 *      it is renamed into place. Only then does it get its final name. Hex digests are compared
 *      without regard to case. A server that gives no such hash (a mirror, a proxy) is refused,
 *      unless the caller allows unverified files (MINGPT_ALLOW_UNVERIFIED=1), and then every such
 *      file gets a loud warning: nothing tells its bytes from a changed file's.
 *   5. A lock file (`<file>.lock`, holding our pid) keeps two processes from writing the same
 *      `.partial` at once; the second one waits for the first.
 *
 * Redirects are followed by hand, to http(s) addresses only, never to one holding a user name or
 * password; the token is never shown in a message.
 *
 * Transient trouble (HTTP 429 and 5xx, a dropped connection, 30 s without a byte) is retried a few
 * times with growing pauses, resuming where the bytes stopped. Everything else becomes a
 * DownloadError whose message says what happened and what to do about it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { atomicWrite, fsyncPath } from './output.ts';
import { ProgressBar } from './progress.ts';
import { tryLock } from './lock.ts';
import { shown } from './show.ts';

export class DownloadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DownloadError';
  }
}

/** Trouble that may go away if we try again: 429, 5xx, a dropped or stalled connection. */
class TransientError extends DownloadError {
  /** seconds the server asked us to wait (Retry-After), if it said */
  retryAfter?: number;
}

export interface DownloadOptions {
  /** sent as `Authorization: Bearer` to the Hub's own origin only, never to the CDN it redirects to */
  token?: string;
  fetchImpl?: typeof fetch;
  quiet?: boolean;
  /** environment for the progress bar (MINGPT_QUIET) */
  env?: NodeJS.ProcessEnv;
  /** label of the progress bars, e.g. "gpt2/model.safetensors" */
  label?: string;
  /** further attempts after a transient failure (default 3) */
  retries?: number;
  /** pause before the first retry, doubled each time (default 1000 ms) */
  retryDelayMs?: number;
  /** give up on a connection that delivers no byte for this long (default 30 s) */
  stallMs?: number;
  /** accept, with a loud warning, a file whose etag is no sha256 / git sha1 (nothing to check its bytes against); refused otherwise */
  allowUnverified?: boolean;
  /** where that warning goes (default: stderr, even when quiet) */
  warn?: (message: string) => void;
  /** checks the complete, hash-verified file before it gets its final name (throw to refuse it) */
  validate?: (file: string) => void;
}

/** What the Hub says about a file, from its HEAD answer. */
export interface HubFileInfo {
  /** the Hub's etag, unquoted: sha256 for LFS files, the git blob sha1 otherwise */
  etag: string;
  size: number;
  /** where the bytes are fetched from (the CDN for LFS files) */
  downloadUrl: string;
  /** the commit the `main` revision pointed at, when the Hub said */
  commit: string | null;
}

/** The note kept beside a .partial: which version of the file its bytes are from. */
interface PartialNote {
  etag: string;
  size: number;
  /** what the download server called the file (its ETag or Last-Modified), for If-Range */
  validator?: string;
}

const MAX_REDIRECTS = 10;
const HASH_CHUNK = 4 * 1024 * 1024;

// -----------------------------------------------------------------------------------------------
// small helpers

/** `W/"abc"` -> `abc`, as huggingface_hub normalises etags. */
export function normalizeEtag(h: string | null): string | null {
  if (!h) return null;
  return h.replace(/^W\//, '').replace(/^"+|"+$/g, '');
}

/** Which hash an etag is: sha256 of an LFS file (64 hex), a git blob sha1 (40 hex), or neither. Hex in either case. */
export function etagKind(etag: string): 'sha256' | 'git-sha1' | null {
  if (/^[0-9a-f]{64}$/i.test(etag)) return 'sha256';
  if (/^[0-9a-f]{40}$/i.test(etag)) return 'git-sha1';
  return null;
}

/** A URL for a message: escaped, cut, and with any user name or password replaced by ***. */
function showUrl(url: string | URL): string {
  try {
    const u = new URL(url);
    if (u.username) u.username = '***';
    if (u.password) u.password = '***';
    return shown(u.toString(), 200);
  } catch {
    return shown(String(url), 200);
  }
}

/**
 * Where a redirect from `at` leads, if it may be followed: an http(s) address without a user
 * name or password (fetch would refuse one, or read a local file for file://).
 */
function redirectTarget(location: string, at: string): string {
  let next: URL;
  try {
    next = new URL(location, at);
  } catch {
    throw new DownloadError(`${showUrl(at)} redirected to ${shown(location)}, which is not a valid address; nothing was downloaded`);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new DownloadError(`${showUrl(at)} redirected to ${showUrl(next)}, a ${shown(next.protocol)} address; only http and https addresses are followed, so nothing was downloaded`);
  }
  if (next.username || next.password) {
    throw new DownloadError(`${showUrl(at)} redirected to ${showUrl(next)}, an address with a user name or password in it; such redirects are not followed, so nothing was downloaded`);
  }
  return next.toString();
}

/** "fetch failed: connect ECONNREFUSED 127.0.0.1:9" from undici's error and its cause. */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as { code?: string; message?: string } | undefined;
  return cause?.message ? `${err.message}: ${cause.message}` : err.message;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const origin = (url: string) => new URL(url).origin;

/** `Content-Range: bytes 100-199/1000` -> {start: 100, total: 1000}; total null for `/*`. */
function parseContentRange(h: string | null): { start: number; total: number | null } | null {
  const m = h?.match(/^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i);
  if (!m) return null;
  return { start: m[1] === undefined ? -1 : Number(m[1]), total: m[2] === '*' ? null : Number(m[2]) };
}

/** The error for an HTTP status, in words, with the Hub's own X-Error-Message when it sent one. */
function httpError(res: Response, url: string, hasToken: boolean): DownloadError {
  const s = res.status;
  const hub = res.headers.get('x-error-message');
  const said = hub ? ` The Hub says: "${shown(hub, 300)}".` : '';
  const head = `${showUrl(url)} answered HTTP ${s}${res.statusText ? ' ' + shown(res.statusText) : ''}.`;
  if (s === 401) {
    return new DownloadError(`${head}${said} The Hub wants a valid access token: ${hasToken
      ? 'the one in HF_TOKEN was refused (expired, or without read access?).'
      : 'set HF_TOKEN to a token from https://huggingface.co/settings/tokens and run again.'}`);
  }
  if (s === 403) {
    return new DownloadError(`${head}${said} Access is refused: a gated repository needs you to accept its terms on its Hub page `
      + `and HF_TOKEN set to a token of that account${hasToken ? ' (HF_TOKEN is set; does its account have access?)' : ' (HF_TOKEN is not set)'}.`);
  }
  if (s === 404) {
    return new DownloadError(`${head}${said} No such repository or file here (is HF_ENDPOINT right? a private repository also answers 404 without a token).`);
  }
  if (s === 429 || s >= 500) {
    const err = new TransientError(`${head}${said} ${s === 429 ? 'The Hub is limiting how fast this machine may download.' : 'The server had a problem on its side.'}`);
    const after = Number(res.headers.get('retry-after'));
    if (Number.isFinite(after) && after >= 0) err.retryAfter = after;
    return err;
  }
  return new DownloadError(`${head}${said} The server refused the request.`);
}

/** The note beside a .partial, written whole or not at all. */
function writeNote(file: string, note: PartialNote): void {
  atomicWrite(file, JSON.stringify(note) + '\n');
}

function readNote(file: string): PartialNote | null {
  try {
    const n = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (typeof n?.etag === 'string' && Number.isSafeInteger(n?.size)) return n as PartialNote;
  } catch { /* missing or damaged: no note */ }
  return null;
}

// -----------------------------------------------------------------------------------------------
// the lock

/**
 * Takes `<dest>.lock` (created exclusively, holding our pid). While another live process holds
 * it we wait; a lock whose process is gone (killed mid-download) is taken over.
 * Returns the function that releases it.
 */
export async function acquireLock(lockFile: string, label: string, quiet: boolean, pollMs = 250): Promise<() => void> {
  // two downloads in this very process: the lock file would hold our own pid, so they queue here
  const key = path.resolve(lockFile);
  while (heldHere.has(key)) await heldHere.get(key);
  let done!: () => void;
  heldHere.set(key, new Promise<void>((resolve) => { done = resolve; }));
  const releaseHere = () => { heldHere.delete(key); done(); };
  try {
    await takeLockFile(lockFile, label, quiet, pollMs);
  } catch (err) {
    releaseHere();
    throw err;
  }
  return () => {
    try { fs.rmSync(lockFile, { force: true }); } catch { /* already gone */ }
    releaseHere();
  };
}

/** Locks taken by this process, and a promise that settles when each is released. */
const heldHere = new Map<string, Promise<void>>();

async function takeLockFile(lockFile: string, label: string, quiet: boolean, pollMs: number): Promise<void> {
  let told = false;
  for (;;) {
    let holder: number | null;
    try {
      holder = tryLock(lockFile);
    } catch (err) {
      throw new DownloadError(`cannot create the lock file ${lockFile} (${(err as NodeJS.ErrnoException).code ?? describe(err)}): is its folder writable?`, { cause: err });
    }
    if (holder === null) return;
    if (!told && !quiet) {
      process.stderr.write(`${label}: process ${holder} is downloading this file already; waiting for it to finish (lock ${lockFile})\n`);
      told = true;
    }
    await sleep(pollMs);
  }
}

// -----------------------------------------------------------------------------------------------
// hashing

/** The file's hash of the etag's kind (sha256, or git's "blob <size>\0" sha1), with a progress bar. */
export function hashFile(file: string, kind: 'sha256' | 'git-sha1', label: string, quiet: boolean, env?: NodeJS.ProcessEnv): string {
  const size = fs.statSync(file).size;
  const h = crypto.createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') h.update(`blob ${size}\0`);
  const bar = new ProgressBar({ total: size, label: `${label} (checking ${kind === 'sha256' ? 'sha256' : 'git sha1'})`, unit: 'B', quiet: quiet || size < HASH_CHUNK, env });
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(HASH_CHUNK);
  try {
    for (let pos = 0; pos < size;) {
      const got = fs.readSync(fd, buf, 0, Math.min(HASH_CHUNK, size - pos), pos);
      if (got === 0) break;
      h.update(buf.subarray(0, got));
      pos += got;
      bar.update(pos);
    }
  } finally {
    fs.closeSync(fd);
    bar.done();
  }
  return h.digest('hex');
}

// -----------------------------------------------------------------------------------------------
// HTTP

interface Ctx {
  fetchImpl: typeof fetch;
  token?: string;
  /** the origin the token belongs to */
  hubOrigin: string;
  stallMs: number;
}

/**
 * One request with a stall timer: aborted when the answer's headers, or later any next chunk of
 * its body, take longer than `stallMs`. Call `alive()` on every chunk; `stop()` when done.
 */
async function request(url: string, init: RequestInit, c: Ctx): Promise<{ res: Response; alive: () => void; stop: () => void; signal: AbortSignal }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new TransientError(`no data from ${showUrl(url)} for ${c.stallMs / 1000} s: the connection stalled.`)), c.stallMs);
  const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'mingpt-ts', ...(init.headers as Record<string, string>) };
  if (c.token && origin(url) === c.hubOrigin) headers.authorization = `Bearer ${c.token}`;
  try {
    const res = await c.fetchImpl(url, { ...init, headers, redirect: 'manual', signal: ac.signal });
    return { res, alive: () => timer.refresh(), stop: () => clearTimeout(timer), signal: ac.signal };
  } catch (err) {
    clearTimeout(timer);
    if (ac.signal.aborted && ac.signal.reason instanceof TransientError) throw ac.signal.reason;
    // no route to the server at all: say "offline" at once; a connection that broke (reset,
    // closed by the other side) may work the next time, so that is tried again
    const code = ((err as Error).cause as { code?: string } | undefined)?.code;
    if (code && !OFFLINE_CODES.has(code)) {
      throw new TransientError(`the connection to ${showUrl(origin(url))} broke before it answered (${scrub(describe(err), c.token)}).`, { cause: err });
    }
    throw new DownloadError(`could not reach ${showUrl(origin(url))} for ${showUrl(url)} (${scrub(describe(err), c.token)}). This machine seems to be offline, or the address is wrong.`, { cause: err });
  }
}

/** Errors that mean the server cannot be reached at all (no network, no such host, nothing listening). */
/** `text` with the token, should an error quote it, replaced by <HF_TOKEN>; escaped and cut. */
function scrub(text: string, token: string | undefined): string {
  return shown(token ? text.split(token).join('<HF_TOKEN>') : text, 300);
}

const OFFLINE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN', 'EHOSTDOWN']);

const isRedirect = (s: number) => s === 301 || s === 302 || s === 303 || s === 307 || s === 308;

/** HEAD without following redirects blindly: reads the Hub's x-linked-etag / x-linked-size on the way. */
export async function headFile(url: string, c: Ctx): Promise<HubFileInfo> {
  let at = url;
  let commit: string | null = null;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const { res, stop } = await request(at, { method: 'HEAD' }, c);
    stop();
    await res.body?.cancel();
    commit ??= res.headers.get('x-repo-commit');
    const linkedEtag = normalizeEtag(res.headers.get('x-linked-etag'));
    const linkedSize = res.headers.get('x-linked-size');
    if (isRedirect(res.status)) {
      const location = res.headers.get('location');
      if (!location) throw new DownloadError(`${showUrl(at)} answered HTTP ${res.status} (a redirect) without saying where to (no Location header)`);
      const next = redirectTarget(location, at);
      if (linkedEtag || origin(next) !== origin(at)) {
        // an LFS file: the Hub told us what it is; the bytes come from `next` (its CDN).
        // Like huggingface_hub, a redirect to another site is never asked for the file's identity
        return finishInfo(url, linkedEtag ?? normalizeEtag(res.headers.get('etag')), linkedSize, next, commit);
      }
      at = next; // a redirect within the Hub (a renamed repository): ask the new address
      continue;
    }
    if (!res.ok) throw httpError(res, at, !!c.token);
    const etag = linkedEtag ?? normalizeEtag(res.headers.get('etag'));
    return finishInfo(url, etag, linkedSize ?? res.headers.get('content-length'), at, commit);
  }
  throw new DownloadError(`${showUrl(url)}: more than ${MAX_REDIRECTS} redirects`);
}

/** The HEAD's answer as HubFileInfo; a hash etag in lower case, no etag at all as '' (nothing to verify). */
function finishInfo(url: string, etag: string | null, size: string | null, downloadUrl: string, commit: string | null): HubFileInfo {
  const n = Number(size);
  if (size === null || !Number.isSafeInteger(n) || n < 0) {
    throw new DownloadError(`${showUrl(url)}: the server did not say how large the file is (no X-Linked-Size or Content-Length header)`);
  }
  const e = etag ?? '';
  return { etag: etagKind(e) ? e.toLowerCase() : e, size: n, downloadUrl, commit };
}

// -----------------------------------------------------------------------------------------------
// the download itself

/**
 * Downloads the Hub file at `url` (a `resolve` URL) to `dest`, verified, resumable, locked.
 * Returns what the Hub said about the file.
 */
export async function downloadVerified(url: string, dest: string, opts: DownloadOptions = {}): Promise<HubFileInfo | null> {
  const label = opts.label ?? path.basename(dest);
  const quiet = !!opts.quiet;
  const c: Ctx = { fetchImpl: opts.fetchImpl ?? fetch, token: opts.token, hubOrigin: origin(url), stallMs: opts.stallMs ?? 30_000 };
  const retries = opts.retries ?? 3;
  const delay0 = opts.retryDelayMs ?? 1000;

  const release = await acquireLock(dest + '.lock', label, quiet);
  try {
    if (fs.existsSync(dest)) return null; // another process finished it while we waited
    let restarted = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const info = await headFile(url, c);
        if (!etagKind(info.etag)) unverified(url, info, dest, label, opts, !!opts.allowUnverified);
        await fetchToPartial(info, dest, c, label, opts);
        const outcome = verifyAndInstall(info, dest, label, opts);
        if (outcome === 'installed') return info;
        // the hash did not match: the bytes (old or new) are gone; start over once
        if (restarted) {
          throw new DownloadError(`${label}: the downloaded bytes do not match the ${etagKind(info.etag) === 'git-sha1' ? 'git sha1' : 'sha256'} the Hub announced (${info.etag}), twice; `
            + `${dest} was not created. The server may be sending something else than the file (a proxy's page?).`);
        }
        restarted = true;
        attempt--;
      } catch (err) {
        if (!(err instanceof TransientError) || attempt >= retries) {
          tidy(dest);
          if (err instanceof TransientError) {
            const kept = fs.existsSync(dest + '.partial') && fs.statSync(dest + '.partial').size > 0;
            const what = err.message.includes(label) || err.message.includes(url) ? '' : `${label}: `;
            throw new DownloadError(`${what}${err.message} Tried ${attempt + 1} times; run again later to continue`
              + `${kept ? ` (the bytes received so far are kept in ${dest}.partial)` : ''}.`, { cause: err });
          }
          throw err;
        }
        const wait = err.retryAfter !== undefined ? Math.min(60_000, err.retryAfter * 1000) : delay0 * 2 ** attempt;
        if (!quiet) process.stderr.write(`${label}: ${err.message} Trying again in ${(wait / 1000).toFixed(1)} s.\n`);
        await sleep(wait);
      }
    }
  } finally {
    release();
  }
}

/**
 * A file the server gave no hash for: refused, or (allowed) accepted with a warning that says
 * plainly what that means, printed even when the progress bars are quiet.
 */
function unverified(url: string, info: HubFileInfo, dest: string, label: string, o: DownloadOptions, allowed: boolean): void {
  const what = info.etag ? `its ETag ${shown(JSON.stringify(info.etag), 80)} is no sha256 or git sha1` : 'it sent no ETag at all';
  if (!allowed) {
    throw new DownloadError(`${showUrl(url)}: the server did not give the file's hash (${what}), so the download cannot be checked: `
      + `a mirror or proxy that serves changed bytes would go unnoticed, and every number computed with them would be wrong. `
      + `Use a server that passes on the Hub's ETag headers (huggingface.co does), or, if you trust this one, `
      + `set MINGPT_ALLOW_UNVERIFIED=1 to accept the file without a check`);
  }
  (o.warn ?? ((m: string) => process.stderr.write(m)))(`WARNING: ${label} is NOT verified: ${showUrl(url)} gave no hash for it (${what}). `
    + `It is used because MINGPT_ALLOW_UNVERIFIED is set; if the server changed its bytes, every number computed with it is wrong. `
    + `Delete ${dest} to download it again.\n`);
}

/** After a failure that is not retried: a `.partial` with no bytes in it, and its note, are of no use; remove them. */
function tidy(dest: string): void {
  const partial = dest + '.partial';
  try {
    if (fs.existsSync(partial) && fs.statSync(partial).size > 0) return;
    fs.rmSync(partial, { force: true });
    fs.rmSync(partial + '.json', { force: true });
  } catch { /* leave them */ }
}

/** Makes `<dest>.partial` hold all of the file `info` describes (resuming when it safely can). */
async function fetchToPartial(info: HubFileInfo, dest: string, c: Ctx, label: string, o: DownloadOptions): Promise<void> {
  const partial = dest + '.partial';
  const noteFile = partial + '.json';
  let note = readNote(noteFile);
  let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  if (have > 0 && (!note || !info.etag || note.etag !== info.etag || note.size !== info.size || have > info.size)) {
    // bytes of another version of the file (or of unknown origin): never append to them
    if (!o.quiet) process.stderr.write(`${label}: ${partial} is from ${note ? 'another version of the file' : 'an unknown download'}; starting again\n`);
    fs.rmSync(partial, { force: true });
    have = 0;
    note = null;
  }
  if (!note || note.etag !== info.etag || note.size !== info.size) {
    note = { etag: info.etag, size: info.size };
    writeNote(noteFile, note);
  }
  if (have === info.size) {
    if (!fs.existsSync(partial)) fs.writeFileSync(partial, ''); // an empty file is complete at once
    return;
  }

  const headers: Record<string, string> = {};
  if (have > 0) {
    headers.range = `bytes=${have}-`;
    // If-Range: "send the rest only if the file is still the one you called <validator>, else all of it"
    if (note.validator) headers['if-range'] = note.validator;
  }
  // follow redirects by hand, so the token stays with the Hub
  let at = info.downloadUrl;
  let r = await request(at, { headers }, c);
  for (let hop = 0; isRedirect(r.res.status); hop++) {
    r.stop();
    await r.res.body?.cancel();
    const location = r.res.headers.get('location');
    if (!location || hop >= MAX_REDIRECTS) throw new DownloadError(`${showUrl(at)}: a redirect ${location ? 'loop' : 'without a Location header'}`);
    at = redirectTarget(location, at);
    r = await request(at, { headers }, c);
  }
  const { res, alive, stop, signal } = r;
  try {
    if (res.status === 416) {
      // our Range starts past the end: the partial is not what we thought; start over
      await res.body?.cancel();
      fs.rmSync(partial, { force: true });
      throw Object.assign(new TransientError(`${showUrl(at)} refused to resume at byte ${have} (HTTP 416).`), { retryAfter: 0 });
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw httpError(res, at, !!c.token && origin(at) === c.hubOrigin);
    }
    // a body of another length than the file's (an error page answered "200 OK") is refused at once
    const announced = res.headers.get('content-length');
    const expectBody = res.status === 206 ? info.size - have : info.size;
    if (announced !== null && (res.headers.get('content-encoding') ?? 'identity') === 'identity' && Number(announced) !== expectBody) {
      await res.body.cancel();
      throw new DownloadError(`${showUrl(at)} answered with ${shown(announced)} bytes, but the Hub says ${label} is ${info.size} bytes`
        + `${res.status === 206 ? ` (${expectBody} of them still missing)` : ''}: not the file (an error page?); ${dest} was not created`);
    }
    let start = 0;
    if (res.status === 206) {
      const range = parseContentRange(res.headers.get('content-range'));
      if (!range || range.start !== have || (range.total !== null && range.total !== info.size)) {
        await res.body.cancel();
        fs.rmSync(partial, { force: true });
        throw Object.assign(new TransientError(`${showUrl(at)} sent bytes ${shown(String(res.headers.get('content-range')))} when asked for ${have}- of ${info.size}.`), { retryAfter: 0 });
      }
      start = have;
    } else {
      // 200: the whole file (the server ignored Range, or If-Range said the file changed)
      const validator = res.headers.get('etag')?.startsWith('W/') ? null : res.headers.get('etag') ?? res.headers.get('last-modified');
      note = { etag: info.etag, size: info.size, ...(validator ? { validator } : {}) };
      writeNote(noteFile, note);
    }

    const bar = new ProgressBar({ total: info.size, label, unit: 'B', quiet: !!o.quiet, env: o.env });
    let fd: number;
    try {
      fd = fs.openSync(partial, start > 0 ? 'a' : 'w');
    } catch (err) {
      throw new DownloadError(`cannot write ${partial} (${(err as NodeJS.ErrnoException).code ?? describe(err)}): is the folder writable?`, { cause: err });
    }
    let received = start;
    bar.update(received);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        alive();
        if (received + chunk.length > info.size) {
          throw new DownloadError(`${showUrl(at)} sent more than the ${info.size} bytes the Hub announced for ${label}; ${dest} was not created`);
        }
        for (let done = 0; done < chunk.length;) done += fs.writeSync(fd, chunk, done, chunk.length - done);
        received += chunk.length;
        bar.update(received);
      }
      fs.fsyncSync(fd);
    } catch (err) {
      if (err instanceof DownloadError && !(err instanceof TransientError)) {
        fs.rmSync(partial, { force: true });
        throw err;
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EACCES' || code === 'EROFS' || code === 'EIO') {
        throw new DownloadError(`cannot write ${partial} (${code}) after ${received} of ${info.size} bytes; free some space or choose another folder, then run again to resume`, { cause: err });
      }
      if (signal.aborted && signal.reason instanceof TransientError) err = signal.reason;
      const reason = err instanceof TransientError ? err.message : `the connection broke after ${received} of ${info.size} bytes (${describe(err)}).`;
      throw new TransientError(reason, { cause: err });
    } finally {
      fs.closeSync(fd);
      bar.done();
    }
    if (received < info.size) {
      throw new TransientError(`the connection to ${origin(at)} ended after ${received} of ${info.size} bytes.`);
    }
  } finally {
    stop();
  }
}

/**
 * The complete `.partial` against the etag, then `validate`, then the rename. 'mismatch' (and the
 * bytes deleted) when the hash differs; throws when `validate` refuses the content.
 */
function verifyAndInstall(info: HubFileInfo, dest: string, label: string, o: DownloadOptions): 'installed' | 'mismatch' {
  const partial = dest + '.partial';
  const noteFile = partial + '.json';
  const kind = etagKind(info.etag);
  if (fs.statSync(partial).size !== info.size) return discard(partial, noteFile);
  if (kind) {
    const got = hashFile(partial, kind, label, !!o.quiet, o.env);
    if (got !== info.etag) {
      if (!o.quiet) process.stderr.write(`${label}: the downloaded bytes have ${kind} ${got}, but the Hub says ${info.etag}; deleted\n`);
      return discard(partial, noteFile);
    }
  }
  if (o.validate) {
    try {
      o.validate(partial);
    } catch (err) {
      discard(partial, noteFile);
      throw new DownloadError(`the file downloaded for ${label} is not usable (${(err as Error).message}); it was deleted`, { cause: err });
    }
  }
  fs.renameSync(partial, dest);
  fsyncPath(path.dirname(dest));
  fs.rmSync(noteFile, { force: true });
  return 'installed';
}

function discard(partial: string, noteFile: string): 'mismatch' {
  fs.rmSync(partial, { force: true });
  fs.rmSync(noteFile, { force: true });
  return 'mismatch';
}
