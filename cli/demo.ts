/**
 * `npm run demo [-- --destination duckdb]`: a real pipeline on the embedded stack. Creates a sample
 * shop schema in the stack's Postgres, replicates it (backfill, then CDC) into the stack's ClickHouse
 * (or a local DuckDB file), applies live changes while showing progress, and prints how to look at the result.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient as createClickHouse } from '@clickhouse/client';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import pg from 'pg';
import { stringify } from 'yaml';
import { DuckDBDatabase } from '../activities/destinations/duckdb-database.ts';
import { parseConfig } from '../lib/config.ts';
import { stackUp } from '../stack/index.ts';
import { stateDir } from '../stack/paths.ts';
import { temporalUiUrl } from '../stack/temporal.ts';
import { startWorker } from '../worker/worker.ts';
import { pipelineWorkflowId } from '../lib/contract/pipeline.ts';
import { pipelineStatus, startPipeline } from '../lib/pipeline-client.ts';
import { renderStatus } from './status.ts';

const { values: args } = parseArgs({ options: { destination: { type: 'string', default: 'clickhouse' } } });
if (!['clickhouse', 'duckdb'].includes(args.destination!))
  throw new Error(`demo: --destination ${args.destination} is not clickhouse or duckdb`);
const intoDuckDB = args.destination === 'duckdb';
const DUCKDB_FILE = join(stateDir, 'demo', 'analytics.duckdb');

const PIPELINE = 'demo';
const SOURCE_DB = 'walflow_demo_source';
const CLICKHOUSE_DB = 'walflow_demo';

async function sql(url: string, text: string, params: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text, params);
  } finally {
    await c.end();
  }
}

const withDb = (url: string, db: string) => {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
};

const { status } = await stackUp();
const admin = status.postgres!.url;
const temporal = status.temporal!.url;
console.log(`stack is up — Postgres ${admin}, Temporal UI ${temporalUiUrl()}`);

const connection = await Connection.connect({ address: temporal });
const client = new Client({ connection });
// A fresh demo each time: end the previous demo pipeline, its slot and databases.
await client.workflow
  .getHandle(pipelineWorkflowId(PIPELINE))
  .terminate('demo restarted')
  .catch((e) => {
    if (!(e instanceof WorkflowNotFoundError)) throw e;
  });
await sql(
  admin,
  `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`,
  [SOURCE_DB],
);
await sql(admin, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(SOURCE_DB)} WITH (FORCE)`);
await sql(admin, `CREATE DATABASE ${pg.escapeIdentifier(SOURCE_DB)}`);
const source = withDb(admin, SOURCE_DB);
const clickhouse = createClickHouse({ url: status.clickhouse!.url });
await clickhouse.command({ query: 'DROP DATABASE IF EXISTS {db:Identifier}', query_params: { db: CLICKHOUSE_DB } });
for (const f of [DUCKDB_FILE, `${DUCKDB_FILE}.wal`]) rmSync(f, { force: true });
await sql(
  source,
  `
  CREATE TABLE customers (id int8 PRIMARY KEY, name text NOT NULL, email text, tier text, signed_up timestamptz NOT
    NULL);
  CREATE TABLE orders (id int8 PRIMARY KEY, customer_id int8 NOT NULL, total numeric(12,2) NOT NULL, items jsonb,
    placed_at timestamptz NOT NULL);
  INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com', (ARRAY['free','pro','team'])[1 + g % 3],
    now() - g * interval '1 hour' FROM generate_series(1, 20000) g;
  INSERT INTO orders SELECT g, 1 + g % 20000, round((random() * 500)::numeric, 2),
    jsonb_build_array(jsonb_build_object('sku', g % 97, 'qty', 1 + g % 4)),
    now() - g * interval '1 minute' FROM generate_series(1, 200000) g;`,
);
console.log('sample data: 20,000 customers and 200,000 orders in database walflow_demo_source');

const raw = {
  temporal: { address: temporal },
  pipelines: [
    {
      id: PIPELINE,
      source: { url: source, publication: 'walflow_demo', tables: ['customers', 'orders'] },
      destination: intoDuckDB
        ? { type: 'duckdb', path: DUCKDB_FILE }
        : { type: 'clickhouse', url: status.clickhouse!.url, database: CLICKHOUSE_DB },
      backfill: { parallelism: 2, rowsPerRange: 50_000 },
      cdc: { flushIntervalMs: 200 },
    },
  ],
};
const config = parseConfig(raw).pipelines[0]!;
mkdirSync(join(stateDir, 'demo'), { recursive: true });
const configFile = join(stateDir, 'demo', 'walflow.yaml');
writeFileSync(configFile, stringify(raw));

/** Rows of a DuckDB view, through this process's one instance of the file (the worker here writes it too). */
async function duckdbCount(view: string): Promise<number> {
  const db = DuckDBDatabase.attach(DUCKDB_FILE);
  try {
    return await db.run(30_000, async (c) =>
      Number((await c.runAndReadAll(`SELECT count(*) FROM ${view}`)).getRows()[0]![0]),
    );
  } finally {
    db.detach();
  }
}

