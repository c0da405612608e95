// Getting GPT-2 onto disk (mingpt/pretrained.ts) and the progress bar it shows (mingpt/progress.ts).
// No test touches the network: downloads come from an http server on 127.0.0.1 serving the tiny
// fixture checkpoint, the environment is passed explicitly (never the real home or HF cache), and
// everything is written under a temporary directory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { ensurePretrained, findInHFCache, PretrainedError, PRETRAINED } from '../mingpt/pretrained.ts';
import { Checkpoint } from '../mingpt/checkpoint.ts';
import { ProgressBar, formatBytes } from '../mingpt/progress.ts';

const FIXTURE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'gpt2-tiny');
const MODEL = fs.readFileSync(path.join(FIXTURE_DIR, 'model.safetensors'));
const CONFIG = fs.readFileSync(path.join(FIXTURE_DIR, 'config.json'));
const MODEL_URL = '/openai-community/gpt2/resolve/main/model.safetensors';
const CONFIG_URL = '/openai-community/gpt2/resolve/main/config.json';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mingpt-pretrained-test-'));
let counter = 0;
const tmpDir = (name = 'd') => { const d = path.join(tmp, `${counter++}-${name}`); fs.mkdirSync(d, { recursive: true }); return d; };

// ------------------------------------------------------------------------------------------------
// a stand-in for huggingface.co

type Mode = 'normal' | 'ignore-range' | 'truncate' | 'redirect' | 'forbidden';
interface Seen { url: string; range: string | undefined; status: number }
let mode: Mode = 'normal';
let seen: Seen[] = [];
const files: Record<string, Buffer> = { [MODEL_URL]: MODEL, [CONFIG_URL]: CONFIG };

const server = http.createServer((req, res) => {
  const url = req.url ?? '';
  const range = req.headers.range;
  const answer = (status: number, headers: http.OutgoingHttpHeaders, body?: Buffer) => {
    seen.push({ url, range, status });
    res.writeHead(status, headers);
    res.end(body);
  };
  if (mode === 'forbidden') return answer(403, {});
  if (mode === 'redirect' && !url.startsWith('/cdn')) return answer(302, { location: '/cdn' + url });
  const body = files[url.replace(/^\/cdn/, '')];
  if (!body) return answer(404, {});
  if (mode === 'truncate' && url.endsWith('model.safetensors')) {
    // announce the whole file, send 40% of it, hang up
    seen.push({ url, range, status: 200 });
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, Math.floor(body.length * 0.4)), () => res.socket?.destroy());
    return;
  }
  const m = range?.match(/^bytes=(\d+)-$/);
  if (m && mode !== 'ignore-range') {
    const start = Number(m[1]);
    if (start >= body.length) return answer(416, { 'content-range': `bytes */${body.length}` });
    return answer(206, { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'content-length': body.length - start },
      body.subarray(start));
  }
  answer(200, { 'content-length': body.length }, body);
});
let endpoint = '';
test.before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
test.after(async () => {
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(tmp, { recursive: true, force: true });
});
test.before.each(() => { mode = 'normal'; seen = []; });

/** An environment with an empty HF cache and the local server as the Hub; no HOME. */
const envFor = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv =>
  ({ HF_HUB_CACHE: tmpDir('empty-hub'), HF_ENDPOINT: endpoint, MINGPT_QUIET: '1', ...extra });
const noFetch = (() => { throw new Error('no request expected'); }) as unknown as typeof fetch;

async function rejects(p: Promise<unknown>, ...needles: (string | RegExp)[]): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, PretrainedError, `expected PretrainedError, got ${err}`);
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

const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.partial'));

// ------------------------------------------------------------------------------------------------
// finding what is already there

test('ensurePretrained uses weights/<name>/ when both files are there, without any request', async () => {
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2-medium');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(FIXTURE_DIR, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  fs.copyFileSync(path.join(FIXTURE_DIR, 'config.json'), path.join(dir, 'config.json'));
  const got = await ensurePretrained('gpt2-medium', { weightsDir, env: envFor(), fetchImpl: noFetch });
  assert.is(got, dir);
  assert.equal(seen, []);
  Checkpoint.open(got).close();
});

