/**
 * streamChanges: the CDC activity, as wiring. Changes come from the slot (postgres/stream.ts), are
 * batched (batcher.ts), written to the destination (a table whose data it keeps refusing is stopped
 * alone: refused-writes.ts), and only then is the commit's LSN confirmed to Postgres (the stream owns
 * that) and heartbeated, so a retry on any worker resumes from Temporal's record of what is durably
 * written. Shape reports and progress go to the workflow (stream-tables.ts, stream-report.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Context, CancelledFailure } from '@temporalio/activity';
import pg from 'pg';
import { qualifyTable, type PipelineConfig } from '../lib/config.ts';
import { streamProgressSignal, tableShapeSignal, type StreamProgress } from '../lib/contract/pipeline.ts';
import type { ChangeCounters, TableError, TableShapeReport } from '../lib/contract/status.ts';
import { formatLsn, parseLsn, type Lsn } from '../lib/lsn.ts';
import { tableKey, type Change, type TableSchema } from '../lib/model.ts';
import { Batcher } from './batcher.ts';
import { applyHeartbeating, signalWithDeadline, openDestination, type ActivityDeps } from './context.ts';
import type { Destination } from './destinations/destination.ts';
import type { StreamEvent } from './postgres/decode.ts';
import { loadTableSchemas } from './postgres/schema.ts';
import { withSession } from './postgres/session.ts';
import { openChangeStream, type ChangeStream } from './postgres/stream.ts';
import { fillUnchangedColumns } from './postgres/unchanged.ts';
import { REFUSED_ATTEMPTS, writeStoppingRefused, type RefusalHandling } from './refused-writes.ts';
import { streamFailure, watchSlot } from './slot-watch.ts';
import { sourceConnection, slotName } from './source.ts';
import { StreamReporter } from './stream-report.ts';
import { StreamTables } from './stream-tables.ts';

export interface StreamInput {
  config: PipelineConfig;
  tables: string[];
  /** Where the workflow last saw the stream confirmed (a retry prefers its own heartbeat). */
  startLsn: string | null;
  workflowId: string;
  /** What each destination table holds (by the pipeline's table name); a table missing is taken from the catalog. */
  schemas?: Record<string, TableSchema>;
  /** Errored tables: their changes are not written. */
  stopped?: string[];
  /** Re-copied tables: only their changes committed from this LSN on are written. */
  copyFrom?: Record<string, string>;
}

export interface StreamHeartbeat {
  confirmedLsn: string | null;
  counters: Record<string, ChangeCounters>;
  /** As in StreamInput, as of this attempt: only shapes the destination has applied. */
  schemas?: Record<string, TableSchema>;
  stopped?: string[];
}

/** Encoding a heartbeat costs more than decoding a burst: one a second is plenty (the timeout is 30 s). */
const HEARTBEAT_EVERY_MS = 1_000;
/** How soon a partition attached, detached or truncated (which the WAL does not carry) is noticed. */
const PARTITIONS_EVERY_MS = 5_000;

