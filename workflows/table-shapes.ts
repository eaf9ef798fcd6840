/**
 * The shapes recorded for the pipeline's destination tables and the stream's reports on them: plain
 * functions over the workflow's state (workflows/tables.ts keeps the rest of the per-table state).
 */
import type { PipelineState } from '../lib/contract/pipeline.ts';
import type { TableShapeReport } from '../lib/contract/status.ts';
import type { TableSchema } from '../lib/model.ts';

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

/**
 * The tables' shapes where the stream starts following them (the slot's start, a table's add): what their
 * destination tables are compared with. Not the catalog's when the stream starts, which may be past a DDL of
 * WAL still to come. A shape already recorded stands.
 */
export function recordStartShapes(state: PipelineState, shapes: Record<string, TableSchema> | undefined): void {
  const fresh = Object.entries(shapes ?? {}).filter(([t]) => !state.schemas?.[t]);
  if (fresh.length) state.schemas = { ...state.schemas, ...Object.fromEntries(fresh) };
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
