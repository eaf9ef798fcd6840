/**
 * Signals, queries and updates of walflow's workflows, and the data they carry.
 * Imported by the workflows and by every client (CLI, tests, activities that report back).
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { PipelineConfig } from '../lib/config.ts';
import type { TableSchema } from '../lib/model.ts';

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
 * goes on) until the operator's fix; `resyncing`: re-copied from a fresh snapshot after an error.
 */
export type TableState = 'backfilling' | 'streaming' | 'errored' | 'resyncing';

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
  /** Active errors by component (`stream`, `backfill <table>`, `snapshot`, `pipeline`), each kept until that component recovers. */
  errors?: Record<string, ComponentError>;
  /** The slot and WAL, read live from the source by `walflow status` (absent from the workflow query, which has the stream's lagBytes). */
  slot?: SlotHealth | null;
  /** Thresholds of config `alerts` passed, a slot unreserved or lost (the stream's last reading; live in `walflow status`). */
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
  /** Bytes the slot may still fall behind before Postgres invalidates it; null when max_slot_wal_keep_size = -1 (no limit). */
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

/** What the streaming activity reports after each durable flush (throttled). */
export interface StreamProgress {
  /** Set instead of progress when the stream hit an error (it will be retried). */
  error?: string;
  /** Alert thresholds passed, as the stream last measured the slot. */
  warnings?: string[];
  confirmedLsn: string;
  lagBytes: number | null;
  /** Changes applied since the previous report, per table. */
  changes: Record<string, ChangeCounters>;
}

/** What a range-copy workflow reports while it runs (throttled). */
export interface CopyProgress {
  /** Per table: ranges finished and rows copied since the previous report. */
  tables: Record<string, { ranges: number; rows: number }>;
  /** Set when a range copy failed (it will be retried). */
  error?: string;
  /** The table whose range failed. */
  errorTable?: string;
}

export interface SnapshotReady {
  /** Names the backfill attempt that asked for this snapshot, so a late signal of an older one is ignored. */
  token: string;
  snapshotName: string;
  /** The snapshot's consistent LSN: the version backfill rows carry. */
  lsn: string;
}

/** Everything a pipeline workflow carries across continue-as-new (no secrets: config holds references). */
export interface PipelineInput {
  config: PipelineConfig;
  state?: PipelineState;
  /** Continue-as-new once history passes this many events (default 10,000; tests set it low). */
  maxHistoryEvents?: number;
}

export interface PipelineState {
  initialized: boolean;
  paused: boolean;
  tables: string[];
  confirmedLsn: string | null;
  lagBytes: number | null;
  progress: Record<string, TableProgress>;
  lastError: string | null;
  continuedAsNew: number;
  /** Active errors by component (absent in state carried from older runs). */
  errors?: Record<string, ComponentError>;
  warnings?: string[];
  /** What each destination table holds, as the stream last reported it. */
  schemas?: Record<string, TableSchema>;
  tableErrors?: Record<string, TableError>;
  /** Tables re-copied after an error: the stream writes their changes committed from this LSN on. */
  copyFrom?: Record<string, string>;
}

export interface ResyncInput {
  config: PipelineConfig;
  /** Tables to re-copy; all of the pipeline's when omitted. */
  tables?: string[];
}

export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const statusQuery = defineQuery<PipelineStatus>('status');
/** Stops the pipeline, then drops its slot and (if walflow created it) its publication. */
export const dropUpdate = defineUpdate<void>('drop');
export const addTablesUpdate = defineUpdate<string[], [string[]]>('addTables');
export const removeTablesUpdate = defineUpdate<string[], [string[]]>('removeTables');
/**
 * Replaces the running config with a new version of the same pipeline (connection settings, secret
 * references, batch/flush/parallelism settings, tables), without a new slot or backfill. Refused,
 * with why, when a key that cannot change live differs (see liveChangeRefusals in lib/config.ts).
 */
export const applyConfigUpdate = defineUpdate<ConfigApplied, [PipelineConfig]>('applyConfig');

export interface ConfigApplied {
  /** Dotted keys that changed, e.g. `destination.url`. */
  changed: string[];
  tables: string[];
}

/** What a pipeline or resync workflow last published in its memo (key `status`): read when no worker can answer a query. */
export type PublishedStatus = PipelineStatus & { publishedAt: string };

/** Rebuilds errored tables with the source's current shape and re-copies them; the others keep streaming. */
export const resyncTablesUpdate = defineUpdate<string[], [string[]]>('resyncTables');

export const streamProgressSignal = defineSignal<[StreamProgress]>('streamProgress');
export const tableShapeSignal = defineSignal<[TableShapeReport]>('tableShape');
export const copyProgressSignal = defineSignal<[CopyProgress]>('copyProgress');
export const snapshotReadySignal = defineSignal<[SnapshotReady]>('snapshotReady');

/** A range of a table's pages as operators read it in activity summaries and errors. */
export const describeRange = (r: { startPage: number; endPage: number | null }): string => `pages ${r.startPage}..${r.endPage ?? 'end'}`;

export const pipelineWorkflowId = (pipeline: string): string => `walflow-${pipeline}`;
/** The pipeline's resync Schedule (also the workflow id prefix of the resyncs it starts). */
export const resyncScheduleId = (pipeline: string): string => `walflow-${pipeline}-resync`;

/** Search attributes set on walflow workflows (registered by `walflow stack up`). */
export const SEARCH_ATTRIBUTE_PIPELINE = 'WalflowPipeline';
export const SEARCH_ATTRIBUTE_PHASE = 'WalflowPhase';
export const pipelineKey = defineSearchAttributeKey(SEARCH_ATTRIBUTE_PIPELINE, SearchAttributeType.KEYWORD);
/** A Phase, or `resync` on resync workflows. */
export const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTE_PHASE, SearchAttributeType.KEYWORD);
