/**
 * `npm run bench -- backfill|cdc|all [--rows N] [--destination null|clickhouse] [--parallelism 1,2,4]`
 * Measures walflow on the local stack against the raw ceiling measured in the same run:
 *   backfill: `COPY (SELECT ...) TO STDOUT` read by psql into /dev/null;
 *   cdc: pg_recvlogical with pgoutput reading the same changes into /dev/null.
 * Prints a table and writes JSON (with machine info) to bench/results/ (git-ignored).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { parseConfig } from '../lib/config.ts';
import { parseLsn } from '../lib/lsn.ts';
import { stackUp } from '../stack/index.ts';
import { projectRoot } from '../stack/paths.ts';
import { startWorker } from '../worker/worker.ts';
import { pipelineWorkflowId, statusQuery } from '../workflows/definitions.ts';
import { pipelineWorkflow } from '../workflows/index.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { rows: { type: 'string', default: '1000000' }, destination: { type: 'string', default: 'null' }, parallelism: { type: 'string', default: '1,2,4' } },
});
const what = positionals[0] ?? 'all';
const rows = Number(values.rows);
const destinationType = values.destination as 'null' | 'clickhouse';

const { status } = await stackUp();
const admin = status.postgres!.url;
const dbName = `walflow_bench_${Date.now().toString(36)}`;
const withDb = (url: string, db: string) => { const u = new URL(url); u.pathname = `/${db}`; return u.toString(); };
const source = withDb(admin, dbName);
const run = async (url: string, sql: string) => { const c = new pg.Client({ connectionString: url }); await c.connect(); try { return await c.query(sql); } finally { await c.end(); } };
await run(admin, `CREATE DATABASE ${dbName}`);

interface Result { scenario: string; rows: number; seconds: number; rowsPerSecond: number; ceilingRowsPerSecond: number; ratio: number; peakRssMb: number }
const results: Result[] = [];
let peakRss = 0;
const rssTimer = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 100);

const connection = await Connection.connect({ address: status.temporal!.url });
const client = new Client({ connection });
const taskQueue = `bench-${Date.now()}`;
const worker = await startWorker({ address: status.temporal!.url, taskQueue });

function pipeline(id: string, tables: string[], parallelism: number) {
  return parseConfig({ pipelines: [{
    id, source: { url: source, publication: `pub_${id.replace(/-/g, '_')}`, tables },
    destination: destinationType === 'clickhouse' ? { type: 'clickhouse', url: status.clickhouse!.url, database: dbName } : { type: 'null' },
    backfill: { parallelism, rowsPerRange: 100_000, batchRows: 10_000 }, cdc: { flushIntervalMs: 100, maxBatchRows: 10_000 },
  }] }).pipelines[0]!;
}

async function waitFor<T>(check: () => Promise<T | undefined | false>): Promise<T> {
  for (;;) {
    const v = await check();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function timed(cmd: string, args: string[]): number {
  const started = process.hrtime.bigint();
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  return Number(process.hrtime.bigint() - started) / 1e9;
}

if (what === 'backfill' || what === 'all') {
  await run(source, `CREATE TABLE bf (id int8 PRIMARY KEY, name text, amount numeric(14,4), at timestamptz, doc jsonb);
    INSERT INTO bf SELECT g, 'name ' || g, g / 7.0, now() - g * interval '1 second', jsonb_build_object('g', g, 'tag', 'x' || (g % 100))
    FROM generate_series(1, ${rows}) g; ANALYZE bf;`);
  const ceilingSeconds = timed('psql', [source, '-qAt', '-c', 'COPY (SELECT id, name, amount, at, doc FROM bf) TO STDOUT']);
  for (const p of values.parallelism!.split(',').map(Number)) {
    const id = `bench-bf-${p}-${Date.now().toString(36)}`;
    peakRss = 0;
    const started = process.hrtime.bigint();
    const handle = await client.workflow.start(pipelineWorkflow, { workflowId: pipelineWorkflowId(id), taskQueue, args: [{ config: pipeline(id, ['bf'], p) }] });
    await waitFor(async () => (await handle.query(statusQuery)).tables.bf?.backfill === 'done');
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await handle.terminate('bench done');
    await run(source, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'walflow_bench_bf%' AND NOT active`).catch(() => undefined);
    results.push({ scenario: `backfill p=${p} → ${destinationType}`, rows, seconds, rowsPerSecond: rows / seconds, ceilingRowsPerSecond: rows / ceilingSeconds, ratio: ceilingSeconds / seconds, peakRssMb: peakRss / 2 ** 20 });
  }
}

if (what === 'cdc' || what === 'all') {
  await run(source, `CREATE TABLE cdc (id int8 PRIMARY KEY, name text, amount numeric(14,4), at timestamptz)`);
  const id = `bench-cdc-${Date.now().toString(36)}`;
  const config = pipeline(id, ['cdc'], 1);
  const handle = await client.workflow.start(pipelineWorkflow, { workflowId: pipelineWorkflowId(id), taskQueue, args: [{ config }] });
  await waitFor(async () => { const s = await handle.query(statusQuery); return s.phase === 'streaming' && s.confirmedLsn; });
  // The ceiling: pg_recvlogical on its own slot over the same publication reads the same changes.
  await run(source, `SELECT pg_create_logical_replication_slot('bench_ceiling', 'pgoutput')`);
  peakRss = 0;
  await run(source, `INSERT INTO cdc SELECT g, 'name ' || g, g / 7.0, now() FROM generate_series(1, ${rows}) g`);
  const end = (await run(source, 'SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string;
  const started = process.hrtime.bigint();
  await waitFor(async () => { const s = await handle.query(statusQuery); return s.confirmedLsn && parseLsn(s.confirmedLsn) >= parseLsn(end); });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const ceilingSeconds = timed('pg_recvlogical', ['-d', source, '--slot', 'bench_ceiling', '--start', '-o', 'proto_version=1', '-o', `publication_names=${config.source.publication}`,
    '--endpos', end, '-f', '/dev/null', '--no-loop']);
  results.push({ scenario: `cdc 1 transaction of ${rows} inserts → ${destinationType}`, rows, seconds, rowsPerSecond: rows / seconds, ceilingRowsPerSecond: rows / ceilingSeconds, ratio: ceilingSeconds / seconds, peakRssMb: peakRss / 2 ** 20 });
  await handle.terminate('bench done');
}

clearInterval(rssTimer);
await worker.shutdown();
await connection.close();
await new Promise((r) => setTimeout(r, 1000));
await run(admin, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '${dbName}' AND NOT active`).catch(() => undefined);
await run(admin, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);

console.log('| scenario | rows | seconds | rows/s | ceiling rows/s | ratio | peak RSS MB |\n| --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) console.log(`| ${r.scenario} | ${r.rows} | ${r.seconds.toFixed(2)} | ${Math.round(r.rowsPerSecond)} | ${Math.round(r.ceilingRowsPerSecond)} | ${r.ratio.toFixed(2)} | ${Math.round(r.peakRssMb)} |`);
const dir = join(projectRoot, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify({ machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version }, results }, null, 2));
console.log(`results: ${file}`);
