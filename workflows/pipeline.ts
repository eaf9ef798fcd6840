/**
 * The pipeline workflow (id `walflow-<pipeline>`): preflight, replication slot,
 * then the change stream and the backfill side by side. Backfill rows carry
 * their snapshot's LSN and changes their commit LSN, and destinations keep the
 * highest version per key, so the two may race. Runs until dropped, pausing on
 * request and continuing-as-new to keep its history short. This file is wiring:
 * state and rules live in PipelineManager (pipeline-manager.ts), the loops in pipeline-loops.ts.
 */
import {
  allHandlersFinished,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  setHandler,
} from '@temporalio/workflow';
import {
  addTablesUpdate,
  applyConfigUpdate,
  copyProgressSignal,
  dropUpdate,
  pauseSignal,
  removeTablesUpdate,
  resumeSignal,
  resyncTablesUpdate,
  statusQuery,
  streamProgressSignal,
  tableShapeSignal,
  type PipelineInput,
} from '../lib/contract/pipeline.ts';
import { rootMessage } from '../lib/errors.ts';
import { clearError, PIPELINE } from './errors.ts';
import { Patch } from './patches.ts';
import { dropPipeline, ensureSlot, preflightPipeline } from './pipeline-activities.ts';
import { runBackfills, runStream } from './pipeline-loops.ts';
import { PipelineManager } from './pipeline-manager.ts';
import { recordStartShapes } from './table-shapes.ts';
import { refuseAdd, refuseConfig, refuseRemove, refuseResync } from './pipeline-rules.ts';
import { isSlotLost, recoverLostSlot, slotLostHelp } from './slot-lost.ts';

export async function pipelineWorkflow(input: PipelineInput): Promise<void> {
  const m = new PipelineManager(input);
  const { state } = m;
  setHandler(statusQuery, () => m.status());
  setHandler(pauseSignal, () => m.pause());
  setHandler(resumeSignal, () => m.resume());
  setHandler(streamProgressSignal, (p) => m.onStreamProgress(p));
  setHandler(tableShapeSignal, (report) => m.tables.onTableShape(report));
  setHandler(copyProgressSignal, (p) => m.onCopyProgress(p));
  setHandler(addTablesUpdate, (t) => m.tables.add(t), { validator: (t) => refuseAdd(state, m.config, t) });
  setHandler(removeTablesUpdate, (t) => m.tables.remove(t), { validator: (t) => refuseRemove(state, m.config, t) });
  setHandler(applyConfigUpdate, (raw) => m.tables.applyConfig(raw), {
    validator: (raw) => refuseConfig(m.config, raw),
  });
  setHandler(resyncTablesUpdate, (t) => m.tables.resync(t), { validator: (t) => refuseResync(state, m.config, t) });
  setHandler(dropUpdate, () => m.drop());
  m.publish();

  while (!state.initialized && !m.dropRequested) {
    try {
      await preflightPipeline(m.config, state.tables);
      const slot = await ensureSlot(m.config, state.tables);
      state.confirmedLsn ??= slot.confirmedLsn;
      recordStartShapes(state, slot.schemas);
      state.initialized = true;
      clearError(state, PIPELINE);
    } catch (e) {
      await m.waitForOperator(rootMessage(e));
    }
  }

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
    const work = scope
      .run(() => Promise.all([runStream(m), runBackfills(m)]))
      .catch((e) => {
        if (!isCancellation(e) && !(cancelled && patched(Patch.CancelledRunEnds))) failure = rootMessage(e);
        slotLost = isSlotLost(e);
      });
    m.reconfigure = false;
    await Promise.race([
      work,
      condition(() => state.paused || m.dropRequested || m.reconfigure || m.shouldContinueAsNew()),
    ]);
    cancelled = true;
    scope.cancel();
    await work;
    if (failure && slotLost && patched(Patch.SlotLostRecovery)) {
      // The slot's WAL is gone: a new slot and a resync of every table, on the operator's word or by config.
      if (m.config.onSlotLost !== 'resync') await m.waitForOperator(slotLostHelp(m.config.id, failure));
      if (!m.dropRequested) await recoverLostSlot(m.config, state, failure);
    } else if (failure) await m.waitForOperator(failure);
  }

  m.setPhase('dropping');
  await dropPipeline(m.config);
  m.setPhase('dropped');
  await condition(allHandlersFinished);
}
