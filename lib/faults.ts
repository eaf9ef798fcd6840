/**
 * Named fault points for the fault-injection tests. Activities get a FaultPoints through their injected
 * dependencies and pass `faults.at('name', detail)` where a real failure or stall could happen; a test
 * arms a point (in-process with `arm`, or in a worker process through WALFLOW_FAULTS) to make it throw
 * a transient error some number of times, or to stall every pass.
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

export class InjectedFault extends Error {
  override name = 'InjectedFault';
}

export class FaultPoints {
  private readonly armed = new Map<string, FaultSpec>();
  /**
   * A deliberately broken build, for proving the fault harness can fail: the stream confirms the LSN to
   * Postgres before the destination write. Never set outside that test.
   */
  ackBeforeWrite = false;

  /** The points WALFLOW_FAULTS arms (a worker process started by a test). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): FaultPoints {
    const faults = new FaultPoints();
    for (const spec of (env.WALFLOW_FAULTS ?? '').split(',').filter(Boolean)) {
      const [point, ...options] = spec.split(':');
      const f: FaultSpec = {};
      for (const o of options) {
        const [k, v = ''] = o.split('=');
        if (k === 'fail') f.fail = Number(v);
        else if (k === 'delay') f.delayMs = Number(v);
        else if (k === 'match') f.match = v;
      }
      faults.arm(point!, f);
    }
    return faults;
  }

  arm(point: string, spec: FaultSpec): void {
    this.armed.set(point, { ...spec });
  }

  disarm(): void {
    this.armed.clear();
    this.ackBeforeWrite = false;
  }

  async at(point: string, detail = ''): Promise<void> {
    const f = this.armed.get(point);
    if (!f || (f.match && !detail.includes(f.match))) return;
    if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
    if (f.fail && f.fail > 0) {
      f.fail--;
      console.error(`walflow: injecting a fault at ${point}`);
      throw new InjectedFault(`injected fault at ${point}${detail ? ` (${detail})` : ''}`);
    }
  }
}
