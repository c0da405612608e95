// Getting GPT-2 onto disk (io/pretrained.ts, io/download.ts) and the progress bar it shows
// (io/progress.ts). No test touches the network: two http servers on 127.0.0.1 play the Hub
// (resolve URLs, HEAD with x-linked-etag / x-linked-size, a 302 for the LFS file) and its CDN (a
// second origin), serving the tiny fixture checkpoint. The environment is passed explicitly (never
// the real home or HF cache), and everything is written under a temporary directory, removed at the end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { ensurePretrained, findInHFCache, hfHubCacheDir, PretrainedError, PRETRAINED } from '../io/pretrained.ts';
import { acquireLock, normalizeEtag, etagKind } from '../io/download.ts';
import { Checkpoint } from '../io/checkpoint.ts';
import { ProgressBar, formatBytes } from '../io/progress.ts';
import { FIXTURE } from './helpers.ts';

const MODEL_A = fs.readFileSync(path.join(FIXTURE, 'model.safetensors'));
const CONFIG = fs.readFileSync(path.join(FIXTURE, 'config.json'));
/** Another version of the model: same header, the last 4 data bytes changed (still a valid file). */
const MODEL_B = Buffer.from(MODEL_A);
MODEL_B.writeFloatLE(0.125, MODEL_B.length - 4);
const MODEL_URL = '/openai-community/gpt2/resolve/main/model.safetensors';
const CONFIG_URL = '/openai-community/gpt2/resolve/main/config.json';
const COMMIT = 'a'.repeat(40);

// what the Hub announces, computed here with node:crypto (git's blob sha1 is sha1("blob <size>\0" + bytes))
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mingpt-pretrained-test-'));
let counter = 0;
const tmpDir = (name = 'd') => { const d = path.join(tmp, `${counter++}-${name}`); fs.mkdirSync(d, { recursive: true }); return d; };

// ------------------------------------------------------------------------------------------------
// stand-ins for huggingface.co and its CDN

interface Seen { server: 'hub' | 'cdn'; method: string; url: string; range?: string; ifRange?: string; auth?: string; status: number }
let seen: Seen[] = [];
/** the model the Hub serves now, and the CDN's ETag for it (its own name, not the sha256) */
let model = MODEL_A;
let cdnEtag = '"cdn-v1"';
/** the config.json the Hub serves and announces */
let config = CONFIG;
let configEtag: string | null = null; // null: the real git sha1 of `config`
let configBody: Buffer | null = null;   // a body other than the announced one (an error page answered 200)
/** the Hub's HEAD answers `status` (with X-Error-Message) `times` times before answering normally */
let hubFail: { status: number; times: number; message?: string; retryAfter?: string } | null = null;
/** the model's sha256 etags in upper case (a mirror's spelling); 'none': no etag at all for the model */
let etagUpper = false;
let modelEtag: 'sha' | 'none' = 'sha';
/** bytes the CDN sends instead of the model (a changed file) */
let cdnBody: Buffer | null = null;
/** where the Hub redirects the GET of config.json (HEAD still answers 200) */
let configRedirect: string | null = null;
/** how the CDN misbehaves: cut the body short (once / always), stall, ignore Range */
let cdnMode: 'normal' | 'drop-once' | 'drop-always' | 'stall' | 'no-range' = 'normal';

const sockets = new Set<Socket>();
const track = (srv: http.Server) => srv.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