/** A Hugging Face cache entry laid out as huggingface_hub does: snapshot files are symlinks to blobs. */
function fakeHubRepo(hub: string, repo: string, revs: string[], main?: string): void {
  const base = path.join(hub, repo);
  fs.mkdirSync(path.join(base, 'blobs'), { recursive: true });
  fs.writeFileSync(path.join(base, 'blobs', 'model-blob'), MODEL);
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

test('ensurePretrained uses a Hugging Face cache snapshot ($HF_HUB_CACHE, refs/main preferred) without any request', async () => {
  const hub = tmpDir('hub');
  fakeHubRepo(hub, 'models--openai-community--gpt2', ['0000old', '607a30d7'], '607a30d7');
  const got = await ensurePretrained('gpt2', { weightsDir: tmpDir('weights'), env: { ...envFor(), HF_HUB_CACHE: hub }, fetchImpl: noFetch });
  assert.is(got, path.join(hub, 'models--openai-community--gpt2', 'snapshots', '607a30d7'));
  assert.equal(seen, []);
  const ck = Checkpoint.open(got);
  assert.is(ck.hparams.n_layer, 3);
  ck.close();
});

test('findInHFCache: $HF_HOME/hub, the legacy models--gpt2 repo id, ~/.cache via HOME, and an incomplete snapshot ignored', () => {
  const home = tmpDir('hf-home');
  fakeHubRepo(path.join(home, 'hub'), 'models--gpt2-large', ['abc']);
  assert.is(findInHFCache('gpt2-large', { HF_HOME: home }), path.join(home, 'hub', 'models--gpt2-large', 'snapshots', 'abc'));
  const user = tmpDir('user-home');
  fakeHubRepo(path.join(user, '.cache', 'huggingface', 'hub'), 'models--openai-community--gpt2-xl', ['r1']);
  assert.is(findInHFCache('gpt2-xl', { HOME: user }), path.join(user, '.cache', 'huggingface', 'hub', 'models--openai-community--gpt2-xl', 'snapshots', 'r1'));
  // a snapshot whose model.safetensors link points to a blob that never finished downloading
  const hub = tmpDir('broken-hub');
  fakeHubRepo(hub, 'models--openai-community--gpt2', ['r1'], 'r1');
  fs.rmSync(path.join(hub, 'models--openai-community--gpt2', 'blobs', 'model-blob'));
  assert.is(findInHFCache('gpt2', { HF_HUB_CACHE: hub }), null);
});

// ------------------------------------------------------------------------------------------------
// downloading

test('ensurePretrained downloads config.json and model.safetensors from $HF_ENDPOINT: complete, byte-identical, no .partial left', async () => {
  const weightsDir = tmpDir('weights');
  const got = await ensurePretrained('gpt2', { weightsDir, env: envFor() });
  assert.is(got, path.join(weightsDir, 'gpt2'));
  assert.equal(seen.map((s) => [s.url, s.range, s.status]), [[CONFIG_URL, undefined, 200], [MODEL_URL, undefined, 200]]);
  assert.ok(fs.readFileSync(path.join(got, 'model.safetensors')).equals(MODEL));
  assert.ok(fs.readFileSync(path.join(got, 'config.json')).equals(CONFIG));
  assert.equal(leftovers(got), []);
  Checkpoint.open(got).close();
  // a second call finds the files and asks for nothing
  seen = [];
  assert.is(await ensurePretrained('gpt2', { weightsDir, env: envFor(), fetchImpl: noFetch }), got);
  assert.equal(seen, []);
});

test('ensurePretrained follows a redirect (as huggingface.co sends to its CDN)', async () => {
  mode = 'redirect';
  const weightsDir = tmpDir('weights');
  const got = await ensurePretrained('gpt2', { weightsDir, env: envFor() });
  assert.ok(fs.readFileSync(path.join(got, 'model.safetensors')).equals(MODEL));
  assert.ok(seen.some((s) => s.url === '/cdn' + MODEL_URL && s.status === 200));
});

test('ensurePretrained resumes a .partial download: the server sees Range: bytes=K-, answers 206, result byte-identical', async () => {
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  fs.mkdirSync(dir);
  const K = 1_000_003;
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), MODEL.subarray(0, K));
  fs.copyFileSync(path.join(FIXTURE_DIR, 'config.json'), path.join(dir, 'config.json')); // only the model is missing
  await ensurePretrained('gpt2', { weightsDir, env: envFor() });
  assert.equal(seen, [{ url: MODEL_URL, range: `bytes=${K}-`, status: 206 }]);
  assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(MODEL));
  assert.equal(leftovers(dir), []);
});

