/**
 * The copy half of a backfill, once its snapshot is held: plan the tables' ranges, copy them through
 * child workflows of a bounded number of ranges each (a small plan: in the backfill's own workflow), and
 * tell which tables' data the destination refused (their remaining ranges are skipped; the others' copy goes on).
 */
import { ApplicationFailure, executeChild, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import type { SnapshotReady } from '../lib/contract/pipeline.ts';
import { ErrorType, NEEDS_OPERATOR, type DataRefusedDetails } from '../lib/errors.ts';
import type { BackfillOptions } from './backfill.ts';
import { copyRanges, copyRangesWorkflow, type CopyRangesInput, type CopyRangesResult } from './copy.ts';
import { Patch } from './patches.ts';

/** Retried without end, like the stream: a source that is down for a while is waited for, not given up on. */
const { planRanges } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '30 seconds', // a worker that dies while planning is noticed in seconds
  retry: { maximumInterval: '1 minute', nonRetryableErrorTypes: NEEDS_OPERATOR },
});

const RANGES_PER_CHILD = 256;
/**
 * A plan of at most this many ranges is copied by the backfill's own workflow: a child's start and end cost a few
 * workflow tasks (~0.3 s), a large share of a small table's copy, while these ranges add a few hundred events at most.
 */
const INLINE_RANGES = 32;

/** Copies `opts.tables` under `snap`; `raceLost` stops the wait as soon as the snapshot is lost. */
export async function copyFromSnapshot(
  opts: BackfillOptions,
  snap: SnapshotReady,
  token: string,
  raceLost: <T>(p: Promise<T>) => Promise<T>,
): Promise<void> {
  const { config, tables, progress } = opts;
  const schemas = opts.schemas?.();
  const planned = await planRanges(config, tables, {
    snapshotName: snap.snapshotName,
    ...(schemas ? { schemas } : {}),
  });
  const missing = new Set<string>();
  for (const { table, reason } of planned.missing ?? []) {
    if (!opts.onMissing) throw ApplicationFailure.nonRetryable(reason, ErrorType.Schema);
    opts.onMissing(table, reason, snap.lsn);
    missing.add(table);
  }
  for (const { table, reason } of planned.reshaped ?? []) {
    opts.onReshaped?.(table, reason, snap.lsn);
    missing.add(table);
  }
  for (const t of planned.tables) {
    progress[t.table] = {
      ...progress[t.table]!,
      backfill: 'copying',
      rangesDone: 0,
      rangesTotal: t.ranges,
      rowsCopied: 0,
      rowsEstimate: t.rowsEstimate,
    };
  }
  const refused: Record<string, DataRefusedDetails> = {};
  const input = (ranges: CopyRangesInput['ranges']): CopyRangesInput => ({
    config,
    snapshotName: snap.snapshotName,
    snapshotLsn: snap.lsn,
    ranges,
    parallelism: config.backfill.parallelism,
    reportTo: workflowInfo().workflowId,
  });
  const onProgress = opts.onCopyProgress;
  // Decided once the plan is known (so older histories, which have no marker here, replay their children).
  const inline = onProgress && planned.ranges.length <= INLINE_RANGES && patched(Patch.SmallCopyInline);
  for (let i = 0; i < planned.ranges.length; i += RANGES_PER_CHILD) {
    const ranges = planned.ranges.slice(i, i + RANGES_PER_CHILD).filter((r) => !refused[r.table]);
    if (!ranges.length) continue;
    const copied: CopyRangesResult = await raceLost(
      inline
        ? copyRanges(input(ranges), onProgress, 0)
        : executeChild(copyRangesWorkflow, {
            workflowId: `${workflowInfo().workflowId}-copy-${token}-${i / RANGES_PER_CHILD}`,
            args: [input(ranges)],
          }),
    );
    Object.assign(refused, copied.refused);
  }
  for (const refusal of Object.values(refused)) {
    if (!opts.onRefused) throw ApplicationFailure.nonRetryable(refusal.reason, ErrorType.DataRefused, refusal);
    opts.onRefused(refusal, snap.lsn);
  }
  for (const t of tables) if (!refused[t] && !missing.has(t)) progress[t] = { ...progress[t]!, backfill: 'done' };
}
