/** Pipeline lifecycle activities: preflight, the replication slot, the publication's tables, drop, resync cleanup. */
import { ApplicationFailure } from '@temporalio/activity';
import pg from 'pg';
import type { PipelineConfig } from '../lib/config.ts';
import { makeVersion, normalizeLsn, parseLsn } from '../lib/lsn.ts';
import { createDestination } from './destinations/index.ts';
import { preflight } from './postgres/preflight.ts';
import { alterPublicationTables, dropPublicationIfOwned, ensurePublication } from './postgres/publication.ts';
import { loadTableSchemas } from './postgres/schema.ts';
import { createSlot, dropSlot } from './postgres/slot.ts';
import { sourceConnection, slotName } from './source.ts';
import { qualify } from './stream.ts';

async function withSource<T>(config: PipelineConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(sourceConnection(config.source));
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** All failures at once, as one non-retryable error: retrying cannot fix a misconfigured database. */
export async function preflightPipeline(config: PipelineConfig, tables: string[]): Promise<void> {
  const report = await withSource(config, (client) => preflight(client, {
    publication: config.source.publication, tables: tables.map(qualify), createPublication: config.source.createPublication,
    slot: slotName(config.id, config.source),
  }));
  if (report.failures.length) {
    throw ApplicationFailure.nonRetryable(`preflight failed for pipeline ${config.id}:\n- ${report.failures.join('\n- ')}`, 'PreflightFailed');
  }
}

/** Creates the publication (if walflow manages it) and the pipeline's slot, unless they exist. */
export async function ensureSlot(config: PipelineConfig): Promise<{ confirmedLsn: string }> {
  if (config.source.createPublication) {
    await withSource(config, (client) => ensurePublication(client, config.source.publication, config.source.tables.map(qualify)));
  }
  const slot = await createSlot(sourceConnection(config.source), slotName(config.id, config.source));
  return { confirmedLsn: normalizeLsn(slot.confirmedLsn) };
}

export async function alterPublication(config: PipelineConfig, change: { add?: string[]; remove?: string[]; tables: string[] }): Promise<void> {
  await withSource(config, async (client) => {
    if (change.add?.length) {
      const report = await preflight(client, {
        publication: config.source.publication, tables: change.add.map(qualify), createPublication: config.source.createPublication,
        slot: slotName(config.id, config.source), slotExists: true,
      });
      if (report.failures.length) throw ApplicationFailure.nonRetryable(`cannot add ${change.add.join(', ')}:\n- ${report.failures.join('\n- ')}`, 'PreflightFailed');
    }
    await alterPublicationTables(client, config.source.publication, {
      add: change.add?.map(qualify) ?? [], remove: change.remove?.map(qualify) ?? [], managed: config.source.createPublication,
    });
  });
}

export async function dropPipeline(config: PipelineConfig): Promise<void> {
  await dropSlot(sourceConnection(config.source), slotName(config.id, config.source));
  if (config.source.createPublication) await withSource(config, (client) => dropPublicationIfOwned(client, config.source.publication));
}

/** After a resync copied `table` at `snapshotLsn`, rows it did not rewrite are gone from the source. */
export async function removeStaleRows(config: PipelineConfig, table: string, snapshotLsn: string): Promise<void> {
  const [schema] = await withSource(config, (client) => loadTableSchemas(client, [qualify(table)]));
  const destination = await createDestination(config.destination);
  try {
    if (!destination.removeStale) throw ApplicationFailure.nonRetryable(`destination ${config.destination.type} cannot resync`, 'ConfigError');
    await destination.removeStale(schema!, makeVersion(parseLsn(snapshotLsn), 0));
  } finally {
    await destination.close();
  }
}