export function createStreamActivities(deps: ActivityDeps) {
  async function streamChanges(input: StreamInput): Promise<void> {
    const ctx = Context.current();
    const { config } = input;
    const resumed = ctx.info.heartbeatDetails as StreamHeartbeat | undefined;
    const start = resumed?.confirmedLsn ?? input.startLsn;
    const tables = new StreamTables(config.id, input.tables, { ...input.schemas, ...resumed?.schemas }, [
      ...(input.stopped ?? []),
      ...(resumed?.stopped ?? []),
    ]);
    let stream: ChangeStream | undefined;
    const confirmed = (): Lsn | undefined => stream?.confirmed ?? (start ? parseLsn(start) : undefined);
    const source = new pg.Client(withSession(sourceConnection(config.source)));
    source.on('error', () => {
      /* an idle connection dropped (Postgres restart): surfaced by its next query */
    });
    const signal = (progress: StreamProgress) =>
      signalWithDeadline(deps, input.workflowId, streamProgressSignal, progress);
    const reporter = new StreamReporter(resumed?.counters ?? {}, {
      slot: async () => {
        const { health, warnings } = await watchSlot(deps, config, source);
        return { lagBytes: health.lagBytes, warnings };
      },
      send: signal,
      warn: (m) => ctx.log.warn(m),
    });
    const details = (): StreamHeartbeat => {
      const lsn = confirmed();
      return {
        confirmedLsn: lsn ? formatLsn(lsn) : null,
        counters: reporter.counters,
        schemas: tables.applied,
        stopped: [...tables.stopped],
      };
    };
    // A retry resuming from a slightly older LSN only rewrites what it wrote.
    let lastBeat = 0;
    const heartbeat = () => {
      if (Date.now() - lastBeat < HEARTBEAT_EVERY_MS) return;
      lastBeat = Date.now();
      ctx.heartbeat(details());
    };
    // Awaited before anything past what it reports is confirmed: an error lost here would be data lost.
    const reportShapes = (report: TableShapeReport) =>
      signalWithDeadline(deps, input.workflowId, tableShapeSignal, report);
    const stopTable = async (name: string, error: TableError) => {
      ctx.log.error(`table ${name} stopped: ${error.reason}; fix: ${error.fix}`);
      await reportShapes({ errors: { [name]: error } });
      tables.stop(name);
    };
    let destination: Destination | undefined;
    try {
      await source.connect();
      destination = await openDestination(deps, config);
      const dest = destination;
      const { schemas, report } = await tables.load(
        source,
        confirmed() ?? 0n,
        (s) => dest.missingColumns?.(s) ?? Promise.resolve([]),
      );
      if (Object.keys(report.schemas).length || Object.keys(report.errors).length) await reportShapes(report);
      for (const name of Object.keys(report.errors)) tables.stop(name);
      let partitionsChecked = 0;
      const checkPartitions = async () => {
        partitionsChecked = Date.now();
        const changed = await tables.partitionChanges(source, confirmed() ?? 0n);
        for (const [name, error] of Object.entries(changed)) await stopTable(name, error);
      };
      await checkPartitions();
      await destination.prepare([...schemas.values()]);
      stream = await openChangeStream({
        connection: sourceConnection(config.source),
        slot: slotName(config.id, config.source),
        publication: config.source.publication,
        startLsn: confirmed(),
        known: schemas,
        lookup: async (t) => (await loadTableSchemas(source, [tableKey(t)]))[0]!,
        tracking: {
          abilities: {
            canRetype: (from, to, key) => dest.canRetype?.(from, to, key) ?? false,
            canRename: (column, key) => dest.canRename?.(column, key) ?? false,
          },
          stopped: tables.stoppedKeys,
          from: new Map(Object.entries(input.copyFrom ?? {}).map(([t, lsn]) => [qualifyTable(t), parseLsn(lsn)])),
        },
        onWait: () => heartbeat(),
      });
      heartbeat();

      const replication = stream; // opened: the closures below need no check
      const batcher = new Batcher(
        { maxRows: config.cdc.maxBatchRows, flushIntervalMs: config.cdc.flushIntervalMs },
        replication.confirmed,
      );
      const refusals: RefusalHandling = {
        pipeline: config.id,
        write: (batch: Change[]) => applyHeartbeating(dest, batch, details),
        followed: (t) => tables.followed(t),
        stop: async (name, error) => {
          deps.metrics?.failed(config.id, 'stream', name);
          await stopTable(name, error);
        },
        wait: async (ms, refusal, attempt) => {
          ctx.log.warn(`${refusal.message} (attempt ${attempt} of ${REFUSED_ATTEMPTS})`);
          await sleep(ms);
          heartbeat();
        },
      };
      const confirm = async (lsn: Lsn) => {
        await replication.confirm(lsn);
        heartbeat();
      };
      const flush = async () => {
        const { changes: batch, schemas: reshaped, confirm: upTo } = batcher.take();
        if (deps.faults?.ackBeforeWrite && upTo !== undefined) await confirm(upTo);
        if (batch.length) {
          await fillUnchangedColumns(source, schemas, batch);
          await deps.faults?.at('destinationWrite');
          const written = await writeStoppingRefused(batch, refusals);
          for (const c of written) reporter.count(tables.nameOf(c.table), c);
          deps.metrics?.applied(config.id, written, (c) => tables.nameOf(c.table));
          const shapes = Object.fromEntries(Object.entries(reshaped).filter(([name]) => !tables.stopped.has(name)));
          if (Object.keys(shapes).length) {
            Object.assign(tables.applied, shapes);
            await reportShapes({ schemas: shapes });
          }
        }
        if (upTo !== undefined) await confirm(upTo);
        await reporter.report(replication.confirmed, false);
      };

      // One waiter at a time, woken by the next burst, the flush timer or cancellation. (Racing a
      // long-lived promise such as "cancelled" on every pass leaves a reaction per pass on it: a leak
      // that kept every burst, and so every change, alive.)
      const events = replication[Symbol.asyncIterator]();
      let woken: (() => void) | undefined;
      const wake = () => {
        const w = woken;
        woken = undefined;
        w?.();
      };
      ctx.cancellationSignal.addEventListener('abort', wake, { once: true });
      let arrived: IteratorResult<StreamEvent[]> | undefined;
      let failed: { error: unknown } | undefined;
      let pulling = false;
      for (;;) {
        // Heartbeats come from this loop (which wakes at least every flush interval), so a stream stuck
        // anywhere stops heartbeating and Temporal retries it elsewhere.
        heartbeat();
        if (!arrived && !failed && !pulling) {
          pulling = true;
          events
            .next()
            .then(
              (r) => {
                arrived = r;
              },
              (error: unknown) => {
                failed = { error };
              },
            )
            .finally(() => {
              pulling = false;
              wake();
            });
        }
        const due = batcher.dueIn(Date.now());
        if (!arrived && !failed && !ctx.cancellationSignal.aborted && due > 0) {
          const timer = setTimeout(wake, due);
          await new Promise<void>((resolve) => {
            woken = resolve;
          });
          clearTimeout(timer);
        }
        if (ctx.cancellationSignal.aborted) break;
        if (failed) throw failed.error;
        const got = arrived;
        arrived = undefined;
        if (got?.done) throw new Error('replication stream ended unexpectedly');
        for (const ev of got?.value ?? []) {
          if (ev.type === 'begin') batcher.begin();
          else if (ev.type === 'commit') batcher.commit(ev.endLsn);
          else if (ev.type === 'keepalive') batcher.keepalive(ev.walEnd);
          else if (ev.type === 'stop') {
            const name = tables.live(ev.table);
            if (name) await stopTable(name, tables.shapeError(name, ev.problem, ev.commitLsn));
          } else {
            // Not live: not followed, or stopped (also at a flush earlier in this burst, after it was decoded).
            const name = tables.live(ev.change.table);
            if (name && batcher.startsBatch(ev.change)) await flush();
            if (name && batcher.add(ev.change, name, Date.now())) await flush();
          }
        }
        if (batcher.shouldFlush(Date.now(), !got)) await flush();
        if (Date.now() - partitionsChecked >= PARTITIONS_EVERY_MS) await checkPartitions();
      }
      // Cancelled (pause, continue-as-new, worker shutdown): finish the batch in hand, confirm, report.
      await flush();
      // the workflow may be gone (terminated): nothing to tell
      await reporter.report(replication.confirmed, true).catch(() => undefined);
      throw new CancelledFailure('stream stopped on request after a final flush');
    } catch (e) {
      if (e instanceof CancelledFailure) throw e;
      const { error, warnings } = await streamFailure(deps, config, e);
      const lsn = confirmed();
      await signal({
        error: (error as Error).message,
        warnings,
        confirmedLsn: lsn ? formatLsn(lsn) : '',
        lagBytes: null,
        changes: {},
      }).catch(() => undefined);
      throw error;
    } finally {
      await stream?.close().catch(() => undefined);
      await destination?.close().catch(() => undefined);
      await source.end().catch(() => undefined);
    }
  }

  return { streamChanges };
}
