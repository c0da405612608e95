/**
 * Reading and writing the safetensors file format (https://github.com/huggingface/safetensors).
 * Nothing in here knows about GPT: see checkpoint.ts for that.
 *
 * The format is simple on purpose:
 *
 *   [8 bytes]  N, the header length, a little-endian unsigned 64-bit integer
 *   [N bytes]  a JSON object: { "<name>": { "dtype": "F32", "shape": [768, 2304],
 *                                           "data_offsets": [begin, end] }, ...,
 *                               "__metadata__": { "<key>": "<string>" } }   (optional)
 *   [rest]     the data section; a tensor's bytes are data[begin:end], row-major, little-endian
 *
 * We check the whole header before handing out a single number, so a damaged or half-downloaded
 * file is refused with a message saying what is wrong, instead of producing a model that quietly
 * computes garbage. Tensors are then read one at a time with positional reads straight into the
 * caller's Float32Array, so loading GPT-2 small (500 MB) costs 500 MB of memory, not twice that.
 */
import fs from 'node:fs';
import os from 'node:os';
import { notRegularFile } from './files.ts';
import { discardTemporary, installTemporary, temporaryFor } from './output.ts';
import { preview, quoted } from './show.ts';

export class SafetensorsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SafetensorsError';
  }
}

/** The dtypes we read. Everything is converted to float32 on the way in. */
export type Dtype = 'F32' | 'F16' | 'BF16';
const BYTES_PER_ELEMENT: Record<Dtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** dtypes the format defines that we do not read; named so the error message can say "F64" is real but unsupported. */
const OTHER_DTYPES = ['F64', 'F8_E4M3', 'F8_E5M2', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL'];

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** byte offsets into the data section, [begin, end) */
  begin: number;
  end: number;
}

/** Headers of real checkpoints are a few hundred kB at most; anything this big is damage, not a header. */
const MAX_HEADER_BYTES = 100 * 1000 * 1000;
/** Size of the reusable buffer that F16/BF16 data is converted through. */
const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/** fs.readSync/writeSync take at most 2 GiB - 1 per call; stay well below. */
const MAX_IO_BYTES = 1 << 30;

function checkLittleEndian(): void {
  // Float32Array and Uint16Array use the machine's byte order, the file is little-endian.
  if (os.endianness() !== 'LE') throw new SafetensorsError('safetensors: big-endian machines are not supported');
}

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const showShape = (shape: readonly unknown[]) => `[${shape.join(', ')}]`;

// ---------------------------------------------------------------------------------------------
// half-precision conversions

let F16_TABLE: Float32Array | null = null;
/** All 65536 float16 bit patterns as float32: decoding is then one table lookup per element. */
function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24; // zero and subnormals: 0.mant * 2^-14
    else if (exp === 0x1f) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return (F16_TABLE = t);
}

/** float32 bit pattern -> float16 bit pattern, rounding to nearest, ties to even (as numpy/PyTorch do). */
export function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const mant = f & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00; // NaN (kept quiet) or Inf
  const e = exp - 127 + 15; // the exponent re-biased for float16
  if (e >= 0x1f) return sign | 0x7c00; // too large: Inf
  if (e >= 1) {
    // normal float16: keep the top 10 mantissa bits, round on the 13 dropped ones.
    // A carry out of the mantissa correctly bumps the exponent (and 0x7bff + 1 is Inf).
    let h = sign | (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    return h;
  }
  // subnormal float16: the value in units of 2^-24 is (1.mant * 2^23) >> s
  const s = 14 - e;
  if (s > 24) return sign; // below half the smallest subnormal: rounds to zero
  const m = mant | 0x800000;
  let q = m >>> s;
  const rem = m & ((1 << s) - 1);
  const half = 1 << (s - 1);
  if (rem > half || (rem === half && q & 1)) q++;
  return sign | q;
}

