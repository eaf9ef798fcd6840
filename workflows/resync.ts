/**
 * Resync: re-copies tables from a fresh snapshot while the pipeline's change
 * stream keeps running, then removes destination rows the copy did not
 * rewrite (they no longer exist in the source). Started by `walflow resync`
 * or by a Temporal Schedule (`walflow schedule resync`).
 */
import { proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { ErrorType } from '../lib/errors.ts';
import { addCopyProgress, backfillTables } from './backfill.ts';
import { copyProgressSignal, statusQuery, type ResyncInput, type TableProgress } from './definitions.ts';

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
  const { config } = input;
  const tables = input.tables?.length ? input.tables : config.source.tables;
  const progress: Record<string, TableProgress> = Object.fromEntries(tables.map((t) => [t, {
    backfill: 'pending', rangesDone: 0, rangesTotal: 0, rowsCopied: 0, rowsEstimate: 0,
    changes: { inserts: 0, updates: 0, deletes: 0, truncates: 0 },
  } satisfies TableProgress]));
  let snapshotLsn: string | null = null;
  let lastError: string | null = null;

  setHandler(copyProgressSignal, (p) => {
    lastError = addCopyProgress(progress, p) ?? lastError;
  });
  setHandler(statusQuery, () => ({
    pipeline: config.id, phase: 'backfilling', paused: false, confirmedLsn: null, lagBytes: null, snapshotLsn,
    tables: progress, lastError, continuedAsNew: 0,
  }));

  const lsn = await backfillTables({
    config, tables, progress,
    onSnapshot: (l) => { snapshotLsn = l ?? snapshotLsn; },
    onError: (m) => { lastError = m; },
  });
  for (const table of tables) await removeStaleRows(config, table, lsn);
  return { tables, snapshotLsn: lsn, rowsCopied: Object.values(progress).reduce((n, t) => n + t.rowsCopied, 0) };
}
