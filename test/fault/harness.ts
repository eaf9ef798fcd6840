/**
 * The fault harness: a seeded workload runs against a pipeline while faults
 * are injected at random points of the backfill and of CDC; then the oracle
 * checks that the destination equals the model and Postgres, table by table,
 * and that the slot has moved past the last change.
 */
import pg from 'pg';
import { primaryPostgres, startPostgres, stopPostgres } from '../../stack/postgres.ts';
import { startClickHouse, stopClickHouse } from '../../stack/clickhouse.ts';
import { startSnowflake, stopSnowflake } from '../../stack/snowflake.ts';
import { startTemporal, stopTemporal } from '../../stack/temporal.ts';
import { parseLsn } from '../../lib/lsn.ts';
import { holdDuckDBFile } from '../support/duckdb.ts';
import { PipelineFixture, type FixtureDestination } from '../support/pipeline.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addTablesUpdate, removeTablesUpdate, resyncTablesUpdate } from '../../lib/contract/pipeline.ts';
import { SHAPED_TABLES, SHAPES_SETUP, ShapeWorkload } from './shapes.ts';
import { REFUSED_SETUP, REFUSED_TABLE, rng, Workload, WORKLOAD_SETUP, WORKLOAD_TABLES } from './workload.ts';
import type { SoakDestination } from './destinations.ts';
import type { PipelineStatus } from '../../lib/contract/status.ts';
import { fileConsumer, materialize, natsConsumer, webhookConsumer, type StreamConsumer } from './consumers.ts';