/** float32 bit pattern -> bfloat16 bit pattern (the top 16 bits), rounding to nearest, ties to even. */
export function f32BitsToBF16Bits(f: number): number {
  if ((f & 0x7f800000) === 0x7f800000 && f & 0x7fffff) return ((f >>> 16) | 0x40) & 0xffff; // NaN stays a (quiet) NaN
  const bias = 0x7fff + ((f >>> 16) & 1);
  return Math.floor(((f >>> 0) + bias) / 65536) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// reading

export interface OpenOptions {
  /** bytes of the scratch buffer used to convert F16/BF16 (default 4 MiB); tests make it small */
  chunkBytes?: number;
}

export class SafetensorsFile {
  readonly path: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  /** absolute file position of the data section */
  readonly dataStart: number;
  private fd: number | null;
  private scratch: ArrayBuffer | null = null;
  private readonly chunkBytes: number;

  constructor(path: string, fd: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string>,
              dataStart: number, chunkBytes: number) {
    this.path = path;
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
    this.dataStart = dataStart;
    this.chunkBytes = chunkBytes;
  }

  private info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(`${this.path}: no tensor named ${quoted(name)}`);
    return t;
  }

  /** Reads the whole tensor `name` into `out` (which must have exactly its number of elements), as float32. */
  readF32(name: string, out: Float32Array): void {
    const t = this.info(name);
    const n = product(t.shape);
    if (out.length !== n) {
      throw new SafetensorsError(`${this.path}: tensor ${quoted(name)} has ${n} elements (shape ${showShape(t.shape)}) but the destination holds ${out.length}`);
    }
    this.readF32Range(name, 0, out);
  }

  /** Reads elements [start, start + out.length) of the flattened tensor `name` into `out`, as float32. */
  readF32Range(name: string, start: number, out: Float32Array): void {
    const t = this.info(name);
    const n = product(t.shape);
    if (!Number.isInteger(start) || start < 0 || start + out.length > n) {
      throw new SafetensorsError(`${this.path}: tensor ${quoted(name)}: elements [${start}, ${start + out.length}) are outside its ${n} elements`);
    }
    const fd = this.openFd(name);
    const bpe = BYTES_PER_ELEMENT[t.dtype];
    const pos = this.dataStart + t.begin + start * bpe;
    if (t.dtype === 'F32') {
      // straight from the file into the destination's bytes: no copy, no temporary
      this.readExactly(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), pos, name);
      return;
    }
    // F16 / BF16: through a reusable scratch buffer, chunk by chunk
    const scratch = (this.scratch ??= new ArrayBuffer(this.chunkBytes));
    const perChunk = Math.max(1, Math.floor(this.chunkBytes / 2));
    const halves = new Uint16Array(scratch);
    const bytes = new Uint8Array(scratch);
    const table = t.dtype === 'F16' ? f16Table() : null;
    const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length); // for BF16: float32 bits = bf16 << 16
    for (let i = 0; i < out.length; i += perChunk) {
      const m = Math.min(perChunk, out.length - i);
      this.readExactly(fd, bytes.subarray(0, 2 * m), pos + 2 * i, name);
      if (table) for (let j = 0; j < m; j++) out[i + j] = table[halves[j]];
      else for (let j = 0; j < m; j++) outBits[i + j] = halves[j] << 16;
    }
  }

  private openFd(name: string): number {
    if (this.fd === null) throw new SafetensorsError(`${this.path}: cannot read tensor ${quoted(name)}: the file was closed`);
    return this.fd;
  }

  private readExactly(fd: number, dst: Uint8Array, pos: number, name: string): void {
    let done = 0;
    while (done < dst.length) {
      const len = Math.min(dst.length - done, MAX_IO_BYTES);
      const got = fs.readSync(fd, dst, done, len, pos + done);
      if (got === 0) {
        throw new SafetensorsError(`${this.path}: tensor ${quoted(name)}: unexpected end of file at byte ${pos + done} (was the file truncated after it was opened?)`);
      }
      done += got;
    }
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    this.scratch = null;
  }
}

/**
 * Opens a .safetensors file and validates its header against the file: every tensor's dtype,
 * shape and byte range, that the byte ranges do not overlap, and that the file is complete.
 * Throws SafetensorsError naming the file (and the tensor at fault) otherwise.
 */