function serveBytes(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, etag: string, note: (status: number) => void, honourRange = true): void {
  const range = req.headers.range?.match(/^bytes=(\d+)-$/);
  const ifRange = req.headers['if-range'];
  if (range && honourRange && (ifRange === undefined || ifRange === etag)) {
    const start = Number(range[1]);
    if (start >= body.length) { note(416); res.writeHead(416, { 'content-range': `bytes */${body.length}` }); res.end(); return; }
    note(206);
    res.writeHead(206, { etag, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'content-length': body.length - start });
    res.end(req.method === 'HEAD' ? undefined : body.subarray(start));
    return;
  }
  note(200);
  res.writeHead(200, { etag, 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}

const hub = http.createServer((req, res) => {
  const url = req.url ?? '';
  const entry: Seen = { server: 'hub', method: req.method!, url, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, auth: req.headers.authorization, status: 0 };
  seen.push(entry);
  const note = (status: number) => { entry.status = status; };
  if (hubFail && hubFail.times > 0) {
    hubFail.times--;
    if (hubFail.status === 0) return; // never answer: the request hangs until the client gives up
    note(hubFail.status);
    res.writeHead(hubFail.status, { ...(hubFail.message ? { 'x-error-message': hubFail.message } : {}), ...(hubFail.retryAfter ? { 'retry-after': hubFail.retryAfter } : {}) });
    res.end();
    return;
  }
  if (url.startsWith('/openai-community/gpt2-medium/')) {
    // a renamed repository: a redirect within the Hub, to a relative address
    note(307);
    res.writeHead(307, { location: url.replace('/gpt2-medium/', '/gpt2/') });
    res.end();
    return;
  }
  if (url === MODEL_URL) {
    // an LFS file: a redirect to the CDN, with the file's sha256 and size
    const sha = sha256(model);
    const announced = etagUpper ? sha.toUpperCase() : sha;
    note(302);
    res.writeHead(302, { location: `${cdnOrigin}/blobs/${sha}`, 'x-linked-size': model.length, 'x-repo-commit': COMMIT,
      ...(modelEtag === 'none' ? {} : { 'x-linked-etag': `"${announced}"`, etag: `"${announced}"` }) });
    res.end();
    return;
  }
  if (url === CONFIG_URL) {
    const etag = `"${configEtag ?? gitSha1(config)}"`;
    if (req.method === 'HEAD') { note(200); res.writeHead(200, { etag, 'content-length': config.length, 'x-repo-commit': COMMIT }); res.end(); return; }
    if (configRedirect) { note(302); res.writeHead(302, { location: configRedirect }); res.end(); return; }
    serveBytes(req, res, configBody ?? config, etag, note);
    return;
  }
  note(404);
  res.writeHead(404, { 'x-error-message': 'Entry not found' });
  res.end();
});

const cdn = http.createServer((req, res) => {
  const url = req.url ?? '';
  const entry: Seen = { server: 'cdn', method: req.method!, url, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, auth: req.headers.authorization, status: 0 };
  seen.push(entry);
  const note = (status: number) => { entry.status = status; };
  if (url !== `/blobs/${sha256(model)}`) { note(404); res.writeHead(404); res.end(); return; }
  if (cdnMode === 'drop-once' || cdnMode === 'drop-always' || cdnMode === 'stall') {
    // announce the rest of the file, send 40% of the whole file (or what is left), then hang up or go quiet
    const start = Number(req.headers.range?.match(/^bytes=(\d+)-$/)?.[1] ?? 0);
    const part = model.subarray(start, Math.min(model.length, start + Math.floor(model.length * 0.4)));
    if (part.length < model.length - start) {
      note(start ? 206 : 200);
      res.writeHead(start ? 206 : 200, { etag: cdnEtag, 'content-length': model.length - start,
        ...(start ? { 'content-range': `bytes ${start}-${model.length - 1}/${model.length}` } : {}) });
      const mode = cdnMode;
      if (cdnMode === 'drop-once') cdnMode = 'normal';
      res.write(part, () => { if (mode !== 'stall') res.socket?.destroy(); });
      return;
    }
  }
  serveBytes(req, res, cdnBody ?? model, cdnEtag, note, cdnMode !== 'no-range');
});
track(hub);
track(cdn);

let endpoint = '';
let cdnOrigin = '';
test.before(async () => {
  for (const srv of [hub, cdn]) await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  cdnOrigin = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
});
test.after(async () => {
  for (const s of sockets) s.destroy();
  for (const srv of [hub, cdn]) await new Promise((resolve) => srv.close(resolve));
  fs.rmSync(tmp, { recursive: true, force: true });
});
test.before.each(() => {
  seen = []; model = MODEL_A; cdnEtag = '"cdn-v1"'; config = CONFIG; configEtag = null; configBody = null; hubFail = null; cdnMode = 'normal';
  etagUpper = false; modelEtag = 'sha'; cdnBody = null; configRedirect = null;
});

/** An environment with an empty HF cache and the local server as the Hub; no HOME. */
const envFor = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv =>
  ({ HF_HUB_CACHE: tmpDir('empty-hub'), HF_ENDPOINT: endpoint, MINGPT_QUIET: '1', ...extra });
/** Options of a test download: no progress, quick retries, a short stall timeout. */
const fast = { quiet: true, retryDelayMs: 1, stallMs: 10_000 }; // tests of the stall timeout set their own
const noFetch = (() => { throw new Error('no request expected'); }) as unknown as typeof fetch;

async function rejects(p: Promise<unknown>, ...needles: (string | RegExp)[]): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, PretrainedError, `expected PretrainedError, got ${(err as Error).stack}`);
    const msg = (err as Error).message;
    for (const n of needles) {
      if (typeof n === 'string') assert.ok(msg.includes(n), `message should contain ${JSON.stringify(n)}:\n${msg}`);
      else assert.match(msg, n);
    }
    return msg;
  }
  assert.unreachable('expected PretrainedError');
  return '';
}

/** Files other than the two finished ones: .partial, .partial.json, .lock, temporaries. */
const leftovers = (dir: string) => fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => !['model.safetensors', 'config.json'].includes(f)) : [];
const requests = (server?: 'hub' | 'cdn') => seen.filter((s) => !server || s.server === server).map((s) => `${s.server} ${s.method} ${s.url.replace(/[0-9a-f]{64}/, '<sha>')} ${s.status}${s.range ? ' ' + s.range : ''}`);
/** weights/gpt2 with config.json in place, so only the model is downloaded. */
function modelOnly(): { weightsDir: string; dir: string } {
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIXTURE, 'config.json'), path.join(dir, 'config.json'));
  return { weightsDir, dir };
}
const same = (file: string, want: Buffer) => assert.ok(fs.readFileSync(file).equals(want), `${file} differs from what the Hub serves`);

// ------------------------------------------------------------------------------------------------
// finding what is already there

test('ensurePretrained uses weights/<name>/ when both files are there, without any request', async () => {
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2-medium');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIXTURE, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  fs.copyFileSync(path.join(FIXTURE, 'config.json'), path.join(dir, 'config.json'));
  const got = await ensurePretrained('gpt2-medium', { weightsDir, env: envFor(), fetchImpl: noFetch });
  assert.is(got, dir);
  assert.equal(seen, []);
  Checkpoint.open(got).close();
});

