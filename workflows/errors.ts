/**
 * A pipeline's errors, one per component (the stream, each table's backfill, the snapshot, the pipeline
 * itself): each kept, with since when, until that component recovers, so one component's progress never
 * clears another's failure. `lastError` stays the one-line summary older clients read; publish.ts shows
 * them all in the Temporal UI's current details.
 */
import type { PipelineState } from '../lib/contract/pipeline.ts';

export const STREAM = 'stream';
export const SNAPSHOT = 'snapshot';
export const PIPELINE = 'pipeline';
export const backfillOf = (table: string): string => `backfill ${table}`;

export function noteError(state: PipelineState, component: string, message: string): void {
  const now = new Date().toISOString();
  const errors = (state.errors ??= {});
  const known = errors[component];
  errors[component] = known
    ? { ...known, message, last: now, count: known.count + 1 }
    : { message, since: now, last: now, count: 1 };
  refresh(state);
}

export function clearError(state: PipelineState, ...components: string[]): void {
  if (!components.some((c) => state.errors?.[c])) return;
  for (const c of components) delete state.errors![c];
  refresh(state);
}

export function setWarnings(state: PipelineState, warnings: string[] | undefined): void {
  const next = warnings ?? [];
  if (JSON.stringify(next) === JSON.stringify(state.warnings ?? [])) return;
  state.warnings = next;
  refresh(state);
}

/** The newest error as `lastError` (no failure count: the summary changes only when the error does). */
function refresh(state: PipelineState): void {
  const entries = Object.entries(state.errors ?? {}).sort(([, a], [, b]) =>
    a.last < b.last ? 1 : a.last > b.last ? -1 : 0,
  );
  const newest = entries[0];
  state.lastError = newest ? `${newest[0]}: ${newest[1].message} (since ${newest[1].since})` : null;
}
