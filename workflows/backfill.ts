/**
 * Backfill of a set of tables, shared by the pipeline and resync workflows:
 * hold an exported snapshot (a heartbeating activity), plan ranges, copy them
 * through bounded child workflows, release the snapshot. If the snapshot is
 * lost (its session died), the copy restarts on a fresh snapshot and says so.
 */
import {
  ApplicationFailure, CancellationScope, condition, executeChild, isCancellation, log, patched,
  proxyActivities, setHandler, sleep, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import type { PipelineConfig } from '../lib/config.ts';
import { ErrorType, hasFailureType, NEEDS_OPERATOR, rootMessage, type DataRefusedDetails } from '../lib/errors.ts';
import { Patch } from './patches.ts';
import { copyRangesWorkflow } from './copy.ts';
import { snapshotReadySignal, type SnapshotReady } from '../lib/contract/pipeline.ts';
import type { TableProgress } from '../lib/contract/status.ts';

/** Retried without end, like the stream: a source that is down for a while is waited for, not given up on. */
const { planRanges } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '30 seconds', // a worker that dies while planning is noticed in seconds
  retry: { maximumInterval: '1 minute', nonRetryableErrorTypes: NEEDS_OPERATOR },
});

/** The snapshot lives exactly as long as this activity: one attempt, no retry. */
const { holdSnapshot } = proxyActivities<Activities>({
  startToCloseTimeout: '30 days',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
});

const RANGES_PER_CHILD = 256;
/**
 * A lost snapshot (Postgres restarted, the holder's worker died) is transient: the copy restarts on a
 * fresh snapshot after a backoff that doubles while no snapshot can be taken at all. The cap keeps a
 * source that stays down for days to a few thousand history events a day.
 */
const SNAPSHOT_RETRY_FIRST_MS = 1_000;
const SNAPSHOT_RETRY_MAX_MS = 5 * 60_000;
/** Workflows that lost a snapshot before Patch.SnapshotRetryBackoff retried at once, at most this often. */
const LEGACY_MAX_SNAPSHOT_ATTEMPTS = 5;

export interface BackfillOptions {
  config: PipelineConfig;
  tables: string[];
  /** Progress per table, updated in place (the caller's status query reads it). */
  progress: Record<string, TableProgress>;
  onSnapshot?: (lsn: string | null) => void;
  onError?: (message: string) => void;
  /** A table whose data the destination refused: its copy stopped, the others' went on. Without it, the backfill fails. */
  onRefused?: (refusal: DataRefusedDetails, snapshotLsn: string) => void;
}

/** Copies `tables` from one consistent snapshot; resolves with the snapshot's LSN (the rows' version). */
export async function backfillTables(opts: BackfillOptions): Promise<string> {
  // Decided once, before any command: a backfill already under way when this code deployed keeps its old course.
  const backoff = patched(Patch.SnapshotRetryBackoff);
  let delayMs = SNAPSHOT_RETRY_FIRST_MS;
  for (let attempt = 1; ; attempt++) {
    const outcome = { snapshotTaken: false };
    try {
      return await backfillOnce(opts, attempt, backoff, outcome);
    } catch (e) {
      if (!isSnapshotLost(e)) throw e;
      if (!backoff && attempt >= LEGACY_MAX_SNAPSHOT_ATTEMPTS) throw e;
      if (outcome.snapshotTaken) delayMs = SNAPSHOT_RETRY_FIRST_MS;
      const message = `backfill snapshot lost (${rootMessage(e)}); restarting the copy of ${opts.tables.join(', ')} on a fresh snapshot`
        + (backoff ? ` in ${Math.round(delayMs / 1000)} s` : '');
      log.warn(message);
      opts.onError?.(message);
      if (backoff) {
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, SNAPSHOT_RETRY_MAX_MS);
      }
    }
  }
}

async function backfillOnce(opts: BackfillOptions, attempt: number, stopOnLoss: boolean, outcome: { snapshotTaken: boolean }): Promise<string> {
  const { config, tables } = opts;
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
    () => { throw ApplicationFailure.nonRetryable('snapshot holder stopped', ErrorType.SnapshotLost); },
    (e) => { throw isCancellation(e) ? e : ApplicationFailure.nonRetryable(`snapshot holder failed: ${rootMessage(e)}`, ErrorType.SnapshotLost); },
  );
  lost.catch(() => undefined); // observed below; avoid an unhandled rejection once we cancel it
  const raceLost = <T>(p: Promise<T>) => Promise.race([p, lost]);

  // Planning and copying run in their own scope so a lost snapshot stops them (children included) at once.
  const copyScope = new CancellationScope();
  try {
    await raceLost(condition(() => snapshot !== undefined));
    outcome.snapshotTaken = true;
    const snap = snapshot!;
    opts.onSnapshot?.(snap.lsn);
    const copy = copyScope.run(() => copyFromSnapshot(opts, snap, token, raceLost));
    await (stopOnLoss ? raceLost(copy) : copy);
    return snap.lsn;
  } finally {
    if (stopOnLoss) copyScope.cancel();
    holderScope.cancel();
    await holder.catch(() => undefined);
    opts.onSnapshot?.(null);
  }
}

async function copyFromSnapshot(
  opts: BackfillOptions, snap: SnapshotReady, token: string, raceLost: <T>(p: Promise<T>) => Promise<T>,
): Promise<void> {
  const { config, tables, progress } = opts;
  const planned = await planRanges(config, tables);
  for (const t of planned.tables) {
    progress[t.table] = { ...progress[t.table]!, backfill: 'copying', rangesDone: 0, rangesTotal: t.ranges, rowsCopied: 0, rowsEstimate: t.rowsEstimate };
  }
  const refused: Record<string, DataRefusedDetails> = {};
  for (let i = 0; i < planned.ranges.length; i += RANGES_PER_CHILD) {
    const ranges = planned.ranges.slice(i, i + RANGES_PER_CHILD).filter((r) => !refused[r.table]);
    if (!ranges.length) continue;
    const copied = await raceLost(executeChild(copyRangesWorkflow, {
      workflowId: `${workflowInfo().workflowId}-copy-${token}-${i / RANGES_PER_CHILD}`,
      args: [{ config, snapshotName: snap.snapshotName, snapshotLsn: snap.lsn, ranges, parallelism: config.backfill.parallelism, reportTo: workflowInfo().workflowId }],
    }));
    Object.assign(refused, copied.refused);
  }
  for (const refusal of Object.values(refused)) {
    if (!opts.onRefused) throw ApplicationFailure.nonRetryable(refusal.reason, ErrorType.DataRefused, refusal);
    opts.onRefused(refusal, snap.lsn);
  }
  for (const t of tables) if (!refused[t]) progress[t] = { ...progress[t]!, backfill: 'done' };
}

const isSnapshotLost = (e: unknown): boolean => hasFailureType(e, ErrorType.SnapshotLost);
