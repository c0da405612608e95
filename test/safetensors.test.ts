// The safetensors reader/writer (io/safetensors.ts) and the GPT-2 checkpoint view on top of it
// (io/checkpoint.ts). Expected values come from the fixture's own bytes (parsed here by hand,
// independently of the reader), from fixtures/README.md and config.json, or from bit patterns
// worked out by hand in the comments.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openSafetensors, writeSafetensors, SafetensorsError, type TensorToWrite } from '../io/safetensors.ts';
import { Checkpoint, CheckpointError, transposeBand } from '../io/checkpoint.ts';
import { FIXTURE } from './helpers.ts';
import { loadGPT } from '../io/load.ts';

const MODEL_FILE = path.join(FIXTURE, 'model.safetensors');
const CONFIG = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8'));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mingpt-safetensors-test-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpPath = (name: string) => path.join(tmp, `${counter++}-${name}`);
const tmpDir = () => { const d = tmpPath('dir'); fs.mkdirSync(d); return d; };

/** The fixture parsed by hand: Buffer + JSON.parse + readFloatLE, no code from mingpt/. */
const RAW = fs.readFileSync(MODEL_FILE);
const RAW_N = Number(RAW.readBigUInt64LE(0));
const RAW_HEADER = JSON.parse(RAW.subarray(8, 8 + RAW_N).toString('utf8'));
const rawCache = new Map<string, { shape: number[]; values: Float32Array }>();
function rawTensor(name: string): { shape: number[]; values: Float32Array } {
  if (!rawCache.has(name)) rawCache.set(name, rawTensorUncached(name));
  const { shape, values } = rawCache.get(name)!;
  return { shape: [...shape], values: values.slice() };
}
function rawTensorUncached(name: string): { shape: number[]; values: Float32Array } {
  const { dtype, shape, data_offsets: [begin, end] } = RAW_HEADER[name];
  assert.is(dtype, 'F32');
  const values = new Float32Array((end - begin) / 4);
  for (let i = 0; i < values.length; i++) values[i] = RAW.readFloatLE(8 + RAW_N + begin + 4 * i);
  return { shape, values };
}
/** Naive transpose of a row-major (R, C) matrix into (C, R). */
function transpose(x: Float32Array, R: number, C: number): Float32Array {
  const y = new Float32Array(R * C);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) y[c * R + r] = x[r * C + c];
  return y;
}

/** Bit-exact comparison of two Float32Arrays (uvu's deep equal is slow on millions of elements). */
function sameF32(actual: Float32Array, expected: Float32Array, msg = ''): void {
  assert.is(actual.length, expected.length, `${msg}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) assert.unreachable(`${msg}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
  }
}

