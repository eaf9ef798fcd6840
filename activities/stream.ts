/**
 * streamChanges: the CDC activity. Reads the slot from the last confirmed LSN,
 * writes batches (by size and by time) to the destination, and only then
 * acknowledges the LSN to Postgres and heartbeats it, so a retry on any worker
 * resumes from Temporal's record of what is durably written.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Context, CancelledFailure } from '@temporalio/activity';
import pg from 'pg';
import { qualifyTable, type PipelineConfig } from '../lib/config.ts';
import { faultPoint, unsafe } from '../lib/faults.ts';
import { formatLsn, parseLsn, versionLsn, type Lsn } from '../lib/lsn.ts';
import { tableKey, type Change, type TableSchema } from '../lib/model.ts';
import { streamProgressSignal, tableShapeSignal, type StreamProgress } from '../lib/contract/pipeline.ts';
import type { ChangeCounters, TableError, TableShapeReport } from '../lib/contract/status.ts';
import { withSession } from './postgres/session.ts';
import { applyHeartbeating, signalWithDeadline, type ActivityDeps } from './context.ts';
import { pipelineDestination } from './destinations/index.ts';
import type { Destination } from './destinations/destination.ts';
import { DataRefused } from './destinations/refused.ts';
import type { StreamEvent } from './postgres/decode.ts';
import { openChangeStream } from './postgres/stream.ts';
import { fillUnchangedColumns } from './postgres/unchanged.ts';
import { loadTableSchemas, tableNameByOid } from './postgres/schema.ts';
import type { ShapeProblem } from './postgres/shape.ts';
import { sourceConnection, slotName } from './source.ts';
import { streamFailure, watchSlot } from './slot-watch.ts';

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

const HEARTBEAT_EVERY_MS = 1_000;
const REPORT_EVERY_MS = 2_000;
const IDLE_REPORT_EVERY_MS = 30_000;

/**
 * Writes of data the destination refuses are tried this often (a refusal can pass: a constraint being
 * lifted, a column being altered) before the refused table is stopped; the waits between them double.
 */
const REFUSED_ATTEMPTS = 3;
const REFUSED_FIRST_WAIT_MS = 1_000;

const newCounters = (): ChangeCounters => ({ inserts: 0, updates: 0, deletes: 0, truncates: 0 });