export function openSafetensors(path: string, opts: OpenOptions = {}): SafetensorsFile {
  checkLittleEndian();
  let fd: number;
  try {
    // a folder would give EISDIR, and opening a FIFO waits for a writer forever
    const what = notRegularFile(fs.statSync(path));
    if (what) throw new SafetensorsError(`${path} is ${what}, not a safetensors file`);
    fd = fs.openSync(path, 'r');
  } catch (err) {
    if (err instanceof SafetensorsError) throw err;
    throw new SafetensorsError(`${path}: cannot open: ${(err as Error).message}`, { cause: err });
  }
  try {
    const { tensors, metadata, dataStart } = readHeader(path, fd);
    return new SafetensorsFile(path, fd, tensors, metadata, dataStart, opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function readHeader(path: string, fd: number) {
  const fail = (msg: string): never => { throw new SafetensorsError(`${path}: ${msg}`); };
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < 8) fail(`not a safetensors file: it is ${fileSize} bytes long, shorter than the 8-byte header length`);

  const lenBuf = Buffer.alloc(8);
  fs.readSync(fd, lenBuf, 0, 8, 0);
  const n64 = lenBuf.readBigUInt64LE(0);
  if (n64 > BigInt(fileSize - 8)) {
    fail(`header length ${n64} is larger than the rest of the file (${fileSize - 8} bytes): not a safetensors file, or truncated`);
  }
  const n = Number(n64);
  if (n > MAX_HEADER_BYTES) fail(`header length ${n} is absurd (more than ${MAX_HEADER_BYTES} bytes): not a safetensors file`);

  const headerBuf = Buffer.alloc(n);
  if (fs.readSync(fd, headerBuf, 0, n, 8) !== n) fail('could not read the header');
  // like the reference library: the header is UTF-8 (no byte quietly replaced) and starts with '{'
  let headerText = '';
  try {
    headerText = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBuf);
  } catch {
    fail('header is not valid UTF-8: not a safetensors file, or damaged');
  }
  if (!headerText.startsWith('{')) {
    fail(`header does not start with '{' (it starts with ${preview(headerText.slice(0, 16))}): not a safetensors file, or the header length is wrong`);
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    fail(`header is not valid JSON (${(err as Error).message}): not a safetensors file, or damaged`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail(`header is not a JSON object: not a safetensors file`);
  }
  // JSON.parse keeps the last of two equal keys without a word; the reference library refuses them.
  const dup = duplicateKey(headerText);
  if (dup) fail(`header names ${dup} twice: which entry is meant is ambiguous, so the file is refused`);

  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)
          || !Object.values(value).every((v) => typeof v === 'string')) {
        fail(`__metadata__ must be an object of strings, got ${preview(value)}`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const bad = (msg: string): never => fail(`tensor ${quoted(name)}: ${msg}`);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) bad(`entry is not an object: ${preview(value)}`);
    const { dtype, shape, data_offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string') bad(`dtype missing or not a string: ${preview(dtype)}`);
    if (!Object.hasOwn(BYTES_PER_ELEMENT, dtype as string)) {
      const known = OTHER_DTYPES.includes(dtype as string) ? 'unsupported' : 'unknown';
      bad(`${known} dtype ${quoted(dtype as string)} (we read F32, F16 and BF16; convert the checkpoint to one of those)`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`shape must be a list of non-negative integers, got ${preview(shape)}`);
    }
    if (!Array.isArray(data_offsets) || data_offsets.length !== 2
        || !data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0) || data_offsets[0] > data_offsets[1]) {
      bad(`data_offsets must be [begin, end] with 0 <= begin <= end, got ${preview(data_offsets)}`);
    }
    const [begin, end] = data_offsets as number[];
    const bpe = BYTES_PER_ELEMENT[dtype as Dtype];
    const expected = product(shape as number[]) * bpe;
    if (end - begin !== expected) {
      bad(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but shape ${showShape(shape as number[])} of ${dtype} needs ${expected}`);
    }
    tensors.set(name, { dtype: dtype as Dtype, shape: shape as number[], begin, end });
  }

  // Is every tensor inside the data section? If the tensors tile [0, maxEnd] without gaps the header
  // is self-consistent and the file itself is short: a truncated copy or an incomplete download.
  const byBegin = [...tensors.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let maxEnd = 0;
  for (const [, t] of byBegin) maxEnd = Math.max(maxEnd, t.end);
  if (maxEnd > dataSize) {
    let contiguous = true;
    let cursor = 0;
    for (const [, t] of byBegin) {
      if (t.begin !== cursor) contiguous = false;
      cursor = Math.max(cursor, t.end);
    }
    const [cutName, cut] = byBegin.find(([, t]) => t.end > dataSize)!;
    if (contiguous) {
      fail(`file is truncated: it is ${fileSize} bytes but its header describes ${dataStart + maxEnd} bytes `
        + `(tensor ${quoted(cutName)} [${cut.begin}, ${cut.end}) is cut off at ${dataSize}); an incomplete download or copy?`);
    }
    fail(`tensor ${quoted(cutName)}: data_offsets [${cut.begin}, ${cut.end}] out of range of the data section (${dataSize} bytes)`);
  }
  // Like the reference library, the tensors must tile the data section exactly: sorted by offset,
  // each one starts where the previous one ended, and the last one ends at the end of the file.
  // A hole or trailing bytes mean the offsets (or the header length) are not what the writer meant,
  // e.g. a header length a few bytes short still parses (the header ends in padding spaces) but
  // then every tensor would be read a few bytes off.
  let cursor = 0;
  let prev: [string, TensorInfo] | null = null;
  for (const entry of byBegin) {
    const [name, t] = entry;
    if (t.begin < cursor && prev) {
      fail(`tensors ${quoted(prev[0])} [${prev[1].begin}, ${prev[1].end}) and ${quoted(name)} [${t.begin}, ${t.end}) overlap`);
    }
    if (t.begin > cursor) {
      fail(`bytes [${cursor}, ${t.begin}) of the data section belong to no tensor (a hole before tensor ${quoted(name)}): `
        + `the header's data_offsets do not describe this file`);
    }
    cursor = t.end;
    prev = entry;
  }
  if (cursor !== dataSize) {
    const header = `the header length (${n} bytes) is wrong, or `;
    fail(`the last ${dataSize - cursor} bytes of the file belong to no tensor (the tensors cover ${cursor} of the `
      + `${dataSize}-byte data section): ${dataSize - cursor < 8 ? header : ''}the file was damaged or appended to`);
  }
  return { tensors, metadata, dataStart };
}

/**
 * The first key that appears twice in one object of `json` (already known to be valid JSON), as
 * "'a'" or "'a' > 'dtype'" for a nested one; null when there is none. A small scanner: it only
 * needs to tell strings, object braces and the ':' after a key apart.
 */
export function duplicateKey(json: string): string | null {
  const stack: { keys: Set<string> | null; owner: string }[] = []; // keys null for an array
  let lastString: string | null = null;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      lastString = JSON.parse(json.slice(i, j + 1)) as string;
      i = j;
    } else if (c === ':') {
      const top = stack[stack.length - 1];
      const key = lastString!;
      if (top.keys!.has(key)) return [...stack.slice(1).map((s) => s.owner), key].map((k) => quoted(k)).join(' > ');
      top.keys!.add(key);
    } else if (c === '{' || c === '[') {
      const top = stack[stack.length - 1];
      stack.push({ keys: c === '{' ? new Set() : null, owner: top?.keys ? lastString ?? '' : top?.owner ?? '' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// writing

export interface TensorToWrite {
  dtype: Dtype;
  shape: number[];
  data: Float32Array;
}

/**
 * Writes `tensors` (float32 data, stored as `dtype`) to a safetensors file, in the order given.
 * The header is padded with spaces to a multiple of 8 bytes, as the format allows, so the data
 * section is aligned. Written under a temporary name first and renamed, so `path` is never half-written.
 */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  checkLittleEndian();
  const fail = (msg: string): never => { throw new SafetensorsError(`${path}: ${msg}`); };
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') fail(`__metadata__ value for '${k}' must be a string`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') fail(`'__metadata__' is reserved and cannot be a tensor name`);
    if (!Object.hasOwn(BYTES_PER_ELEMENT, t.dtype)) fail(`tensor '${name}': cannot write dtype '${t.dtype}' (F32, F16 or BF16)`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor '${name}': bad shape ${showShape(t.shape)}`);
    if (t.data.length !== product(t.shape)) {
      fail(`tensor '${name}': shape ${showShape(t.shape)} has ${product(t.shape)} elements but the data has ${t.data.length}`);
    }
    const nbytes = t.data.length * BYTES_PER_ELEMENT[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  let json = JSON.stringify(header);
  const len = Buffer.byteLength(json);
  json += ' '.repeat((8 - ((8 + len) % 8)) % 8);

  // written under a temporary name (removed if the process ends first), renamed when complete
  const tmp = temporaryFor(path);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'w');
    const head = Buffer.alloc(8 + Buffer.byteLength(json));
    head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
    head.write(json, 8, 'utf8');
    writeAll(fd, head);
    const scratch = new Uint16Array(DEFAULT_CHUNK_BYTES / 2);
    for (const t of Object.values(tensors)) {
      if (t.dtype === 'F32') {
        writeAll(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        continue;
      }
      const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
      const conv = t.dtype === 'F16' ? f32BitsToF16Bits : f32BitsToBF16Bits;
      for (let i = 0; i < bits.length; i += scratch.length) {
        const m = Math.min(scratch.length, bits.length - i);
        for (let j = 0; j < m; j++) scratch[j] = conv(bits[i + j]);
        writeAll(fd, new Uint8Array(scratch.buffer, 0, 2 * m));
      }
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    installTemporary(tmp, path);
  } catch (err) {
    if (fd !== null) try { fs.closeSync(fd); } catch { /* already closed */ }
    discardTemporary(tmp);
    // a full disk, a folder removed meanwhile, no permission: say so, naming the file (nothing is left half-written)
    const code = (err as NodeJS.ErrnoException).code;
    if (code) throw new SafetensorsError(`${path}: cannot write (${code}: ${(err as Error).message}); nothing was written`, { cause: err });
    throw err;
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += fs.writeSync(fd, bytes, done, Math.min(bytes.length - done, MAX_IO_BYTES));
  }
}
