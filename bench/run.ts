/**
 * `npm run bench -- backfill|cdc|latency|all [--rows N] [--changes N] [--destination null,clickhouse,snowflake,duckdb]
 *   [--parallelism 1,2,4] [--tables bf,firenibble,wide] [--rates 2000,5000] [--seconds S] [--smoke] [--profile]
 *   [--peers supabase-etl] [--workers 1,2] [--worker-flags=--max-semi-space-size=32,...]`
 *
 * Measures walflow on the local stack against raw ceilings measured in the same run, so results are
 * ratios that hold on a noisy machine:
 *   backfill: `COPY <table> TO STDOUT` read by psql (into wc, which counts the bytes for MB/s), and the
 *     parallel ceiling: as many `COPY (SELECT ... WHERE ctid range) TO STDOUT` streams at once as the
 *     parallelism measured; with --peers supabase-etl also supabase/etl's table_copy on the same table;
 *   cdc: pg_recvlogical with pgoutput (proto_version, publication_names) reading the same changes.
 * The worker runs as its own process (`walflow worker`; a backfill with --workers N runs N of them on the task
 * queue), warmed by probe workflows before the clock starts; its peak RSS is the kernel's VmHWM.
 * Prints a table and writes JSON with machine info to bench/results/ (git-ignored). With --profile, each
 * scenario's worker writes a V8 CPU profile there too, and its top functions by self time are printed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { parseConfig, type PipelineConfig } from '../lib/config.ts';
import { parseLsn } from '../lib/lsn.ts';
import { stackUp } from '../stack/index.ts';
import { projectRoot, stateDir } from '../stack/paths.ts';
import { EMULATOR_WAREHOUSE } from '../stack/snowflake.ts';
import { pipelineStatus, startPipeline, type PipelineHandle } from '../lib/pipeline-client.ts';
import { ensureSupabaseEtl, PEERS, supabaseEtlTableCopy } from './peers.ts';
import { hotFunctions, type HotFunction } from './profile.ts';
import { probeWorkflow } from '../workflows/index.ts';
import { bigTransaction, CDC_TABLE, mixWorkload, TABLES } from './tables.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    rows: { type: 'string' },
    changes: { type: 'string' },
    destination: { type: 'string', default: 'null' },
    parallelism: { type: 'string' },
    tables: { type: 'string' },
    rates: { type: 'string' },
    seconds: { type: 'string' },
    smoke: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'worker-flags': { type: 'string' },
    peers: { type: 'string' },
    workers: { type: 'string' },
  },
});
const what = positionals[0] ?? 'all';
if (!['backfill', 'cdc', 'latency', 'all'].includes(what))
  throw new Error(`bench: unknown scenario "${what}" (backfill, cdc, latency or all)`);
const smoke = values.smoke!;
const list = (v: string | undefined, fallback: string) => (v ?? fallback).split(',').filter(Boolean);
const rows = Number(values.rows ?? (smoke ? 2000 : 1_000_000));
const changes = Number(values.changes ?? (smoke ? 2000 : 1_000_000));
const parallelisms = list(values.parallelism, smoke ? '1' : '1,2,4').map(Number);
const tables = list(values.tables, smoke ? 'bf' : 'bf,firenibble,wide');
const rates = list(values.rates, smoke ? '200' : '2000,5000').map(Number);
const latencySeconds = Number(values.seconds ?? (smoke ? 2 : 20));
const destinations = list(values.destination, 'null');
/** Backfill: how many `walflow worker` processes share the pipeline's task queue. */
const workerCounts = list(values.workers, '1').map(Number);
for (const d of destinations)
  if (!['null', 'clickhouse', 'snowflake', 'duckdb'].includes(d))
    throw new Error(`bench: --destination ${d} is not null, clickhouse, snowflake or duckdb`);
const peers = list(values.peers, '');
for (const p of peers)
  if (!(PEERS as readonly string[]).includes(p))
    throw new Error(`bench: --peers ${p} is not one of ${PEERS.join(', ')}`);
for (const t of tables)
  if (!TABLES[t]) throw new Error(`bench: unknown table ${t} (${Object.keys(TABLES).join(', ')})`);