const worker = await startWorker({ address: temporal });
try {
  const handle = await startPipeline(client, 'walflow', { config });
  console.log(`\npipeline started: ${temporalUiUrl()}/namespaces/default/workflows/${handle.workflowId}\n`);
  const show = async () => console.log(renderStatus(await pipelineStatus(handle)));
  for (;;) {
    await new Promise((r) => setTimeout(r, 2000));
    const s = await pipelineStatus(handle);
    console.log(renderStatus(s));
    if (Object.values(s.tables).every((t) => t.backfill === 'done')) break;
  }

  console.log('\nbackfill done; now changing the source for 10 seconds (inserts, updates, deletes)...');
  const until = Date.now() + 10_000;
  for (let i = 0; Date.now() < until; i++) {
    await sql(
      source,
      `INSERT INTO orders SELECT 1000000 + $1 * 10 + g, 1 + g, 42.00, '[]', now() FROM generate_series(1, 10) g;
      UPDATE customers SET tier = 'team' WHERE id = $1 + 1; DELETE FROM orders WHERE id = $1 + 1`.replaceAll(
        '$1',
        String(i),
      ),
    );
    await new Promise((r) => setTimeout(r, 100));
  }
  const sourceCount = async () => Number((await sql(source, 'SELECT count(*) AS n FROM orders')).rows[0].n);
  const destinationCount = async () => {
    if (intoDuckDB) return duckdbCount('orders_live');
    const rs = await clickhouse.query({
      query: 'SELECT count() AS n FROM {db:Identifier}.orders_live',
      query_params: { db: CLICKHOUSE_DB },
      format: 'JSONEachRow',
    });
    return Number((await rs.json<{ n: string }>())[0]!.n);
  };
  for (;;) {
    const [src, dst] = await Promise.all([sourceCount(), destinationCount()]);
    console.log(`orders: source ${src}, destination ${dst}`);
    if (src === dst) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  await show();
  const newest = 'SELECT * FROM orders_live ORDER BY id DESC LIMIT 5';
  // One-line commands, so a reader can paste them into a shell.
  const duckdbNode =
    `require('@duckdb/node-api').DuckDBInstance.create('${DUCKDB_FILE}', { access_mode: 'READ_ONLY' })` +
    `.then((i) => i.connect()).then((c) => c.runAndReadAll('${newest}'))` +
    '.then((r) => console.table(r.getRowObjectsJson()))';
  const clickhouseQuery = `SELECT * FROM ${CLICKHOUSE_DB}.orders_live ORDER BY id DESC LIMIT 5 FORMAT PrettyCompact`;
  const look = intoDuckDB
    ? `DuckDB has caught up in ${DUCKDB_FILE}. Look around ` +
      `(DuckDB lets one process at a time open the file: these work while no worker runs):
  duckdb ${DUCKDB_FILE} "${newest}"      (the DuckDB CLI, if installed)
  node -e "${duckdbNode}"`
    : `ClickHouse has caught up. Look around:
  curl '${status.clickhouse!.url}/?query=${clickhouseQuery.replaceAll(' ', '+')}'`;
  console.log(
    `
${look}
  npx walflow verify ${PIPELINE} --config ${configFile}
  Temporal UI: ${temporalUiUrl()}/namespaces/default/workflows/${handle.workflowId}
  npx walflow status ${PIPELINE} --config ${configFile} --watch   ` +
      `(with \`node bin/walflow.js worker --config ${configFile}\` running)
The pipeline keeps running in Temporal; it resumes whenever a worker runs.`,
  );
} finally {
  await worker.shutdown();
  await connection.close();
  await clickhouse.close();
}