/** A Hugging Face cache entry laid out as huggingface_hub does: snapshot files are symlinks to blobs. */
function fakeHubRepo(hubDir: string, repo: string, revs: string[], main?: string): void {
  const base = path.join(hubDir, repo);
  fs.mkdirSync(path.join(base, 'blobs'), { recursive: true });
  fs.writeFileSync(path.join(base, 'blobs', 'model-blob'), MODEL_A);
  fs.writeFileSync(path.join(base, 'blobs', 'config-blob'), CONFIG);
  for (const rev of revs) {
    const snap = path.join(base, 'snapshots', rev);
    fs.mkdirSync(snap, { recursive: true });
    fs.symlinkSync('../../blobs/model-blob', path.join(snap, 'model.safetensors'));
    fs.symlinkSync('../../blobs/config-blob', path.join(snap, 'config.json'));
  }
  if (main) {
    fs.mkdirSync(path.join(base, 'refs'), { recursive: true });
    fs.writeFileSync(path.join(base, 'refs', 'main'), main + '\n');
  }
}
const REV_OLD = '0'.repeat(40);
const REV_MAIN = '607a30d783dfa663caf39e06633721c8d4cfcd7e';

test('ensurePretrained uses a Hugging Face cache snapshot ($HF_HUB_CACHE, refs/main preferred) without any request', async () => {
  const hubDir = tmpDir('hub');
  fakeHubRepo(hubDir, 'models--openai-community--gpt2', [REV_OLD, REV_MAIN], REV_MAIN);
  const got = await ensurePretrained('gpt2', { weightsDir: tmpDir('weights'), env: { ...envFor(), HF_HUB_CACHE: hubDir }, fetchImpl: noFetch });
  assert.is(got, path.join(hubDir, 'models--openai-community--gpt2', 'snapshots', REV_MAIN));
  assert.equal(seen, []);
  const ck = Checkpoint.open(got);
  assert.is(ck.hparams.n_layer, 3);
  ck.close();
});

test('findInHFCache: $HF_HOME/hub, $HUGGINGFACE_HUB_CACHE, the legacy models--gpt2 repo id, ~/.cache via HOME, an incomplete snapshot ignored', () => {
  const home = tmpDir('hf-home');
  fakeHubRepo(path.join(home, 'hub'), 'models--gpt2-large', [REV_OLD]);
  assert.is(findInHFCache('gpt2-large', { HF_HOME: home }), path.join(home, 'hub', 'models--gpt2-large', 'snapshots', REV_OLD));
  const legacy = tmpDir('legacy-cache');
  fakeHubRepo(legacy, 'models--gpt2', [REV_OLD]);
  assert.is(hfHubCacheDir({ HUGGINGFACE_HUB_CACHE: legacy, HF_HOME: home }), legacy);
  assert.is(hfHubCacheDir({ HF_HUB_CACHE: home, HUGGINGFACE_HUB_CACHE: legacy }), home);
  assert.is(findInHFCache('gpt2', { HUGGINGFACE_HUB_CACHE: legacy }), path.join(legacy, 'models--gpt2', 'snapshots', REV_OLD));
  const user = tmpDir('user-home');
  fakeHubRepo(path.join(user, '.cache', 'huggingface', 'hub'), 'models--openai-community--gpt2-xl', [REV_MAIN]);
  assert.is(findInHFCache('gpt2-xl', { HOME: user }), path.join(user, '.cache', 'huggingface', 'hub', 'models--openai-community--gpt2-xl', 'snapshots', REV_MAIN));
  // a snapshot whose model.safetensors link points to a blob that never finished downloading
  const broken = tmpDir('broken-hub');
  fakeHubRepo(broken, 'models--openai-community--gpt2', [REV_MAIN], REV_MAIN);
  fs.rmSync(path.join(broken, 'models--openai-community--gpt2', 'blobs', 'model-blob'));
  assert.is(findInHFCache('gpt2', { HF_HUB_CACHE: broken }), null);
});

test('findInHFCache: refs/main must be a commit hash, never a path to follow; snapshot names must be hashes too', () => {
  const hubDir = tmpDir('hub');
  fakeHubRepo(hubDir, 'models--openai-community--gpt2', [REV_MAIN]);
  // a checkpoint elsewhere that a refs/main of "../../../elsewhere" would reach
  const elsewhere = path.join(hubDir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  fs.copyFileSync(path.join(FIXTURE, 'model.safetensors'), path.join(elsewhere, 'model.safetensors'));
  fs.copyFileSync(path.join(FIXTURE, 'config.json'), path.join(elsewhere, 'config.json'));
  fs.mkdirSync(path.join(hubDir, 'models--openai-community--gpt2', 'refs'));
  fs.writeFileSync(path.join(hubDir, 'models--openai-community--gpt2', 'refs', 'main'), '../../../elsewhere');
  assert.is(findInHFCache('gpt2', { HF_HUB_CACHE: hubDir }), path.join(hubDir, 'models--openai-community--gpt2', 'snapshots', REV_MAIN));
  fs.symlinkSync(elsewhere, path.join(hubDir, 'models--openai-community--gpt2', 'snapshots', 'not-a-hash'));
  fs.rmSync(path.join(hubDir, 'models--openai-community--gpt2', 'snapshots', REV_MAIN), { recursive: true });
  assert.is(findInHFCache('gpt2', { HF_HUB_CACHE: hubDir }), null);
});

test('an unreadable cache entry does not stop a download that can go ahead', async () => {
  const hubDir = tmpDir('hub');
  fs.mkdirSync(path.join(hubDir, 'models--openai-community--gpt2'), { recursive: true });
  fs.writeFileSync(path.join(hubDir, 'models--openai-community--gpt2', 'snapshots'), 'not a folder'); // readdir: ENOTDIR
  assert.is(findInHFCache('gpt2', { HF_HUB_CACHE: hubDir }), null);
  const weightsDir = tmpDir('weights');
  const got = await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ HF_HUB_CACHE: hubDir }) });
  same(path.join(got, 'model.safetensors'), MODEL_A);
});

