/**
 * Resync: re-copies tables from a fresh snapshot while the pipeline's change
 * stream keeps running, then removes destination rows the copy did not
 * rewrite (they no longer exist in the source). Started by `walflow resync`
 * or by a Temporal Schedule (`walflow schedule resync`).
 */
import { ApplicationFailure, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { canResync } from '../lib/config.ts';
import { ErrorType } from '../lib/errors.ts';
import { backfillTables } from './backfill.ts';
import { addCopyProgress } from './progress.ts';
import { copyProgressSignal, statusQuery, type CopyProgress, type ResyncInput } from '../lib/contract/pipeline.ts';
import { newTableProgress, type PipelineStatus, type TableProgress } from '../lib/contract/status.ts';
import { statusPublisher, validInput } from './publish.ts';

const { removeStaleRows } = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 10, nonRetryableErrorTypes: [ErrorType.Config] },
});

export interface ResyncResult {
  tables: string[];
  snapshotLsn: string;
  rowsCopied: number;
}

export async function resyncWorkflow(input: ResyncInput): Promise<ResyncResult> {
  const config = validInput(input.config);
  if (!canResync(config.destination)) {
    const problem = `a ${config.destination.type} destination cannot be resynced (its rows cannot be read back)`;
    throw ApplicationFailure.nonRetryable(`pipeline ${config.id}: ${problem}`, ErrorType.Config);
  }
  const tables = input.tables?.length ? input.tables : config.source.tables;
  const progress: Record<string, TableProgress> = Object.fromEntries(tables.map((t) => [t, newTableProgress()]));
  let snapshotLsn: string | null = null;
  let lastError: string | null = null;

  const status = (): PipelineStatus => ({
    pipeline: config.id,
    phase: 'backfilling',
    paused: false,
    confirmedLsn: null,
    lagBytes: null,
    snapshotLsn,
    tables: progress,
    lastError,
    continuedAsNew: 0,
  });
  const publish = statusPublisher(status, 'resync');
  const onCopyProgress = (p: CopyProgress) => {
    lastError = addCopyProgress(progress, p) ?? lastError;
    publish();
  };
  setHandler(copyProgressSignal, onCopyProgress);
  setHandler(statusQuery, status);
  publish();

  const lsn = await backfillTables({
    config,
    tables,
    progress,
    onSnapshot: (l) => {
      snapshotLsn = l ?? snapshotLsn;
      publish();
    },
    onError: (m) => {
      lastError = m;
      publish();
    },
    onCopyProgress,
  });
  for (const table of tables) await removeStaleRows(config, table, lsn);
  return { tables, snapshotLsn: lsn, rowsCopied: Object.values(progress).reduce((n, t) => n + t.rowsCopied, 0) };
}
