/** Summarizes a V8 CPU profile (`node --cpu-prof`): the functions with the most self time. */
import { readFileSync } from 'node:fs';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  /** "name file:line" (file relative to the package or node internals). */
  fn: string;
  ms: number;
  /** Share of the profile's busy (non-idle) time. */
  share: number;
}

export function hotFunctions(file: string, count = 15): HotFunction[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const f = frames.get(id)!;
    const file = f.url
      .replace(/^.*node_modules\//, '')
      .replace(/^file:\/\/.*?\/(activities|lib|worker|workflows)\//, '$1/');
    const where = f.url ? ` ${file}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'}${where}`;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  self.delete('(idle)');
  const busy = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([fn, ms]) => ({ fn, ms: Math.round(ms), share: ms / busy }));
}