// ------------------------------------------------------------------------------------------------
// downloading

test('download: HEAD without following the redirect, then the bytes from the CDN (another origin); verified, no leftovers; HF_TOKEN to the Hub only', async () => {
  const weightsDir = tmpDir('weights');
  const got = await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ HF_TOKEN: 'hf_secret' }) });
  assert.is(got, path.join(weightsDir, 'gpt2'));
  assert.equal(requests(), [
    `hub HEAD ${CONFIG_URL} 200`, `hub GET ${CONFIG_URL} 200`,
    `hub HEAD ${MODEL_URL} 302`, 'cdn GET /blobs/<sha> 200',
  ]);
  assert.ok(seen.filter((s) => s.server === 'hub').every((s) => s.auth === 'Bearer hf_secret'), 'the Hub gets the token');
  assert.ok(seen.filter((s) => s.server === 'cdn').every((s) => s.auth === undefined), 'the CDN never sees the token');
  same(path.join(got, 'model.safetensors'), MODEL_A);
  same(path.join(got, 'config.json'), CONFIG);
  assert.equal(leftovers(got), []);
  Checkpoint.open(got).close();
  // a second call finds the files and asks for nothing
  seen = [];
  assert.is(await ensurePretrained('gpt2', { weightsDir, env: envFor(), fetchImpl: noFetch }), got);
  assert.equal(seen, []);
});

test('download: a redirect within the Hub (a renamed repository) is followed for the HEAD, with the token', async () => {
  const weightsDir = tmpDir('weights');
  const got = await ensurePretrained('gpt2-medium', { ...fast, weightsDir, env: envFor({ HF_TOKEN: 'hf_secret' }) });
  assert.equal(requests().slice(0, 2), [`hub HEAD ${CONFIG_URL.replace('/gpt2/', '/gpt2-medium/')} 307`, `hub HEAD ${CONFIG_URL} 200`]);
  assert.ok(seen.filter((s) => s.server === 'hub').every((s) => s.auth === 'Bearer hf_secret'));
  same(path.join(got, 'model.safetensors'), MODEL_A);
  same(path.join(got, 'config.json'), CONFIG);
});

test('download: a dropped connection is resumed in the same run (Range + If-Range with the CDN\'s ETag), byte-identical', async () => {
  cdnMode = 'drop-once';
  const { weightsDir, dir } = modelOnly();
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  const gets = seen.filter((s) => s.server === 'cdn');
  assert.is(gets.length, 2);
  const K = Math.floor(MODEL_A.length * 0.4);
  assert.equal([gets[1].range, gets[1].ifRange, gets[1].status], [`bytes=${K}-`, '"cdn-v1"', 206]);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
  assert.equal(leftovers(dir), []);
});

test('download: connection dropped every time -> refused after the retries, .partial kept with its note; the next run resumes it', async () => {
  cdnMode = 'drop-always';
  const { weightsDir, dir } = modelOnly();
  const msg = await rejects(ensurePretrained('gpt2', { ...fast, retries: 1, weightsDir, env: envFor() }),
    'gpt2/model.safetensors', 'Tried 2 times', path.join(dir, 'model.safetensors.partial'), '--weights PATH');
  assert.not.ok(fs.existsSync(path.join(dir, 'model.safetensors')));
  assert.equal(leftovers(dir).sort(), ['model.safetensors.partial', 'model.safetensors.partial.json'], msg);
  const kept = fs.statSync(path.join(dir, 'model.safetensors.partial')).size;
  assert.is(kept, 2 * Math.floor(MODEL_A.length * 0.4)); // the second try resumed the first
  cdnMode = 'normal';
  seen = [];
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(requests('cdn'), [`cdn GET /blobs/<sha> 206 bytes=${kept}-`]);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
  assert.equal(leftovers(dir), []);
});

test('download: the file changed on the Hub between two attempts -> the old .partial is not resumed; the new file is installed whole', async () => {
  cdnMode = 'drop-always';
  const { weightsDir, dir } = modelOnly();
  await rejects(ensurePretrained('gpt2', { ...fast, retries: 0, weightsDir, env: envFor() }));
  assert.ok(fs.statSync(path.join(dir, 'model.safetensors.partial')).size > 0);
  model = MODEL_B; // a new version: another sha256
  cdnMode = 'normal';
  seen = [];
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(requests('cdn'), ['cdn GET /blobs/<sha> 200']); // no Range: nothing of version A is kept
  same(path.join(dir, 'model.safetensors'), MODEL_B);
  assert.equal(leftovers(dir), []);
});

test('download: a .partial with no note (an older download, another file) is started over, not appended to', async () => {
  const { weightsDir, dir } = modelOnly();
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), MODEL_B.subarray(0, 1_000_000));
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(requests('cdn'), ['cdn GET /blobs/<sha> 200']);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
});

test('download: If-Range no longer matches (the CDN\'s copy changed) -> the server sends the whole file, which is installed', async () => {
  const { weightsDir, dir } = modelOnly();
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), MODEL_A.subarray(0, 1_000_000));
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial.json'), JSON.stringify({ etag: sha256(MODEL_A), size: MODEL_A.length, validator: '"cdn-v0"' }));
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  const get = seen.find((s) => s.server === 'cdn')!;
  assert.equal([get.range, get.ifRange, get.status], ['bytes=1000000-', '"cdn-v0"', 200]);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
});

