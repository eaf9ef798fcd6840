/**
 * Records workflow histories of real runs on the stack, for the replay test:
 * `npm run record-histories [name...]`. Run it after a deliberate workflow
 * change and commit the files; the replay test then proves later changes stay
 * compatible with workflows already running in production. Name the histories
 * a change adds: re-recording the others would drop the proof that histories
 * made by older code still replay.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { stackUp } from '../../stack/index.ts';
import { projectRoot } from '../../stack/paths.ts';
import { applyConfigUpdate, dropUpdate } from '../../lib/contract/pipeline.ts';
import { resyncWorkflow } from '../../workflows/index.ts';
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { ServeConfig } from '../../lib/config.ts';
import { ServeClient } from '../../lib/serve-client.ts';
import { startServer } from '../../serve/server.ts';
import { startWorker } from '../../worker/worker.ts';
import { sessionWorkflowId } from '../../lib/contract/session.ts';
import { createTestDatabase } from '../support/env.ts';

const { status } = await stackUp();
process.env.WALFLOW_PG_URL = status.postgres!.url;
process.env.WALFLOW_TEMPORAL_ADDRESS = status.temporal!.url;
const { PipelineFixture } = await import('../support/pipeline.ts');

const only = process.argv.slice(2);
const wanted = (name: string) => only.length === 0 || only.includes(name);
const MAIN_RUN = ['pipeline-backfill-paused-resumed', 'pipeline-continued-as-new', 'copy-ranges', 'resync'];

const ORDERS = `CREATE TABLE orders (id int8 PRIMARY KEY, item text, qty int, big text);
  INSERT INTO orders SELECT g, 'item ' || g, g % 7, NULL FROM generate_series(1, 5000) g;`;
const dir = join(projectRoot, 'test', 'histories');
const save = async (fixture: { client: Client }, name: string, workflowId: string, runId?: string) => {
  if (!wanted(name)) return;
  const history = await fixture.client.workflow.getHandle(workflowId, runId).fetchHistory();
  // The workflow id is part of what replays: child workflow ids derive from it.
  writeFileSync(
    join(dir, `${name}.json`),
    `{"workflowId":${JSON.stringify(workflowId)},"history":${historyToJSON(history)}}`,
  );
  console.log(`recorded ${name} (${history.events?.length} events)`);
};

if (MAIN_RUN.some(wanted)) await recordMainRun();
if (wanted('pipeline-snapshot-lost')) await recordSnapshotLost();
if (['pipeline-config-applied-dropped', 'resync-published'].some(wanted)) await recordConfigAppliedDropped();
if (wanted('session-ended') || wanted('session-idle')) await recordSessions();

async function recordMainRun() {
  const f = new PipelineFixture({
    name: 'history',
    setup: ORDERS,
    tables: ['orders'],
    maxHistoryEvents: 80,
  });
  try {
    await f.setup();
    const started = await f.start();
    await f.waitForConvergence();
    await f.sql(`UPDATE orders SET qty = qty + 1 WHERE id <= 100; DELETE FROM orders WHERE id > 4900`);
    await f.waitForConvergence();
    await f.handle.signal('pause');
    await f.waitFor('paused', async () => (await f.status()).phase === 'paused');
    await f.sql(`INSERT INTO orders SELECT g, 'paused', 1, NULL FROM generate_series(6000, 6100) g`);
    await f.handle.signal('resume');
    await f.waitForConvergence();
    const first = (await f.handle.describe()).runId;
    await save(f, 'pipeline-backfill-paused-resumed', f.handle.workflowId, started.firstExecutionRunId);
    for (let i = 0; i < 20 && (await f.status()).continuedAsNew === 0; i++) {
      await f.sql(`UPDATE orders SET qty = qty + 1 WHERE id = ${i + 1}`);
      await new Promise((r) => setTimeout(r, 2500));
    }
    const latest = await f.handle.describe();
    if (latest.runId === first) throw new Error('the pipeline did not continue-as-new');
    await save(f, 'pipeline-continued-as-new', f.handle.workflowId, latest.runId);
    for await (const wf of f.client.workflow.list({
      query: `WorkflowType = 'copyRangesWorkflow' AND WorkflowId STARTS_WITH '${f.handle.workflowId}-copy'`,
    })) {
      await save(f, 'copy-ranges', wf.workflowId, wf.runId);
      break;
    }
    const resync = await f.client.workflow.start(resyncWorkflow, {
      workflowId: `${f.handle.workflowId}-resync-record`,
      taskQueue: f.taskQueue,
      args: [{ config: f.config }],
    });
    await resync.result();
    await save(f, 'resync', resync.workflowId);
  } finally {
    await f.teardown();
  }
}

/** A backfill whose snapshot session is killed mid-copy: it restarts on a fresh snapshot after a backoff. */
async function recordSnapshotLost() {
  const g = new PipelineFixture({
    name: 'history',
    setup: ORDERS,
    tables: ['orders'],
    pipeline: { backfill: { parallelism: 2, rowsPerRange: 1000, batchRows: 250 } },
  });
  try {
    await g.setup();
    g.faults.arm('copyBatch', { delayMs: 200 });
    await g.start();
    await g.waitFor('the backfill to be copying', async () => (await g.status()).tables.orders?.backfill === 'copying');
    await g.adminSql(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender' AND query LIKE ` +
        `'CREATE_REPLICATION_SLOT%walflow_snapshot_%'`,
    );
    await g.waitForConvergence();
    await save(g, 'pipeline-snapshot-lost', g.handle.workflowId);
  } finally {
    await g.teardown();
  }
}

