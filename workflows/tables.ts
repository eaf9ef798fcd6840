/**
 * Per-table state of the pipeline workflow: the tables and their progress, the tables the stream stopped
 * (errored) and why, and the tables being re-copied after an error (their recorded shapes: table-shapes.ts).
 * Plain functions over the workflow's state, so the pipeline workflow only wires them to its handlers.
 */
import type { PipelineState } from '../lib/contract/pipeline.ts';
import { refusedDataFix, type DataRefusedDetails } from '../lib/errors.ts';
import { newTableProgress, type TableError, type TableProgress, type TableState } from '../lib/contract/status.ts';
import type { TableSchema } from '../lib/model.ts';
import { backfillOf, clearError } from './errors.ts';
import { recordStartShapes } from './table-shapes.ts';

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
