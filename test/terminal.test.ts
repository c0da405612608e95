// cli/terminal.ts: what a newcomer ran into with the terminal heatmap. A 16-colour terminal
// (TERM=xterm) gets colours of its own instead of none; a terminal that reports 0 columns, or a
// pipe, is formatted for $COLUMNS or 100 columns; grids too wide for the width are cut into
// blocks that keep their column numbers; a custom colour scale and the one-sided note.
// Expected escape codes are the ANSI standard's (44 blue, 46 cyan, 43 yellow, 41 red background).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  colorDepth, colorNames, displayWidth, formatHeatmap, oneSide, stripAnsi, terminalWidth, wrapText,
} from '../cli/terminal.ts';

const rows = ['layer 0', 'layer 1'];

test('TERM=xterm (Node reports 16 colours): depth 4, and the heatmap uses the basic ANSI backgrounds only', () => {
  const xterm = { isTTY: true, getColorDepth: (env?: Record<string, string | undefined>) => (env?.TERM === 'xterm' ? 4 : 8) };
  const depth = colorDepth(xterm, { TERM: 'xterm' });
  assert.is(depth, 4);
  const out = formatHeatmap([[-2, -0.5, 0, 0.5, 2]], { rowLabels: ['layer 0'], columnLabels: ['a', 'b', 'c', 'd', 'e'], color: depth });
  assert.match(out, '\x1b[44;97m', 'the most negative cell is blue');
  assert.match(out, '\x1b[46;30m', 'a mildly negative cell is cyan');
  assert.match(out, '\x1b[43;30m', 'a mildly positive cell is yellow');
  assert.match(out, '\x1b[41;97m', 'the most positive cell is red');
  assert.not.match(out, /\x1b\[[34]8;[25];/, 'no 256-colour or RGB codes, which a 16-colour terminal cannot show');
  assert.equal(colorNames(4), { negative: 'blue', positive: 'red' });
  assert.equal(colorNames(8), { negative: 'blue', positive: 'orange' });
  assert.is(colorNames(0), null);
});

test('terminalWidth: a terminal reporting 0 columns, or a pipe, falls back to $COLUMNS, then 100', () => {
  assert.is(terminalWidth({ isTTY: true, columns: 0 }, {}), 100);
  assert.is(terminalWidth({ isTTY: true, columns: 0 }, { COLUMNS: '72' }), 72);
  assert.is(terminalWidth({ isTTY: false }, { COLUMNS: '60' }), 60, 'piped output follows $COLUMNS');
  assert.is(terminalWidth({ isTTY: false }, {}), 100);
  assert.is(terminalWidth({ isTTY: true, columns: 132 }, { COLUMNS: '60' }), 132, 'a real terminal width wins');
  assert.is(terminalWidth({ isTTY: false }, { COLUMNS: 'wide' }), 100);
});

test('formatHeatmap with width 0: the cells keep their numbers instead of collapsing', () => {
  const out = formatHeatmap([[1.5, -2.25]], { rowLabels: ['layer 0'], columnLabels: ['A', 'B'], width: 0 });
  assert.match(out, /layer 0\s+\+1\.50\s+-2\.25/);
  const coloured = formatHeatmap([[1.5, -2.25]], { rowLabels: ['layer 0'], columnLabels: ['A', 'B'], width: 0, color: 8 });
  assert.match(stripAnsi(coloured), /layer 0\s+\+1\.50\s+-2\.25/);
});

test('formatHeatmap: plain numbers too wide for the width are cut into blocks, each with its column numbers', () => {
  const T = 30;
  const m = [Array.from({ length: T }, (_, i) => i - 15), Array.from({ length: T }, (_, i) => 15 - i)];
  const out = formatHeatmap(m, { rowLabels: rows, columnLabels: Array(T).fill(' x'), width: 60 });
  for (const line of out.split('\n')) assert.ok(displayWidth(line) <= 60, `${displayWidth(line)}: ${line}`);
  // every column number appears exactly once in the headers, and every value once in the rows
  const headers = out.split('\n').filter((l) => /^\s+\d+(\s+\d+)*$/.test(l)).join(' ');
  const numbers = headers.trim().split(/\s+/).map(Number);
  assert.equal(numbers, Array.from({ length: T }, (_, i) => i));
  assert.is((out.match(/^layer 0/gm) ?? []).length, Math.ceil(T / Math.floor((60 - 8) / 7)), 'one row per block');
  assert.match(out, '-15.00');
  assert.match(out, '+14.00');
});

test('formatHeatmap: one-character colour cells get their column numbers written downwards', () => {
  const T = 120;
  const m = [Array.from({ length: T }, (_, i) => Math.sin(i))];
  const out = formatHeatmap(m, { rowLabels: ['layer 0'], columnLabels: Array(T).fill(' x'), color: 8, width: 100 });
  const lines = out.split('\n').map(stripAnsi);
  for (const line of out.split('\n')) assert.ok(displayWidth(line) <= 100, `${displayWidth(line)} columns`);
  // first block: columns 0..91 (100 − 8 wide), digits of 91 on two lines: tens then units
  const tens = lines[0].slice(8), units = lines[1].slice(8);
  assert.is(units.slice(0, 12), '012345678901');
  assert.is(tens.slice(0, 12), '          11');
  assert.is(units.length, 92);
  // the second block starts at 92 and has three digit lines (up to 119)
  const second = lines.findIndex((l, i) => i > 2 && /^\s+1+$/.test(l));
  assert.ok(second > 0, 'the second block has a hundreds line');
  assert.is(lines[second + 2].slice(8, 12), '2345');
});

test('formatHeatmap: a custom domain (the two unpatched runs) colours from its low to its high end', () => {
  const m = [[-3.6, -3.5, -3.4]];
  const out = formatHeatmap(m, { rowLabels: ['layer 0'], columnLabels: ['a', 'b', 'c'], color: 24, domain: [-3.6, -3.4], domainLabels: ['clean run', 'corrupted run'] });
  assert.match(out, '\x1b[48;2;19;75;133m', 'the low end is the darkest blue');
  assert.match(out, '\x1b[48;2;153;74;7m', 'the high end is the darkest orange');
  assert.match(stripAnsi(out), '-3.60 (clean run)');
  assert.match(stripAnsi(out), '-3.40 (corrupted run)');
  const plain = formatHeatmap(m, { rowLabels: ['layer 0'], columnLabels: ['a', 'b', 'c'], domain: [-3.6, -3.4], domainLabels: ['clean run', 'corrupted run'] });
  assert.match(plain, 'colour scale from -3.60 (clean run) to -3.40 (corrupted run)');
});

test('formatHeatmap: says so when every cell sits on one side of zero', () => {
  const below = formatHeatmap([[-1, -2]], { rowLabels: ['layer 0'], columnLabels: ['a', 'b'], negativeLabel: '␣Jones favoured' });
  assert.match(below, 'note: every cell is below zero (␣Jones favoured)');
  const both = formatHeatmap([[-1, 2]], { rowLabels: ['layer 0'], columnLabels: ['a', 'b'] });
  assert.not.match(both, 'every cell');
  assert.is(oneSide([1, 2, 3]), 'above');
  assert.is(oneSide([-1, 0]), null);
});

test('wrapText: wraps at spaces, indents the continuation', () => {
  assert.equal(wrapText('aaa bbb ccc ddd', 8, '  '), ['aaa bbb', '  ccc', '  ddd']);
});

test.run();
