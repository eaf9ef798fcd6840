/**
 * Per-table state of the pipeline workflow: what each destination table holds, the tables the stream
 * stopped (errored) and why, and the tables being re-copied after an error. Plain functions over the
 * workflow's state, so the pipeline workflow only wires them to its handlers.
 */
import type { PipelineState } from '../lib/contract/pipeline.ts';
import { refusedDataFix, type DataRefusedDetails } from '../lib/errors.ts';
import {
  newTableProgress,
  type TableError,
  type TableProgress,
  type TableShapeReport,
  type TableState,
} from '../lib/contract/status.ts';
import type { TableSchema } from '../lib/model.ts';
import { backfillOf, clearError } from './errors.ts';

export type TableChange = {
  add: string[];
  remove: string[];
  addedAt?: string;
  /** The added tables' shapes as of addedAt (absent in histories from before alterPublication read them). */
  shapes?: Record<string, TableSchema>;
};

/** A new pipeline's state: nothing copied, nothing confirmed. */
export function initialState(tables: string[]): PipelineState {
  return {
    initialized: false,
    paused: false,
    tables: [...tables],
    confirmedLsn: null,
    lagBytes: null,
    progress: Object.fromEntries(tables.map((t) => [t, newTableProgress()])),
    lastError: null,
    continuedAsNew: 0,
  };
}

/** Merges a stream report; a table's first error stands until its fix. */
export function recordTableShapes(state: PipelineState, report: TableShapeReport): void {
  if (report.schemas) state.schemas = { ...state.schemas, ...report.schemas };
  for (const [table, error] of Object.entries(report.errors ?? {})) {
    if (!state.tables.includes(table)) continue;
    state.tableErrors ??= {};
    state.tableErrors[table] ??= error;
  }
}

/** Tables of `report` newly errored that walflow re-copies itself (their first error is one a re-copy cures). */
export function tablesToRecopy(state: PipelineState, report: TableShapeReport): string[] {
  return Object.entries(report.errors ?? {})
    .filter(([t, e]) => e.recopy && state.tableErrors?.[t] === e)
    .map(([t]) => t);
}

/** The errored tables, as lastError shows them (kept while they stay errored, whatever else progresses). */
export function tableErrorSummary(state: PipelineState): string | null {
  const errors = Object.entries(state.tableErrors ?? {});
  if (!errors.length) return null;
  const line = (table: string, e: TableError) =>
    `table ${table} stopped at LSN ${e.lsn}: ${e.reason}` +
    `${e.statement ? ` (source: ${e.statement})` : ''}; its changes are not written, ` +
    `the other tables keep streaming; fix: ${e.fix}`;
  return errors.map(([table, e]) => line(table, e)).join('\n');
}

function tableState(state: PipelineState, table: string, p: TableProgress): TableState {
  if (state.tableErrors?.[table]) return 'errored';
  if (state.paused) return 'paused';
  if (p.backfill === 'done') return 'streaming';
  return state.copyFrom?.[table] ? 'resyncing' : 'backfilling';
}

/** Per-table progress with each table's state (and error), for the status query. */
export function tablesStatus(state: PipelineState): Record<string, TableProgress> {
  return Object.fromEntries(
    Object.entries(state.progress).map(([t, p]) => {
      const error = state.tableErrors?.[t];
      const dropped = state.schemas?.[t]?.columns.filter((c) => c.dropped).map((c) => c.name) ?? [];
      return [
        t,
        {
          ...p,
          state: tableState(state, t, p),
          ...(error ? { error } : {}),
          ...(dropped.length ? { droppedColumns: dropped } : {}),
        },
      ];
    }),
  );
}

/** What the stream activity needs to follow shapes: only the fields that are set (older histories carry none). */
export function streamShapeInput(state: PipelineState): {
  schemas?: PipelineState['schemas'];
  stopped?: string[];
  copyFrom?: Record<string, string>;
} {
  const stopped = Object.keys(state.tableErrors ?? {});
  // A resync comes after the table's add, so its LSN is the later one where both are set.
  const copyFrom = state.addedAt || state.copyFrom ? { ...state.addedAt, ...state.copyFrom } : undefined;
  return {
    ...(state.schemas ? { schemas: state.schemas } : {}),
    ...(stopped.length ? { stopped } : {}),
    ...(copyFrom ? { copyFrom } : {}),
  };
}

/**
 * The pipeline's tables become `tables`: what was known of those added or removed no longer holds. `addedAt`: the
 * LSN the added tables' changes count from (absent in histories from before alterPublication returned it).
 */
export function setTables(state: PipelineState, tables: string[], change: TableChange): void {
  const { add, remove, addedAt } = change;
  for (const t of [...add, ...remove]) {
    delete state.schemas?.[t];
    delete state.tableErrors?.[t];
    delete state.copyFrom?.[t];
    delete state.addedAt?.[t];
  }
  if (addedAt && add.length) state.addedAt = { ...state.addedAt, ...Object.fromEntries(add.map((t) => [t, addedAt])) };
  recordStartShapes(state, change.shapes);
  for (const t of remove) delete state.progress[t];
  clearError(state, ...remove.map(backfillOf));
  for (const t of add) state.progress[t] = newTableProgress();
  state.tables = tables;
}

/**
 * The tables' shapes where the stream starts following them (the slot's start, a table's add): what their
 * destination tables are compared with. Not the catalog's when the stream starts, which may be past a DDL of
 * WAL still to come. A shape already recorded stands.
 */
export function recordStartShapes(state: PipelineState, shapes: Record<string, TableSchema> | undefined): void {
  const fresh = Object.entries(shapes ?? {}).filter(([t]) => !state.schemas?.[t]);
  if (fresh.length) state.schemas = { ...state.schemas, ...Object.fromEntries(fresh) };
}

/** Errored tables rebuilt with the source's shape: the stream writes their changes committed from `lsn` on. */
export function startResync(
  state: PipelineState,
  tables: string[],
  rebuilt: { schemas: Record<string, TableSchema>; lsn: string },
): void {
  state.schemas = { ...state.schemas, ...rebuilt.schemas };
  state.copyFrom = { ...state.copyFrom, ...Object.fromEntries(tables.map((t) => [t, rebuilt.lsn])) };
  for (const t of tables) delete state.tableErrors?.[t];
}

/** Tables to be copied again (their change counts kept). */
export function restartBackfill(state: PipelineState, tables: string[]): void {
  for (const t of tables)
    state.progress[t] = { ...newTableProgress(), changes: state.progress[t]?.changes ?? newTableProgress().changes };
}

/** A table whose backfill the destination refused, as an errored table: held until `tables retry` re-copies it. */
export function backfillRefusal(
  pipeline: string,
  { table, reason, ...where }: DataRefusedDetails,
  snapshotLsn: string,
): TableError {
  const fix = refusedDataFix(pipeline, table, where.column);
  return { reason, ...where, lsn: snapshotLsn, since: new Date().toISOString(), fix };
}