interface Result {
  scenario: string;
  destination: string;
  /** Rows (backfill) or changes (cdc, latency). */
  count: number;
  seconds: number;
  perSecond: number;
  mbPerSecond?: number;
  ceilingPerSecond?: number;
  /** walflow's rate over the ceiling's, measured in the same run. */
  ratio?: number;
  /** Backfill: `parallelism` ctid-range COPY streams read at once, and walflow's rate over theirs. */
  parallelCeilingPerSecond?: number;
  parallelRatio?: number;
  /** Backfill with --peers supabase-etl: its table_copy rate on the same table, and walflow's over it. */
  peerPerSecond?: number;
  vsPeer?: number;
  latencyMs?: { p50: number; p95: number; p99: number; max: number };
  workerPeakRssMb: number;
  /** With --profile: the worker's CPU profile and its hottest functions. */
  profile?: { file: string; hot: HotFunction[] };
}
const results: Result[] = [];
const resultsDir = process.env.WALFLOW_BENCH_RESULTS ?? join(projectRoot, 'bench', 'results');
const stamp = new Date().toISOString().replace(/[:.]/g, '-');

const { status } = await stackUp();
const admin = status.postgres!.url;
const dbName = `walflow_bench_${Date.now().toString(36)}`;
const sourceUrl = (() => {
  const u = new URL(admin);
  u.pathname = `/${dbName}`;
  return u.toString();
})();
const sql = async (text: string, url = sourceUrl) => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
};
await sql(`CREATE DATABASE ${pg.escapeIdentifier(dbName)}`, admin);
/** One connection for polling positions (a connection per poll would add its own latency). */
const probe = new pg.Client({ connectionString: sourceUrl });
await probe.connect();

const connection = await Connection.connect({ address: status.temporal!.url });
const client = new Client({ connection });
const taskQueue = `bench-${Date.now()}`;
const log = (line: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A worker in service has run workflows before: probe round trips (workflow, activity, Postgres) pay each worker's
 * first workflow task's sandbox set-up, which is once per worker process, not once per pipeline. With several
 * workers the probes run at once, four per worker, so that each very likely takes one.
 */
async function warmUp(probes: number): Promise<void> {
  await Promise.all(
    Array.from({ length: probes }, (_, i) =>
      client.workflow.execute(probeWorkflow, {
        taskQueue,
        workflowId: `bench-warm-up-${Date.now().toString(36)}-${i}`,
        args: [sourceUrl],
      }),
    ),
  );
}

/** `count` worker processes on the scenario's task queue; their peak RSS is the highest of theirs. */
async function startWorkers(label: string, count: number): Promise<{ stop: () => Promise<WorkerFigures> }> {
  if (count === 1) return startWorkerProcess(label);
  const workers: Awaited<ReturnType<typeof startWorkerProcess>>[] = [];
  for (let i = 1; i <= count; i++) workers.push(await startWorkerProcess(`${label} worker ${i}`, false));
  await warmUp(4 * count);
  return {
    stop: async () => {
      const figures = await Promise.all(workers.map((w) => w.stop()));
      return { ...figures[0]!, workerPeakRssMb: Math.max(...figures.map((f) => f.workerPeakRssMb)) };
    },
  };
}
type WorkerFigures = Pick<Result, 'workerPeakRssMb' | 'profile'>;

/** Set when the current scenario's worker process died: waiting for its progress would be in vain. */
let workerExit: Error | undefined;

/** A `walflow worker` process for one scenario; its VmHWM is the scenario's peak RSS. */
async function startWorkerProcess(
  label: string,
  warm = true,
): Promise<{ child: ChildProcess; stop: () => Promise<WorkerFigures> }> {
  const profileDir = join(
    resultsDir,
    `profiles-${stamp}`,
    `${results.length + 1}-${label.replace(/[^a-z0-9]+/gi, '-')}`,
  );
  const nodeFlags = [
    ...(values.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    ...(values['worker-flags']?.split(',').filter(Boolean) ?? []),
  ];
  const child = spawn(process.execPath, [...nodeFlags, 'bin/walflow.js', 'worker', '--task-queue', taskQueue], {
    cwd: projectRoot,
    stdio: ['ignore', 'inherit', 'pipe'],
    env: {
      ...process.env,
      WALFLOW_TEMPORAL_ADDRESS: status.temporal!.url,
      WALFLOW_BENCH_SNOWFLAKE_PASSWORD: 'emulator',
    },
  });
  await new Promise<void>((resolve, reject) => {
    // The worker logs on stderr (its stdout is for a stdout destination's changes): passed on, and read for its start.
    child.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      if (d.toString().includes('polling')) resolve();
    });
    child.once('exit', (code, signal) => {
      workerExit = new Error(`bench worker exited (${signal ?? code}) during "${label}"`);
      reject(workerExit);
    });
  });
  workerExit = undefined;
  if (warm) await warmUp(1);
  return {
    child,
    stop: async () => {
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      child.removeAllListeners('exit');
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      const file = values.profile
        ? readdirSync(profileDir)
            .map((f) => join(profileDir, f))
            .find((f) => f.endsWith('.cpuprofile'))
        : undefined;
      return {
        workerPeakRssMb: Number(hwm ?? 0) / 1024,
        ...(file ? { profile: { file, hot: hotFunctions(file) } } : {}),
      };
    },
  };
}

