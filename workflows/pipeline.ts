/**
 * The pipeline workflow (id `walflow-<pipeline>`): preflight, replication slot,
 * then the change stream and the backfill side by side. Backfill rows carry
 * their snapshot's LSN and changes their commit LSN, and destinations keep the
 * highest version per key, so the two may race. Runs until dropped, pausing on
 * request and continuing-as-new to keep its history short. This file is wiring:
 * state and rules live in PipelineManager (pipeline-manager.ts).
 */
import {
  allHandlersFinished, CancellationScope, condition, continueAsNew, isCancellation, patched, setHandler, workflowInfo,
} from '@temporalio/workflow';
import {
  addTablesUpdate, applyConfigUpdate, copyProgressSignal, dropUpdate, pauseSignal, removeTablesUpdate, resumeSignal,
  resyncTablesUpdate, statusQuery, streamProgressSignal, tableShapeSignal, type PipelineInput,
} from '../lib/contract/pipeline.ts';
import { rootMessage } from '../lib/errors.ts';
import { backfillTables } from './backfill.ts';
import { backfillOf, clearError, noteError, PIPELINE, SNAPSHOT } from './errors.ts';
import { Patch } from './patches.ts';
import { dropPipeline, ensureSlot, preflightPipeline, streamChanges } from './pipeline-activities.ts';
import { PipelineManager } from './pipeline-manager.ts';
import { refuseAdd, refuseConfig, refuseRemove, refuseResync } from './pipeline-rules.ts';
import { isSlotLost, recoverLostSlot } from './slot-lost.ts';
import { streamShapeInput } from './tables.ts';

export async function pipelineWorkflow(input: PipelineInput): Promise<void> {
  const m = new PipelineManager(input);
  const { state } = m;
  setHandler(statusQuery, () => m.status());
  setHandler(pauseSignal, () => m.pause());
  setHandler(resumeSignal, () => m.resume());
  setHandler(streamProgressSignal, (p) => m.onStreamProgress(p));
  setHandler(tableShapeSignal, (report) => m.onTableShape(report));
  setHandler(copyProgressSignal, (p) => m.onCopyProgress(p));
  setHandler(addTablesUpdate, (tables) => m.addTables(tables), { validator: (tables) => refuseAdd(state, m.config, tables) });
  setHandler(removeTablesUpdate, (tables) => m.removeTables(tables), { validator: (tables) => refuseRemove(state, m.config, tables) });
  setHandler(applyConfigUpdate, (raw) => m.applyConfig(raw), { validator: (raw) => refuseConfig(m.config, raw) });
  setHandler(resyncTablesUpdate, (tables) => m.resyncTables(tables), { validator: (tables) => refuseResync(state, m.config, tables) });
  setHandler(dropUpdate, () => m.drop());
  m.publish();

  while (!state.initialized && !m.dropRequested) {
    try {
      await preflightPipeline(m.config, state.tables);
      const slot = await ensureSlot(m.config, state.tables);
      state.confirmedLsn ??= slot.confirmedLsn;
      state.initialized = true;
      clearError(state, PIPELINE);
    } catch (e) {
      await m.waitForOperator(rootMessage(e));
    }
  }

  const runStream = async () => {
    for (;;) {
      m.restartStream = false;
      m.streamRuns++;
      const scope = new CancellationScope();
      const run = scope.run(() => streamChanges.executeWithOptions(
        { summary: `stream changes of ${state.tables.length} table(s) from ${state.confirmedLsn ?? 'slot start'}` },
        [{ config: m.config, tables: state.tables, startLsn: state.confirmedLsn, workflowId: workflowInfo().workflowId, ...streamShapeInput(state) }],
      ));
      await Promise.race([run, condition(() => m.restartStream)]);
      scope.cancel();
      await run.catch((e) => { if (!isCancellation(e) && !patched(Patch.CancelledRunEnds)) throw e; });
    }
  };
  const runBackfills = async () => {
    for (;;) {
      await condition(() => m.needsBackfill().length > 0);
      m.backfilling = true;
      m.setPhase('backfilling');
      const tables = m.needsBackfill();
      try {
        await backfillTables({
          config: m.config, tables, progress: state.progress,
          onSnapshot: (lsn) => { m.snapshotLsn = lsn; if (lsn) clearError(state, SNAPSHOT); },
          onError: (message) => noteError(state, SNAPSHOT, message),
          onRefused: (refusal, lsn) => m.onBackfillRefused(refusal, lsn),
        });
        clearError(state, 'backfill', ...tables.map(backfillOf));
      } finally {
        m.backfilling = false;
      }
      m.setPhase('streaming');
    }
  };

  while (!m.dropRequested) {
    if (state.paused) {
      m.setPhase('paused');
      await condition(() => !state.paused || m.dropRequested);
      continue;
    }
    if (m.shouldContinueAsNew()) {
      m.continuing = true;
      await condition(allHandlersFinished);
      await continueAsNew<typeof pipelineWorkflow>(m.nextRunInput());
    }
    m.setPhase(m.needsBackfill().length ? 'backfilling' : 'streaming');
    let failure: string | undefined;
    let slotLost = false;
    const scope = new CancellationScope();
    let cancelled = false;
    const work = scope.run(() => Promise.all([runStream(), runBackfills()])).catch((e) => {
      if (!isCancellation(e) && !(cancelled && patched(Patch.CancelledRunEnds))) failure = rootMessage(e);
      slotLost = isSlotLost(e);
    });
    m.reconfigure = false;
    await Promise.race([work, condition(() => state.paused || m.dropRequested || m.reconfigure || m.shouldContinueAsNew())]);
    cancelled = true;
    scope.cancel();
    await work;
    if (failure && slotLost && patched(Patch.SlotLostRecovery)) {
      // The slot's WAL is gone: a new slot and a resync of every table, on the operator's word or by config.
      if (m.config.onSlotLost !== 'resync') await m.waitForOperator(`${failure}. Run \`walflow resume ${m.config.id}\` to recreate the slot and resync every table (or set onSlotLost: resync to have walflow do it), and raise max_slot_wal_keep_size`);
      if (!m.dropRequested) await recoverLostSlot(m.config, state, failure);
    } else if (failure) await m.waitForOperator(failure);
  }

  m.setPhase('dropping');
  await dropPipeline(m.config);
  m.setPhase('dropped');
  await condition(allHandlersFinished);
}