export const FAULT_KINDS = [
  'worker-kill',
  'postgres-restart',
  'temporal-restart',
  'destination-down',
  'walsender-kill',
  'destination-write-error',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface SoakOptions {
  seed: number;
  durationMs: number;
  destination: SoakDestination;
  /** Fault kinds to draw from (each is injected at least once if time allows). */
  faults?: readonly FaultKind[];
  /** Rows per table before the pipeline starts (what backfill copies). */
  initialRows?: number;
  /**
   * Also write values the destination refuses (ClickHouse: 'infinity' dates, table `dates`): that table must be
   * stopped alone while the others end equal; then the source is fixed, the table retried, and it must end equal.
   */
  refused?: boolean;
  /** Also change the shape of two more tables once the backfill is done (shapes.ts); materialising destinations. */
  shapes?: boolean;
  log?: (line: string) => void;
}

export interface SoakResult {
  seed: number;
  transactions: number;
  changes: number;
  rollbacks: number;
  /** Shape changes made (with `shapes`), and the resyncs the operator ran for tables they stopped. */
  shapeChanges?: number;
  shapeResyncs?: number;
  faults: Record<string, number>;
  mismatches: number;
  firstDifferences: string[];
  slotAdvanced: boolean;
  /** Set when the pipeline stopped for the operator (phase `failed`): a fault it should have ridden out. */
  pipelineFailed: string | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? (() => undefined);
  const random = rng(opts.seed ^ 0x5eed);
  const kinds = opts.faults ?? FAULT_KINDS;
  const consumer = await streamConsumer(opts, () => f.config.id);
  const f: PipelineFixture = new PipelineFixture({
    name: `soak${opts.seed}`,
    setup: WORKLOAD_SETUP + (opts.refused ? REFUSED_SETUP : '') + (opts.shapes ? SHAPES_SETUP : ''),
    tables: [...WORKLOAD_TABLES, ...(opts.refused ? [REFUSED_TABLE] : []), ...(opts.shapes ? SHAPED_TABLES : [])],
    destination: consumer ? undefined : (opts.destination as FixtureDestination),
    consumer: consumer && {
      destination: consumer.destination,
      tables: async (schemas) => materialize(await consumer.envelopes(), schemas),
    },
    workerProcess: true,
    faults: 'copyBatch:delay=30', // a backfill long enough for faults to land inside it
    pipeline: {
      backfill: { parallelism: 2, rowsPerRange: 2000, batchRows: 500 },
      cdc: { flushIntervalMs: 200, maxBatchRows: 5000 },
    },
  });
  const shapes = opts.shapes ? new ShapeWorkload(rng(opts.seed ^ 0x5ba9e)) : undefined;
  const workload = new Workload(opts.seed, opts.refused, shapes);
  let shapesStale = true; // the catalog is read again after any failed transaction
  let phaseChecked = 0;
  const injected: Record<string, number> = {};
  let writer: pg.Client | undefined;
  const source = async () => {
    if (!writer) {
      const c = new pg.Client({ connectionString: f.source.url });
      c.on('error', () => {
        if (writer === c) writer = undefined;
      });
      await c.connect();
      writer = c;
    }
    return writer;
  };
  try {
    await f.setup();
    await workload.seed(await source(), opts.initialRows ?? 6000);
    await f.start();
    // The workload starts once the slot exists: changes made before it are only the backfill's, and on a busy
    // machine a slow start could otherwise leave the change stream with nothing to carry.
    await f.waitFor('the pipeline to create its slot', () => f.slotConfirmedLsn().then((lsn) => lsn !== null));

    const deadline = Date.now() + opts.durationMs;
    const order = [...kinds].sort(() => random() - 0.5);
    let nextFault = Date.now() + 1000 + random() * 2000;
    while (Date.now() < deadline) {
      try {
        if (shapes && shapesStale) await shapes.refresh(await source());
        shapesStale = false;
        if (shapes && Date.now() - phaseChecked > 2000) {
          phaseChecked = Date.now();
          const status = await f.status().catch(() => undefined);
          if (!shapes.active && status?.phase === 'streaming') log('backfill done: shape changes start');
          shapes.active ||= status?.phase === 'streaming';
          if (status) await resyncStoppedShapes(f, status, shapes, source, log);
        }
        await shapes?.maybeChange(await source(), log);
        await workload.step(await source());
      } catch (e) {
        log(`workload transaction failed (${(e as Error).message}); retrying after the fault`);
        writer = undefined;
        shapesStale = true;
        await sleep(500);
        continue;
      }
      if (Date.now() >= nextFault) {
        const kind = order.length ? order.shift()! : kinds[Math.floor(random() * kinds.length)]!;
        log(`fault: ${kind}`);
        await inject(kind, f, opts, random, consumer);
        injected[kind] = (injected[kind] ?? 0) + 1;
        nextFault = Date.now() + 2000 + random() * 3000;
      }
      await sleep(20 + random() * 60);
    }
    await shapes?.touchMoved(await source());
    const lastChange = (await (await source()).query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))
      .rows[0]!.lsn;

    // Oracle: Postgres equals the model; once the slot has passed the last change (Postgres considers it all
    // delivered, WAL is released), the destination must equal Postgres.
    const sourceDiffs = await workload.diffSource(await source());
    let pipelineFailed: string | null = null;
    const slotAdvanced = await f
      .waitFor(
        'slot to pass the last change, or the pipeline to stop',
        async () => {
          const status = await f.status().catch(() => undefined); // Temporal may still be coming back
          if (status?.phase === 'failed') {
            pipelineFailed = status.lastError ?? 'no error given';
            return 'failed';
          }
          const lsn = await f.slotConfirmedLsn();
          return lsn !== null && parseLsn(lsn) >= parseLsn(lastChange) && 'advanced';
        },
        300_000,
      )
      .then(
        (outcome) => outcome === 'advanced',
        () => false,
      );
    let destinationDiffs: string[] = [];
    try {
      if (pipelineFailed !== null) throw new Error('no point waiting for a stopped pipeline');
      if (opts.refused) destinationDiffs = await refusedTableRecovers(f, workload, await source());
      if (shapes) await shapedTablesStream(f, shapes, source, log);
      await f.waitForConvergence(60_000);
    } catch (e) {
      log(`destination did not converge: ${(e as Error).message.split('\n')[0]}`);
      const compared = await f.compare().catch((c: Error) => ({ diffs: [`cannot compare: ${c.message}`] }));
      destinationDiffs = [...destinationDiffs, ...compared.diffs];
    }
    // The stream destination's own promise, seen by its consumer (ids once, signatures, LSN order).
    const streamProblems = (await consumer?.problems()) ?? [];
    const firstDifferences = [...sourceDiffs, ...destinationDiffs, ...streamProblems].slice(0, 10);
    return {
      seed: opts.seed,
      transactions: workload.transactions,
      changes: workload.changes,
      rollbacks: workload.rollbacks,
      ...(shapes ? { shapeChanges: shapes.operations, shapeResyncs: shapes.resyncs } : {}),
      faults: injected,
      mismatches: sourceDiffs.length + destinationDiffs.length + streamProblems.length,
      firstDifferences,
      slotAdvanced,
      pipelineFailed,
    };
  } finally {
    await writer?.end().catch(() => undefined);
    await f.teardown();
    await consumer?.close();
  }
}

