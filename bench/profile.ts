/**
 * A CPU profile of some work in this thread, summed by function: where the time goes. Uses the
 * V8 inspector's sampling profiler (node:inspector), the same data as `node --cpu-prof`.
 */
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}

/** Runs fn (awaited) under the profiler; returns [function (file), share of the samples] largest first. */
export async function profile(fn: () => unknown): Promise<Array<[string, number]>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  await fn();
  const { profile: p } = (await session.post('Profiler.stop')) as unknown as { profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] } };
  session.disconnect();
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const n = byId.get(id)!;
    const file = n.callFrame.url.split('/').slice(-2).join('/');
    let name = n.callFrame.functionName || '(anonymous)';
    if (file.startsWith('wasm')) name = 'wasm:' + name; // each SIMD kernel by its name (the module has a name section)
    const key = file && !file.startsWith('wasm') ? `${name} (${file})` : name;
    const dt = p.timeDeltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...self].map(([k, t]) => [k, t / total] as [string, number]).sort((a, b) => b[1] - a[1]);
}
