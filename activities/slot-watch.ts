/**
 * The stream's watch on its slot: every reading feeds the metrics, warns in the worker log past the
 * config's `alerts` (once a minute at most while nothing changes) and goes to the workflow with the
 * stream's report; a failing stream says where it failed, and a slot Postgres invalidated becomes a
 * final `SlotLost` failure instead of a retry that can never succeed.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import { slotWarnings } from '../lib/alerts.ts';
import type { PipelineConfig } from '../lib/config.ts';
import { ErrorType, labelError } from '../lib/errors.ts';
import type { SlotHealth } from '../lib/contract/status.ts';
import type { ActivityDeps } from './context.ts';
import { connect } from './postgres/session.ts';
import { readSlotHealth } from './postgres/slot.ts';
import { describeSource, slotName, snapshotApplicationName, sourceConnection } from './source.ts';

const LOG_AGAIN_MS = 60_000;
const logged = new Map<string, { text: string; at: number }>();

export async function watchSlot(
  deps: ActivityDeps,
  config: PipelineConfig,
  client: pg.Client,
  streamError?: string,
): Promise<{ health: SlotHealth; warnings: string[] }> {
  const health = await readSlotHealth(client, slotName(config.id, config.source), snapshotApplicationName(config.id));
  deps.metrics?.slot(config.id, health);
  const warnings = slotWarnings(config, health, streamError);
  const text = warnings.join('\n');
  const last = logged.get(config.id);
  if (text && (last?.text !== text || Date.now() - last.at > LOG_AGAIN_MS)) {
    for (const w of warnings) Context.current().log.warn(`pipeline ${config.id}: ${w}`);
    logged.set(config.id, { text, at: Date.now() });
  } else if (!text) logged.delete(config.id);
  return { health, warnings };
}

/**
 * What a failed stream attempt reports and throws: its error, naming the source when the source failed
 * (destination errors already name the destination), or `SlotLost`; and the slot's warnings, read over a
 * connection of its own (the stream's may be what broke).
 */
export async function streamFailure(
  deps: ActivityDeps,
  config: PipelineConfig,
  e: unknown,
): Promise<{ error: unknown; warnings: string[] }> {
  deps.metrics?.failed(config.id, 'stream');
  const err = labelSourceError(config, e as Error);
  let client: pg.Client | undefined;
  try {
    client = await connect({ ...sourceConnection(config.source), connectionTimeoutMillis: 5_000 });
    const { health, warnings } = await watchSlot(deps, config, client, err.message);
    if (health.walStatus === 'lost' || !health.exists) {
      const what = health.exists
        ? 'was invalidated by Postgres (wal_status lost): the WAL it needed is gone'
        : 'does not exist (dropped outside walflow?)';
      return {
        error: ApplicationFailure.nonRetryable(
          `replication slot ${health.name} ${what}; changes ` +
            `after ${health.confirmedLsn ?? 'its last confirmed position'} cannot be streamed`,
          ErrorType.SlotLost,
        ),
        warnings,
      };
    }
    return { error: e, warnings };
  } catch {
    return { error: e, warnings: [] }; // the source is unreachable: nothing to measure
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/**
 * A connection or server error (it has a code) not from the destination (whose errors say so) comes from the source.
 */
export function labelSourceError<E>(config: PipelineConfig, e: E): E {
  const err = e as Error & { code?: unknown };
  return err instanceof Error && err.code !== undefined && !/^destination /.test(err.message)
    ? labelError(e, describeSource(config.source))
    : e;
}