/**
 * With refused values written: the refused table is errored while every other table equals the source;
 * then the operator's way out (fix the rows, retry the table) must bring it back equal. Returns what failed.
 */
async function refusedTableRecovers(f: PipelineFixture, workload: Workload, client: pg.Client): Promise<string[]> {
  if (workload.refusedRows === 0) return [];
  const errored = await f
    .waitFor(
      'the refused table to be errored',
      async () => (await f.status()).tables[REFUSED_TABLE]?.state === 'errored',
      120_000,
    )
    .then(
      () => true,
      () => false,
    );
  if (!errored) return [`${REFUSED_TABLE} holds ${workload.refusedRows} refused value(s) and was never errored`];
  await f.waitForConvergence(60_000, WORKLOAD_TABLES);
  await workload.fixRefused(client);
  await f.handle.executeUpdate(resyncTablesUpdate, { args: [[REFUSED_TABLE]] });
  await f.waitFor(
    'the retried table to stream again',
    async () => (await f.status()).tables[REFUSED_TABLE]?.state === 'streaming',
    300_000,
  );
  return [];
}

/**
 * The operator's way out of a shape change walflow stopped a table for (a change it could not tell
 * apart, e.g. a column added and renamed before the stream, behind after a fault, read either):
 * `resyncTables`, as `walflow resync --tables` sends it; for a renamed table the one its error names:
 * `removeTables` and `addTables` under the new name. Re-copies walflow runs itself are left to it.
 */
async function resyncStoppedShapes(
  f: PipelineFixture,
  status: PipelineStatus,
  shapes: ShapeWorkload,
  source: () => Promise<pg.Client>,
  log: (line: string) => void,
): Promise<void> {
  const rename = async (from: string) => {
    const to = await shapes.movedTable(await source()); // it may have been renamed again since
    for (const names of [shapes.tables, f.opts.tables]) names.splice(names.indexOf(from), 1, to);
    return to;
  };
  // An operator's request can be refused while the workload goes on (the table renamed again since): said, and
  // tried again at the next look.
  const request = (what: string, send: () => Promise<unknown>) =>
    send().catch((e: Error) => log(`${what} refused, trying again: ${e.message.split('\n')[0]}`));
  for (const t of [...shapes.tables]) {
    if (!status.tables[t]) {
      // Removed after a rename and not added yet (the add failed: renamed again meanwhile).
      const now = await rename(t);
      log(`adding ${now}`);
      await request(`adding ${now}`, () => f.handle.executeUpdate(addTablesUpdate, { args: [[now]] }));
      continue;
    }
    const error = status.tables[t]?.state === 'errored' ? status.tables[t]?.error : undefined;
    if (!error || error.recopy) continue;
    // Renamed, or renamed again before the stream first read it under the name it was added by.
    const renamed = /^table \S+ (was renamed to |does not exist in the source|no longer exists)/.test(error.reason);
    log(
      `shape change stopped ${t} (${error.reason}): ${renamed ? 'removing it, adding it by its new name' : 'resyncing'}`,
    );
    shapes.resyncs++;
    if (!renamed) {
      await request(`resyncing ${t}`, () => f.handle.executeUpdate(resyncTablesUpdate, { args: [[t]] }));
      continue;
    }
    await request(`removing ${t}`, async () => {
      await f.handle.executeUpdate(removeTablesUpdate, { args: [[t]] });
      const now = await rename(t);
      await f.handle.executeUpdate(addTablesUpdate, { args: [[now]] });
    });
  }
}

/** Once the workload is done: every shaped table streams again (after a resync where one was stopped). */
async function shapedTablesStream(
  f: PipelineFixture,
  shapes: ShapeWorkload,
  source: () => Promise<pg.Client>,
  log: (line: string) => void,
) {
  await f.waitFor(
    'the shaped tables to stream',
    async () => {
      const status = await f.status();
      await resyncStoppedShapes(f, status, shapes, source, log);
      return shapes.tables.every((t) => status.tables[t]?.state === 'streaming');
    },
    300_000,
  );
}