/** A file with a hand-written header (object or raw string), optional explicit length, and data bytes. */
function handMade(header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const p = tmpPath('hand.safetensors');
  fs.writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

function refuses(fn: () => unknown, ErrorClass: new (...a: any[]) => Error, ...needles: (string | RegExp)[]): string {
  try {
    fn();
  } catch (err) {
    assert.instance(err, ErrorClass, `expected ${ErrorClass.name}, got ${err}`);
    const msg = (err as Error).message;
    for (const n of needles) {
      if (typeof n === 'string') assert.ok(msg.includes(n), `message should contain ${JSON.stringify(n)}:\n${msg}`);
      else assert.match(msg, n);
    }
    return msg;
  }
  assert.unreachable(`expected ${ErrorClass.name}`);
  return '';
}

// ------------------------------------------------------------------------------------------------
// the fixture

const LAYER_PARAMS = ['ln_1.weight', 'ln_1.bias', 'attn.bias', 'attn.c_attn.weight', 'attn.c_attn.bias',
  'attn.c_proj.weight', 'attn.c_proj.bias', 'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias',
  'mlp.c_proj.weight', 'mlp.c_proj.bias'];

test('fixture gpt2-tiny opens and lists what fixtures/README.md describes: wte, wpe, 3 layers with attn.bias buffers, ln_f, no lm_head', () => {
  const f = openSafetensors(MODEL_FILE);
  const expected = ['wte.weight', 'wpe.weight', 'ln_f.weight', 'ln_f.bias'];
  for (let i = 0; i < 3; i++) for (const p of LAYER_PARAMS) expected.push(`h.${i}.${p}`);
  assert.equal([...f.tensors.keys()].sort(), expected.sort());
  assert.not.ok(f.tensors.has('lm_head.weight'));
  assert.ok([...f.tensors.values()].every((t) => t.dtype === 'F32'));
  assert.equal(f.metadata, { format: 'pt' });
  f.close();
});

test('fixture shapes follow config.json (n_embd 32, n_layer 3, vocab 50257, n_positions 64), Conv1D weights stored [in, out]', () => {
  const { n_embd: C, n_layer, vocab_size: V, n_positions: T } = CONFIG;
  assert.equal([C, n_layer, V, T], [32, 3, 50257, 64]);
  const f = openSafetensors(MODEL_FILE);
  const shape = (n: string) => f.tensors.get(n)!.shape;
  assert.equal(shape('wte.weight'), [V, C]);
  assert.equal(shape('wpe.weight'), [T, C]);
  assert.equal(shape('ln_f.weight'), [C]);
  for (let i = 0; i < n_layer; i++) {
    assert.equal(shape(`h.${i}.attn.bias`), [1, 1, T, T]);
    assert.equal(shape(`h.${i}.attn.c_attn.weight`), [C, 3 * C]);
    assert.equal(shape(`h.${i}.attn.c_attn.bias`), [3 * C]);
    assert.equal(shape(`h.${i}.attn.c_proj.weight`), [C, C]);
    assert.equal(shape(`h.${i}.mlp.c_fc.weight`), [C, 4 * C]);
    assert.equal(shape(`h.${i}.mlp.c_fc.bias`), [4 * C]);
    assert.equal(shape(`h.${i}.mlp.c_proj.weight`), [4 * C, C]);
    assert.equal(shape(`h.${i}.mlp.c_proj.bias`), [C]);
  }
  f.close();
});

test('readF32 of the fixture gives the bytes of the file (wte, wpe, h.2.mlp.c_proj.bias parsed by hand)', () => {
  const f = openSafetensors(MODEL_FILE);
  for (const name of ['wte.weight', 'wpe.weight', 'h.2.mlp.c_proj.bias']) {
    const raw = rawTensor(name);
    const out = new Float32Array(raw.values.length);
    f.readF32(name, out);
    sameF32(out, raw.values, name);
  }
  f.close();
});

// ------------------------------------------------------------------------------------------------
// round trips

test('writeSafetensors -> openSafetensors round trip, F32: values bit-exact, header padded to 8 bytes, metadata kept, no tmp file left', () => {
  const p = tmpPath('f32.safetensors');
  const a = new Float32Array([1.5, -2, 0.1, -0, 3.4028234663852886e38, 1e-45, Infinity]);
  const b = new Float32Array([42]);
  writeSafetensors(p, { a: { dtype: 'F32', shape: [7], data: a }, 'x.y': { dtype: 'F32', shape: [1, 1], data: b } }, { note: 'hi' });
  const bytes = fs.readFileSync(p);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.is((8 + n) % 8, 0, 'data section starts on an 8-byte boundary');
  assert.is(bytes.length, 8 + n + 4 * 8);
  const f = openSafetensors(p);
  assert.equal(f.metadata, { note: 'hi' });
  assert.equal(f.tensors.get('x.y'), { dtype: 'F32', shape: [1, 1], begin: 28, end: 32 });
  const out = new Float32Array(7);
  f.readF32('a', out);
  assert.equal(out, a);
  assert.ok(Object.is(out[3], -0));
  f.close();
  assert.equal(fs.readdirSync(tmp).filter((x) => x.endsWith('.partial')), [], 'no temporary file left');
});

test('round trip F16: 1.5, -2, 65504, 1/3, 2^-24, 65520, 1e-8 stored as the hand-computed bit patterns and read back', () => {
  // float16 = sign | 5-bit exponent (bias 15) | 10-bit mantissa
  //   1.5    = 1.1b * 2^0                      -> 0 01111 1000000000 = 0x3E00
  //   -2     = -1.0b * 2^1                     -> 1 10000 0000000000 = 0xC000
  //   65504  = 1.1111111111b * 2^15 (largest)  -> 0 11110 1111111111 = 0x7BFF
  //   1/3    = 1.0101010101|0101...b * 2^-2; the dropped bits 0101... are below half: round down
  //                                            -> 0 01101 0101010101 = 0x3555 = 1365/4096 = 0.333251953125
  //   2^-24  = smallest subnormal              -> 0x0001
  //   65520  = exactly halfway between 65504 (0x7BFF, odd) and 65536 (0x7C00, even = Inf): ties to even
  //                                            -> 0x7C00 = Infinity
  //   1e-8   < 2^-25 (half the smallest subnormal) -> 0x0000 = 0
  const p = tmpPath('f16.safetensors');
  const values = new Float32Array([1.5, -2, 65504, 1 / 3, 2 ** -24, 65520, 1e-8]);
  writeSafetensors(p, { h: { dtype: 'F16', shape: [7], data: values } });
  const f = openSafetensors(p);
  const bytes = fs.readFileSync(p);
  const bits = [...Array(7)].map((_, i) => bytes.readUInt16LE(f.dataStart + 2 * i));
  assert.equal(bits, [0x3e00, 0xc000, 0x7bff, 0x3555, 0x0001, 0x7c00, 0x0000]);
  const out = new Float32Array(7);
  f.readF32('h', out);
  assert.equal([...out], [1.5, -2, 65504, 1365 / 4096, 5.960464477539063e-8, Infinity, 0]);
  f.close();
});

test('round trip BF16: 1/3 rounds up to 0x3EAB = 171/512; ties go to even', () => {
  // bfloat16 is the top 16 bits of a float32, rounded to nearest even on the dropped 16.
  //   float32(1/3) = 0x3EAAAAAB: top 0x3EAA, dropped 0xAAAB > 0x8000 -> round up -> 0x3EAB
  //   0x3EAB = 0 01111101 0101011: 2^(125-127) * (1 + 43/128) = 171/512 = 0.333984375
  //   (truncation would give 0x3EAA = 170/512 = 0.33203125)
  //   1.0 = 0x3F800000 -> 0x3F80;  -2.5 = 0xC0200000 -> 0xC020
  //   1 + 2^-8 = 0x3F808000: exactly halfway between 0x3F80 (even) and 0x3F81 -> 0x3F80 = 1
  //   1 + 3*2^-8 = 0x3F818000: halfway between 0x3F81 and 0x3F82 (even) -> 0x3F82 = 1 + 2/128 = 1.015625
  const p = tmpPath('bf16.safetensors');
  const values = new Float32Array([1 / 3, 1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8]);
  writeSafetensors(p, { b: { dtype: 'BF16', shape: [5], data: values } });
  const f = openSafetensors(p);
  const bytes = fs.readFileSync(p);
  const bits = [...Array(5)].map((_, i) => bytes.readUInt16LE(f.dataStart + 2 * i));
  assert.equal(bits, [0x3eab, 0x3f80, 0xc020, 0x3f80, 0x3f82]);
  const out = new Float32Array(5);
  f.readF32('b', out);
  assert.equal([...out], [171 / 512, 1, -2.5, 1, 1.015625]);
  f.close();
});

test('F16 and BF16 tensors larger than the conversion scratch buffer are read correctly chunk by chunk', () => {
  const p = tmpPath('chunks.safetensors');
  const n = 1001; // integers up to 2048 are exact in F16, up to 256 in BF16
  const ints = Float32Array.from({ length: n }, (_, i) => i - 500);
  const small = Float32Array.from({ length: n }, (_, i) => (i % 256) - 128);
  writeSafetensors(p, { h: { dtype: 'F16', shape: [7, 143], data: ints }, b: { dtype: 'BF16', shape: [n], data: small } });
  const f = openSafetensors(p, { chunkBytes: 64 });
  const out = new Float32Array(n);
  f.readF32('h', out);
  assert.equal(out, ints);
  f.readF32('b', out);
  assert.equal(out, small);
  const part = new Float32Array(10);
  f.readF32Range('h', 995, new Float32Array(6));
  f.readF32Range('h', 33, part);
  assert.equal(part, ints.subarray(33, 43));
  f.close();
});

test('readF32 refuses a destination of the wrong size, an unknown name, and reading after close', () => {
  const f = openSafetensors(MODEL_FILE);
  refuses(() => f.readF32('wpe.weight', new Float32Array(10)), SafetensorsError, MODEL_FILE, 'wpe.weight', '2048');
  refuses(() => f.readF32('nope', new Float32Array(1)), SafetensorsError, MODEL_FILE, 'nope');
  refuses(() => f.readF32Range('ln_f.bias', 30, new Float32Array(3)), SafetensorsError, 'ln_f.bias');
  f.close();
  refuses(() => f.readF32('ln_f.bias', new Float32Array(32)), SafetensorsError, MODEL_FILE, 'ln_f.bias', 'closed');
});

// ------------------------------------------------------------------------------------------------
// malformed files

test('refuses a file shorter than 8 bytes, naming the file', () => {
  const p = tmpPath('short.safetensors');
  fs.writeFileSync(p, Buffer.from([1, 2, 3, 4]));
  refuses(() => openSafetensors(p), SafetensorsError, p, 'shorter than the 8-byte');
});

test('refuses the fixture cut short (truncated copy), naming the file and the first cut tensor', () => {
  const p = tmpPath('truncated.safetensors');
  fs.writeFileSync(p, RAW.subarray(0, 5_000_000)); // wte.weight spans data bytes [0, 6432896)
  refuses(() => openSafetensors(p), SafetensorsError, p, 'truncated', "'wte.weight'", String(RAW.length));
  const q = tmpPath('truncated-end.safetensors');
  fs.writeFileSync(q, RAW.subarray(0, RAW.length - 1)); // one byte short: ln_f.bias is the last tensor
  refuses(() => openSafetensors(q), SafetensorsError, q, 'truncated', "'ln_f.bias'");
  const r = tmpPath('header-only.safetensors');
  fs.writeFileSync(r, RAW.subarray(0, 100)); // the header itself is cut
  refuses(() => openSafetensors(r), SafetensorsError, r, 'header length 3624');
});

test('refuses an absurd header length: larger than the file, or more than 100 MB', () => {
  const p = handMade('{}', new Uint8Array(0), 1n << 40n);
  refuses(() => openSafetensors(p), SafetensorsError, p, 'header length 1099511627776', 'larger than the rest of the file');
  // a sparse 150 MB file whose first 8 bytes claim a 120 MB header: fits in the file, still absurd
  const q = handMade('{}', new Uint8Array(0), 120_000_000n);
  fs.truncateSync(q, 150_000_000);
  refuses(() => openSafetensors(q), SafetensorsError, q, 'header length 120000000', 'absurd');
});

test('refuses a header that is not JSON, or not a JSON object', () => {
  const p = handMade('{"a": {"dtype": "F32", ');
  refuses(() => openSafetensors(p), SafetensorsError, p, 'not valid JSON');
  const q = handMade('[1, 2, 3]');
  refuses(() => openSafetensors(q), SafetensorsError, q, "does not start with '{'");
  const r = handMade('null');
  refuses(() => openSafetensors(r), SafetensorsError, r, "does not start with '{'");
});

test('refuses unknown and unsupported dtypes (F64, I8, Q4), naming the tensor and the dtypes we read', () => {
  for (const dtype of ['F64', 'I8', 'Q4']) {
    const p = handMade({ 'h.0.x': { dtype, shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
    refuses(() => openSafetensors(p), SafetensorsError, p, "'h.0.x'", `'${dtype}'`, 'F32, F16 and BF16');
  }
});

test('refuses a shape that is not a list of non-negative integers, naming the tensor', () => {
  for (const shape of [[-1], [1.5], '4', [2, null]]) {
    const p = handMade({ w: { dtype: 'F32', shape, data_offsets: [0, 4] } }, new Uint8Array(4));
    refuses(() => openSafetensors(p), SafetensorsError, p, "'w'", 'non-negative integers');
  }
});

test('refuses data_offsets that are malformed or out of range of the data section, naming the tensor', () => {
  const p = handMade({ w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, new Uint8Array(8));
  refuses(() => openSafetensors(p), SafetensorsError, p, "'w'", 'data_offsets');
  // 'a' fills [0, 8); 'far' claims [100, 108) but the data section is 16 bytes
  const q = handMade({
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    far: { dtype: 'F32', shape: [2], data_offsets: [100, 108] },
  }, new Uint8Array(16));
  refuses(() => openSafetensors(q), SafetensorsError, q, "'far'", 'out of range', '16 bytes');
});

test('refuses tensors whose bytes overlap, naming both', () => {
  const p = handMade({
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
  }, new Uint8Array(12));
  refuses(() => openSafetensors(p), SafetensorsError, p, "'a'", "'b'", 'overlap');
});

test('refuses a byte size that does not match shape x dtype size (F32 [3] in 8 bytes), naming the tensor', () => {
  const p = handMade({ 'h.1.mlp.c_fc.bias': { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8));
  refuses(() => openSafetensors(p), SafetensorsError, p, "'h.1.mlp.c_fc.bias'", '8 bytes', 'needs 12');
  const q = handMade({ w: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 16] } }, new Uint8Array(16));
  refuses(() => openSafetensors(q), SafetensorsError, q, "'w'", 'needs 8');
});

test('reads empty tensors that sit between two others (zero bytes at the cursor)', () => {
  const data = Buffer.alloc(8);
  data.writeFloatLE(7, 0);
  data.writeFloatLE(-3, 4);
  const p = handMade({
    a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    e: { dtype: 'F32', shape: [0, 5], data_offsets: [4, 4] },
    b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
  }, data);
  const f = openSafetensors(p);
  const out = new Float32Array(1);
  f.readF32('b', out);
  assert.is(out[0], -3);
  f.readF32('e', new Float32Array(0));
  f.close();
});

test('refuses a hole between tensors, naming the bytes and the tensor after it (as the reference library does)', () => {
  const p = handMade({
    a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    b: { dtype: 'F32', shape: [1], data_offsets: [20, 24] },
  }, new Uint8Array(24));
  refuses(() => openSafetensors(p), SafetensorsError, p, 'bytes [4, 20)', "'b'", 'no tensor');
});

test('refuses trailing bytes that no tensor covers', () => {
  const p = handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8 + 100));
  refuses(() => openSafetensors(p), SafetensorsError, p, 'last 100 bytes', 'no tensor', 'cover 8 of the 108-byte');
});

test('refuses the fixture with a header length 1..7 bytes short (the JSON still parses: its padding is cut off)', () => {
  // The fixture's header ends in padding spaces (writeSafetensors aligns the data section to 8 bytes);
  // with the length k bytes short, JSON.parse still succeeds and every tensor would start k bytes early.
  const header = RAW.subarray(8, 8 + RAW_N).toString('utf8');
  const pad = header.length - header.trimEnd().length;
  assert.ok(pad >= 1, `the fixture's header has ${pad} padding spaces; this test needs at least one`);
  for (let k = 1; k <= pad; k++) {
    const bytes = Buffer.from(RAW);
    bytes.writeBigUInt64LE(BigInt(RAW_N - k), 0);
    const p = tmpPath('short-header.safetensors');
    fs.writeFileSync(p, bytes);
    refuses(() => openSafetensors(p), SafetensorsError, p, `last ${k} bytes`, `header length (${RAW_N - k} bytes) is wrong`);
  }
});

test('refuses a header that is not UTF-8, or does not start with \'{\' (as the reference library does)', () => {
  const entry = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
  // handMade writes its header as UTF-8, so the bad bytes (0xff 0xfe inside a string) are put together here
  const p = tmpPath('bad-utf8.safetensors');
  const bytes = Buffer.concat([Buffer.from(entry.slice(0, -1) + ',"__metadata__":{"k":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}')]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length));
  fs.writeFileSync(p, Buffer.concat([len, bytes, new Uint8Array(4)]));
  refuses(() => openSafetensors(p), SafetensorsError, p, 'not valid UTF-8');
  const q = handMade(' ' + entry, new Uint8Array(4));
  refuses(() => openSafetensors(q), SafetensorsError, q, "does not start with '{'");
});

test('refuses duplicate keys in the header (JSON.parse would keep the last one silently), naming the key', () => {
  const entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  const p = handMade(`{"w":${entry},"w":${entry}}`, new Uint8Array(4));
  refuses(() => openSafetensors(p), SafetensorsError, p, "'w' twice");
  const q = handMade('{"w":{"dtype":"F32","shape":[2],"shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4));
  refuses(() => openSafetensors(q), SafetensorsError, q, "'w' > 'shape' twice");
  // the same key in two different objects, and escaped look-alikes, are fine
  const r = handMade('{"__metadata__":{"a\\"b":"x","dtype":"y"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4));
  openSafetensors(r).close();
});

// ------------------------------------------------------------------------------------------------
// Checkpoint

/** The fixture's tensors, read by hand, as a writeSafetensors record. */
function fixtureTensors(): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  for (const name of Object.keys(RAW_HEADER)) {
    if (name === '__metadata__') continue;
    const { shape, values } = rawTensor(name);
    out[name] = { dtype: 'F32', shape, data: values };
  }
  return out;
}

/** A checkpoint directory built from the fixture's tensors, renamed / filtered / extended. */
function variant(opts: { prefix?: boolean; dropBuffers?: boolean; lmHead?: Float32Array; extra?: string; config?: object }): string {
  const dir = tmpDir();
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of Object.entries(fixtureTensors())) {
    if (opts.dropBuffers && name.endsWith('.attn.bias')) continue;
    tensors[(opts.prefix ? 'transformer.' : '') + name] = t;
  }
  if (opts.lmHead) tensors['lm_head.weight'] = { dtype: 'F32', shape: [50257, 32], data: opts.lmHead };
  if (opts.extra) tensors[opts.extra] = { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) };
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(opts.config ?? CONFIG));
  return dir;
}