export function createStreamActivities(deps: ActivityDeps) {
  async function streamChanges(input: StreamInput): Promise<void> {
    const ctx = Context.current();
    const { config } = input;
    const resumed = ctx.info.heartbeatDetails as StreamHeartbeat | undefined;
    const startLsn = resumed?.confirmedLsn ?? input.startLsn;
    // Qualified "schema.table" -> the name the pipeline config uses (progress is reported by that name).
    const wanted = new Map(input.tables.map((t) => [qualify(t), t]));
    const counters: Record<string, ChangeCounters> = resumed?.counters ?? {};
    let unreported: Record<string, ChangeCounters> = {};
    let confirmed: Lsn | undefined = startLsn ? parseLsn(startLsn) : undefined;
    const signal = (progress: StreamProgress) => signalWithDeadline(deps, input.workflowId, streamProgressSignal, progress);

    // Shapes the destination has applied, and stopped tables, by the pipeline's table name.
    const applied: Record<string, TableSchema> = { ...input.schemas, ...resumed?.schemas };
    const stopped = new Set([...(input.stopped ?? []), ...(resumed?.stopped ?? [])]);
    const details = (): StreamHeartbeat => ({
      confirmedLsn: confirmed ? formatLsn(confirmed) : null, counters, schemas: applied, stopped: [...stopped],
    });
    // Awaited before anything past what it reports is acknowledged: an error lost here would be data lost.
    const reportShapes = (report: TableShapeReport) => signalWithDeadline(deps, input.workflowId, tableShapeSignal, report);
    const tableError = (table: string, { renamedTo, ...problem }: ShapeProblem, lsn: Lsn): TableError => ({
      ...problem, lsn: formatLsn(lsn), since: new Date().toISOString(),
      fix: renamedTo ? `walflow tables remove ${config.id} ${table}, then walflow tables add ${config.id} ${renamedTo}` : `walflow resync ${config.id} --tables ${table}`,
    });
    // Encoding a heartbeat costs more than decoding a burst of changes: one a second is plenty (the
    // timeout is 30 s) and a retry resuming from a slightly older LSN only rewrites what it wrote.
    let lastBeat = 0;
    const heartbeat = () => {
      const now = Date.now();
      if (now - lastBeat < HEARTBEAT_EVERY_MS) return;
      lastBeat = now;
      ctx.heartbeat(details());
    };
    const source = new pg.Client(withSession(sourceConnection(config.source)));
    source.on('error', () => { /* an idle connection dropped (Postgres restart): surfaced by its next query */ });
    let destination: Destination | undefined;
    let stream: Awaited<ReturnType<typeof openChangeStream>> | undefined;
    try {
      await source.connect();
      destination = await pipelineDestination(config);
      // What each destination table holds: as recorded (the catalog may already be past the WAL still to
      // come), else the catalog's shape, which the destination tables are created with.
      const schemas = new Map<string, TableSchema>();
      const first: Record<string, TableSchema> = {};
      const errors: Record<string, TableError> = {};
      for (const [key, name] of wanted) {
        if (stopped.has(name)) continue;
        const catalog = await loadTableSchemas(source, [key]).then((s) => s[0], (e: Error) => e);
        if (catalog instanceof Error && !applied[name]) {
          errors[name] = tableError(name, { reason: catalog.message }, confirmed ?? 0n);
          continue;
        }
        if (catalog instanceof Error && applied[name]!.oid !== undefined) {
          // Gone under this name: the decoder stops it by OID when its changes come; say where it went.
          const now = await tableNameByOid(source, applied[name]!.oid!);
          if (!now) errors[name] = tableError(name, { reason: `table ${key} no longer exists in the source` }, confirmed ?? 0n);
        }
        const schema = applied[name] ?? (catalog as TableSchema);
        if (!applied[name]) first[name] = applied[name] = schema;
        schemas.set(key, schema);
      }
      if (Object.keys(first).length || Object.keys(errors).length) await reportShapes({ schemas: first, errors });
      for (const name of Object.keys(errors)) stopped.add(name);
      for (const name of Object.keys(errors)) schemas.delete(qualify(name));
      await destination.prepare([...schemas.values()]);
      const copyFrom = new Map(Object.entries(input.copyFrom ?? {}).map(([t, lsn]) => [qualify(t), parseLsn(lsn)]));
      // The decoder's own set ("schema.table"), shared: a table stopped below for refused data must be
      // skipped by the decoder too, from its next change on.
      const decoderStopped = new Set([...stopped].map(qualify));

      stream = await openChangeStream({
        connection: sourceConnection(config.source),
        slot: slotName(config.id, config.source),
        publication: config.source.publication,
        startLsn: confirmed,
        known: schemas,
        lookup: async (t) => (await loadTableSchemas(source, [tableKey(t)]))[0]!,
        tracking: {
          abilities: {
            canRetype: (from, to, key) => destination!.canRetype?.(from, to, key) ?? false,
            canRename: (column, key) => destination!.canRename?.(column, key) ?? false,
          },
          stopped: decoderStopped,
          from: copyFrom,
        },
        onWait: () => heartbeat(),
      });

      heartbeat();
      let lastReport = 0;

      let reportedLsn: Lsn | undefined;
      const report = async (force: boolean) => {
        if (!confirmed) return;
        const since = Date.now() - lastReport;
        const news = confirmed !== reportedLsn || Object.keys(unreported).length > 0;
        // Every report is a history event: report news at most every 2 s, lag alone every 30 s.
        if (!force && (since < REPORT_EVERY_MS || (!news && since < IDLE_REPORT_EVERY_MS))) return;
        lastReport = Date.now();
        reportedLsn = confirmed;
        const { health, warnings } = await watchSlot(deps, config, source);
        const progress: StreamProgress = { confirmedLsn: formatLsn(confirmed), lagBytes: health.lagBytes, changes: unreported, warnings };
        unreported = {};
        await signal(progress).catch((e: Error) => {
          // Progress is for status only: a report that cannot get through must never stall the stream.
          for (const [t, c] of Object.entries(progress.changes)) {
            const u = (unreported[t] ??= newCounters());
            u.inserts += c.inserts; u.updates += c.updates; u.deletes += c.deletes; u.truncates += c.truncates;
          }
          ctx.log.warn(`progress report failed: ${e.message}`);
        });
      };

      // Changes received and not yet written; `safeLsn` is the end of the last commit received, which
      // becomes acknowledgeable once everything received before it is written.
      let batch: Change[] = [];
      let reshaped: Record<string, TableSchema> = {};
      let batchStarted = 0;
      let safeLsn: Lsn | undefined;
      let inTransaction = false;
      const acknowledge = async () => {
        if (safeLsn !== undefined && (confirmed === undefined || safeLsn > confirmed)) {
          confirmed = safeLsn;
          await stream!.confirm(confirmed);
          heartbeat();
        }
      };
      /** A write, tried again while the destination refuses its data; the last refusal if it never stops refusing. */
      const writeRetryingRefusals = async (changes: Change[]): Promise<{ error: DataRefused; attempts: number; since: string } | undefined> => {
        let since: string | undefined;
        for (let attempt = 1; ; attempt++) {
          try {
            await applyHeartbeating(destination!, changes, details);
            return undefined;
          } catch (e) {
            if (!(e instanceof DataRefused)) throw e; // the destination down, slow, ...: the activity is retried
            since ??= new Date().toISOString();
            if (attempt >= REFUSED_ATTEMPTS) return { error: e, attempts: attempt, since };
            ctx.log.warn(`${e.message} (attempt ${attempt} of ${REFUSED_ATTEMPTS})`);
            await sleep(REFUSED_FIRST_WAIT_MS * 2 ** (attempt - 1));
            heartbeat();
          }
        }
      };
      /**
       * Writes `changes`; when the destination keeps refusing one table's data, stops that table instead of
       * the pipeline: its error is reported (awaited, before anything past its unwritten changes can be
       * acknowledged), its changes are dropped from here on (a resync re-copies them from a fresh snapshot),
       * and the other tables' changes are written. Returns what was written.
       */
      const writeOrStopRefused = async (changes: Change[]): Promise<Change[]> => {
        let pending = changes;
        for (;;) {
          const refused = await writeRetryingRefusals(pending);
          if (!refused) return pending;
          const key = tableKey(refused.error.table);
          const name = wanted.get(key);
          const unwritten = pending.filter((c) => tableKey(c.table) === key);
          // Only a table of this batch can be stopped for it; a refusal naming another stays a failure.
          if (!name || !unwritten.length) throw refused.error;
          const { column } = refused.error.refusal;
          const error: TableError = {
            reason: refused.error.message, ...refused.error.refusal, lsn: formatLsn(versionLsn(unwritten[0]!.version)),
            since: refused.since, attempts: refused.attempts,
            fix: `fix the refused value in the source${column ? ` (column ${column})` : ''}, or what refuses it (the source column's type, a constraint on the destination table), then walflow resync ${config.id} --tables ${name}`,
          };
          ctx.log.error(`table ${name} stopped: ${error.reason}; fix: ${error.fix}`);
          deps.metrics?.failed(config.id, 'stream', name);
          await reportShapes({ errors: { [name]: error } });
          stopped.add(name);
          decoderStopped.add(key);
          delete reshaped[name];
          pending = pending.filter((c) => tableKey(c.table) !== key);
          if (!pending.length) return pending;
        }
      };
      const flush = async () => {
        if (unsafe.ackBeforeWrite) await acknowledge();
        if (batch.length) {
          await fillUnchangedColumns(source, schemas, batch);
          await faultPoint('destinationWrite');
          const written = await writeOrStopRefused(batch);
          for (const c of written) count(c);
          deps.metrics?.applied(config.id, written, (c) => wanted.get(tableKey(c.table)) ?? tableKey(c.table));
          batch = [];
          if (Object.keys(reshaped).length) {
            Object.assign(applied, reshaped);
            await reportShapes({ schemas: reshaped });
            reshaped = {};
          }
        }
        await acknowledge();
        await report(false);
      };
      const count = (c: Change) => {
        const key = wanted.get(tableKey(c.table)) ?? tableKey(c.table);
        const field = c.kind === 'insert' ? 'inserts' : c.kind === 'update' ? 'updates' : c.kind === 'delete' ? 'deletes' : c.kind === 'truncate' ? 'truncates' : undefined;
        if (!field) return;
        (counters[key] ??= newCounters())[field]++;
        (unreported[key] ??= newCounters())[field]++;
      };

      // One waiter at a time, woken by the next burst, the flush timer or cancellation. (Racing a
      // long-lived promise such as "cancelled" on every pass leaves a reaction per pass on it: a leak
      // that kept every burst, and so every change, alive.)
      const events = stream[Symbol.asyncIterator]();
      let woken: (() => void) | undefined;
      const wake = () => { const w = woken; woken = undefined; w?.(); };
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
          events.next().then((r) => { arrived = r; }, (error: unknown) => { failed = { error }; }).finally(() => { pulling = false; wake(); });
        }
        const due = batch.length ? batchStarted + config.cdc.flushIntervalMs - Date.now() : config.cdc.flushIntervalMs;
        if (!arrived && !failed && !ctx.cancellationSignal.aborted && due > 0) {
          const timer = setTimeout(wake, due);
          await new Promise<void>((resolve) => { woken = resolve; });
          clearTimeout(timer);
        }
        if (ctx.cancellationSignal.aborted) break;
        if (failed) throw failed.error;
        const got = arrived;
        arrived = undefined;
        if (got?.done) throw new Error('replication stream ended unexpectedly');
        for (const ev of got?.value ?? []) {
          if (ev.type === 'begin') {
            inTransaction = true;
          } else if (ev.type === 'stop') {
            const name = wanted.get(tableKey(ev.table));
            if (!name || stopped.has(name)) continue;
            const error = tableError(name, ev.problem, ev.commitLsn);
            ctx.log.error(`table ${name} stopped: ${error.reason}; fix: ${error.fix}`);
            await reportShapes({ errors: { [name]: error } });
            stopped.add(name);
          } else if (ev.type === 'change') {
            const name = wanted.get(tableKey(ev.change.table));
            // A table stopped at a flush earlier in this burst: its changes decoded before that are dropped too.
            if (!name || stopped.has(name)) continue;
            if (ev.change.kind === 'schema') reshaped[name] = ev.change.schema;
            if (batch.length === 0) batchStarted = Date.now();
            batch.push(ev.change);
            if (batch.length >= config.cdc.maxBatchRows) await flush();
          } else if (ev.type === 'commit') {
            inTransaction = false;
            safeLsn = ev.endLsn;
          } else if (ev.type === 'keepalive' && !inTransaction && (safeLsn === undefined || ev.walEnd > safeLsn)) {
            // Between transactions everything before the server's position has been received:
            // acknowledging it lets the slot release WAL that holds no changes for us.
            safeLsn = ev.walEnd;
          }
        }
        // A quiet pass (the timer woke us) acknowledges keepalive positions and reports; a busy stream
        // still flushes once its oldest unwritten change is a flush interval old. With nothing unwritten
        // a new position is acknowledged at once: a Postgres shutting down sends keepalives back to back
        // (so no pass is quiet) and waits for exactly that acknowledgement before it can stop.
        const ackable = !batch.length && safeLsn !== undefined && (confirmed === undefined || safeLsn > confirmed);
        if (!got || ackable || (batch.length && Date.now() - batchStarted >= config.cdc.flushIntervalMs)) await flush();
      }
      // Cancelled (pause, continue-as-new, worker shutdown): finish the batch in hand, acknowledge, report.
      await flush();
      await report(true).catch(() => undefined); // the workflow may be gone (terminated): nothing to tell
      throw new CancelledFailure('stream stopped on request after a final flush');
    } catch (e) {
      if (e instanceof CancelledFailure) throw e;
      const { error, warnings } = await streamFailure(deps, config, e);
      await signal({ error: (error as Error).message, warnings, confirmedLsn: confirmed ? formatLsn(confirmed) : '', lagBytes: null, changes: {} }).catch(() => undefined);
      throw error;
    } finally {
      await stream?.close().catch(() => undefined);
      await destination?.close().catch(() => undefined);
      await source.end().catch(() => undefined);
    }
  }

  return { streamChanges };
}

/** "table" means "public.table". */
export const qualify = qualifyTable;
