/**
 * The operator's requests on a pipeline's tables (add, remove, resync, a new config) and the stream's
 * reports about them, applied to the PipelineManager's state. Each ends with the stream restarting on
 * the new tables or shapes; a resync also waits for that stream before its copy starts.
 */
import { CancellationScope, condition, log } from '@temporalio/workflow';
import { canResync, configDifferences, parsePipelineConfig, type PipelineConfig } from '../lib/config.ts';
import type { ConfigApplied } from '../lib/contract/pipeline.ts';
import type { TableShapeReport } from '../lib/contract/status.ts';
import { recopyFix, type DataRefusedDetails } from '../lib/errors.ts';
import { alterPublication, rebuildTables } from './pipeline-activities.ts';
import type { PipelineManager } from './pipeline-manager.ts';
import { recordTableShapes, tablesToRecopy } from './table-shapes.ts';
import { backfillRefusal, restartBackfill, setTables, startResync, tableErrorSummary } from './tables.ts';

export class TableOperations {
  constructor(private readonly m: PipelineManager) {}

  async onTableShape(report: TableShapeReport): Promise<void> {
    const { m } = this;
    recordTableShapes(m.state, report);
    // lastError too, while no component has one
    if (Object.keys(report.errors ?? {}).length) log.error(tableErrorSummary(m.state) ?? '');
    m.publish();
    const recopy = tablesToRecopy(m.state, report);
    if (recopy.length && canResync(m.config.destination)) await this.resync(recopy);
  }

  onBackfillRefused(refusal: DataRefusedDetails, snapshotLsn: string): void {
    const error = backfillRefusal(this.m.config.id, refusal, snapshotLsn);
    void this.onTableShape({ errors: { [refusal.table]: error } }); // no re-copy: the operator's fix
    this.m.restartStream = true; // the stream skips the table from now on
  }

  /** A table gone from the source by its name before its copy: stopped, for the operator to add it by its new name. */
  onBackfillMissing(table: string, reason: string, snapshotLsn: string): void {
    const id = this.m.config.id;
    const fix = `walflow tables remove ${id} ${table}, then walflow tables add ${id} <its name now>`;
    const error = { reason: `${reason} (renamed or dropped?)`, lsn: snapshotLsn, since: new Date().toISOString(), fix };
    void this.onTableShape({ errors: { [table]: error } });
    this.m.restartStream = true;
  }

  /** A table whose shape changed between its record and the backfill's snapshot: stopped, and re-copied at once. */
  onBackfillReshaped(table: string, reason: string, snapshotLsn: string): void {
    const since = new Date().toISOString();
    const error = { reason, lsn: snapshotLsn, since, fix: recopyFix(this.m.config.id, table), recopy: true } as const;
    // Outside the backfill's scope, as the stream's reports are: that scope ends (cancelling what it started) with the
    // copy of the other tables, before the re-copy's rebuild has.
    void CancellationScope.nonCancellable(() => this.onTableShape({ errors: { [table]: error } }));
  }

  add(tables: string[]): Promise<string[]> {
    return this.change(tables, []);
  }

  remove(tables: string[]): Promise<string[]> {
    return this.change([], tables);
  }

  async applyConfig(raw: PipelineConfig): Promise<ConfigApplied> {
    const { m } = this;
    const current = m.state.tables;
    const next = parsePipelineConfig(raw, 'applyConfig input');
    const changed = configDifferences({ ...m.config, source: { ...m.config.source, tables: current } }, next);
    if (changed.length === 0) return { changed, tables: current };
    const add = next.source.tables.filter((t) => !current.includes(t));
    const tables = await this.change(
      add,
      current.filter((t) => !next.source.tables.includes(t)),
      next,
    );
    m.config = next;
    m.reconfigure = true;
    return { changed, tables };
  }

  /**
   * The stream skips an errored table's changes and acknowledges past them: a fresh copy restores it.
   * The table is rebuilt with the source's shape, the stream writes its changes committed from then
   * on, and only once that stream runs is the snapshot taken (so the two overlap, never leave a gap).
   */
  async resync(tables: string[]): Promise<string[]> {
    const { m } = this;
    startResync(m.state, tables, await rebuildTables(m.config, tables));
    const runs = m.streamRuns;
    m.restartStream = true;
    // (Or the stream stopped for continue-as-new: the next run's stream and snapshot come after it.)
    await condition(() => m.streamRuns > runs || m.continuing || m.state.paused || m.dropRequested);
    restartBackfill(m.state, tables);
    m.publish();
    return tables;
  }

  /** Adds and removes tables in the publication, then in the state; the stream restarts on the new list. */
  private async change(add: string[], remove: string[], next = this.m.config): Promise<string[]> {
    const { state } = this.m;
    const tables = [...state.tables.filter((t) => !remove.includes(t)), ...add];
    const altered = add.length || remove.length ? await alterPublication(next, { add, remove, tables }) : undefined;
    setTables(state, tables, { add, remove, addedAt: altered?.lsn, shapes: altered?.schemas });
    this.m.restartStream = true;
    this.m.publish();
    return state.tables;
  }
}
