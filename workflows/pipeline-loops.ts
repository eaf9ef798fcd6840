/**
 * The two loops a pipeline run keeps going side by side: the change stream (restarted whenever the
 * tables, shapes or config change) and the backfill of tables not yet copied. Both run until the run's
 * scope is cancelled (pause, drop, a new config, continue-as-new).
 */
import { CancellationScope, condition, isCancellation, patched, workflowInfo } from '@temporalio/workflow';
import { backfillTables } from './backfill.ts';
import { backfillOf, clearError, noteError, SNAPSHOT } from './errors.ts';
import { Patch } from './patches.ts';
import { streamChanges } from './pipeline-activities.ts';
import type { PipelineManager } from './pipeline-manager.ts';
import { streamShapeInput } from './table-shapes.ts';

export async function runStream(m: PipelineManager): Promise<never> {
  const { state } = m;
  for (;;) {
    m.restartStream = false;
    m.streamRuns++;
    const scope = new CancellationScope();
    const from = state.confirmedLsn ?? 'slot start';
    const input = {
      config: m.config,
      tables: state.tables,
      startLsn: state.confirmedLsn,
      workflowId: workflowInfo().workflowId,
      ...streamShapeInput(state),
    };
    const run = scope.run(() =>
      streamChanges.executeWithOptions({ summary: `stream changes of ${state.tables.length} table(s) from ${from}` }, [
        input,
      ]),
    );
    await Promise.race([run, condition(() => m.restartStream)]);
    scope.cancel();
    await run.catch((e) => {
      if (!isCancellation(e) && !patched(Patch.CancelledRunEnds)) throw e;
    });
  }
}

export async function runBackfills(m: PipelineManager): Promise<never> {
  const { state } = m;
  for (;;) {
    await condition(() => m.needsBackfill().length > 0);
    m.backfilling = true;
    m.setPhase('backfilling');
    const tables = m.needsBackfill();
    try {
      await backfillTables({
        config: m.config,
        tables,
        progress: state.progress,
        onSnapshot: (lsn) => {
          m.snapshotLsn = lsn;
          if (lsn) clearError(state, SNAPSHOT);
        },
        onError: (message) => noteError(state, SNAPSHOT, message),
        onRefused: (refusal, lsn) => m.tables.onBackfillRefused(refusal, lsn),
        onMissing: (table, reason, lsn) => m.tables.onBackfillMissing(table, reason, lsn),
        schemas: () => state.schemas,
        onReshaped: (table, reason, lsn) => m.tables.onBackfillReshaped(table, reason, lsn),
        onCopyProgress: (p) => m.onCopyProgress(p),
      });
      clearError(state, 'backfill', ...tables.map(backfillOf));
    } finally {
      m.backfilling = false;
    }
    m.setPhase('streaming');
  }
}
