// Preloaded into a child process by bench/bench.ts (`node --import <this file> ...`): at exit,
// print the process's peak resident memory (all threads) on stderr, for the benchmark to read.
process.on('exit', () => {
  process.stderr.write(`\n[peak-rss-kib] ${process.resourceUsage().maxRSS}\n`);
});