test('download: a .partial whose bytes are not what its note says is caught by the sha256, deleted, and downloaded again', async () => {
  const { weightsDir, dir } = modelOnly();
  // the note says "version A", the bytes are version B's start, differing from A in no header byte
  // (no hash short of the final one could tell): resuming makes a hybrid, which must never be installed
  const corrupt = Buffer.from(MODEL_A.subarray(0, MODEL_A.length - 2));
  corrupt[corrupt.length - 1] ^= 0xff;
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), corrupt);
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial.json'), JSON.stringify({ etag: sha256(MODEL_A), size: MODEL_A.length, validator: '"cdn-v1"' }));
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(requests('cdn'), [`cdn GET /blobs/<sha> 206 bytes=${corrupt.length}-`, 'cdn GET /blobs/<sha> 200']);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
  assert.equal(leftovers(dir), []);
});

test('download: a server without Range support (200 to a Range request) still gives the right file', async () => {
  cdnMode = 'no-range';
  const { weightsDir, dir } = modelOnly();
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), MODEL_A.subarray(0, 2_000_000));
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial.json'), JSON.stringify({ etag: sha256(MODEL_A), size: MODEL_A.length, validator: '"cdn-v1"' }));
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(requests('cdn'), ['cdn GET /blobs/<sha> 200 bytes=2000000-']);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
  assert.equal(leftovers(dir), []);
});

test('download: a .partial already complete is verified and installed without downloading again', async () => {
  const { weightsDir, dir } = modelOnly();
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), MODEL_A);
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial.json'), JSON.stringify({ etag: sha256(MODEL_A), size: MODEL_A.length }));
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(requests(), [`hub HEAD ${MODEL_URL} 302`]);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
});

test('download: 200 with an error body instead of config.json -> refused (git sha1, or not a GPT-2 config), nothing saved', async () => {
  // as long as the real file, so only the hash can tell
  const page = '{"error":"Invalid username or password."}';
  configBody = Buffer.from(page + ' '.repeat(CONFIG.length - page.length));
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), 'gpt2/config.json', 'do not match the git sha1', gitSha1(CONFIG));
  assert.not.ok(fs.existsSync(dir), `nothing left: ${leftovers(dir)}`);
  // a server whose etag is no hash, the file accepted unverified on request: the content check still catches it
  configEtag = 'W/"42-abc"';
  config = configBody = Buffer.from(page);
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ MINGPT_ALLOW_UNVERIFIED: '1' }), warn: () => {} }), 'gpt2/config.json', 'not a GPT-2 config.json', 'Invalid username');
  assert.not.ok(fs.existsSync(dir));
});

test('download: 200 with an error body instead of the model -> refused by size or sha256, nothing installed', async () => {
  const { weightsDir, dir } = modelOnly();
  const page = Buffer.from('<html>Please log in</html>');
  const realModel = model;
  // the CDN answers the announced URL with a page: fewer bytes than announced, then the right size of garbage
  cdnMode = 'no-range';
  model = realModel;
  const original = cdn.listeners('request')[0] as (req: http.IncomingMessage, res: http.ServerResponse) => void;
  cdn.removeAllListeners('request');
  cdn.on('request', (req, res) => { seen.push({ server: 'cdn', method: req.method!, url: req.url!, status: 200 }); res.writeHead(200, { 'content-length': page.length }); res.end(page); });
  try {
    await rejects(ensurePretrained('gpt2', { ...fast, retries: 1, weightsDir, env: envFor() }), 'gpt2/model.safetensors', `answered with ${page.length} bytes`, `is ${MODEL_A.length} bytes`, 'error page');
    cdn.removeAllListeners('request');
    const garbage = Buffer.alloc(MODEL_A.length, 0x20);
    cdn.on('request', (_req, res) => { res.writeHead(200, { 'content-length': garbage.length }); res.end(garbage); });
    fs.rmSync(path.join(dir, 'model.safetensors.partial'), { force: true });
    await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), 'gpt2/model.safetensors', 'do not match the sha256', sha256(MODEL_A));
  } finally {
    cdn.removeAllListeners('request');
    cdn.on('request', original);
  }
  assert.not.ok(fs.existsSync(path.join(dir, 'model.safetensors')));
  assert.equal(leftovers(dir), []);
});

const statusCases: [number, string | undefined, (string | RegExp)[]][] = [
  [401, 'Invalid credentials in Authorization header', ['HTTP 401', 'Invalid credentials in Authorization header', 'HF_TOKEN']],
  [403, 'Access to model openai-community/gpt2 is restricted.', ['HTTP 403', 'is restricted', 'gated repository', 'HF_TOKEN']],
  [404, 'Repository not found', ['HTTP 404', 'Repository not found', 'HF_ENDPOINT']],
  [429, undefined, ['HTTP 429', 'limiting', 'Tried 3 times']],
  [500, undefined, ['HTTP 500', 'problem on its side', 'Tried 3 times']],
  [503, 'Service Unavailable', ['HTTP 503', 'Service Unavailable', 'Tried 3 times']],
];
for (const [status, message, needles] of statusCases) {
  test(`download: HTTP ${status} gets its own message${message ? ' with the Hub\'s X-Error-Message' : ''}, not "offline"; nothing left behind`, async () => {
    hubFail = { status, times: 1000, message };
    const weightsDir = tmpDir('weights');
    const msg = await rejects(ensurePretrained('gpt2', { ...fast, retries: 2, weightsDir, env: envFor() }), endpoint + CONFIG_URL, ...needles);
    assert.not.match(msg, /offline/);
    const tries = seen.length;
    assert.is(tries, status === 429 || status >= 500 ? 3 : 1, 'only 429 and 5xx are retried');
    assert.not.ok(fs.existsSync(path.join(weightsDir, 'gpt2')));
  });
}

