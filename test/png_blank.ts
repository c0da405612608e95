/**
 * How much of a chart's PNG is blank, read from the PNG's pixels.
 *
 * decodePng: the 8-bit RGB/RGBA, non-interlaced PNGs resvg writes (IHDR, IDAT inflated with
 * node:zlib, the five row filters undone), as RGBA pixels.
 *
 * blankShare: the share of the picture that lies beyond the drawing. A pixel is ink when any of its
 * channels is darker than 250 (the lightest cell colours, #f7f7f7, are ink; anti-aliasing around
 * white is not). A pixel is blank when no ink lies to its right on its row, or none below it in its
 * column: the space right of a short line of text or of a narrow panel, beside or under a legend,
 * under a short panel, and the margins. Space between the marks of a plot (between grid lines,
 * between bars) is not blank: the plot's own ink lies beyond it. "No more than a quarter of the
 * PNG blank" (issue #19) is blankShare(png) ≤ 0.25.
 */
import zlib from 'node:zlib';

export interface Image {
  width: number;
  height: number;
  /** RGBA, row after row */
  pixels: Uint8Array;
}

export function decodePng(png: Uint8Array): Image {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let pos = 8, width = 0, height = 0, channels = 0;
  const idat: Buffer[] = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), type = buf.toString('latin1', pos + 4, pos + 8), data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = data.subarray(8, 13);
      channels = colour === 6 ? 4 : colour === 2 ? 3 : 0;
      if (depth !== 8 || !channels || interlace) throw new Error(`PNG: only 8-bit RGB/RGBA, not interlaced (depth ${depth}, colour type ${colour})`);
    } else if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = new Uint8Array(width * height * 4);
  let prev = new Uint8Array(stride), row = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0, b = prev[i], c = i >= channels ? prev[i - channels] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) {
        const e = a + b - c, pa = Math.abs(e - a), pb = Math.abs(e - b), pc = Math.abs(e - c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[i] = (line[i] + p) & 255;
    }
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < 3; k++) out[(y * width + x) * 4 + k] = row[x * channels + k];
      out[(y * width + x) * 4 + 3] = channels === 4 ? row[x * channels + 3] : 255;
    }
    [prev, row] = [row, prev];
  }
  return { width, height, pixels: out };
}

/** Darker than this in any channel is ink (on a white, opaque background). */
const INK_BELOW = 250;

/**
 * Rows (columns) within this many pixels of one another count as one band: the leading between two
 * lines of text, the gap between a legend's entries or between the letters of a word is part of
 * the text, not blank space (4 px of the chart, 8 px of the PNG drawn at twice the size).
 */
const GAP = 8;

/** For each index, the farthest reach among its neighbours within `gap` on either side. */
function reach(last: Int32Array, gap: number): Int32Array {
  const out = new Int32Array(last.length);
  for (let i = 0; i < last.length; i++) {
    let m = -1;
    for (let j = Math.max(0, i - gap); j <= Math.min(last.length - 1, i + gap); j++) m = Math.max(m, last[j]);
    out[i] = m;
  }
  return out;
}

export function blankShare(img: Image): number {
  const { width: w, height: h, pixels } = img;
  const ink = (x: number, y: number) => {
    const i = (y * w + x) * 4;
    return pixels[i] < INK_BELOW || pixels[i + 1] < INK_BELOW || pixels[i + 2] < INK_BELOW;
  };
  const lastInRow = new Int32Array(h).fill(-1), lastInColumn = new Int32Array(w).fill(-1);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (ink(x, y)) { lastInRow[y] = x; lastInColumn[x] = y; }
  const rowReach = reach(lastInRow, GAP), columnReach = reach(lastInColumn, GAP);
  let blank = 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (x > rowReach[y] || y > columnReach[x]) blank++;
  return blank / (w * h);
}
