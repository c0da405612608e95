// Runs every test/*.test.ts file with uvu and ends with one plain summary line,
// "N passed, N failed", which CI reads (skipped tests are counted on the line before). The exit code is uvu's.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const uvuBin = path.join(root, 'node_modules', 'uvu', 'bin.js');
const filter = process.argv[2] ?? '\\.test\\.ts$';
const child = spawnSync(process.execPath, ['--import', 'tsx', uvuBin, 'test', filter], {
  cwd: root,
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'inherit'],
  maxBuffer: 64 * 1024 * 1024,
});
const out = child.stdout ?? '';
process.stdout.write(out);

const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
const num = (label: string) => Number(plain.match(new RegExp(`${label}:\\s+(\\d+)`))?.[1] ?? NaN);
const total = num('Total'), passed = num('Passed'), skipped = num('Skipped');
let code = child.status ?? 1;
if (Number.isNaN(total) || Number.isNaN(passed)) {
  console.log('\ntest runner printed no summary (did a test file crash while loading?)');
  console.log(`0 passed, 1 failed`);
  process.exit(code === 0 ? 1 : code);
}
const failed = total - passed; // uvu's Total does not count skipped tests
if (failed > 0 && code === 0) code = 1;
if (skipped > 0) console.log(`\n${skipped} skipped (tests that need the real GPT-2 weights, or a browser, when absent)`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(code);
