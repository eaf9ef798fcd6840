/**
 * The contract between walflow's workflows, their activities and every client (CLI, Temporal CLI/UI,
 * tests): workflow inputs and the state a pipeline carries across continue-as-new, the progress the
 * activities report, and the signals, queries and updates that carry them. Both sides import it from
 * here; neither imports the other.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { PipelineConfig } from '../config.ts';
import type { TableSchema } from '../model.ts';
import type {
  ChangeCounters,
  ComponentError,
  PipelineStatus,
  TableError,
  TableProgress,
  TableShapeReport,
} from './status.ts';

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
  /**
   * Tables added while the pipeline ran: the stream skips their changes committed before this LSN (the source's
   * WAL position once the publication held them), which their backfill's snapshot holds.
   */
  addedAt?: Record<string, string>;
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

/** Rebuilds errored tables with the source's current shape and re-copies them; the others keep streaming. */
export const resyncTablesUpdate = defineUpdate<string[], [string[]]>('resyncTables');

export const streamProgressSignal = defineSignal<[StreamProgress]>('streamProgress');
export const tableShapeSignal = defineSignal<[TableShapeReport]>('tableShape');
export const copyProgressSignal = defineSignal<[CopyProgress]>('copyProgress');
export const snapshotReadySignal = defineSignal<[SnapshotReady]>('snapshotReady');

/** A range of a table's pages as operators read it in activity summaries and errors. */
export const describeRange = (r: { startPage: number; endPage: number | null }): string =>
  `pages ${r.startPage}..${r.endPage ?? 'end'}`;

export const pipelineWorkflowId = (pipeline: string): string => `walflow-${pipeline}`;
/** The pipeline's resync Schedule (also the workflow id prefix of the resyncs it starts). */
export const resyncScheduleId = (pipeline: string): string => `walflow-${pipeline}-resync`;

/** Search attributes set on walflow workflows (registered by `walflow stack up`). */
export const SEARCH_ATTRIBUTE_PIPELINE = 'WalflowPipeline';
export const SEARCH_ATTRIBUTE_PHASE = 'WalflowPhase';
export const pipelineKey = defineSearchAttributeKey(SEARCH_ATTRIBUTE_PIPELINE, SearchAttributeType.KEYWORD);
/** A Phase, or `resync` on resync workflows. */
export const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTE_PHASE, SearchAttributeType.KEYWORD);
