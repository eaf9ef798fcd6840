/**
 * The short fault run of `npm test`: a seeded workload with every fault kind
 * injected during backfill and CDC, then the oracle. And the harness proven
 * able to fail: a build that acknowledges before writing is caught.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLsn } from '../lib/lsn.ts';
import { primaryPostgres, shutdownPostgres, startPostgres } from '../stack/postgres.ts';
import { FAULT_KINDS, runSoak, summaryLine, type FaultKind } from './fault/harness.ts';
import { WORKLOAD_SETUP, WORKLOAD_TABLES } from './fault/workload.ts';
import { PipelineFixture } from './support/pipeline.ts';

for (const destination of ['clickhouse', 'snowflake', 'duckdb'] as const) {
  test(`seeded workloads under every fault kind end equal to the model and to Postgres (${destination})`, async () => {
    const seen = new Set<string>();
    for (const seed of [1, 2]) {
      const result = await runSoak({
        seed,
        durationMs: 30_000,
        destination,
        log: (l) => console.log(`${destination} seed ${seed}: ${l}`),
      });
      console.log(summaryLine(result));
      assert.equal(result.mismatches, 0, summaryLine(result));
      assert.ok(result.slotAdvanced, 'the slot moved past the last change (WAL is released)');
      assert.equal(result.pipelineFailed, null, 'the pipeline rode out every fault without stopping for the operator');
      assert.ok(result.transactions > 50, `a real workload ran: ${result.transactions} transactions`);
      for (const k of Object.keys(result.faults)) seen.add(k);
    }
    assert.deepEqual([...seen].sort(), [...FAULT_KINDS].sort(), 'every fault kind was injected');
  });
}

// Stream destinations, checked on the consumer's side: the tables rebuilt from the envelopes (newest version
// per key) equal Postgres, and each destination's own promise holds (consumers.ts: JetStream stored every id
// once; the endpoint, which answered 500 to some requests and to all during an outage, saw only valid
// signatures; the files, rotated every 64 KiB, hold the stream's changes in LSN order).
const STREAM_FAULTS = {
  // destination-down: nats-server stopped and started
  nats: ['worker-kill', 'destination-down', 'destination-write-error'],
  // destination-down: every request answered 500
  webhook: ['worker-kill', 'destination-down', 'destination-write-error'],
  file: ['worker-kill', 'destination-write-error'],
} as const;
for (const [destination, faults] of Object.entries(STREAM_FAULTS) as [
  keyof typeof STREAM_FAULTS,
  readonly FaultKind[],
][]) {
  test(`a seeded workload under ${faults.join(', ')} reaches the ${destination} consumer whole (${destination})`, async () => {
    const result = await runSoak({
      seed: 3,
      durationMs: 30_000,
      destination,
      faults,
      log: (l) => console.log(`${destination}: ${l}`),
    });
    console.log(summaryLine(result));
    assert.equal(result.mismatches, 0, summaryLine(result));
    assert.ok(result.slotAdvanced, 'the slot moved past the last change');
    assert.equal(result.pipelineFailed, null, 'the pipeline rode out every fault');
    assert.ok(result.transactions > 20, `a real workload ran: ${result.transactions} transactions`);
    assert.deepEqual(Object.keys(result.faults).sort(), [...faults].sort(), 'every fault kind was injected');
  });
}

test('a backfill rides out Postgres being down: fast shutdown, restart on a fresh snapshot, the pipeline never stops', async () => {
  // Slow batches keep the backfill running when Postgres goes down; down for longer than the copy's
  // first retries (a pipeline used to give up on its fifth lost snapshot, within a second).
  const f = new PipelineFixture({
    name: 'pgdown',
    setup: `CREATE TABLE items (id int8 PRIMARY KEY, label text, qty int);
            INSERT INTO items SELECT g, 'item ' || g, g % 13 FROM generate_series(1, 20000) g;`,
    tables: ['items'],
    destination: 'clickhouse',
    workerProcess: true,
    faults: 'copyBatch:delay=150',
    pipeline: { backfill: { parallelism: 2, rowsPerRange: 2000, batchRows: 500 } },
  });
  try {
    await f.setup();
    await f.start();
    await f.waitFor('the backfill to be copying', async () => (await f.status()).tables.items?.backfill === 'copying');
    const postgres = await primaryPostgres();
    let shutdown: string;
    try {
      shutdown = await shutdownPostgres(postgres);
      await new Promise((r) => setTimeout(r, 8000));
    } finally {
      await startPostgres(postgres); // whatever happened, the tests after this one need it
    }
    // A fast shutdown waits for each walsender's client to confirm the last position sent; the stream
    // must not hold it up (it once answered the server's back-to-back keepalives without confirming).
    assert.equal(shutdown, 'fast', 'a connected pipeline does not hold up a fast shutdown');
    await f.sql(`UPDATE items SET qty = -1 WHERE id % 1000 = 0; DELETE FROM items WHERE id > 19900`);
    await f.waitForConvergence();
    const status = await f.status();
    assert.notEqual(status.phase, 'failed', `the pipeline stopped: ${status.lastError}`);
    assert.equal(status.tables.items?.backfill, 'done');
    const history = await f.handle.fetchHistory();
    const holders = history.events!.filter(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'holdSnapshot',
    );
    assert.ok(holders.length >= 2, `the outage hit the backfill (snapshot holders: ${holders.length})`);
  } finally {
    await f.teardown();
  }
});

test('a build that acknowledges the LSN before the destination write is caught by the oracle', async () => {
  // In-process worker: flip its broken-build switch and fail one destination write after its early ack.
  const f = new PipelineFixture({
    name: 'broken',
    setup: WORKLOAD_SETUP,
    tables: WORKLOAD_TABLES,
    destination: 'clickhouse',
    pipeline: { cdc: { flushIntervalMs: 200, maxBatchRows: 5000 } },
  });
  try {
    await f.setup();
    f.faults.ackBeforeWrite = true;
    await f.start();
    await f.waitForConvergence();
    f.faults.arm('destinationWrite', { fail: 1 });
    await f.sql(`INSERT INTO accounts SELECT g, 'lost ' || g, 1, NULL, NULL FROM generate_series(1, 100) g`);
    const after = (await f.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
    await f.waitFor('the slot to pass the insert', async () => {
      const lsn = await f.slotConfirmedLsn();
      return lsn !== null && parseLsn(lsn) >= parseLsn(after);
    });
    await new Promise((r) => setTimeout(r, 3000));
    const { equal, counts } = await f.compare();
    assert.equal(equal, false, 'the oracle sees the changes the broken build acknowledged and lost');
    assert.deepEqual(counts['public.accounts'], [100, 0]);
  } finally {
    f.faults.disarm();
    await f.teardown();
  }
});
