/**
 * The pipeline workflow's state and the rules its handlers follow: what status shows, which operator
 * requests are accepted, how tables are added, removed and resynced, when to continue-as-new.
 * `pipeline.ts` wires it to Temporal's handlers and runs the stream and backfill loops.
 */
import { condition, log, patched, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { canResync, configDifferences, parsePipelineConfig, type PipelineConfig } from '../lib/config.ts';
import { phaseKey, type ConfigApplied, type CopyProgress, type PipelineInput, type PipelineState, type StreamProgress } from '../lib/contract/pipeline.ts';
import type { Phase, PipelineStatus, TableShapeReport } from '../lib/contract/status.ts';
import type { DataRefusedDetails } from '../lib/errors.ts';
import { noteError, PIPELINE } from './errors.ts';
import { Patch } from './patches.ts';
import { recordCopyProgress, recordStreamProgress } from './progress.ts';
import { alterPublication, rebuildTables } from './pipeline-activities.ts';
import { statusPublisher, validInput } from './publish.ts';
import { backfillRefusal, initialState, recordTableShapes, tablesToRecopy, restartBackfill, setTables, startResync, tableErrorSummary, tablesStatus } from './tables.ts';

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
      pipeline: config.id, phase: this.phase, paused: state.paused, confirmedLsn: state.confirmedLsn, lagBytes: state.lagBytes,
      snapshotLsn: this.snapshotLsn, tables: tablesStatus(state), lastError: state.lastError ?? tableErrorSummary(state),
      continuedAsNew: state.continuedAsNew, errors: state.errors ?? {}, warnings: state.warnings ?? [],
    };
  }

  setPhase(phase: Phase): void {
    if (phase === this.phase) return;
    this.phase = phase;
    upsertSearchAttributes([{ key: phaseKey, value: phase }]);
    this.publish();
  }

  pause(): void { this.state.paused = true; }
  resume(): void { this.state.paused = false; }
  onStreamProgress(p: StreamProgress): void { recordStreamProgress(this.state, p); this.publish(); }
  onCopyProgress(p: CopyProgress): void { recordCopyProgress(this.state, p); this.publish(); }

  async onTableShape(report: TableShapeReport): Promise<void> {
    recordTableShapes(this.state, report);
    if (Object.keys(report.errors ?? {}).length) log.error(tableErrorSummary(this.state) ?? ''); // lastError too, while no component has one
    this.publish();
    const recopy = tablesToRecopy(this.state, report);
    if (recopy.length && canResync(this.config.destination)) await this.resyncTables(recopy);
  }

  onBackfillRefused(refusal: DataRefusedDetails, snapshotLsn: string): void {
    void this.onTableShape({ errors: { [refusal.table]: backfillRefusal(this.config.id, refusal, snapshotLsn) } }); // no re-copy: the operator's fix
    this.restartStream = true; // the stream skips the table from now on
  }

  addTables(tables: string[]): Promise<string[]> { return this.changeTables(tables, []); }
  removeTables(tables: string[]): Promise<string[]> { return this.changeTables([], tables); }

  async applyConfig(raw: PipelineConfig): Promise<ConfigApplied> {
    const { state } = this;
    const next = parsePipelineConfig(raw, 'applyConfig input');
    const changed = configDifferences({ ...this.config, source: { ...this.config.source, tables: state.tables } }, next);
    if (changed.length === 0) return { changed, tables: state.tables };
    const add = next.source.tables.filter((t) => !state.tables.includes(t));
    const tables = await this.changeTables(add, state.tables.filter((t) => !next.source.tables.includes(t)), next);
    this.config = next;
    this.reconfigure = true;
    return { changed, tables };
  }

  /**
   * The stream skips an errored table's changes and acknowledges past them: a fresh copy restores it.
   * The table is rebuilt with the source's shape, the stream writes its changes committed from then
   * on, and only once that stream runs is the snapshot taken (so the two overlap, never leave a gap).
   */
  async resyncTables(tables: string[]): Promise<string[]> {
    const { state } = this;
    startResync(state, tables, await rebuildTables(this.config, tables));
    const runs = this.streamRuns;
    this.restartStream = true;
    // (Or the stream stopped for continue-as-new: the next run's stream and snapshot come after it.)
    await condition(() => this.streamRuns > runs || this.continuing || state.paused || this.dropRequested);
    restartBackfill(state, tables);
    this.publish();
    return tables;
  }

  async drop(): Promise<void> { // resolves once the slot (and an owned publication) is dropped
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
    return this.state.tables.filter((t) => progress[t]?.backfill !== 'done' && !(this.erroredTablesWait && tableErrors?.[t]));
  }

  shouldContinueAsNew(): boolean {
    const info = workflowInfo();
    return !this.backfilling && (info.continueAsNewSuggested || info.historyLength > this.maxEvents || this.streamRuns >= MAX_STREAM_RUNS);
  }

  nextRunInput(): PipelineInput {
    return { ...this.input, config: this.config, state: { ...this.state, continuedAsNew: this.state.continuedAsNew + 1 } };
  }

  /** Adds and removes tables in the publication, then in the state; the stream restarts on the new list. */
  private async changeTables(add: string[], remove: string[], next = this.config): Promise<string[]> {
    const { state } = this;
    const tables = [...state.tables.filter((t) => !remove.includes(t)), ...add];
    if (add.length || remove.length) await alterPublication(next, { add, remove, tables });
    setTables(state, tables, add, remove);
    this.restartStream = true;
    this.publish();
    return state.tables;
  }
}
