/**
 * The short fault run of `npm test`: a seeded workload with every fault kind
 * injected during backfill and CDC, then the oracle. And the harness proven
 * able to fail: a build that acknowledges before writing is caught.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { armFault, disarmFaults, unsafe } from '../lib/faults.ts';
import { parseLsn } from '../lib/lsn.ts';
import { FAULT_KINDS, runSoak, summaryLine } from './fault/harness.ts';
import { WORKLOAD_SETUP, WORKLOAD_TABLES } from './fault/workload.ts';
import { PipelineFixture } from './support/pipeline.ts';

for (const destination of ['clickhouse', 'snowflake'] as const) {
  test(`seeded workloads under every fault kind end equal to the model and to Postgres (${destination})`, async () => {
    const seen = new Set<string>();
    for (const seed of [1, 2]) {
      const result = await runSoak({ seed, durationMs: 30_000, destination, log: (l) => console.log(`${destination} seed ${seed}: ${l}`) });
      console.log(summaryLine(result));
      assert.equal(result.mismatches, 0, summaryLine(result));
      assert.ok(result.slotAdvanced, 'the slot moved past the last change (WAL is released)');
      assert.ok(result.transactions > 50, `a real workload ran: ${result.transactions} transactions`);
      for (const k of Object.keys(result.faults)) seen.add(k);
    }
    assert.deepEqual([...seen].sort(), [...FAULT_KINDS].sort(), 'every fault kind was injected');
  });
}

test('a build that acknowledges the LSN before the destination write is caught by the oracle', async () => {
  // In-process worker: flip the broken-build switch and fail one destination write after its early ack.
  const f = new PipelineFixture({
    name: 'broken', setup: WORKLOAD_SETUP, tables: WORKLOAD_TABLES, destination: 'clickhouse', pipeline: { cdc: { flushIntervalMs: 200, maxBatchRows: 5000 } },
  });
  unsafe.ackBeforeWrite = true;
  try {
    await f.setup();
    await f.start();
    await f.waitForConvergence();
    armFault('destinationWrite', { fail: 1 });
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
    unsafe.ackBeforeWrite = false;
    disarmFaults();
    await f.teardown();
  }
});
