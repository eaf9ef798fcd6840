/**
 * The pipeline workflow (id `walflow-<pipeline>`): preflight, replication slot,
 * then the change stream and the backfill side by side. Backfill rows carry
 * their snapshot's LSN and changes their commit LSN, and destinations keep the
 * highest version per key, so the two may race. Runs until dropped, pausing on
 * request and continuing-as-new to keep its history short.
 */
import {
  ActivityCancellationType, allHandlersFinished, CancellationScope, condition, continueAsNew, isCancellation, log,
  patched, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { configDifferences, liveChangeRefusals, parsePipelineConfig, type PipelineConfig } from '../lib/config.ts';
import { ErrorType, NEEDS_OPERATOR } from '../lib/errors.ts';
import { addCopyProgress, backfillTables, errorMessage } from './backfill.ts';
import { backfillOf, clearError, noteError, PIPELINE, setWarnings, SNAPSHOT, STREAM } from './errors.ts';
import { Patch } from './patches.ts';
import { isSlotLost, recoverLostSlot } from './slot-lost.ts';
import { forgetTables, recordTableShapes, streamShapeInput, tableErrorSummary, tablesStatus } from './tables.ts';
import { addTablesUpdate, applyConfigUpdate, copyProgressSignal, dropUpdate, pauseSignal, phaseKey, removeTablesUpdate, resumeSignal, resyncTablesUpdate, statusQuery, streamProgressSignal, tableShapeSignal, type PipelineInput, type PipelineState } from '../lib/contract/pipeline.ts';
import type { PipelineStatus, Phase, TableProgress } from '../lib/contract/status.ts';
import { statusPublisher, validInput } from './publish.ts';

const { preflightPipeline, ensureSlot, alterPublication, dropPipeline } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds', // a worker that dies mid-way is noticed in seconds
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: [ErrorType.Config, ErrorType.PreflightFailed] },
});

/** Rebuilding a destination table for `resyncTables`: a failure goes back to the operator who asked. */
const { rebuildTables } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NEEDS_OPERATOR },
});

/** Streams until cancelled; transient failures (network, destination down) are retried without end. */
const { streamChanges } = proxyActivities<Activities>({
  startToCloseTimeout: '30 days',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  // Short backoff: a stream is worth retrying soon (a destination or Postgres back after a restart).
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds', nonRetryableErrorTypes: NEEDS_OPERATOR },
});

/** Continue-as-new after this many history events even if the server has not suggested it yet. */
const DEFAULT_MAX_HISTORY_EVENTS = 10_000;
/** ... or after this many streaming activity runs. */
const MAX_STREAM_RUNS = 100;

const emptyProgress = (): TableProgress => ({
  backfill: 'pending', rangesDone: 0, rangesTotal: 0, rowsCopied: 0, rowsEstimate: 0,
  changes: { inserts: 0, updates: 0, deletes: 0, truncates: 0 },
});

