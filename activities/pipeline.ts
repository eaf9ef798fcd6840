/** Pipeline lifecycle activities: preflight, the replication slot, the publication's tables, drop, resync cleanup. */
import { qualifyTable } from '../lib/config.ts';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import type { PipelineConfig } from '../lib/config.ts';
import { ErrorType } from '../lib/errors.ts';
import { makeVersion, normalizeLsn, parseLsn } from '../lib/lsn.ts';
import type { TableSchema } from '../lib/model.ts';
import { pipelineDestination } from './destinations/index.ts';
import { preflight, type PreflightReport } from './postgres/preflight.ts';
import { alterPublicationTables, dropPublicationIfOwned, ensurePublication } from './postgres/publication.ts';
import { loadPipelineSchemas, loadTableSchemas } from './postgres/schema.ts';
import { importSnapshot } from './postgres/snapshot.ts';
import { createSlot, dropSlot } from './postgres/slot.ts';
import { ScheduleNotFoundError } from '@temporalio/client';
import { resyncScheduleId } from '../lib/contract/pipeline.ts';
import { whileHeartbeating, type ActivityDeps } from './context.ts';
import { sourceConnection, slotName } from './source.ts';
import { connect } from './postgres/session.ts';

async function withSource<T>(config: PipelineConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(sourceConnection(config.source));
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

const sourcePreflight = (config: PipelineConfig, tables: string[]) =>
  withSource(config, (client) =>
    preflight(client, {
      publication: config.source.publication,
      tables: tables.map(qualifyTable),
      createPublication: config.source.createPublication,
      slot: slotName(config.id, config.source),
      destination: { type: config.destination.type, tables: tables.map(qualifyTable) },
    }),
  );

/** All failures at once, as one non-retryable error: retrying cannot fix a misconfigured database. */
export function preflightPipeline(config: PipelineConfig, tables: string[]): Promise<void> {
  return whileHeartbeating(async () => {
    const report = await sourcePreflight(config, tables);
    for (const w of report.warnings) Context.current().log.warn(`pipeline ${config.id}: ${w}`);
    if (report.failures.length) {
      throw ApplicationFailure.nonRetryable(
        `preflight failed for pipeline ${config.id}:\n- ${report.failures.join('\n- ')}`,
        ErrorType.PreflightFailed,
      );
    }
  });
}

/**
 * `walflow check`: the source's preflight plus the destination: reachable, credentials accepted, and able
 * to create the pipeline's tables (it creates them, as the pipeline's start would: every step is idempotent).
 */
export async function checkPipeline(config: PipelineConfig): Promise<PreflightReport> {
  const report = await sourcePreflight(config, config.source.tables);
  try {
    const schemas = await withSource(config, async (client) => {
      const found = [];
      // missing tables are reported above
      for (const t of config.source.tables)
        found.push(...(await loadTableSchemas(client, [qualifyTable(t)]).catch(() => [])));
      return found;
    });
    const destination = await pipelineDestination(config);
    try {
      await destination.prepare(schemas);
    } finally {
      await destination.close().catch(() => undefined);
    }
  } catch (e) {
    report.failures.push(
      `${(e as Error).message}: check that the destination is up and reachable from here, its credentials, and that ` +
        `they may create tables`,
    );
  }
  return report;
}

/** The tables' shapes, which their destination tables are created with; the stream follows every change from them. */
export interface TableShapes {
  schemas?: Record<string, TableSchema>;
}

/**
 * Creates the publication (if walflow manages it) and the pipeline's slot, unless they exist.
 * `tables`: the pipeline's current tables (after `tables add/remove`); older workflows pass none.
 * `schemas`: the tables' shapes as of the slot's start (a DDL after it comes later in the WAL than the
 * stream's first changes; tables the source lacks are left to the backfill to stop).
 */
export function ensureSlot(
  config: PipelineConfig,
  tables = config.source.tables,
): Promise<{ confirmedLsn: string } & TableShapes> {
  return whileHeartbeating(async () => {
    if (config.source.createPublication) {
      await withSource(config, (client) =>
        ensurePublication(client, config.source.publication, tables.map(qualifyTable)),
      );
    }
    let schemas: Record<string, TableSchema> = {};
    const readShapes = (snapshotName?: string) =>
      withSource(config, async (client) => {
        if (snapshotName) await importSnapshot(client, snapshotName);
        schemas = (await loadPipelineSchemas(client, tables)).found;
      });
    const slot = await createSlot(sourceConnection(config.source), slotName(config.id, config.source), readShapes);
    if (!slot.created) await readShapes(); // an earlier attempt created it: as near its start as can be
    return { confirmedLsn: normalizeLsn(slot.confirmedLsn), schemas };
  });
}

/**
 * After Postgres invalidated the slot: drops it and creates it afresh; the stream restarts from its consistent point.
 */
export function recreateSlot(config: PipelineConfig): Promise<{ confirmedLsn: string }> {
  return whileHeartbeating(async () => {
    const name = slotName(config.id, config.source);
    await dropSlot(sourceConnection(config.source), name);
    const slot = await createSlot(sourceConnection(config.source), name);
    return { confirmedLsn: normalizeLsn(slot.confirmedLsn) };
  });
}

/** Resolves with the source's WAL position once the publication holds the change: added tables count from there. */
export function alterPublication(
  config: PipelineConfig,
  change: { add?: string[]; remove?: string[]; tables: string[] },
): Promise<{ lsn: string } & TableShapes> {
  return whileHeartbeating(async () => {
    return await withSource(config, async (client) => {
      if (change.add?.length) {
        const report = await preflight(client, {
          publication: config.source.publication,
          tables: change.add.map(qualifyTable),
          createPublication: config.source.createPublication,
          slot: slotName(config.id, config.source),
          slotExists: true,
          destination: { type: config.destination.type, tables: change.tables.map(qualifyTable) },
        });
        if (report.failures.length)
          throw ApplicationFailure.nonRetryable(
            `cannot add ${change.add.join(', ')}:\n- ${report.failures.join('\n- ')}`,
            ErrorType.PreflightFailed,
          );
      }
      await alterPublicationTables(client, config.source.publication, {
        add: change.add?.map(qualifyTable) ?? [],
        remove: change.remove?.map(qualifyTable) ?? [],
        managed: config.source.createPublication,
      });
      // Shapes read before the LSN: a DDL in between is a change the stream sees after them, as every later one.
      const schemas = change.add?.length ? (await loadPipelineSchemas(client, change.add)).found : {};
      const { rows } = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      return { lsn: rows[0]!.lsn, schemas };
    });
  });
}

/**
 * Drops the slot, a publication walflow created, and the pipeline's resync Schedule (its next run would resync
 * nothing).
 */
export function dropPipeline(deps: ActivityDeps, config: PipelineConfig): Promise<void> {
  return whileHeartbeating(async () => {
    await deps.client.schedule
      .getHandle(resyncScheduleId(config.id))
      .delete()
      .catch((e) => {
        if (!(e instanceof ScheduleNotFoundError)) throw e;
      });
    await dropSlot(sourceConnection(config.source), slotName(config.id, config.source));
    if (config.source.createPublication)
      await withSource(config, (client) => dropPublicationIfOwned(client, config.source.publication));
  });
}

/** After a resync copied `table` at `snapshotLsn`, rows it did not rewrite are gone from the source. */
export function removeStaleRows(config: PipelineConfig, table: string, snapshotLsn: string): Promise<void> {
  return whileHeartbeating(async () => {
    const [schema] = await withSource(config, (client) => loadTableSchemas(client, [qualifyTable(table)]));
    const destination = await pipelineDestination(config);
    try {
      if (!destination.removeStale)
        throw ApplicationFailure.nonRetryable(`destination ${config.destination.type} cannot resync`, ErrorType.Config);
      await destination.removeStale(schema!, makeVersion(parseLsn(snapshotLsn), 0));
    } finally {
      await destination.close();
    }
  });
}

/**
 * Drops and recreates the destination tables of errored `tables` with the source's current shape;
 * returns those shapes and the source's WAL position afterwards: the stream writes the tables'
 * changes committed from there on, and a snapshot taken later covers everything before.
 */
export function rebuildTables(
  config: PipelineConfig,
  tables: string[],
): Promise<{ schemas: Record<string, TableSchema>; lsn: string }> {
  return whileHeartbeating(async () =>
    withSource(config, async (client) => {
      const schemas = await loadTableSchemas(client, tables.map(qualifyTable));
      const destination = await pipelineDestination(config);
      try {
        if (!destination.dropTable)
          throw ApplicationFailure.nonRetryable(
            `destination ${config.destination.type} cannot rebuild a table; remove and add the table instead`,
            ErrorType.Config,
          );
        for (const s of schemas) await destination.dropTable(s);
        await destination.prepare(schemas);
      } finally {
        await destination.close();
      }
      const { rows } = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      return { schemas: Object.fromEntries(tables.map((t, i) => [t, schemas[i]!])), lsn: normalizeLsn(rows[0]!.lsn) };
    }),
  );
}
