/**
 * Per-table state of the pipeline workflow: what each destination table holds, the tables the stream
 * stopped (errored) and why, and the tables being re-copied after an error. Plain functions over the
 * workflow's state, so the pipeline workflow only wires them to its handlers.
 */
import type { PipelineState } from '../lib/contract/pipeline.ts';
import type { TableProgress, TableShapeReport, TableState } from '../lib/contract/status.ts';

/** Merges a stream report; a table's first error stands until its fix. */
export function recordTableShapes(state: PipelineState, report: TableShapeReport): void {
  if (report.schemas) state.schemas = { ...state.schemas, ...report.schemas };
  for (const [table, error] of Object.entries(report.errors ?? {})) {
    if (!state.tables.includes(table)) continue;
    state.tableErrors ??= {};
    state.tableErrors[table] ??= error;
  }
}

/** The errored tables, as lastError shows them (kept while they stay errored, whatever else progresses). */
export function tableErrorSummary(state: PipelineState): string | null {
  const errors = Object.entries(state.tableErrors ?? {});
  if (!errors.length) return null;
  return errors.map(([table, e]) => `table ${table} stopped at LSN ${e.lsn}: ${e.reason}`
    + `${e.statement ? ` (source: ${e.statement})` : ''}; its changes are not written, the other tables keep streaming; fix: ${e.fix}`).join('\n');
}

function tableState(state: PipelineState, table: string, p: TableProgress): TableState {
  if (state.tableErrors?.[table]) return 'errored';
  if (p.backfill === 'done') return 'streaming';
  return state.copyFrom?.[table] ? 'resyncing' : 'backfilling';
}

/** Per-table progress with each table's state (and error), for the status query. */
export function tablesStatus(state: PipelineState): Record<string, TableProgress> {
  return Object.fromEntries(Object.entries(state.progress).map(([t, p]) => {
    const error = state.tableErrors?.[t];
    const dropped = state.schemas?.[t]?.columns.filter((c) => c.dropped).map((c) => c.name) ?? [];
    return [t, { ...p, state: tableState(state, t, p), ...(error ? { error } : {}), ...(dropped.length ? { droppedColumns: dropped } : {}) }];
  }));
}

/** What the stream activity needs to follow shapes: only the fields that are set (older histories carry none). */
export function streamShapeInput(state: PipelineState): { schemas?: PipelineState['schemas']; stopped?: string[]; copyFrom?: Record<string, string> } {
  const stopped = Object.keys(state.tableErrors ?? {});
  return {
    ...(state.schemas ? { schemas: state.schemas } : {}),
    ...(stopped.length ? { stopped } : {}),
    ...(state.copyFrom ? { copyFrom: state.copyFrom } : {}),
  };
}

/** Tables added or removed: whatever was known about their destination tables no longer holds. */
export function forgetTables(state: PipelineState, tables: string[]): void {
  for (const t of tables) {
    delete state.schemas?.[t];
    delete state.tableErrors?.[t];
    delete state.copyFrom?.[t];
  }
}