/** DuckDB files of this run (one per pipeline, so each backfill writes a fresh table), removed at the end. */
const duckdbDir = join(stateDir, 'bench', dbName);

function destinationConfig(type: string, pipelineId: string): Record<string, unknown> {
  if (type === 'clickhouse') return { type, url: status.clickhouse!.url, database: dbName };
  if (type === 'duckdb') return { type, path: join(duckdbDir, `${pipelineId}.duckdb`) };
  if (type === 'snowflake') {
    const u = new URL(status.snowflake!.url);
    return {
      type,
      account: 'bench',
      username: 'bench',
      password: 'env:WALFLOW_BENCH_SNOWFLAKE_PASSWORD',
      warehouse: EMULATOR_WAREHOUSE,
      database: 'WALFLOW_BENCH',
      schema: dbName,
      host: u.hostname,
      port: Number(u.port),
      protocol: 'http',
    };
  }
  return { type: 'null' };
}

let pipelines = 0;
function pipelineConfig(tableNames: string[], destination: string, parallelism: number): PipelineConfig {
  const id = `bench-${++pipelines}-${Date.now().toString(36)}`;
  return parseConfig({
    pipelines: [
      {
        id,
        source: { url: sourceUrl, publication: `pub_${id.replace(/-/g, '_')}`, tables: tableNames },
        destination: destinationConfig(destination, id),
        // walflow's defaults (250,000 rows per range, 10,000-row batches) but for the parallelism measured.
        backfill: { parallelism },
        cdc: { flushIntervalMs: 100, maxBatchRows: 10_000 },
      },
    ],
  }).pipelines[0]!;
}

async function until<T>(check: () => Promise<T | undefined | false>, timeoutMs = 30 * 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (workerExit) throw workerExit;
    const v = await check();
    if (v) return v;
    await sleep(50);
  }
  throw new Error('bench: timed out');
}

const slotOf = (config: PipelineConfig) => `walflow_${config.id.replace(/-/g, '_')}`;

/** The pipeline slot's confirmed position: walflow confirms only what the destination has durably written. */
async function slotConfirmedLsn(config: PipelineConfig, client = probe): Promise<bigint | null> {
  const {
    rows: [r],
  } = await client.query<{ lsn: string | null }>(
    'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
    [slotOf(config)],
  );
  return r?.lsn ? parseLsn(r.lsn) : null;
}

const start = (config: PipelineConfig) => startPipeline(client, taskQueue, { config });

async function finish(handle: PipelineHandle, config: PipelineConfig): Promise<void> {
  await handle.terminate('bench done');
  await sleep(500);
  await sql(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${slotOf(config)}' AND ` +
      `NOT active`,
  ).catch(() => undefined);
}