test('ensurePretrained restarts when the server ignores Range and answers 200: still byte-identical', async () => {
  mode = 'ignore-range';
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), MODEL.subarray(0, 2_000_000));
  await ensurePretrained('gpt2', { weightsDir, env: envFor() });
  const model = seen.find((s) => s.url === MODEL_URL)!;
  assert.equal(model, { url: MODEL_URL, range: 'bytes=2000000-', status: 200 });
  assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(MODEL));
  assert.equal(leftovers(dir), []);
});

test('ensurePretrained: a .partial that is already complete (server answers 416) is renamed into place', async () => {
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'model.safetensors.partial'), MODEL);
  fs.copyFileSync(path.join(FIXTURE_DIR, 'config.json'), path.join(dir, 'config.json'));
  await ensurePretrained('gpt2', { weightsDir, env: envFor() });
  assert.equal(seen, [{ url: MODEL_URL, range: `bytes=${MODEL.length}-`, status: 416 }]);
  assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(MODEL));
});

test('ensurePretrained: a body cut short (content-length larger than what is sent) -> PretrainedError, no model.safetensors; the next run resumes', async () => {
  mode = 'truncate';
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2');
  await rejects(ensurePretrained('gpt2', { weightsDir, env: envFor() }), endpoint + MODEL_URL, path.join(dir, 'model.safetensors'));
  assert.not.ok(fs.existsSync(path.join(dir, 'model.safetensors')));
  // what arrived is kept as .partial (never under the final name), and the next run picks it up
  const kept = fs.statSync(path.join(dir, 'model.safetensors.partial')).size;
  assert.ok(kept > 0 && kept < MODEL.length, `partial has ${kept} bytes`);
  mode = 'normal';
  seen = [];
  await ensurePretrained('gpt2', { weightsDir, env: envFor() });
  assert.equal(seen, [{ url: MODEL_URL, range: `bytes=${kept}-`, status: 206 }]);
  assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(MODEL));
});

test('ensurePretrained offline (HF_ENDPOINT at a closed port) -> PretrainedError naming the URL and where to put the files by hand', async () => {
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const weightsDir = tmpDir('weights');
  const dir = path.join(weightsDir, 'gpt2-large');
  await rejects(ensurePretrained('gpt2-large', { weightsDir, env: envFor({ HF_ENDPOINT: `http://127.0.0.1:${port}` }) }),
    `http://127.0.0.1:${port}/openai-community/gpt2-large/resolve/main/config.json`,
    'offline',
    path.join(dir, 'model.safetensors'),
    path.join(dir, 'config.json'),
    '--weights PATH');
  assert.not.ok(fs.existsSync(dir), 'no empty weights/gpt2-large/ is left behind');
});

test('ensurePretrained: a fetch that throws, and a server that refuses (HTTP 403), give the same helpful PretrainedError', async () => {
  const weightsDir = tmpDir('weights');
  const failing = (async () => { throw new TypeError('fetch failed', { cause: new Error('getaddrinfo ENOTFOUND huggingface.co') }); }) as typeof fetch;
  await rejects(ensurePretrained('gpt2', { weightsDir, env: envFor({ HF_ENDPOINT: '' }), fetchImpl: failing }),
    'https://huggingface.co/openai-community/gpt2/resolve/main/config.json', 'ENOTFOUND', path.join(weightsDir, 'gpt2', 'model.safetensors'));
  mode = 'forbidden';
  await rejects(ensurePretrained('gpt2', { weightsDir, env: envFor() }),
    endpoint + CONFIG_URL, 'HTTP 403', 'refused', path.join(weightsDir, 'gpt2', 'config.json'));
  assert.not.ok(fs.existsSync(path.join(weightsDir, 'gpt2', 'config.json')));
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
