/**
 * The shape of the code, checked. The folders show the architecture, and imports go one way:
 *
 *   mingpt/   the minGPT port: model, tokenizer, hook points, kernels   imports nothing else
 *   io/       weights on disk and from the Hub, files, progress        may import mingpt/
 *   lens/     the interpretability core                                 may import mingpt/, io/
 *   sweep/    the assignment's block-output sweep and its fast engine   may import the above
 *   cli/      command-line, terminal and chart helpers                  may import the above
 *   generate.ts, assignments/, bench/, conformance/, exercises/: the programs   may import anything above
 *
 * The one exception: `GPT.from_pretrained` imports ../io/load.ts lazily (`await import`), as
 * minGPT imports the transformers library inside that method. Also: no import cycles (type-only
 * imports excepted: they vanish at run time), and the readable kernels import nothing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers.ts';


function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) { if (e.name !== 'node_modules' && !e.name.startsWith('.')) out.push(...tsFiles(rel)); }
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

interface Import { target: string; lazy: boolean }

/** Relative imports of a source text that exist at run time (static `import … from`, `export … from`, `import()`). */
function runtimeImportsOf(file: string, src: string): Import[] {
  const out: Import[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/gm;
  for (const m of src.matchAll(re)) {
    if (m[2]) continue; // `import type … from`: erased
    const spec = m[4] ?? m[5];
    if (m[3] && /^\{[^}]*\}$/.test(m[3].trim()) && m[3].replace(/[{}]/g, '').split(',').map((x) => x.trim()).filter(Boolean).every((x) => x.startsWith('type '))) continue; // `import { type A, type B }`
    out.push({ target: path.normalize(path.join(path.dirname(file), spec)), lazy: m[5] !== undefined });
  }
  return out;
}
const runtimeImports = (file: string) => runtimeImportsOf(file, fs.readFileSync(path.join(ROOT, file), 'utf8'));

/** Every cycle met by a depth-first walk of `graph`, each written a → b → … → a. */
function findCycles(graph: Map<string, string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, stack: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') { cycles.push([...stack.slice(stack.indexOf(f)), f].join(' → ')); return; }
    state.set(f, 'open');
    for (const d of graph.get(f) ?? []) visit(d, [...stack, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  return cycles;
}

const LAYERS = ['mingpt', 'io', 'lens', 'sweep', 'cli'];
/** A file's layer: its top folder's place in LAYERS; the programs come after every folder. */
const layerOf = (f: string) => {
  const i = LAYERS.indexOf(f.split(path.sep)[0]);
  return i < 0 ? LAYERS.length : i;
};
const LAZY_EXCEPTION = { from: path.join('mingpt', 'model.ts'), to: path.join('io', 'load.ts') };
const isException = (from: string, imp: Import) => imp.lazy && from === LAZY_EXCEPTION.from && imp.target === LAZY_EXCEPTION.to;

const files = [...LAYERS, 'assignments', 'bench', 'conformance', 'exercises'].flatMap(tsFiles).concat('generate.ts').filter((f) => fs.existsSync(path.join(ROOT, f)));
const graph = new Map(files.map((f) => [f, runtimeImports(f).filter((d) => !isException(f, d) && files.includes(d.target)).map((d) => d.target)]));

test('no import cycles among the project\'s modules', () => {
  const cycles = findCycles(graph);
  assert.equal(cycles, [], cycles.join('\n'));
});

test('imports go one way: mingpt/ ← io/ ← lens/ ← sweep/ ← cli/ ← the programs', () => {
  const bad: string[] = [];
  for (const f of files) {
    for (const d of runtimeImports(f)) {
      if (isException(f, d)) continue;
      if (layerOf(d.target) > layerOf(f)) bad.push(`${f} imports ${d.target}`);
    }
  }
  assert.equal(bad, [], bad.join('\n'));
});

test('the port (mingpt/) imports nothing outside mingpt/ but the lazy loader of from_pretrained', () => {
  const outside = files.filter((f) => layerOf(f) === 0).flatMap((f) => runtimeImports(f).filter((d) => !d.target.startsWith('mingpt' + path.sep) && !isException(f, d)).map((d) => `${f} imports ${d.target}`));
  assert.equal(outside, []);
  assert.ok(runtimeImports(LAZY_EXCEPTION.from).some((d) => isException(LAZY_EXCEPTION.from, d)), 'from_pretrained no longer imports io/load.ts lazily: update this test');
});

test('the readable kernels import nothing: plain loops over Float32Arrays', () => {
  assert.equal(runtimeImports(path.join('mingpt', 'kernels', 'js.ts')), []);
});

test('the import reader skips type-only imports and sees static, re-exported and lazy ones', () => {
  const src = "import { b } from './b.ts';\nimport type { X } from './c.ts';\nimport { type Y } from './d.ts';\nexport { e } from './e.ts';\nconst f = await import('./f.ts');\n";
  assert.equal(runtimeImportsOf('x/a.ts', src), [
    { target: path.join('x', 'b.ts'), lazy: false }, { target: path.join('x', 'e.ts'), lazy: false }, { target: path.join('x', 'f.ts'), lazy: true },
  ]);
});

test('the cycle search finds a cycle when there is one, and none in a chain', () => {
  assert.equal(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), ['a → b → c → a']);
  assert.equal(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', []]])), []);
});

test('the layer rule flags an import that goes the wrong way', () => {
  assert.ok(layerOf(path.join('lens', 'x.ts')) > layerOf(path.join('mingpt', 'model.ts')));
  assert.ok(layerOf('generate.ts') > layerOf(path.join('cli', 'args.ts')));
  assert.ok(layerOf(path.join('assignments', 'ioi', 'ioi.ts')) === layerOf(path.join('bench', 'bench.ts')));
});

test.run();