/** minGPT's parameter names and (out, in) shapes for config `cfg`. */
function minGPTParams(cfg = CONFIG): [string, number[]][] {
  const { n_embd: C, vocab_size: V, n_positions: T } = cfg;
  const p: [string, number[]][] = [['transformer.wte.weight', [V, C]], ['transformer.wpe.weight', [T, C]]];
  for (let i = 0; i < cfg.n_layer; i++) {
    const h = `transformer.h.${i}.`;
    p.push([h + 'ln_1.weight', [C]], [h + 'ln_1.bias', [C]],
      [h + 'attn.c_attn.weight', [3 * C, C]], [h + 'attn.c_attn.bias', [3 * C]],
      [h + 'attn.c_proj.weight', [C, C]], [h + 'attn.c_proj.bias', [C]],
      [h + 'ln_2.weight', [C]], [h + 'ln_2.bias', [C]],
      [h + 'mlp.c_fc.weight', [4 * C, C]], [h + 'mlp.c_fc.bias', [4 * C]],
      [h + 'mlp.c_proj.weight', [C, 4 * C]], [h + 'mlp.c_proj.bias', [C]]);
  }
  p.push(['transformer.ln_f.weight', [C]], ['transformer.ln_f.bias', [C]]);
  return p;
}

/** What minGPT's name must read as: the stored tensor, transposed for the four Conv1D weights. */
function expectedValues(minName: string): Float32Array {
  const raw = rawTensor(minName.replace(/^transformer\./, ''));
  if (/(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/.test(minName)) {
    return transpose(raw.values, raw.shape[0], raw.shape[1]);
  }
  return raw.values;
}

function readAllAndCompare(ck: Checkpoint): void {
  for (const [name, shape] of minGPTParams()) {
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
    ck.readInto(name, out, shape);
    sameF32(out, expectedValues(name), name);
  }
}

test('Checkpoint.open reads config.json: n_layer 3, n_head 4, n_embd 32, vocab 50257, block_size 64 (n_positions), eps 1e-5', () => {
  const ck = Checkpoint.open(FIXTURE);
  assert.is(ck.file, MODEL_FILE);
  const { raw, ...hp } = ck.hparams;
  assert.equal(hp, { n_layer: 3, n_head: 4, n_embd: 32, vocab_size: 50257, block_size: 64, layer_norm_epsilon: 1e-5 });
  assert.is(raw.activation_function, 'gelu_new');
  ck.close();
  const byFile = Checkpoint.open(MODEL_FILE); // the .safetensors itself, config.json beside it
  assert.is(byFile.hparams.n_embd, 32);
  byFile.close();
});

test('Checkpoint readInto of a Conv1D weight equals the manual transpose of the stored [in, out] tensor (fixture, no prefix)', () => {
  const ck = Checkpoint.open(FIXTURE);
  const stored = rawTensor('h.1.attn.c_attn.weight'); // [32, 96] = [in, out]
  assert.equal(stored.shape, [32, 96]);
  const out = new Float32Array(96 * 32);
  ck.readInto('transformer.h.1.attn.c_attn.weight', out, [96, 32]);
  sameF32(out, transpose(stored.values, 32, 96), 'c_attn');
  // spot check one element by index arithmetic: out[o=5, i=7] = stored[i=7, o=5]
  assert.is(out[5 * 32 + 7], stored.values[7 * 96 + 5]);
  const fc = rawTensor('h.0.mlp.c_proj.weight'); // [128, 32]
  const out2 = new Float32Array(32 * 128);
  ck.readInto('transformer.h.0.mlp.c_proj.weight', out2, [32, 128]);
  sameF32(out2, transpose(fc.values, 128, 32), 'c_proj');
  ck.close();
});

test('Checkpoint transposes in bands through a small scratch buffer with the same result (scratch of 1, 100, 1000 elements)', () => {
  for (const scratchElements of [1, 100, 1000]) {
    const ck = Checkpoint.open(FIXTURE, { scratchElements });
    for (const name of ['transformer.h.2.mlp.c_fc.weight', 'transformer.h.2.mlp.c_proj.weight', 'transformer.h.0.attn.c_attn.weight']) {
      const shape = minGPTParams().find(([n]) => n === name)![1];
      const out = new Float32Array(shape[0] * shape[1]);
      ck.readInto(name, out, shape);
      sameF32(out, expectedValues(name), `${name} with scratch ${scratchElements}`);
    }
    ck.close();
  }
});

test('transposeBand (the fast 8-column kernel) matches the naive transpose on awkward sizes (1, 7, 9, 65, 130) and band splits', () => {
  for (const [I, O] of [[1, 1], [1, 9], [7, 65], [65, 7], [130, 17], [9, 8]]) {
    const src = Float32Array.from({ length: I * O }, (_, k) => k + 0.5);
    const expected = transpose(src, I, O);
    for (const rowsPerBand of [1, 3, 64, I]) {
      const out = new Float32Array(I * O).fill(NaN);
      for (let i0 = 0; i0 < I; i0 += rowsPerBand) {
        const rows = Math.min(rowsPerBand, I - i0);
        transposeBand(out, src.subarray(i0 * O, (i0 + rows) * O), I, O, i0, rows);
      }
      sameF32(out, expected, `I=${I} O=${O} band=${rowsPerBand}`);
    }
  }
});

test('Checkpoint without the transformer. prefix (openai-community/gpt2 layout): every minGPT parameter reads as expected, nothing unused', () => {
  const ck = Checkpoint.open(FIXTURE);
  assert.ok(ck.has('transformer.wte.weight'));
  assert.ok(ck.has('transformer.h.2.mlp.c_proj.bias'));
  readAllAndCompare(ck);
  assert.equal(ck.unusedTensors(), []); // the h.{i}.attn.bias buffers do not count
  ck.close();
});

test('Checkpoint with the transformer. prefix (GPT2LMHeadModel layout): the same values, nothing unused', () => {
  const ck = Checkpoint.open(variant({ prefix: true }));
  assert.ok(ck.has('transformer.h.0.attn.c_attn.weight'));
  readAllAndCompare(ck);
  assert.equal(ck.unusedTensors(), []);
  ck.close();
});

test('Checkpoint with and without the attn.bias buffers: both load, buffers never reported as unused', () => {
  const without = Checkpoint.open(variant({ dropBuffers: true }));
  readAllAndCompare(without);
  assert.equal(without.unusedTensors(), []);
  without.close();
  const withBuffers = Checkpoint.open(variant({ prefix: true, extra: 'transformer.h.0.attn.masked_bias' }));
  readAllAndCompare(withBuffers);
  assert.equal(withBuffers.unusedTensors(), []);
  withBuffers.close();
});

test('Checkpoint lm_head.weight: absent in the fixture (tied) -> has() false; present -> has() true and read as stored', () => {
  const tied = Checkpoint.open(FIXTURE);
  assert.not.ok(tied.has('lm_head.weight'));
  tied.close();
  const head = Float32Array.from({ length: 50257 * 32 }, (_, i) => (i % 1000) / 1000);
  const ck = Checkpoint.open(variant({ prefix: true, lmHead: head }));
  assert.ok(ck.has('lm_head.weight'));
  readAllAndCompare(ck);
  assert.equal(ck.unusedTensors(), ['lm_head.weight']);
  const out = new Float32Array(50257 * 32);
  ck.readInto('lm_head.weight', out, [50257, 32]); // a Linear: not transposed
  sameF32(out, head, 'lm_head');
  assert.equal(ck.unusedTensors(), []);
  ck.close();
});

test('Checkpoint.unusedTensors lists a tensor the model never read', () => {
  const ck = Checkpoint.open(variant({ extra: 'h.0.attn.surprise' }));
  readAllAndCompare(ck);
  assert.equal(ck.unusedTensors(), ['h.0.attn.surprise']);
  ck.close();
});

test('Checkpoint.readInto refuses a shape the model asks for that the file does not have, naming the tensor and both shapes', () => {
  const ck = Checkpoint.open(FIXTURE);
  refuses(() => ck.readInto('transformer.wte.weight', new Float32Array(50257 * 48), [50257, 48]),
    CheckpointError, MODEL_FILE, "'transformer.wte.weight'", '[50257, 32]', '[50257, 48]');
  // Conv1D: the model asks for (out, in) = [144, 48], i.e. [48, 144] stored; the file has [32, 96]
  refuses(() => ck.readInto('transformer.h.0.attn.c_attn.weight', new Float32Array(144 * 48), [144, 48]),
    CheckpointError, MODEL_FILE, "'transformer.h.0.attn.c_attn.weight'", '[32, 96]', '[144, 48]', '[48, 144]');
  ck.close();
});

test('Checkpoint.open compares config.json with the tensor shapes before anything is allocated, naming the wrong field', () => {
  // the fixture's tensors: wte [50257, 32], wpe [64, 32], blocks h.0 .. h.2
  const dir = tmpDir();
  fs.copyFileSync(MODEL_FILE, path.join(dir, 'model.safetensors'));
  const cfg = path.join(dir, 'config.json');
  const file = path.join(dir, 'model.safetensors');
  const cases: [object, string[]][] = [
    [{ n_embd: 48 }, ["'n_embd' is 48", "'wte.weight'", '[50257, 32]']],
    [{ vocab_size: 1e12 }, ["'vocab_size' is 1000000000000", 'out of range']], // refused by range before the shapes
    [{ vocab_size: 50000 }, ["'vocab_size' is 50000", "'wte.weight'", '[50257, 32]']],
    [{ n_positions: 1024, n_ctx: 1024 }, ["'n_positions' is 1024", "'wpe.weight'", '[64, 32]']],
    [{ n_layer: 1e6 }, ["'n_layer' is 1000000", 'out of range']],
    [{ n_layer: 12 }, ["'n_layer' is 12", '3 blocks (h.0 .. h.2)', 'no tensor of block h.3']],
    [{ n_layer: 2 }, ["'n_layer' is 2", '3 blocks', "tensors past block h.1: 'h.2.ln_1.weight', 'h.2.attn.bias', 'h.2.ln_1.bias' (and 10 more)"]],
  ];
  for (const [change, needles] of cases) {
    fs.writeFileSync(cfg, JSON.stringify({ ...CONFIG, ...change }));
    refuses(() => Checkpoint.open(dir), CheckpointError, cfg, ...needles);
  }
  fs.writeFileSync(cfg, JSON.stringify({ ...CONFIG, n_layer: 12 }));
  refuses(() => Checkpoint.open(dir), CheckpointError, file); // the message names both files
});

test('checkConfigAgainstTensors refuses a model larger than the available memory, with its size', async () => {
  const { checkConfigAgainstTensors } = await import('../io/checkpoint.ts');
  const ck = Checkpoint.open(FIXTURE);
  const st = (ck as unknown as { st: { tensors: Map<string, any> } }).st;
  // the fixture: (50257 + 64) * 32 + 3 * (12 * 32^2 + 13 * 32) + 2 * 32 = 1,648,448 floats = 6,593,792 bytes (as the fixture holds)
  checkConfigAgainstTensors(ck.hparams, st.tensors, 'c.json', 'm.st', 6_593_792);
  refuses(() => checkConfigAgainstTensors(ck.hparams, st.tensors, 'c.json', 'm.st', 6_593_791), CheckpointError, 'm.st', 'memory');
  ck.close();
});

test('config.json that is JSON but not a GPT-2 config is refused by name: an error page, another model_type, another activation', () => {
  const dir = tmpDir();
  fs.copyFileSync(MODEL_FILE, path.join(dir, 'model.safetensors'));
  const cfg = path.join(dir, 'config.json');
  const cases: [object, string[]][] = [
    [{ error: 'Invalid credentials in Authorization header' }, ['not a GPT-2 config.json', 'Invalid credentials']],
    [{ ...CONFIG, model_type: 'llama' }, ["'model_type'", '"llama"']],
    [{ ...CONFIG, activation_function: 'relu' }, ["'activation_function'", '"relu"', 'gelu_new']],
    [{ ...CONFIG, n_head: '4' }, ["'n_head' must be a positive integer", '"4"']],
    [{ ...CONFIG, n_head: 0 }, ["'n_head' must be a positive integer"]],
    [{ ...CONFIG, layer_norm_epsilon: -1 }, ["'layer_norm_epsilon'"]],
    [{ ...CONFIG, n_inner: 100 }, ["'n_inner'", '128']],
    [{ ...CONFIG, scale_attn_by_inverse_layer_idx: true }, ["'scale_attn_by_inverse_layer_idx'"]],
    [{ ...CONFIG, n_ctx: 1024 }, ["'n_ctx'", "'n_positions' 64"]],
  ];
  for (const [body, needles] of cases) {
    fs.writeFileSync(cfg, JSON.stringify(body));
    refuses(() => Checkpoint.open(dir), CheckpointError, cfg, ...needles);
  }
  // GPT-2's own alternatives are fine: no model_type, n_inner null, the other name of the same GELU
  fs.writeFileSync(cfg, JSON.stringify({ ...CONFIG, model_type: undefined, n_inner: null, activation_function: 'gelu_pytorch_tanh' }));
  Checkpoint.open(dir).close();
});

test('Checkpoint refuses a missing tensor, naming it', () => {
  const ck = Checkpoint.open(FIXTURE);
  refuses(() => ck.readInto('transformer.h.3.ln_1.weight', new Float32Array(32), [32]), CheckpointError, MODEL_FILE, "'transformer.h.3.ln_1.weight'", 'missing');
  refuses(() => ck.readInto('lm_head.weight', new Float32Array(50257 * 32), [50257, 32]), CheckpointError, "'lm_head.weight'", 'missing');
  ck.close();
});

test('Checkpoint.open refuses a missing config.json, naming the path', () => {
  const dir = tmpDir();
  fs.copyFileSync(MODEL_FILE, path.join(dir, 'model.safetensors'));
  refuses(() => Checkpoint.open(dir), CheckpointError, path.join(dir, 'config.json'), 'missing config.json');
  refuses(() => Checkpoint.open(path.join(dir, 'model.safetensors')), CheckpointError, path.join(dir, 'config.json'));
});

test('Checkpoint.open refuses an unparsable config, a missing hparam, and n_embd not divisible by n_head', () => {
  const dir = tmpDir();
  fs.copyFileSync(MODEL_FILE, path.join(dir, 'model.safetensors'));
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, '{"n_layer": 3,');
  refuses(() => Checkpoint.open(dir), CheckpointError, cfg, 'not valid JSON');
  const { n_positions, ...noPositions } = CONFIG;
  fs.writeFileSync(cfg, JSON.stringify(noPositions));
  refuses(() => Checkpoint.open(dir), CheckpointError, cfg, "'n_positions'");
  fs.writeFileSync(cfg, JSON.stringify({ ...CONFIG, n_head: 5 }));
  refuses(() => Checkpoint.open(dir), CheckpointError, cfg, 'n_embd 32', 'n_head 5');
});

