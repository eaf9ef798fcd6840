/**
 * What the activities report, recorded in the pipeline's state: the stream's confirmed LSN, lag and
 * change counts, and the range copies' progress. Each component's error is noted, and cleared only by
 * that component's own progress.
 */
import type { CopyProgress, PipelineState, StreamProgress } from '../lib/contract/pipeline.ts';
import { addChangeCounters, newTableProgress, type TableProgress } from '../lib/contract/status.ts';
import { backfillOf, clearError, noteError, PIPELINE, setWarnings, STREAM } from './errors.ts';

export function recordStreamProgress(state: PipelineState, p: StreamProgress): void {
  setWarnings(state, p.warnings);
  if (p.error) {
    noteError(state, STREAM, p.error);
    return;
  }
  state.confirmedLsn = p.confirmedLsn;
  state.lagBytes = p.lagBytes;
  clearError(state, STREAM, PIPELINE);
  for (const [table, c] of Object.entries(p.changes))
    addChangeCounters((state.progress[table] ??= newTableProgress()).changes, c);
}

export function recordCopyProgress(state: PipelineState, p: CopyProgress): void {
  const error = addCopyProgress(state.progress, p);
  const copied = Object.entries(p.tables)
    .filter(([, c]) => c.ranges > 0)
    .map(([t]) => backfillOf(t));
  if (copied.length) clearError(state, 'backfill', ...copied); // a range copied: planning worked, and so did that table
  if (error) noteError(state, p.errorTable ? backfillOf(p.errorTable) : 'backfill', error);
}

/** Adds a copy workflow's report to `progress`; returns the failure it carries, if any. */
export function addCopyProgress(progress: Record<string, TableProgress>, report: CopyProgress): string | undefined {
  for (const [table, c] of Object.entries(report.tables)) {
    const t = progress[table];
    if (!t) continue;
    t.rangesDone += c.ranges;
    t.rowsCopied += c.rows;
  }
  return report.error;
}