/** The consumer of a stream destination (undefined for destinations that hold tables). */
async function streamConsumer(opts: SoakOptions, pipeline: () => string): Promise<StreamConsumer | undefined> {
  switch (opts.destination) {
    case 'nats':
      return natsConsumer(process.env.WALFLOW_NATS_URL ?? 'nats://127.0.0.1:14222', `soak${opts.seed}`);
    case 'webhook':
      return webhookConsumer(opts.seed);
    case 'file': {
      const dir = mkdtempSync(join(tmpdir(), 'walflow-soak-files-'));
      const files = fileConsumer(dir, pipeline, { maxBytes: 64 * 1024 });
      return { ...files, close: async () => rmSync(dir, { recursive: true, force: true }) };
    }
    default:
      return undefined;
  }
}

async function inject(
  kind: FaultKind,
  f: PipelineFixture,
  opts: SoakOptions,
  random: () => number,
  consumer?: StreamConsumer,
): Promise<void> {
  const pause = () => sleep(500 + random() * 2500);
  switch (kind) {
    case 'worker-kill':
      f.killWorker();
      await pause();
      await f.startWorker();
      return;
    case 'destination-write-error':
      // A fresh worker whose first destination writes fail with a transient error.
      f.killWorker();
      await f.startWorker({ WALFLOW_FAULTS: 'copyBatch:delay=30,destinationWrite:fail=3' });
      return;
    case 'postgres-restart': {
      const pgi = await primaryPostgres();
      await stopPostgres(pgi);
      await pause();
      await startPostgres(pgi);
      return;
    }
    case 'temporal-restart':
      await stopTemporal();
      await pause();
      await startTemporal();
      return;
    case 'destination-down': {
      if (opts.destination === 'duckdb') return holdFileAWhile(f, random);
      if (consumer?.outage) {
        await consumer.outage(2000 + random() * 3000);
        return;
      }
      const endpoint = { clickhouse: [stopClickHouse, startClickHouse], snowflake: [stopSnowflake, startSnowflake] }[
        opts.destination as string
      ];
      if (endpoint) {
        await endpoint[0]!();
        await sleep(2000 + random() * 3000);
        await endpoint[1]!();
      }
      return;
    }
    case 'walsender-kill':
      await f.sql(
        `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND ` +
          `active_pid IS NOT NULL`,
      );
  }
}

/**
 * DuckDB has no endpoint to stop; its "down" is another process holding the file for 2–5 s, so writes
 * wait for it. It is taken when the worker lets go of it (idle); from a busy worker (a backfill writes
 * without pause) by killing the worker, which then starts again while the file is held.
 */
async function holdFileAWhile(f: PipelineFixture, random: () => number): Promise<void> {
  let holder = await holdDuckDBFile(f.duckdbFile, 1500);
  if (!holder) {
    f.killWorker();
    holder = await holdDuckDBFile(f.duckdbFile, 30_000);
    await f.startWorker();
  }
  await sleep(2000 + random() * 3000);
  await holder?.release();
}

/** The run passed: nothing differs, the slot released the WAL, and the pipeline never needed the operator. */
export const soakPassed = (r: SoakResult) => r.mismatches === 0 && r.slotAdvanced && r.pipelineFailed === null;

export function summaryLine(r: SoakResult): string {
  const faults = Object.entries(r.faults)
    .map(([k, n]) => `${k}=${n}`)
    .join(' ');
  const failed = r.pipelineFailed === null ? '' : ` pipelineFailed=${JSON.stringify(r.pipelineFailed)}`;
  const verdict = soakPassed(r)
    ? 'mismatches=0'
    : `mismatches=${r.mismatches} slotAdvanced=${r.slotAdvanced}${failed} ` +
      `first: ${r.firstDifferences.slice(0, 3).join(' | ')} (replay with --seed ${r.seed})`;
  return (
    `soak seed=${r.seed} transactions=${r.transactions} changes=${r.changes} rollbacks=${r.rollbacks} ` +
    (r.shapeChanges === undefined ? '' : `shapeChanges=${r.shapeChanges} shapeResyncs=${r.shapeResyncs} `) +
    `faults: ${faults || 'none'} ${verdict}`
  );
}
