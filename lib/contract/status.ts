/**
 * What a pipeline shows an operator: its phase, each table's progress and state, errors, the slot.
 * Returned by the `status` query, kept in the workflow's memo, printed by `walflow status --json`.
 */
import type { TableSchema } from '../model.ts';

export type Phase = 'starting' | 'backfilling' | 'streaming' | 'paused' | 'failed' | 'dropping' | 'dropped';

export interface ChangeCounters {
  inserts: number;
  updates: number;
  deletes: number;
  truncates: number;
}

export interface TableProgress {
  /** Backfill of this table: not started, copying ranges, or done. */
  backfill: 'pending' | 'copying' | 'done';
  rangesDone: number;
  rangesTotal: number;
  rowsCopied: number;
  /** Planner's estimate of the table's rows (pg_class.reltuples), for progress bars. */
  rowsEstimate: number;
  changes: ChangeCounters;
  /** Set by the status query: where the table stands, and why it stopped if it did. */
  state?: TableState;
  error?: TableError;
  /** Columns dropped in the source that the destination keeps (rows written since leave them NULL). */
  droppedColumns?: string[];
}

/**
 * A table's replication state. `errored`: its changes are no longer written (the rest of the pipeline
 * goes on) until the operator's fix; `resyncing`: re-copied from a fresh snapshot after an error;
 * `paused`: the pipeline is paused (nothing copied or streamed until `resume`; an errored table stays errored).
 */
export type TableState = 'backfilling' | 'streaming' | 'errored' | 'resyncing' | 'paused';

/** Why a table stopped, and the way out. */
export interface TableError {
  reason: string;
  column?: string;
  oldType?: string;
  newType?: string;
  /** The source statement that caused it, as far as the stream can tell it. */
  statement?: string;
  /** What to run to get the table going again. */
  fix: string;
  /** Commit LSN of the transaction where the table stopped: none of its changes from there on are written. */
  lsn: string;
  /** When the stream stopped the table (ISO 8601). */
  since: string;
  /** A refused value: what kind it is (e.g. "infinity", "check_violation (positive)"), where the destination tells. */
  valueClass?: string;
  /** The refused row's key (`id=42`), where known. */
  key?: string;
  /** How many times the write was tried before the table was stopped. */
  attempts?: number;
  /** walflow re-copies the table itself (the source's rows are right, only the destination's are not). */
  recopy?: true;
}

/** What the stream reports about table shapes, before it acknowledges anything past them. */
export interface TableShapeReport {
  /** What each destination table now holds (after a schema change, or when first seen). */
  schemas?: Record<string, TableSchema>;
  errors?: Record<string, TableError>;
}

export interface PipelineStatus {
  pipeline: string;
  phase: Phase;
  paused: boolean;
  /** Highest LSN acknowledged to Postgres after a durable destination write. */
  confirmedLsn: string | null;
  /** Bytes of WAL between pg_current_wal_lsn() and confirmedLsn, as last measured by the stream. */
  lagBytes: number | null;
  /** The snapshot LSN of the backfill in progress, if any. */
  snapshotLsn: string | null;
  tables: Record<string, TableProgress>;
  /** The newest active error of any component, with where and since when (see `errors`). */
  lastError: string | null;
  /** How many times the pipeline workflow has continued-as-new. */
  continuedAsNew: number;
  /**
   * Active errors by component (`stream`, `backfill <table>`, `snapshot`, `pipeline`), each kept until that component
   * recovers.
   */
  errors?: Record<string, ComponentError>;
  /**
   * The slot and WAL, read live from the source by `walflow status` (absent from the workflow query, which has the
   * stream's lagBytes).
   */
  slot?: SlotHealth | null;
  /**
   * Thresholds of config `alerts` passed, a slot unreserved or lost (the stream's last reading; live in `walflow
   * status`).
   */
  warnings?: string[];
}

export interface ComponentError {
  message: string;
  /** ISO time of the first failure since the component last worked. */
  since: string;
  /** ISO time of the latest failure. */
  last: string;
  /** Failures reported since `since`. */
  count: number;
}

/** The pipeline's replication slot and the backfill snapshot, as Postgres reports them. */
export interface SlotHealth {
  name: string;
  /** False when the slot does not exist. */
  exists: boolean;
  active: boolean;
  confirmedLsn: string | null;
  /** pg_current_wal_lsn() - confirmed_flush_lsn. */
  lagBytes: number | null;
  /** pg_current_wal_lsn() - restart_lsn: WAL the slot keeps on the server's disk. */
  retainedBytes: number | null;
  /** reserved | extended | unreserved | lost (pg_replication_slots.wal_status). */
  walStatus: string | null;
  /**
   * Bytes the slot may still fall behind before Postgres invalidates it; null when max_slot_wal_keep_size = -1 (no
   * limit).
   */
  safeWalSize: number | null;
  /** The backfill snapshot being held, if any. */
  snapshot: SnapshotHealth | null;
}

export interface SnapshotHealth {
  /** The temporary slot that exports it. */
  slot: string;
  ageSeconds: number;
  /** The transaction horizon it holds back (vacuum cannot remove rows dead after it). */
  xmin: string | null;
  /** age(xmin) in transactions. */
  xminAge: number | null;
}

/**
 * What a pipeline or resync workflow last published in its memo (key `status`): read when no worker can answer a query.
 */
export type PublishedStatus = PipelineStatus & { publishedAt: string };

/** A table's progress before anything happened to it. */
export const newTableProgress = (): TableProgress => ({
  backfill: 'pending',
  rangesDone: 0,
  rangesTotal: 0,
  rowsCopied: 0,
  rowsEstimate: 0,
  changes: newChangeCounters(),
});

export const newChangeCounters = (): ChangeCounters => ({ inserts: 0, updates: 0, deletes: 0, truncates: 0 });

export function addChangeCounters(into: ChangeCounters, c: ChangeCounters): void {
  into.inserts += c.inserts;
  into.updates += c.updates;
  into.deletes += c.deletes;
  into.truncates += c.truncates;
}
