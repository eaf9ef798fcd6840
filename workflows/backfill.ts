/**
 * Backfill of a set of tables, shared by the pipeline and resync workflows:
 * hold an exported snapshot (a heartbeating activity), plan ranges, copy them
 * through bounded child workflows, release the snapshot. If the snapshot is
 * lost (its session died), the copy restarts on a fresh snapshot and says so.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import type { PipelineConfig } from '../lib/config.ts';
import { snapshotReadySignal, type CopyProgress, type SnapshotReady } from '../lib/contract/pipeline.ts';
import type { TableProgress } from '../lib/contract/status.ts';
import { ErrorType, hasFailureType, rootMessage, type DataRefusedDetails } from '../lib/errors.ts';
import type { TableSchema } from '../lib/model.ts';
import { Patch } from './patches.ts';
import { copyFromSnapshot } from './snapshot-copy.ts';

/** The snapshot lives exactly as long as this activity: one attempt, no retry. */
const { holdSnapshot } = proxyActivities<Activities>({
  startToCloseTimeout: '30 days',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
});

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
  /** A table whose data the destination refused: its copy stopped, the others' went on (else the backfill fails). */
  onRefused?: (refusal: DataRefusedDetails, snapshotLsn: string) => void;
  /** A table gone from the source by its name before its copy (renamed, dropped): skipped, else the backfill fails. */
  onMissing?: (table: string, reason: string, snapshotLsn: string) => void;
  /** The shapes recorded for the destination tables, as they are when the copy is planned. */
  schemas?: () => Record<string, TableSchema> | undefined;
  /** A table whose shape under the snapshot is not the recorded one (see PlannedBackfill.reshaped): not copied. */
  onReshaped?: (table: string, reason: string, snapshotLsn: string) => void;
  /**
   * Where the range copies' progress goes when the backfill's own workflow copies them (a small plan), as the
   * children's copyProgress signals would; without it every plan is copied by children.
   */
  onCopyProgress?: (p: CopyProgress) => void;
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
      const tables = opts.tables.join(', ');
      const message =
        `backfill snapshot lost (${rootMessage(e)}); restarting the copy of ${tables} on a fresh snapshot` +
        (backoff ? ` in ${Math.round(delayMs / 1000)} s` : '');
      log.warn(message);
      opts.onError?.(message);
      if (backoff) {
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, SNAPSHOT_RETRY_MAX_MS);
      }
    }
  }
}

async function backfillOnce(
  opts: BackfillOptions,
  attempt: number,
  stopOnLoss: boolean,
  outcome: { snapshotTaken: boolean },
): Promise<string> {
  const { config, tables } = opts;
  // The run id as first recorded, which a reset keeps (the holder's signal in the history names it); the same as
  // runId in every run not reset, so histories recorded before this replay unchanged.
  const token = `${workflowInfo().originalExecutionRunId}-${attempt}`;
  let snapshot: SnapshotReady | undefined;
  setHandler(snapshotReadySignal, (s) => {
    if (s.token === token) snapshot = s;
  });

  const holderScope = new CancellationScope();
  const holder = holderScope.run(() =>
    holdSnapshot.executeWithOptions({ summary: `hold backfill snapshot for ${tables.join(', ')}` }, [
      { config, notify: { workflowId: workflowInfo().workflowId, token } },
    ]),
  );
  // The holder never returns on its own while we need it: any settlement means the snapshot is gone.
  const lost = holder.then(
    () => {
      throw ApplicationFailure.nonRetryable('snapshot holder stopped', ErrorType.SnapshotLost);
    },
    (e) => {
      throw isCancellation(e)
        ? e
        : ApplicationFailure.nonRetryable(`snapshot holder failed: ${rootMessage(e)}`, ErrorType.SnapshotLost);
    },
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

const isSnapshotLost = (e: unknown): boolean => hasFailureType(e, ErrorType.SnapshotLost);