test('download: 429 (honouring Retry-After) and 500 a couple of times, then success', async () => {
  hubFail = { status: 429, times: 2, retryAfter: '0' };
  const weightsDir = tmpDir('weights');
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(seen.slice(0, 3).map((s) => s.status), [429, 429, 200]);
  same(path.join(weightsDir, 'gpt2', 'model.safetensors'), MODEL_A);
});

test('download: a connection that stalls (no byte for stallMs) is given up on and resumed; our own timeout, not undici\'s 300 s', async () => {
  cdnMode = 'stall';
  const { weightsDir, dir } = modelOnly();
  const t0 = Date.now();
  const msg = await rejects(ensurePretrained('gpt2', { ...fast, stallMs: 1000, retries: 0, weightsDir, env: envFor() }), 'stalled', '1 s');
  assert.ok(Date.now() - t0 < 20_000, msg);
  const kept = fs.statSync(path.join(dir, 'model.safetensors.partial')).size;
  assert.is(kept, Math.floor(MODEL_A.length * 0.4));
  for (const s of sockets) s.destroy(); // the stalled server-side connection
  cdnMode = 'normal';
  seen = [];
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  assert.equal(requests('cdn'), [`cdn GET /blobs/<sha> 206 bytes=${kept}-`]);
  same(path.join(dir, 'model.safetensors'), MODEL_A);
});

test('download: a Hub that never answers the HEAD is given up on after stallMs and asked again', async () => {
  hubFail = { status: 0, times: 1 };
  const weightsDir = tmpDir('weights');
  await ensurePretrained('gpt2', { ...fast, stallMs: 1000, weightsDir, env: envFor() });
  assert.equal(seen.slice(0, 2).map((s) => [s.method, s.url]), [['HEAD', CONFIG_URL], ['HEAD', CONFIG_URL]]);
  same(path.join(weightsDir, 'gpt2', 'model.safetensors'), MODEL_A);
  for (const s of sockets) s.destroy();
});

test('download: HTTP 401 with HF_TOKEN set says the token was refused', async () => {
  hubFail = { status: 401, times: 1 };
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir: tmpDir('weights'), env: envFor({ HF_TOKEN: 'hf_old' }) }), 'HTTP 401', 'HF_TOKEN was refused');
  assert.is(seen[0].auth, 'Bearer hf_old');
});

test('download: from huggingface.co or a mirror, a file must come with a hash etag (issue 18, item 1)', async () => {
  // the real endpoint's address, answered by our Hub through a fetch that rewrites the origin
  const viaLocal = ((url: string | URL, init?: RequestInit) => fetch(String(url).replace('https://huggingface.co', endpoint), init)) as typeof fetch;
  configEtag = 'W/"42-abc"';
  const weightsDir = tmpDir('weights');
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ HF_ENDPOINT: '' }), fetchImpl: viaLocal }),
    'https://huggingface.co/openai-community/gpt2/resolve/main/config.json', 'did not give the file\'s hash', '42-abc', 'MINGPT_ALLOW_UNVERIFIED=1');
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), `${endpoint}${CONFIG_URL}`, 'did not give the file\'s hash');
  assert.not.ok(fs.existsSync(path.join(weightsDir, 'gpt2')), 'nothing left of the refused download');
});

test('download: a mirror with no hash for the LFS file is refused; MINGPT_ALLOW_UNVERIFIED=1 accepts it with a loud warning (item 1)', async () => {
  modelEtag = 'none';
  const { weightsDir, dir } = modelOnly();
  const msg = await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), `${endpoint}${MODEL_URL}`, 'sent no ETag at all', 'MINGPT_ALLOW_UNVERIFIED=1');
  assert.not.ok(fs.existsSync(path.join(dir, 'model.safetensors')), msg);
  assert.equal(requests('cdn'), [], 'refused before a byte was fetched');
  const warnings: string[] = [];
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ MINGPT_ALLOW_UNVERIFIED: '1' }), warn: (m) => warnings.push(m) });
  same(path.join(dir, 'model.safetensors'), MODEL_A);
  assert.is(warnings.length, 1);
  assert.match(warnings[0], /^WARNING: gpt2\/model\.safetensors is NOT verified/);
  assert.ok(warnings[0].includes(path.join(dir, 'model.safetensors')), 'says which file to delete');
});

test('download: a mirror announcing the sha256 in upper case is still verified: changed bytes are refused, the right ones installed (item 1)', async () => {
  etagUpper = true;
  // the CDN serves the file with ln_f.weight[0]-like damage: one float changed, same length
  cdnBody = Buffer.from(MODEL_A);
  cdnBody.writeFloatLE(0.5, cdnBody.length - 8);
  const { weightsDir, dir } = modelOnly();
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), 'gpt2/model.safetensors', 'do not match the sha256', sha256(MODEL_A));
  assert.not.ok(fs.existsSync(path.join(dir, 'model.safetensors')));
  cdnBody = null;
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  same(path.join(dir, 'model.safetensors'), MODEL_A);
  assert.equal(leftovers(dir), []);
});

