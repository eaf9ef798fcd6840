/**
 * The pipeline workflow's state and the rules its handlers follow: what status shows, which operator
 * requests are accepted, when to continue-as-new; the requests on tables are its TableOperations.
 * `pipeline.ts` wires it to Temporal's handlers, `pipeline-loops.ts` runs the stream and backfill.
 */
import { condition, log, patched, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { PipelineConfig } from '../lib/config.ts';
import {
  phaseKey,
  type CopyProgress,
  type PipelineInput,
  type PipelineState,
  type StreamProgress,
} from '../lib/contract/pipeline.ts';
import type { Phase, PipelineStatus } from '../lib/contract/status.ts';
import { noteError, PIPELINE } from './errors.ts';
import { Patch } from './patches.ts';
import { recordCopyProgress, recordStreamProgress } from './progress.ts';
import { statusPublisher, validInput } from './publish.ts';
import { TableOperations } from './table-operations.ts';
import { initialState, tableErrorSummary, tablesStatus } from './tables.ts';

/** Continue-as-new after this many history events (unless the input says) or stream runs, if not suggested before. */
const [DEFAULT_MAX_HISTORY_EVENTS, MAX_STREAM_RUNS] = [10_000, 100];

export class PipelineManager {
  config: PipelineConfig;
  readonly state: PipelineState;
  phase: Phase = 'starting';
  snapshotLsn: string | null = null;
  dropRequested = false;
  restartStream = false; // the stream restarts on the current tables and shapes
  /** The config changed: the stream and a backfill under way start again with the new settings. */
  reconfigure = false;
  streamRuns = 0;
  continuing = false; // the stream stopped for good: continue-as-new once the handlers finish
  backfilling = false;
  readonly publish: () => void; // whenever the status may have changed (the UI's details, the memo)
  readonly tables = new TableOperations(this);
  private readonly maxEvents: number;
  private readonly erroredTablesWait = patched(Patch.ErroredTablesWait);

  constructor(private readonly input: PipelineInput) {
    this.config = validInput(input.config);
    this.state = input.state ?? initialState(this.config.source.tables);
    this.maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
    this.publish = statusPublisher(() => this.status());
  }

  status(): PipelineStatus {
    const { config, state } = this;
    return {
      pipeline: config.id,
      phase: this.phase,
      paused: state.paused,
      confirmedLsn: state.confirmedLsn,
      lagBytes: state.lagBytes,
      snapshotLsn: this.snapshotLsn,
      tables: tablesStatus(state),
      lastError: state.lastError ?? tableErrorSummary(state),
      continuedAsNew: state.continuedAsNew,
      errors: state.errors ?? {},
      warnings: state.warnings ?? [],
    };
  }

  setPhase(phase: Phase): void {
    if (phase === this.phase) return;
    this.phase = phase;
    upsertSearchAttributes([{ key: phaseKey, value: phase }]);
    this.publish();
  }

  pause(): void {
    this.state.paused = true;
  }
  resume(): void {
    this.state.paused = false;
  }
  onStreamProgress(p: StreamProgress): void {
    recordStreamProgress(this.state, p);
    this.publish();
  }
  onCopyProgress(p: CopyProgress): void {
    recordCopyProgress(this.state, p);
    this.publish();
  }

  async drop(): Promise<void> {
    // resolves once the slot (and an owned publication) is dropped
    this.dropRequested = true;
    await condition(() => this.phase === 'dropped');
  }

  /** Not retryable (bad config, a misconfigured source): say why and wait for a fix and `resume`. */
  async waitForOperator(failure: string): Promise<void> {
    log.error(`pipeline ${this.config.id} stopped: ${failure}`);
    noteError(this.state, PIPELINE, failure);
    this.state.paused = true;
    this.setPhase('failed');
    await condition(() => !this.state.paused || this.dropRequested);
  }

  /** Tables to copy; an errored one waits for its retry (which re-copies it). */
  needsBackfill(): string[] {
    const { progress, tableErrors } = this.state;
    return this.state.tables.filter(
      (t) => progress[t]?.backfill !== 'done' && !(this.erroredTablesWait && tableErrors?.[t]),
    );
  }

  shouldContinueAsNew(): boolean {
    const info = workflowInfo();
    return (
      !this.backfilling &&
      (info.continueAsNewSuggested || info.historyLength > this.maxEvents || this.streamRuns >= MAX_STREAM_RUNS)
    );
  }

  nextRunInput(): PipelineInput {
    return {
      ...this.input,
      config: this.config,
      state: { ...this.state, continuedAsNew: this.state.continuedAsNew + 1 },
    };
  }
}
