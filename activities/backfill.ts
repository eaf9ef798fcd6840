/**
 * Backfill activities: hold an exported snapshot, plan ranges, copy one range.
 * Rows copied under a snapshot carry its consistent LSN as their version.
 */
import { qualifyTable } from '../lib/config.ts';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import type { PipelineConfig } from '../lib/config.ts';
import { ErrorType, type DataRefusedDetails } from '../lib/errors.ts';
import { makeVersion, normalizeLsn, parseLsn } from '../lib/lsn.ts';
import type { InsertChange, TableSchema } from '../lib/model.ts';
import { copyProgressSignal, describeRange, snapshotReadySignal } from '../lib/contract/pipeline.ts';
import {
  applyHeartbeating,
  signalWithDeadline,
  whileHeartbeating,
  writeHeartbeating,
  openDestination,
  type ActivityDeps,
} from './context.ts';
import { DataRefused } from './destinations/refused.ts';
import { copyTableRange, copyTableRangeText, planTableRanges, type PageRange } from './postgres/ranges.ts';
import { loadPipelineSchemas, loadTableSchemas } from './postgres/schema.ts';
import { sameShape } from './postgres/shape.ts';
import { exportSnapshot, importSnapshot, isSnapshotGone } from './postgres/snapshot.ts';
import { labelSourceError } from './slot-watch.ts';
import { snapshotApplicationName, sourceConnection } from './source.ts';
import { connect } from './postgres/session.ts';

/** One range of one table (or leaf partition), plain JSON for workflow histories. */
export interface TableRange extends PageRange {
  /** The pipeline's table ("schema.table"); for a partition, its partitioned parent. */
  table: string;
}

export interface CopyRangeInput {
  config: PipelineConfig;
  snapshotName: string;
  snapshotLsn: string;
  range: TableRange;
  /** Workflow told about failed attempts (the pipeline or resync workflow). */
  reportTo?: string;
}

export interface PlannedBackfill {
  tables: { table: string; ranges: number; rowsEstimate: number }[];
  ranges: TableRange[];
  /** Tables the source no longer has by their name (renamed or dropped since they were added): not copied. */
  missing?: { table: string; reason: string }[];
  /**
   * Tables whose shape under the snapshot is not the one their destination table was recorded with (a DDL between
   * the record and the snapshot): not copied, since their rows would not fit; the workflow re-copies them.
   */
  reshaped?: { table: string; reason: string }[];
}

/** What planning is told beyond the tables (absent in workflows from before it was): where and against what. */
export interface PlanContext {
  /** The backfill's snapshot, which the plan reads the tables' shapes under. */
  snapshotName: string;
  /** The shapes recorded for the tables' destination tables, by the pipeline's table name. */
  schemas?: Record<string, TableSchema>;
}

/** Imports the backfill's snapshot; its holder gone, the snapshot is lost (the backfill restarts on a fresh one). */
async function importHeldSnapshot(client: pg.Client, snapshotName: string): Promise<void> {
  try {
    await importSnapshot(client, snapshotName);
  } catch (e) {
    if (isSnapshotGone(e))
      throw ApplicationFailure.nonRetryable(
        `snapshot ${snapshotName} is gone: ${(e as Error).message}`,
        ErrorType.SnapshotLost,
      );
    throw e;
  }
}