test('Checkpoint.open wraps a SafetensorsError (truncated model.safetensors) in a CheckpointError', () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'model.safetensors'), RAW.subarray(0, 6_000_000));
  fs.copyFileSync(path.join(FIXTURE, 'config.json'), path.join(dir, 'config.json'));
  const msg = refuses(() => Checkpoint.open(dir), CheckpointError, path.join(dir, 'model.safetensors'), 'truncated');
  assert.ok(msg.length > 0);
  refuses(() => Checkpoint.open(path.join(dir, 'nothing-here')), CheckpointError, 'nothing-here');
});

test('Checkpoint reads F16 weights too, transposing Conv1D after conversion', () => {
  const dir = tmpDir();
  const tensors = fixtureTensors();
  for (const t of Object.values(tensors)) t.dtype = 'F16';
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
  const ck = Checkpoint.open(dir, { scratchElements: 500 });
  const out = new Float32Array(128 * 32);
  ck.readInto('transformer.h.1.mlp.c_fc.weight', out, [128, 32]);
  const expected = expectedValues('transformer.h.1.mlp.c_fc.weight');
  // float16 keeps 11 significant bits: relative error at most 2^-11 (the fixture's values are normal in F16)
  for (let i = 0; i < out.length; i++) assert.ok(Math.abs(out[i] - expected[i]) <= Math.abs(expected[i]) * 2 ** -11 + 1e-7, `element ${i}`);
  ck.close();
});