test('download: two runs at once write through one lock: each file is fetched once, both runs get it', async () => {
  const weightsDir = tmpDir('weights');
  const [a, b] = await Promise.all([
    ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }),
    ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }),
  ]);
  assert.is(a, b);
  assert.is(seen.filter((s) => s.method === 'GET' && s.url === CONFIG_URL).length, 1);
  assert.is(seen.filter((s) => s.server === 'cdn').length, 1);
  same(path.join(a, 'model.safetensors'), MODEL_A);
  assert.equal(leftovers(a), []);
});

test('acquireLock: waits for a live holder, takes over the lock of a process that is gone', async () => {
  const dir = tmpDir('lock');
  const lock = path.join(dir, 'f.lock');
  // a pid that surely is not running any more: a child that has exited
  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  fs.writeFileSync(lock, `${dead}\n`);
  const release = await acquireLock(lock, 'f', true, 5);
  assert.is(fs.readFileSync(lock, 'utf8').trim(), String(process.pid));
  // a second taker in this same process waits for the first one's release
  let second = false;
  const p = acquireLock(lock, 'f', true, 5).then((r) => { second = true; r(); });
  await new Promise((r) => setTimeout(r, 30));
  assert.not.ok(second, 'must wait for the first holder');
  release();
  await p;
  assert.ok(second);
  assert.not.ok(fs.existsSync(lock));
});

test('acquireLock: a lock held by a live process is waited for until it is released', async () => {
  const dir = tmpDir('lock');
  const lock = path.join(dir, 'f.lock');
  fs.writeFileSync(lock, `${process.ppid}\n`); // our parent: alive for the whole test
  let got = false;
  const p = acquireLock(lock, 'f', true, 5).then((r) => { got = true; r(); });
  await new Promise((r) => setTimeout(r, 60));
  assert.not.ok(got, 'must wait while the holder lives');
  fs.rmSync(lock);
  await p;
  assert.ok(got);
});

test('HF_HUB_OFFLINE=1: no request, a message saying so and where to put the files', async () => {
  const weightsDir = tmpDir('weights');
  await rejects(ensurePretrained('gpt2', { weightsDir, env: envFor({ HF_HUB_OFFLINE: '1' }), fetchImpl: noFetch }),
    'HF_HUB_OFFLINE', path.join(weightsDir, 'gpt2', 'model.safetensors'), '--weights PATH');
  assert.not.ok(fs.existsSync(path.join(weightsDir, 'gpt2')));
});

test('offline (HF_ENDPOINT at a closed port) -> PretrainedError naming the URL and where to put the files by hand', async () => {
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2-large');
  await rejects(ensurePretrained('gpt2-large', { ...fast, weightsDir, env: envFor({ HF_ENDPOINT: `http://127.0.0.1:${port}` }) }),
    `http://127.0.0.1:${port}/openai-community/gpt2-large/resolve/main/config.json`,
    'offline', 'ECONNREFUSED',
    path.join(dir, 'model.safetensors'),
    path.join(dir, 'config.json'),
    '--weights PATH');
  assert.not.ok(fs.existsSync(dir), 'no empty weights/gpt2-large/ is left behind');
  const failing = (async () => { throw new TypeError('fetch failed', { cause: new Error('getaddrinfo ENOTFOUND huggingface.co') }); }) as typeof fetch;
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ HF_ENDPOINT: '' }), fetchImpl: failing }),
    'https://huggingface.co/openai-community/gpt2/resolve/main/config.json', 'ENOTFOUND', path.join(weightsDir, 'gpt2', 'model.safetensors'));
});

test('an unwritable weights/ folder gives a message naming it, not a stack trace', async () => {
  const parent = tmpDir('parent');
  const weightsDir = path.join(parent, 'weights');
  fs.writeFileSync(weightsDir, 'a file where the folder should be');
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), `cannot create ${path.join(weightsDir, 'gpt2')}`, 'ENOTDIR', '--weights PATH');
  assert.equal(seen, []);
});

test('download: a config.json that contradicts the model is refused by name, and nothing of the pair is left to fail later runs (item 13)', async () => {
  config = Buffer.from(JSON.stringify({ ...JSON.parse(CONFIG.toString()), n_layer: 12 }));
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), "'n_layer' is 12", '3 blocks', 'config.json, downloaded with it, was deleted too');
  assert.not.ok(fs.existsSync(dir), `left behind: ${leftovers(dir)}`);
  // the Hub fixed: the next run downloads a good pair
  config = CONFIG;
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() });
  same(path.join(dir, 'config.json'), CONFIG);
  // a wrong config.json put there by hand: the downloaded model is deleted, and the message says to delete the config
  fs.rmSync(dir, { recursive: true });
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...JSON.parse(CONFIG.toString()), n_layer: 12 }));
  await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), "'n_layer' is 12", `${path.join(dir, 'config.json')} was there before this download`, 'delete it');
  assert.equal(fs.readdirSync(dir), ['config.json']);
});

test('download: HF_TOKEN with a line break is called malformed and never shown; no request is made (item 11)', async () => {
  const weightsDir = tmpDir('weights');
  const msg = await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ HF_TOKEN: 'hf_abc\ndef' }) }), 'HF_TOKEN is malformed', 'a line break', 'huggingface.co/settings/tokens');
  assert.not.ok(msg.includes('hf_abc') || msg.includes('def'), msg);
  assert.not.match(msg, /offline/);
  assert.equal(seen, []);
  // white space around a token is dropped, as huggingface_hub does
  await ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ HF_TOKEN: ' hf_secret\n' }) });
  assert.ok(seen.filter((s) => s.server === 'hub').every((s) => s.auth === 'Bearer hf_secret'));
});

