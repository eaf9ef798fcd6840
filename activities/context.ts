/** What activities are built from: injected once by the worker, faked nowhere in the integration suite. */
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { SignalDefinition } from '@temporalio/common';
import type { PipelineConfig } from '../lib/config.ts';
import type { FaultPoints } from '../lib/faults.ts';
import type { Change } from '../lib/model.ts';
import type { WalflowMetrics } from '../worker/metrics.ts';
import type { Destination } from './destinations/destination.ts';
import { pipelineDestination } from './destinations/index.ts';

export interface ActivityDeps {
  /** Used to report progress back to the workflow that runs the activity (signals). */
  client: Client;
  /** The worker's Prometheus metrics, when it serves them. */
  metrics?: WalflowMetrics;
  /** Fault points the fault-injection tests arm (none armed in production). */
  faults?: FaultPoints;
  /** Opens a pipeline's destination: `pipelineDestination` unless a test brings its own (an in-memory one). */
  destination?: (config: PipelineConfig) => Promise<Destination>;
}

/** The pipeline's destination, as the activity's dependencies open it. */
export const openDestination = (deps: ActivityDeps, config: PipelineConfig): Promise<Destination> =>
  (deps.destination ?? pipelineDestination)(config);

const SIGNAL_DEADLINE_MS = 5_000;

/** Signals a workflow with a deadline: right after a Temporal server restart a call can otherwise wait forever. */
export function signalWithDeadline<T>(
  deps: ActivityDeps,
  workflowId: string,
  signal: SignalDefinition<[T]>,
  arg: T,
): Promise<void> {
  return deps.client.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () =>
    deps.client.workflow.getHandle(workflowId).signal(signal, arg),
  );
}

/**
 * Runs `work` while heartbeating every 5 s (with `details`, for activities that resume from them), so a
 * worker dying mid-way is noticed within the heartbeat timeout, not the start-to-close one, and a slow
 * but live step (a large destination write) is not mistaken for a dead worker. With `limitMs`, work
 * still unfinished by then fails the activity: a hung step is retried rather than heartbeated forever.
 */
export async function whileHeartbeating<T>(
  work: () => Promise<T>,
  opts: { details?: () => unknown; limitMs?: number; what?: string } = {},
): Promise<T> {
  const ctx = Context.current();
  const beat = () => (opts.details ? ctx.heartbeat(opts.details()) : ctx.heartbeat());
  const timer = setInterval(beat, 5_000);
  let limit: NodeJS.Timeout | undefined;
  try {
    if (opts.limitMs === undefined) return await work();
    return await Promise.race([
      work(),
      new Promise<never>((_, reject) => {
        limit = setTimeout(
          () => reject(new Error(`${opts.what ?? 'step'} did not finish within ${Math.round(opts.limitMs! / 1000)} s`)),
          opts.limitMs,
        );
      }),
    ]);
  } finally {
    clearInterval(timer);
    clearTimeout(limit);
  }
}

/** How long one destination write may take before the activity gives up on it and Temporal retries. */
const DESTINATION_WRITE_LIMIT_MS = 10 * 60_000;

/** A destination write, heartbeating `details` while it runs, for at most DESTINATION_WRITE_LIMIT_MS. */
export function writeHeartbeating(write: () => Promise<void>, details: () => unknown): Promise<void> {
  return whileHeartbeating(write, { details, limitMs: DESTINATION_WRITE_LIMIT_MS, what: 'a destination write' });
}

export function applyHeartbeating(destination: Destination, changes: Change[], details: () => unknown): Promise<void> {
  return writeHeartbeating(() => destination.apply(changes), details);
}