// ------------------------------------------------------------------------------------------------
// issue 18: what a file holds reaches the terminal escaped and cut; paths that are no file; write failures

const ESC_NAME = '\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202eevil';

test('a tensor name with escape sequences is shown escaped, never raw (item 12)', () => {
  const p = handMade({ [ESC_NAME]: { dtype: 'F32', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
  const msg = refuses(() => openSafetensors(p), SafetensorsError, "tensor '\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eevil'");
  assert.not.match(msg, /[\u0000-\u001f\u007f-\u009f\u202e]/, 'no control character reaches the message');
  // and through the checkpoint loader, which lists the tensors GPT-2 has no place for
  const dir = variant({ extra: ESC_NAME });
  const ck = refuses(() => loadGPT(dir), CheckpointError, 'no place for', "'\\x1b]0;pwned");
  assert.not.match(ck, /[\u0000-\u001f\u007f-\u009f\u202e]/);
});

test('a 5 MB string in a header is cut in the message, with how much was left out (item 12)', () => {
  const big = 'x'.repeat(5_000_000);
  const p = handMade({ a: { dtype: 'F32', shape: big, data_offsets: [0, 4] } }, new Uint8Array(4));
  const msg = refuses(() => openSafetensors(p), SafetensorsError, 'shape must be a list of non-negative integers, got "xxx');
  assert.ok(msg.length < 1000, `the message is ${msg.length} characters`);
  const named = handMade({ [big]: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
  const msg2 = refuses(() => openSafetensors(named), SafetensorsError, '… (4999880 more characters)', "unsupported dtype 'F64'");
  assert.ok(msg2.length < 1000, `the message is ${msg2.length} characters`);
});

test('a header nested 200,000 levels deep is refused with a message, not a stack overflow (item 9)', () => {
  const deep = '['.repeat(200_000) + ']'.repeat(200_000);
  const p = handMade(`{"a":{"dtype":${deep},"shape":[1],"data_offsets":[0,4]}}`, new Uint8Array(4));
  refuses(() => openSafetensors(p), SafetensorsError, 'dtype missing or not a string: [[[[[…]]]]]');
});

test('model.safetensors that is a folder is refused by what it is, not with a raw EISDIR (item 9)', () => {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'model.safetensors'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
  refuses(() => Checkpoint.open(dir), CheckpointError, `${path.join(dir, 'model.safetensors')} is a folder, not a safetensors file`);
  refuses(() => openSafetensors(dir), SafetensorsError, 'is a folder');
});

test('writeSafetensors: a full disk or a missing folder is a SafetensorsError naming the file; nothing is left (item 9)', () => {
  const dir = tmpDir();
  const target = path.join(dir, 'cache.safetensors');
  const t = { a: { dtype: 'F32' as const, shape: [2], data: new Float32Array([1, 2]) } };
  const realWrite = fs.writeSync;
  fs.writeSync = (() => { throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); }) as typeof fs.writeSync;
  try {
    refuses(() => writeSafetensors(target, t), SafetensorsError, `${target}: cannot write (ENOSPC`, 'nothing was written');
  } finally {
    fs.writeSync = realWrite;
  }
  assert.equal(fs.readdirSync(dir), [], 'no temporary file, no half-written cache');
  refuses(() => writeSafetensors(path.join(dir, 'gone', 'cache.safetensors'), t), SafetensorsError, 'cannot write (ENOENT');
});

test.run();