test('download: a redirect to file:// or to an address with credentials is refused by name, nothing left behind (item 13)', async () => {
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  configRedirect = 'file:///etc/passwd';
  const msg = await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), 'redirected to file:///etc/passwd', 'only http and https');
  assert.not.match(msg, /offline|null/);
  assert.not.ok(fs.existsSync(dir), `left behind: ${leftovers(dir)}`);
  configRedirect = `http://user:s3cret@127.0.0.1:1/config.json`;
  const msg2 = await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor() }), 'user name or password', 'http://***:***@127.0.0.1:1/config.json');
  assert.not.ok(msg2.includes('s3cret'), msg2);
  assert.not.ok(fs.existsSync(dir), `left behind: ${leftovers(dir)}`);
});

test('HF_ENDPOINT that is no http(s) address is refused naming HF_ENDPOINT, before any request (item 13)', async () => {
  for (const [value, needle] of [['http://[::1', 'HF_ENDPOINT is not a valid address'], ['ftp://mirror.example', 'HF_ENDPOINT must be an http:// or https:// address'],
    ['https://me:pw@mirror.example', 'HF_ENDPOINT holds a user name or password']] as const) {
    const weightsDir = tmpDir('weights');
    const msg = await rejects(ensurePretrained('gpt2', { ...fast, weightsDir, env: envFor({ HF_ENDPOINT: value }), fetchImpl: noFetch }), needle);
    assert.not.ok(msg.includes(':pw@'), msg);
    assert.not.ok(fs.existsSync(path.join(weightsDir, 'gpt2')));
  }
});

test('etag helpers: normalised as huggingface_hub does; sha256 / git sha1 recognised', () => {
  assert.is(normalizeEtag('W/"abc"'), 'abc');
  assert.is(normalizeEtag('"abc"'), 'abc');
  assert.is(etagKind('a'.repeat(64)), 'sha256');
  assert.is(etagKind('b'.repeat(40)), 'git-sha1');
  assert.is(etagKind('42-abc'), null);
  // git's own value for the blob "hello\n" (git hash-object): ce013625030ba8dba906f756967f9e9ca394464a
  assert.is(gitSha1(Buffer.from('hello\n')), 'ce013625030ba8dba906f756967f9e9ca394464a');
});

test('ensurePretrained refuses an unknown model name, listing the valid ones', async () => {
  assert.equal([...PRETRAINED], ['gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl']);
  await rejects(ensurePretrained('gpt3', { weightsDir: tmpDir('weights'), env: envFor(), fetchImpl: noFetch }),
    "'gpt3'", 'gpt2, gpt2-medium, gpt2-large, gpt2-xl');
  assert.equal(seen, []);
});

// ------------------------------------------------------------------------------------------------
// the progress bar

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, write: (s: string) => { writes.push(s); return true; } } };
}

test('ProgressBar without a TTY prints a plain line about every 10% (11 lines for 1000 ticks), the last at 100%', () => {
  const { writes, stream } = fakeStream(false);
  const bar = new ProgressBar({ total: 1000, label: 'sweep', stream, env: {} });
  for (let i = 0; i < 1000; i++) bar.tick();
  bar.done();
  assert.is(writes.length, 11);
  assert.ok(writes.every((w) => w.endsWith('\n') && !w.includes('\r')));
  assert.match(writes[writes.length - 1], /100%\s+1000 \/ 1000/);
});

test('ProgressBar on a TTY redraws in place with \\r, at most ~10 times a second, and ends the line', () => {
  const { writes, stream } = fakeStream(true);
  const bar = new ProgressBar({ total: 5 * 1024 * 1024, label: 'model.safetensors', unit: 'B', stream, env: {} });
  for (let i = 0; i < 1024; i++) bar.tick(5 * 1024); // all within far less than 100 ms
  bar.done();
  assert.ok(writes.length <= 3, `${writes.length} redraws`);
  assert.ok(writes.every((w) => w.startsWith('\r')));
  assert.ok(writes[writes.length - 1].endsWith('\n'));
  assert.ok(writes[writes.length - 1].includes('5.0 MiB / 5.0 MiB'));
  assert.is(formatBytes(1536), '1.5 KiB');
});

test('ProgressBar shows a slow rate as time per item, a fast one per second', () => {
  // the line drawn after `done` of 132 items in `elapsedMs` (a fake clock), finished or not
  const line = (done: number, elapsedMs: number, finish: boolean) => {
    const { writes, stream } = fakeStream(true);
    let clock = 1000;
    const bar = new ProgressBar({ total: 132, label: 'patching', stream, env: {}, now: () => clock });
    clock += elapsedMs;
    bar.update(done);
    if (finish) bar.done();
    return writes[writes.length - 1];
  };
  assert.match(line(4, 10_000, false), /\b2\.5s each\s+ETA 5m20s/); // 0.4 a second; 128 left at 2.5 s = 320 s
  assert.not.match(line(4, 10_000, false), /\b0\/s/);
  assert.match(line(33, 10_000, false), /\b3\.3\/s\s+ETA 30s/); // 99 left at 3.3 a second
  assert.match(line(132, 11_000, true), /\b12\/s\s+in 11s/);
});

test('ProgressBar is silent when MINGPT_QUIET is set', () => {
  const { writes, stream } = fakeStream(true);
  const bar = new ProgressBar({ total: 10, label: 'x', stream, env: { MINGPT_QUIET: '1' } });
  bar.tick(5);
  bar.done();
  assert.equal(writes, []);
});

test.run();
