// Preloaded into a child process by bench/bench.ts (`node --import <this file> ...`): at exit,
// print the process's peak resident memory (all threads) and its processor time (all threads,
// user + system) on stderr, for the benchmark to read (bench.ts reads the first, experiments.ts both).
//
// On Linux this is VmHWM from /proc/self/status: the high-water mark of this program's memory.
// process.resourceUsage().maxRSS is not used there, because Linux carries it over from the
// parent across fork + exec: a child of the 1.5 GB benchmark would report at least 1.5 GB.
import fs from 'node:fs';

function peakKiB(): number {
  try {
    const m = fs.readFileSync('/proc/self/status', 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
    if (m) return Number(m[1]);
  } catch { /* not Linux */ }
  return process.resourceUsage().maxRSS;
}

process.on('exit', () => {
  const cpu = process.cpuUsage();
  process.stderr.write(`\n[peak-rss-kib] ${peakKiB()}\n[cpu-s] ${((cpu.user + cpu.system) / 1e6).toFixed(3)}\n`);
});