/** Runs `cmd` through sh, timing it; returns seconds and its stdout. */
function timedShell(cmd: string): { seconds: number; out: string } {
  const t = process.hrtime.bigint();
  const out = execFileSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return { seconds: seconds(t), out };
}
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function benchBackfill(): Promise<void> {
  for (const t of tables.map((n) => TABLES[n]!)) {
    await sql(`${t.create}; ${t.fill(rows)}; ANALYZE ${t.name}`);
    const ceiling = timedShell(`psql -qAt -d ${sh(sourceUrl)} -c ${sh(`COPY ${t.name} TO STDOUT`)} | wc -c`);
    const mb = Number(ceiling.out.trim()) / 2 ** 20;
    const parallelCeiling = new Map(parallelisms.map((p) => [p, parallelCopySeconds(t.name, p)]));
    const peer = new Map(peers.length ? parallelisms.map((p) => [p, peerCopySeconds(t.name, p)]) : []);
    for (const destination of destinations) {
      for (const [p, workerCount] of parallelisms.flatMap((p) => workerCounts.map((w) => [p, w] as const))) {
        const workersLabel = workerCount > 1 ? ` workers=${workerCount}` : '';
        const label = `backfill ${t.name} p=${p}${workersLabel} ${destination}`;
        log(label);
        const worker = await startWorkers(label, workerCount);
        const config = pipelineConfig([t.name], destination, p);
        const began = process.hrtime.bigint();
        const handle = await start(config);
        await until(async () => (await pipelineStatus(handle)).tables[t.name]?.backfill === 'done');
        const s = seconds(began);
        await finish(handle, config);
        results.push({
          scenario: `backfill ${t.name} (${t.columns} cols) p=${p}${workersLabel}`,
          destination,
          count: rows,
          seconds: s,
          perSecond: rows / s,
          mbPerSecond: mb / s,
          ceilingPerSecond: rows / ceiling.seconds,
          ratio: ceiling.seconds / s,
          parallelCeilingPerSecond: rows / parallelCeiling.get(p)!,
          parallelRatio: parallelCeiling.get(p)! / s,
          ...(peer.has(p) ? { peerPerSecond: rows / peer.get(p)!, vsPeer: peer.get(p)! / s } : {}),
          ...(await worker.stop()),
        });
      }
    }
  }
}

/** Seconds for `streams` psql processes each reading an equal ctid page range of `table` with COPY, all at once. */
function parallelCopySeconds(table: string, streams: number): number {
  const pages = Number(
    execFileSync(
      'psql',
      ['-qAt', '-d', sourceUrl, '-c', `SELECT pg_relation_size('${table}') / current_setting('block_size')::int`],
      { encoding: 'utf8' },
    ).trim(),
  );
  const per = Math.ceil((pages + 1) / streams);
  const copies = Array.from({ length: streams }, (_, i) => {
    const q =
      `COPY (SELECT * FROM ${table} WHERE ctid >= '(${i * per},0)'::tid AND ctid < ` +
      `'(${(i + 1) * per},0)'::tid) TO STDOUT`;
    return `psql -qAt -d ${sh(sourceUrl)} -c ${sh(q)} > /dev/null &`;
  });
  return timedShell(`${copies.join(' ')} wait`).seconds;
}

let peerBinary: string | undefined;
/** supabase/etl's table_copy of `table` with `parallelism` copy connections into its null destination. */
function peerCopySeconds(table: string, parallelism: number): number {
  peerBinary ??= ensureSupabaseEtl(log);
  const publication = `bench_etl_${table}`;
  execFileSync('psql', [
    '-qAt',
    '-d',
    sourceUrl,
    '-c',
    `DROP PUBLICATION IF EXISTS ${publication}; CREATE PUBLICATION ${publication} FOR TABLE ${table}`,
  ]);
  const oid = Number(
    execFileSync('psql', ['-qAt', '-d', sourceUrl, '-c', `SELECT '${table}'::regclass::oid`], {
      encoding: 'utf8',
    }).trim(),
  );
  log(`supabase/etl table_copy ${table} p=${parallelism}`);
  const run = supabaseEtlTableCopy(peerBinary, { sourceUrl, table, tableOid: oid, publication, parallelism, rows });
  execFileSync('psql', [
    '-qAt',
    '-d',
    sourceUrl,
    '-c',
    `DROP PUBLICATION ${publication}; DROP SCHEMA IF EXISTS etl CASCADE`,
  ]);
  return run.seconds;
}

/**
 * Throughput of decoding and writing a given workload: the pipeline is paused while the workload runs,
 * then resumed, and timed until it has confirmed the workload's last LSN. The ceiling reads the same
 * WAL with pg_recvlogical from a slot created before the workload.
 */
