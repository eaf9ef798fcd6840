/**
 * A replication slot Postgres invalidated (wal_status lost) can never stream again: the WAL it needed
 * is gone. Recovery is a new slot, then a resync of every table from a snapshot taken after it (the
 * stream covers what follows the snapshot; the resync removes rows the lost WAL had deleted).
 */
import { log, ParentClosePolicy, proxyActivities, startChild, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import type { PipelineConfig } from '../lib/config.ts';
import { ErrorType, hasFailureType } from '../lib/errors.ts';
import type { PipelineState } from '../lib/contract/pipeline.ts';
import { clearError, noteError, PIPELINE } from './errors.ts';
import { resyncWorkflow } from './resync.ts';

const { recreateSlot } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { maximumInterval: '1 minute', nonRetryableErrorTypes: [ErrorType.Config] },
});

const SLOT = 'slot';

export const isSlotLost = (e: unknown): boolean => hasFailureType(e, ErrorType.SlotLost);

/** What the operator reads when the slot is lost and walflow waits for their word. */
export const slotLostHelp = (pipeline: string, failure: string): string =>
  `${failure}. Run \`walflow resume ${pipeline}\` to recreate the slot and resync every table ` +
  '(or set onSlotLost: resync to have walflow do it), and raise max_slot_wal_keep_size';

/** Recreates the slot (the stream restarts from its consistent point) and starts a resync of every table. */
export async function recoverLostSlot(config: PipelineConfig, state: PipelineState, failure: string): Promise<void> {
  noteError(state, SLOT, `${failure}; recreating the slot and resyncing every table`);
  const slot = await recreateSlot(config);
  state.confirmedLsn = slot.confirmedLsn;
  state.lagBytes = null;
  const resync = await startChild(resyncWorkflow, {
    workflowId: `${workflowInfo().workflowId}-slot-lost-${Date.now()}`,
    args: [{ config, tables: [...state.tables] }],
    parentClosePolicy: ParentClosePolicy.ABANDON,
  });
  const tables = state.tables.join(', ');
  log.warn(
    `pipeline ${config.id}: slot recreated at ${slot.confirmedLsn}; resync ${resync.workflowId} re-copies ${tables}`,
  );
  clearError(state, SLOT, PIPELINE);
}
