/**
 * Named fault points for the fault-injection tests: production code passes
 * `faultPoint('name', detail)` where a real failure or stall could happen;
 * tests arm a point (in-process with armFault, or in a worker process through
 * WALFLOW_FAULTS) to make it throw a transient error some number of times, or
 * to stall every pass.
 * WALFLOW_FAULTS: comma-separated "point:fail=N[:match=TEXT]" or "point:delay=MS".
 */
export interface FaultSpec {
  /** Throw this many times. */
  fail?: number;
  /** Sleep this long on every pass. */
  delayMs?: number;
  /** Only when the detail contains this text. */
  match?: string;
}

const armed = new Map<string, FaultSpec>();

for (const spec of (process.env.WALFLOW_FAULTS ?? '').split(',').filter(Boolean)) {
  const [point, ...options] = spec.split(':');
  const f: FaultSpec = {};
  for (const o of options) {
    const [k, v = ''] = o.split('=');
    if (k === 'fail') f.fail = Number(v);
    else if (k === 'delay') f.delayMs = Number(v);
    else if (k === 'match') f.match = v;
  }
  armed.set(point!, f);
}

export function armFault(point: string, spec: FaultSpec): void {
  armed.set(point, { ...spec });
}

export function disarmFaults(): void {
  armed.clear();
}

export class InjectedFault extends Error {
  override name = 'InjectedFault';
}

export async function faultPoint(point: string, detail = ''): Promise<void> {
  const f = armed.get(point);
  if (!f || (f.match && !detail.includes(f.match))) return;
  if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
  if (f.fail && f.fail > 0) {
    f.fail--;
    console.error(`walflow: injecting a fault at ${point}`);
    throw new InjectedFault(`injected fault at ${point}${detail ? ` (${detail})` : ''}`);
  }
}

/**
 * A deliberately broken build, for proving the fault harness can fail: the stream acknowledges
 * the LSN to Postgres before the destination write. Never set outside that test.
 */
export const unsafe = { ackBeforeWrite: process.env.WALFLOW_UNSAFE_ACK_BEFORE_WRITE === '1' };