async function benchCdc(): Promise<void> {
  await sql(`${CDC_TABLE}`);
  const mix = mixWorkload(Math.max(1, Math.round(changes / 1000)));
  const workloads = [
    { name: `cdc steady mix (500 ins / 300 upd / 200 del per tx)`, sql: mix.sql, changes: mix.changes },
    { name: `cdc one transaction of ${changes} inserts`, sql: bigTransaction(changes), changes },
  ];
  for (const destination of destinations) {
    for (const w of workloads) {
      await sql('TRUNCATE cdc');
      log(`${w.name} -> ${destination}`);
      const worker = await startWorkerProcess(`${w.name} ${destination}`);
      const config = pipelineConfig(['cdc'], destination, 1);
      const handle = await start(config);
      await until(async () => {
        const s = await pipelineStatus(handle);
        return s.phase === 'streaming' && s.confirmedLsn;
      });
      await handle.signal('pause');
      // Paused means the stream has let go of the slot, not only that the workflow took the signal.
      await until(
        async () =>
          (await pipelineStatus(handle)).phase === 'paused' &&
          (
            await probe.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [
              slotOf(config),
            ])
          ).rowCount === 1,
      );
      const ceilingSlot = `bench_ceiling_${pipelines}`;
      await sql(`SELECT pg_create_logical_replication_slot('${ceilingSlot}', 'pgoutput')`);
      await sql(w.sql);
      log('workload written; resuming the pipeline');
      const end = (await sql('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string;
      // A change after the end: pg_recvlogical stops at the first record past --endpos, and without
      // one it would wait for the next keepalive.
      await sql(`INSERT INTO cdc VALUES (-1, 'sentinel', 0, now())`);
      const began = process.hrtime.bigint();
      await handle.signal('resume');
      await until(async () => {
        const lsn = await slotConfirmedLsn(config);
        return lsn !== null && lsn >= parseLsn(end);
      });
      const s = seconds(began);
      log(`caught up in ${s.toFixed(2)} s; measuring the pg_recvlogical ceiling`);
      const ceiling = timedShell(
        `pg_recvlogical -d ${sh(sourceUrl)} --slot ${ceilingSlot} --start -o proto_version=1 ` +
          `-o publication_names=${config.source.publication} --endpos ${end} --no-loop -f /dev/null`,
      );
      await sql(`SELECT pg_drop_replication_slot('${ceilingSlot}')`);
      await finish(handle, config);
      results.push({
        scenario: w.name,
        destination,
        count: w.changes,
        seconds: s,
        perSecond: w.changes / s,
        ceilingPerSecond: w.changes / ceiling.seconds,
        ratio: ceiling.seconds / s,
        ...(await worker.stop()),
      });
    }
  }
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/**
 * End-to-end latency at a fixed rate: a writer commits a transaction every 10 ms (rate/100 rows each);
 * a row counts as visible when the slot's confirmed LSN passes its commit, which walflow acknowledges
 * only once the destination write has returned.
 */
async function benchLatency(): Promise<void> {
  await sql(`CREATE TABLE IF NOT EXISTS lat (id int8 PRIMARY KEY, at timestamptz)`);
  for (const destination of destinations) {
    for (const rate of rates) {
      log(`latency at ${rate} changes/s for ${latencySeconds} s -> ${destination}`);
      const worker = await startWorkerProcess(`latency ${rate} ${destination}`);
      const config = pipelineConfig(['lat'], destination, 1);
      const handle = await start(config);
      await until(async () => {
        const s = await pipelineStatus(handle);
        return s.phase === 'streaming' && s.confirmedLsn;
      });
      const writer = new pg.Client({ connectionString: sourceUrl });
      const watcher = new pg.Client({ connectionString: sourceUrl });
      await writer.connect();
      await watcher.connect();
      const pending: { lsn: bigint; at: number }[] = [];
      const latencies: number[] = [];
      let writing = true;
      const watch = (async () => {
        while (writing || pending.length) {
          const confirmed = (await slotConfirmedLsn(config, watcher)) ?? 0n;
          const now = performance.now();
          while (pending.length && pending[0]!.lsn <= confirmed) latencies.push(now - pending.shift()!.at);
          await sleep(2);
        }
      })();
      const perTx = Math.max(1, Math.round(rate / 100));
      const began = performance.now();
      let id = (await writer.query('SELECT coalesce(max(id), 0) AS m FROM lat')).rows[0].m as string;
      for (let tx = 0; performance.now() - began < latencySeconds * 1000; tx++) {
        const wait = began + tx * 10 - performance.now();
        if (wait > 0) await sleep(wait);
        const from = BigInt(id) + 1n;
        id = String(from + BigInt(perTx) - 1n);
        const res = (await writer.query(
          `INSERT INTO lat SELECT g, now() FROM generate_series(${from}, ${id}) g; SELECT ` +
            `pg_current_wal_lsn()::text AS lsn`,
        )) as unknown as pg.QueryResult[];
        pending.push({ lsn: parseLsn(res[1]!.rows[0].lsn), at: performance.now() });
      }
      const elapsed = (performance.now() - began) / 1000;
      writing = false;
      await Promise.race([watch, sleep(60_000)]);
      await writer.end();
      await watcher.end();
      await finish(handle, config);
      const sorted = latencies.sort((a, b) => a - b);
      const written = sorted.length * perTx;
      results.push({
        scenario: `latency at ${rate} changes/s`,
        destination,
        count: written,
        seconds: elapsed,
        perSecond: written / elapsed,
        latencyMs: {
          p50: percentile(sorted, 50),
          p95: percentile(sorted, 95),
          p99: percentile(sorted, 99),
          max: sorted[sorted.length - 1] ?? NaN,
        },
        ...(await worker.stop()),
      });
    }
  }
}

try {
  if (what === 'backfill' || what === 'all') await benchBackfill();
  if (what === 'cdc' || what === 'all') await benchCdc();
  if (what === 'latency' || what === 'all') await benchLatency();
} finally {
  await probe.end();
  await connection.close();
  await sql(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '${dbName}' AND NOT active`,
    admin,
  ).catch(() => undefined);
  await sql(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(dbName)} WITH (FORCE)`, admin).catch(() => undefined);
  rmSync(duckdbDir, { recursive: true, force: true });
}

const f = (n: number | undefined, digits = 0) => (n === undefined || Number.isNaN(n) ? '' : n.toFixed(digits));
console.log(
  '| scenario | destination | count | seconds | per s | MB/s | ceiling per s | ratio | vs parallel COPY | vs ' +
    'supabase/etl | p50 / p95 / p99 ms | worker peak RSS MB |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  console.log(
    `| ${r.scenario} | ${r.destination} | ${r.count} | ${f(r.seconds, 2)} | ${f(r.perSecond)} ` +
      `| ${f(r.mbPerSecond, 1)} | ${f(r.ceilingPerSecond)} | ` +
      `${f(r.ratio, 2)} | ${f(r.parallelRatio, 2)} | ${f(r.vsPeer, 2)} | ` +
      `${r.latencyMs ? `${f(r.latencyMs.p50)} / ${f(r.latencyMs.p95)} / ${f(r.latencyMs.p99)}` : ''} ` +
      `| ${f(r.workerPeakRssMb)} |`,
  );
}
for (const r of results.filter((x) => x.profile)) {
  console.log(`\n${r.scenario} -> ${r.destination}: worker CPU profile ${r.profile!.file}`);
  for (const h of r.profile!.hot)
    console.log(`  ${String(h.ms).padStart(7)} ms ${(h.share * 100).toFixed(1).padStart(5)}%  ${h.fn}`);
}
mkdirSync(resultsDir, { recursive: true });
const file = join(resultsDir, `bench-${stamp}.json`);
writeFileSync(
  file,
  JSON.stringify(
    {
      when: new Date().toISOString(),
      what,
      smoke,
      machine: {
        cpus: cpus().length,
        cpu: cpus()[0]?.model,
        memoryGb: Math.round(totalmem() / 2 ** 30),
        node: process.version,
        postgres: (await sql('SHOW server_version', admin)).rows[0].server_version,
      },
      results,
    },
    null,
    2,
  ),
);
console.log(`results: ${file}`);