/** A pipeline that publishes its state (memo, search attributes), has its config applied in place, then is dropped. */
async function recordConfigAppliedDropped() {
  const h = new PipelineFixture({ name: 'history', setup: ORDERS, tables: ['orders'] });
  try {
    await h.setup();
    await h.start();
    await h.waitForConvergence();
    await h.handle.executeUpdate(applyConfigUpdate, {
      args: [{ ...h.config, cdc: { ...h.config.cdc, flushIntervalMs: 300 } }],
    });
    await h.sql(`UPDATE orders SET qty = qty + 1 WHERE id <= 50`);
    await h.waitForConvergence();
    const resync = await h.client.workflow.start(resyncWorkflow, {
      workflowId: `${h.handle.workflowId}-resync-record`,
      taskQueue: h.taskQueue,
      args: [{ config: h.config }],
    });
    await resync.result();
    await save(h, 'resync-published', resync.workflowId);
    await h.handle.executeUpdate(dropUpdate);
    await h.handle.result();
    await save(h, 'pipeline-config-applied-dropped', h.handle.workflowId);
  } finally {
    await h.teardown();
  }
}

/** `walflow serve` sessions: one streamed, ACKed and ended by DELETE; one abandoned until its idle timeout. */
async function recordSessions() {
  const db = await createTestDatabase('history_session');
  const sql = async (text: string) => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query(text);
    } finally {
      await c.end();
    }
  };
  await sql(
    'CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, g::text FROM generate_series(1, 10) g',
  );
  const address = process.env.WALFLOW_TEMPORAL_ADDRESS!;
  const taskQueue = `history-session-${Date.now()}`;
  const worker = await startWorker({ address, taskQueue });
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  process.env.WALFLOW_HISTORY_SERVE_TOKEN = randomBytes(16).toString('hex');
  const config = ServeConfig.parse({
    listen: '127.0.0.1:0',
    source: { url: db.url },
    tokens: ['env:WALFLOW_HISTORY_SERVE_TOKEN'],
    sessionIdleTimeoutSeconds: 30,
  });
  const server = await startServer({ config, client, taskQueue });
  try {
    const serve = new ServeClient(`http://${server.address}`, process.env.WALFLOW_HISTORY_SERVE_TOKEN);
    const ended = await serve.init({ tables: ['t'] });
    for await (const row of serve.snapshotRows(ended.slotName, 't')) void row;
    const conn = await serve.stream(ended.slotName);
    await sql(`UPDATE t SET v = v || '+'`);
    for await (const m of conn) {
      if (m.op === 'commit') {
        await conn.ack(m.nextlsn);
        break;
      }
    }
    conn.close();
    await serve.endSession(ended.slotName);
    await save({ client }, 'session-ended', sessionWorkflowId(ended.slotName));
    const idle = await serve.init({ tables: ['t'], idleTimeoutSeconds: 2 });
    await client.workflow.getHandle(sessionWorkflowId(idle.slotName)).result();
    await save({ client }, 'session-idle', sessionWorkflowId(idle.slotName));
  } finally {
    await server.close();
    await worker.shutdown();
    await connection.close();
    await db.drop();
  }
}
