/**
 * Backfill of a set of tables, shared by the pipeline and resync workflows:
 * hold an exported snapshot (a heartbeating activity), plan ranges, copy them
 * through bounded child workflows, release the snapshot. If the snapshot is
 * lost (its session died), the copy restarts on a fresh snapshot and says so.
 */
import {
  ApplicationFailure, CancellationScope, ChildWorkflowFailure, condition, executeChild, isCancellation, log,
  proxyActivities, setHandler, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import type { PipelineConfig } from '../lib/config.ts';
import { copyRangesWorkflow } from './copy.ts';
import { snapshotReadySignal, type SnapshotReady, type TableProgress } from './definitions.ts';

const { planRanges } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '30 seconds', // a worker that dies while planning is noticed in seconds
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['ConfigError'] },
});

/** The snapshot lives exactly as long as this activity: one attempt, no retry. */
const { holdSnapshot } = proxyActivities<Activities>({
  startToCloseTimeout: '30 days',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
});

const RANGES_PER_CHILD = 256;
const MAX_SNAPSHOT_ATTEMPTS = 5;

export interface BackfillOptions {
  config: PipelineConfig;
  tables: string[];
  /** Progress per table, updated in place (the caller's status query reads it). */
  progress: Record<string, TableProgress>;
  onSnapshot?: (lsn: string | null) => void;
  onError?: (message: string) => void;
}

/** Copies `tables` from one consistent snapshot; resolves with the snapshot's LSN (the rows' version). */
export async function backfillTables(opts: BackfillOptions): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await backfillOnce(opts, attempt);
    } catch (e) {
      if (!isSnapshotLost(e) || attempt >= MAX_SNAPSHOT_ATTEMPTS) throw e;
      const message = `backfill snapshot lost (${errorMessage(e)}); restarting the copy of ${opts.tables.join(', ')} on a fresh snapshot`;
      log.warn(message);
      opts.onError?.(message);
    }
  }
}

async function backfillOnce(opts: BackfillOptions, attempt: number): Promise<string> {
  const { config, tables, progress } = opts;
  const token = `${workflowInfo().runId}-${attempt}`;
  let snapshot: SnapshotReady | undefined;
  setHandler(snapshotReadySignal, (s) => {
    if (s.token === token) snapshot = s;
  });

  const holderScope = new CancellationScope();
  const holder = holderScope.run(() => holdSnapshot.executeWithOptions(
    { summary: `hold backfill snapshot for ${tables.join(', ')}` },
    [{ config, notify: { workflowId: workflowInfo().workflowId, token } }],
  ));
  // The holder never returns on its own while we need it: any settlement means the snapshot is gone.
  const lost = holder.then(
    () => { throw ApplicationFailure.nonRetryable('snapshot holder stopped', 'SnapshotLost'); },
    (e) => { throw isCancellation(e) ? e : ApplicationFailure.nonRetryable(`snapshot holder failed: ${errorMessage(e)}`, 'SnapshotLost'); },
  );
  lost.catch(() => undefined); // observed below; avoid an unhandled rejection once we cancel it

  try {
    await Promise.race([condition(() => snapshot !== undefined), lost]);
    const snap = snapshot!;
    opts.onSnapshot?.(snap.lsn);

    const planned = await planRanges(config, tables);
    for (const t of planned.tables) {
      progress[t.table] = { ...progress[t.table]!, backfill: 'copying', rangesDone: 0, rangesTotal: t.ranges, rowsCopied: 0, rowsEstimate: t.rowsEstimate };
    }
    for (let i = 0; i < planned.ranges.length; i += RANGES_PER_CHILD) {
      const child = executeChild(copyRangesWorkflow, {
        workflowId: `${workflowInfo().workflowId}-copy-${token}-${i / RANGES_PER_CHILD}`,
        args: [{
          config, snapshotName: snap.snapshotName, snapshotLsn: snap.lsn,
          ranges: planned.ranges.slice(i, i + RANGES_PER_CHILD),
          parallelism: config.backfill.parallelism, reportTo: workflowInfo().workflowId,
        }],
      });
      await Promise.race([child, lost]);
    }
    for (const t of tables) progress[t] = { ...progress[t]!, backfill: 'done' };
    return snap.lsn;
  } finally {
    holderScope.cancel();
    await holder.catch(() => undefined);
    opts.onSnapshot?.(null);
  }
}

function isSnapshotLost(e: unknown): boolean {
  for (let c: unknown = e; c; c = (c as { cause?: unknown }).cause) {
    if (c instanceof ApplicationFailure && c.type === 'SnapshotLost') return true;
    if (c instanceof ChildWorkflowFailure && c.cause instanceof ApplicationFailure && c.cause.type === 'SnapshotLost') return true;
  }
  return false;
}

export function errorMessage(e: unknown): string {
  let c: unknown = e;
  while ((c as { cause?: unknown })?.cause) c = (c as { cause?: unknown }).cause;
  return (c as Error)?.message ?? String(e);
}
