/**
 * Backfill fan-out: copy a batch of table ranges under one exported snapshot,
 * at most `parallelism` at a time, each range its own activity retried alone.
 * The batch is bounded so a table of thousands of ranges spreads over several
 * of these child workflows instead of one unbounded history.
 */
import { ApplicationFailure, getExternalWorkflowHandle, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import type { PipelineConfig } from '../lib/config.ts';
import {
  ErrorType,
  failureOfType,
  hasFailureType,
  NEEDS_OPERATOR,
  rootMessage,
  type DataRefusedDetails,
} from '../lib/errors.ts';
import type { TableRange } from '../activities/backfill.ts';
import { copyProgressSignal, describeRange, type CopyProgress } from '../lib/contract/pipeline.ts';

/** Retried without end, like the stream: a destination or source that is down for a while is waited for. */
const { copyRange } = proxyActivities<Activities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '60 seconds',
  retry: {
    initialInterval: '1 second',
    maximumInterval: '1 minute',
    nonRetryableErrorTypes: [ErrorType.SnapshotLost, ...NEEDS_OPERATOR],
  },
});

export interface CopyRangesInput {
  config: PipelineConfig;
  snapshotName: string;
  snapshotLsn: string;
  ranges: TableRange[];
  parallelism: number;
  /** Workflow to report progress to (the pipeline or resync workflow). */
  reportTo: string;
}

export interface CopyRangesResult {
  rows: number;
  /** Tables whose data the destination refused (absent when none): their other ranges were not copied. */
  refused?: Record<string, DataRefusedDetails>;
}

/** A child's progress signals are history events: at most one per this interval. */
const REPORT_EVERY_MS = 5_000;

export async function copyRangesWorkflow(input: CopyRangesInput): Promise<CopyRangesResult> {
  const parent = getExternalWorkflowHandle(input.reportTo);
  return copyRanges(input, (p) => parent.signal(copyProgressSignal, p), REPORT_EVERY_MS);
}

/**
 * Copies `input.ranges`, at most `input.parallelism` at a time, telling `report` what was copied at most every
 * `reportEveryMs` (and at the end). A table whose data the destination refused stops; the others' ranges go on.
 */
export async function copyRanges(
  input: CopyRangesInput,
  report: (p: CopyProgress) => Promise<void> | void,
  reportEveryMs: number,
): Promise<CopyRangesResult> {
  let pending: CopyProgress['tables'] = {};
  let lastReport = Date.now();
  let rows = 0;
  const refused: Record<string, DataRefusedDetails> = {};

  const flush = async (force: boolean) => {
    if (!force && Date.now() - lastReport < reportEveryMs) return;
    if (Object.keys(pending).length === 0) return;
    const tables = pending;
    pending = {};
    lastReport = Date.now();
    await report({ tables });
  };

  const queue = [...input.ranges];
  const worker = async () => {
    for (let range = queue.shift(); range; range = queue.shift()) {
      if (refused[range.table]) continue;
      const copied = await copyRange
        .executeWithOptions({ summary: `copy ${range.table} ${describeRange(range)}` }, [
          {
            config: input.config,
            snapshotName: input.snapshotName,
            snapshotLsn: input.snapshotLsn,
            range,
            reportTo: input.reportTo,
          },
        ])
        .catch((e: unknown) => {
          // The same rows under the same snapshot would be refused again: that table stops, the others go on.
          const refusal = failureOfType(e, ErrorType.DataRefused)?.details?.[0] as DataRefusedDetails | undefined;
          if (!refusal) throw e;
          refused[range.table] ??= refusal;
          return undefined;
        });
      if (!copied) continue;
      rows += copied.rows;
      const t = (pending[range.table] ??= { ranges: 0, rows: 0 });
      t.ranges += 1;
      t.rows += copied.rows;
      await flush(false);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, input.parallelism) }, worker));
  } catch (e) {
    if (hasFailureType(e, ErrorType.SnapshotLost)) {
      throw ApplicationFailure.nonRetryable(rootMessage(e), ErrorType.SnapshotLost);
    }
    throw e;
  } finally {
    await flush(true);
  }
  return Object.keys(refused).length ? { rows, refused } : { rows };
}
