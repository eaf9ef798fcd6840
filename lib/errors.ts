/**
 * Error types that cross the activity/workflow boundary (an ApplicationFailure's `type` is the thrown
 * error's `name`), the one walk of a failure's cause chain, and errors that say where they happened.
 * Imported by activities and workflows.
 */
import { ApplicationFailure } from '@temporalio/common';

export const ErrorType = {
  /** Bad configuration: a person must fix walflow.yaml (or the input). */
  Config: 'ConfigError',
  /** A source schema walflow cannot replicate as it is. */
  Schema: 'SchemaError',
  /** The backfill's exported snapshot is gone: the copy restarts on a fresh one. */
  SnapshotLost: 'SnapshotLost',
  /** The source is not set up for replication (preflight listed each problem). */
  PreflightFailed: 'PreflightFailed',
  /**
   * Postgres invalidated the pipeline's slot (wal_status lost) or it is gone: it must be recreated and every table
   * resynced.
   */
  SlotLost: 'SlotLost',
  /**
   * The destination refused the data of one table (a value it cannot hold, a constraint it enforces):
   * no retry of the same data can succeed, and only that table must stop (errored, resync to recover).
   */
  DataRefused: 'DataRefused',
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];

/**
 * The one detail of a `DataRefused` ApplicationFailure (a range copy the destination refused), for the
 * workflow to mark the table errored. Plain JSON.
 */
export interface DataRefusedDetails {
  /** The pipeline's table name (as in config `tables`). */
  table: string;
  /** The destination column, where the destination's message or walflow's own check names it. */
  column?: string;
  /** What kind of value was refused (e.g. "infinity", "check_violation"), where known. */
  valueClass?: string;
  /** The refused row's key (`id=42`), where known. */
  key?: string;
  /** The destination's message, labelled with the destination and table: what the operator reads. */
  reason: string;
}

/** The way out of a refused table (stream or backfill), as status and logs say it. */
export const refusedDataFix = (pipeline: string, table: string, column?: string): string =>
  `fix the refused value in the source${column ? ` (column ${column})` : ''}, or what refuses it (the source ` +
  `column's type, a constraint on the destination table), then walflow tables retry ${pipeline} ${table}`;

/** The fix of a table walflow re-copies itself (the operator's way if that fails). */
export const recopyFix = (pipeline: string, table: string): string =>
  `none: walflow re-copies the table itself (if that fails, walflow tables retry ${pipeline} ${table})`;

/** Failures no retry can cure: activities that hit them stop, and the pipeline waits for an operator. */
export const NEEDS_OPERATOR: ErrorType[] = [ErrorType.Config, ErrorType.Schema];

/** The failures along `e`'s cause chain, outermost first (activity → child workflow → application failure). */
export function* causes(e: unknown): Generator<unknown> {
  for (let c: unknown = e; c; c = (c as { cause?: unknown }).cause) yield c;
}

/** The ApplicationFailure of `type` in `e`'s cause chain, if any. */
export function failureOfType(e: unknown, type: ErrorType): ApplicationFailure | undefined {
  for (const c of causes(e)) if (c instanceof ApplicationFailure && c.type === type) return c;
  return undefined;
}

/** Whether an ApplicationFailure of `type` is anywhere in `e`'s cause chain. */
export const hasFailureType = (e: unknown, type: ErrorType): boolean => failureOfType(e, type) !== undefined;

/** The innermost message: what actually went wrong, without the activity/child wrappers. */
export function rootMessage(e: unknown): string {
  let last: unknown = e;
  for (const c of causes(e)) last = c;
  return (last as Error)?.message ?? String(e);
}

/** Prefixes `where` to an error's message, once; its class (and so its Temporal failure type) is kept. */
export function labelError<E>(e: E, where: string): E {
  if (e instanceof Error && !e.message.startsWith(`${where}:`)) {
    const original = e.message;
    e.message = `${where}: ${original}`;
    if (e.stack?.includes(original)) e.stack = e.stack.replace(original, e.message); // logs print the stack
  }
  return e;
}