export async function pipelineWorkflow(input: PipelineInput): Promise<void> {
  let config = validInput(input.config);
  const state: PipelineState = input.state ?? {
    initialized: false, paused: false, tables: [...config.source.tables], confirmedLsn: null, lagBytes: null,
    progress: Object.fromEntries(config.source.tables.map((t) => [t, emptyProgress()])), lastError: null, continuedAsNew: 0,
  };
  let phase: Phase = 'starting';
  let snapshotLsn: string | null = null;
  let dropRequested = false;
  let restartStream = false;
  let reconfigure = false;
  let streamRuns = 0;
  let backfilling = false;
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;

  const status = (): PipelineStatus => ({
    pipeline: config.id, phase, paused: state.paused, confirmedLsn: state.confirmedLsn, lagBytes: state.lagBytes,
    snapshotLsn, tables: tablesStatus(state), lastError: state.lastError ?? tableErrorSummary(state), continuedAsNew: state.continuedAsNew,
    errors: state.errors ?? {}, warnings: state.warnings ?? [],
  });
  const publish = statusPublisher(status);
  const setPhase = (p: Phase) => {
    if (p === phase) return;
    phase = p;
    upsertSearchAttributes([{ key: phaseKey, value: p }]);
    publish();
  };
  /** Adds and removes tables in the publication, then in the state; the stream restarts on the new list. */
  const changeTables = async (add: string[], remove: string[], next = config) => {
    const tables = [...state.tables.filter((t) => !remove.includes(t)), ...add];
    if (add.length || remove.length) await alterPublication(next, { add, remove, tables });
    forgetTables(state, [...add, ...remove]);
    for (const t of remove) delete state.progress[t];
    clearError(state, ...remove.map(backfillOf));
    for (const t of add) state.progress[t] = emptyProgress();
    state.tables = tables;
    restartStream = true;
    publish();
    return state.tables;
  };
  const needsBackfill = () => state.tables.filter((t) => state.progress[t]?.backfill !== 'done');
  const shouldContinueAsNew = () => !backfilling
    && (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > maxEvents || streamRuns >= MAX_STREAM_RUNS);

  setHandler(statusQuery, status);
  setHandler(pauseSignal, () => { state.paused = true; });
  setHandler(resumeSignal, () => { state.paused = false; });
  setHandler(streamProgressSignal, (p) => {
    setWarnings(state, p.warnings);
    if (p.error) {
      noteError(state, STREAM, p.error);
      publish();
      return;
    }
    state.confirmedLsn = p.confirmedLsn;
    state.lagBytes = p.lagBytes;
    clearError(state, STREAM, PIPELINE);
    for (const [table, c] of Object.entries(p.changes)) {
      const counters = (state.progress[table] ??= emptyProgress()).changes;
      counters.inserts += c.inserts;
      counters.updates += c.updates;
      counters.deletes += c.deletes;
      counters.truncates += c.truncates;
    }
    publish();
  });
  setHandler(tableShapeSignal, (report) => {
    recordTableShapes(state, report);
    // A stopped table shows as lastError while no component has an error of its own (see status()).
    if (report.errors) log.error(tableErrorSummary(state) ?? '');
    publish();
  });
  setHandler(copyProgressSignal, (p) => {
    const error = addCopyProgress(state.progress, p);
    const copied = Object.entries(p.tables).filter(([, c]) => c.ranges > 0).map(([t]) => backfillOf(t));
    if (copied.length) clearError(state, 'backfill', ...copied); // a range copied: planning worked, and so did that table
    if (error) noteError(state, p.errorTable ? backfillOf(p.errorTable) : 'backfill', error);
    publish();
  });
  setHandler(addTablesUpdate, (tables) => changeTables(tables, []), {
    validator: (tables: string[]) => {
      if (tables.length === 0) throw new Error('name at least one table');
      const known = tables.filter((t) => state.tables.includes(t));
      if (known.length) throw new Error(`already in pipeline ${config.id}: ${known.join(', ')}`);
    },
  });
  setHandler(removeTablesUpdate, (tables) => changeTables([], tables), {
    validator: (tables: string[]) => {
      const unknown = tables.filter((t) => !state.tables.includes(t));
      if (unknown.length) throw new Error(`not in pipeline ${config.id}: ${unknown.join(', ')}`);
      if (unknown.length === 0 && tables.length >= state.tables.length) throw new Error('a pipeline keeps at least one table; use `walflow drop` to end it');
    },
  });
  setHandler(applyConfigUpdate, async (raw) => {
    const next = parsePipelineConfig(raw, 'applyConfig input');
    const changed = configDifferences({ ...config, source: { ...config.source, tables: state.tables } }, next);
    if (changed.length === 0) return { changed, tables: state.tables };
    const tables = await changeTables(next.source.tables.filter((t) => !state.tables.includes(t)), state.tables.filter((t) => !next.source.tables.includes(t)), next);
    config = next;
    reconfigure = true; // the stream and a backfill under way start again with the new settings
    return { changed, tables };
  }, {
    validator: (raw: PipelineConfig) => {
      const refusals = liveChangeRefusals(config, parsePipelineConfig(raw, 'applyConfig input'));
      if (refusals.length) throw new Error(`cannot change pipeline ${config.id} in place:\n- ${refusals.join('\n- ')}`);
    },
  });
  setHandler(resyncTablesUpdate, async (tables) => {
    // The stream skips an errored table's changes and acknowledges past them: a fresh copy restores it.
    // The table is rebuilt with the source's shape, the stream writes its changes committed from then
    // on, and only once that stream runs is the snapshot taken (so the two overlap, never leave a gap).
    const rebuilt = await rebuildTables(config, tables);
    state.schemas = { ...state.schemas, ...rebuilt.schemas };
    state.copyFrom = { ...state.copyFrom, ...Object.fromEntries(tables.map((t) => [t, rebuilt.lsn])) };
    for (const t of tables) delete state.tableErrors?.[t];
    const runs = streamRuns;
    restartStream = true;
    await condition(() => streamRuns > runs || state.paused || dropRequested);
    for (const t of tables) state.progress[t] = { ...emptyProgress(), changes: state.progress[t]?.changes ?? emptyProgress().changes };
    publish();
    return tables;
  }, {
    validator: (tables: string[]) => {
      const notErrored = tables.filter((t) => !state.tableErrors?.[t]);
      if (!tables.length || notErrored.length) throw new Error(`not errored in pipeline ${config.id}: ${notErrored.join(', ') || '(no tables named)'}`);
    },
  });
  setHandler(dropUpdate, async () => {
    dropRequested = true;
    await condition(() => phase === 'dropped');
  });

  publish();

  const waitForOperator = async (failure: string) => {
    // Not retryable (bad config, a misconfigured source): say why and wait for a fix and `resume`.
    log.error(`pipeline ${config.id} stopped: ${failure}`);
    noteError(state, PIPELINE, failure);
    state.paused = true;
    setPhase('failed');
    await condition(() => !state.paused || dropRequested);
  };

  while (!state.initialized && !dropRequested) {
    try {
      await preflightPipeline(config, state.tables);
      const slot = await ensureSlot(config, state.tables);
      state.confirmedLsn ??= slot.confirmedLsn;
      state.initialized = true;
      clearError(state, PIPELINE);
    } catch (e) {
      await waitForOperator(errorMessage(e));
    }
  }

  const runStream = async () => {
    for (;;) {
      restartStream = false;
      streamRuns++;
      const scope = new CancellationScope();
      const run = scope.run(() => streamChanges.executeWithOptions(
        { summary: `stream changes of ${state.tables.length} table(s) from ${state.confirmedLsn ?? 'slot start'}` },
        [{ config, tables: state.tables, startLsn: state.confirmedLsn, workflowId: workflowInfo().workflowId, ...streamShapeInput(state) }],
      ));
      await Promise.race([run, condition(() => restartStream)]);
      scope.cancel();
      await run.catch((e) => { if (!isCancellation(e)) throw e; });
    }
  };
  const runBackfills = async () => {
    for (;;) {
      await condition(() => needsBackfill().length > 0);
      backfilling = true;
      setPhase('backfilling');
      const tables = needsBackfill();
      try {
        await backfillTables({
          config, tables, progress: state.progress,
          onSnapshot: (lsn) => { snapshotLsn = lsn; if (lsn) clearError(state, SNAPSHOT); },
          onError: (message) => noteError(state, SNAPSHOT, message),
        });
        clearError(state, 'backfill', ...tables.map(backfillOf));
      } finally {
        backfilling = false;
      }
      setPhase('streaming');
    }
  };

  while (!dropRequested) {
    if (state.paused) {
      setPhase('paused');
      await condition(() => !state.paused || dropRequested);
      continue;
    }
    if (shouldContinueAsNew()) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof pipelineWorkflow>({ ...input, config, state: { ...state, continuedAsNew: state.continuedAsNew + 1 } });
    }
    setPhase(needsBackfill().length ? 'backfilling' : 'streaming');
    let failure: string | undefined;
    let slotLost = false;
    const scope = new CancellationScope();
    const work = scope.run(() => Promise.all([runStream(), runBackfills()])).catch((e) => {
      if (!isCancellation(e)) failure = errorMessage(e);
      slotLost = isSlotLost(e);
    });
    reconfigure = false;
    await Promise.race([work, condition(() => state.paused || dropRequested || reconfigure || shouldContinueAsNew())]);
    scope.cancel();
    await work;
    if (failure && slotLost && patched(Patch.SlotLostRecovery)) {
      // The slot's WAL is gone: a new slot and a resync of every table, on the operator's word or by config.
      if (config.onSlotLost !== 'resync') await waitForOperator(`${failure}. Run \`walflow resume ${config.id}\` to recreate the slot and resync every table (or set onSlotLost: resync to have walflow do it), and raise max_slot_wal_keep_size`);
      if (!dropRequested) await recoverLostSlot(config, state, failure);
    } else if (failure) await waitForOperator(failure);
  }

  setPhase('dropping');
  await dropPipeline(config);
  setPhase('dropped');
  await condition(allHandlersFinished);
}