export function createBackfillActivities(deps: ActivityDeps) {
  /**
   * Exports a snapshot from a temporary slot and keeps its session open until
   * cancelled. The snapshot's LSN is at or after the pipeline slot's start, so
   * the change stream covers everything the snapshot does not.
   */
  async function holdSnapshot(input: {
    config: PipelineConfig;
    notify: { workflowId: string; token: string };
  }): Promise<void> {
    const ctx = Context.current();
    const snapshot = await exportSnapshot(
      sourceConnection(input.config.source),
      undefined,
      snapshotApplicationName(input.config.id),
    );
    try {
      await deps.client.workflow.getHandle(input.notify.workflowId).signal(snapshotReadySignal, {
        token: input.notify.token,
        snapshotName: snapshot.name,
        lsn: normalizeLsn(snapshot.lsn),
      });
      const lost = snapshot.lost.then((e) => {
        throw ApplicationFailure.nonRetryable(`snapshot session ended: ${e.message}`, ErrorType.SnapshotLost);
      });
      await whileHeartbeating(() => Promise.race([ctx.cancelled, lost]));
    } finally {
      await snapshot.close();
    }
  }

  /**
   * Planning is retried without end like a range copy, and its failures are reported the same way (to the workflow that
   * plans).
   */
  async function planRanges(config: PipelineConfig, tables: string[], at?: PlanContext): Promise<PlannedBackfill> {
    try {
      return await planOnce(config, tables, at);
    } catch (e) {
      await reportFailure(
        labelSourceError(config, e),
        `planning the backfill of ${tables.join(', ')}`,
        Context.current().info.workflowExecution?.workflowId,
      );
      throw e;
    }
  }

  /**
   * The first few failed attempts, then every tenth (each report is a history event of a workflow that cannot
   * continue-as-new mid-backfill).
   */
  async function reportFailure(
    e: unknown,
    what: string,
    reportTo: string | undefined,
    errorTable?: string,
  ): Promise<void> {
    const ctx = Context.current();
    const attempt = ctx.info.attempt;
    if (reportTo && !ctx.cancellationSignal.aborted && (attempt <= 5 || attempt % 10 === 0)) {
      const error = `${what} failed (attempt ${attempt}): ${(e as Error).message}`;
      await signalWithDeadline(deps, reportTo, copyProgressSignal, {
        tables: {},
        error,
        ...(errorTable ? { errorTable } : {}),
      }).catch(() => undefined);
    }
  }

  const planOnce = (config: PipelineConfig, tables: string[], at?: PlanContext): Promise<PlannedBackfill> =>
    whileHeartbeating(async () => {
      const client = await connect(sourceConnection(config.source));
      const destination = await openDestination(deps, config);
      try {
        if (at) await importHeldSnapshot(client, at.snapshotName);
        const { found, missing } = await loadPipelineSchemas(client, tables);
        // Gone by its name (renamed or dropped since it was added): the workflow stops that table alone.
        const planned: PlannedBackfill = { tables: [], ranges: [], ...(missing.length ? { missing } : {}) };
        for (const [table, schema] of Object.entries(found)) {
          const recorded = at?.schemas?.[table];
          if (!recorded || sameShape(recorded, schema)) continue;
          const reason =
            `the shape of ${qualifyTable(table)} changed between what its destination table was recorded with and ` +
            `the backfill's snapshot, so its rows would not fit: walflow re-copies the table`;
          (planned.reshaped ??= []).push({ table, reason });
          delete found[table];
        }
        await destination.prepare(Object.values(found));
        for (const table of Object.keys(found)) {
          const plan = await planTableRanges(client, qualifyTable(table), {
            rowsPerRange: config.backfill.rowsPerRange,
          });
          planned.tables.push({ table, ranges: plan.ranges.length, rowsEstimate: plan.rowsEstimate });
          planned.ranges.push(...plan.ranges.map((r) => ({ ...r, table })));
        }
        return planned;
      } finally {
        await destination.close();
        await client.end();
      }
    });

  /**
   * Copies one range. A failure is retried by Temporal without end (a destination or source that is
   * down is waited for); each one is also reported to `reportTo`, so `walflow status` says what is wrong.
   * Except a refusal of the table's data by the destination: the same rows under the same snapshot would
   * be refused again forever, so it fails at once (non-retryable `DataRefused`, the table in its details)
   * for the workflow to mark the table errored.
   */
  async function copyRange(input: CopyRangeInput): Promise<{ rows: number }> {
    try {
      return await copyOneRange(input);
    } catch (e) {
      deps.metrics?.failed(input.config.id, 'backfill', input.range.table);
      await reportFailure(
        labelSourceError(input.config, e),
        `copy of ${input.range.table} ${describeRange(input.range)}`,
        input.reportTo,
        input.range.table,
      );
      throw e instanceof DataRefused ? refusedFailure(input.range.table, e) : e;
    }
  }

  async function copyOneRange(input: CopyRangeInput): Promise<{ rows: number }> {
    const ctx = Context.current();
    const { config, range } = input;
    const version = makeVersion(parseLsn(input.snapshotLsn), 0);
    const client = await connect(sourceConnection(config.source));
    const destination = await openDestination(deps, config);
    let rows = 0;
    try {
      await importHeldSnapshot(client, input.snapshotName);
      await deps.faults?.at('copyRange', `${range.table} ${JSON.stringify(range)}`);
      const [schema] = await loadTableSchemas(client, [qualifyTable(range.table)]);
      await destination.prepare([schema!]);
      const table = { schema: schema!.schema, name: schema!.name };
      const written = (n: number) => {
        rows += n;
        deps.metrics?.copied(config.id, range.table, n);
        ctx.heartbeat({ rows });
        if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
      };
      if (destination.acceptsCopyText?.(schema!)) {
        // The fast path: COPY text straight to the destination, no row objects.
        for await (const piece of copyTableRangeText(client, schema!, range)) {
          await deps.faults?.at('copyBatch');
          await writeHeartbeating(
            () => destination.applyCopyText!(schema!, version, piece.text, piece.rows),
            () => ({ rows }),
          );
          written(piece.rows);
        }
      } else {
        for await (const batch of copyTableRange(client, schema!, range, { batchRows: config.backfill.batchRows })) {
          await deps.faults?.at('copyBatch');
          await applyHeartbeating(
            destination,
            batch.map((row): InsertChange => ({ kind: 'insert', table, version, row, snapshot: true })),
            () => ({ rows }),
          );
          written(batch.length);
        }
      }
      await client.query('COMMIT');
      return { rows };
    } finally {
      await destination.close();
      await client.end().catch(() => undefined);
    }
  }

  return { holdSnapshot, planRanges, copyRange };
}

/**
 * A range's refused data as the non-retryable failure the workflow marks the table errored by (no cause: its message is
 * the whole story, and rootMessage shows it).
 */
export function refusedFailure(table: string, e: DataRefused): ApplicationFailure {
  const details: DataRefusedDetails = { table, ...e.refusal, reason: e.message };
  return ApplicationFailure.create({
    type: ErrorType.DataRefused,
    message: e.message,
    nonRetryable: true,
    details: [details],
  });
}
