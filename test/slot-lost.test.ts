/**
 * A slot Postgres invalidates (max_slot_wal_keep_size passed while the pipeline was paused): the pipeline
 * stops with an error that says so and what to do; `walflow resume` (or onSlotLost: resync, by itself)
 * recreates the slot and resyncs every table, and the destination equals the source again, deletes
 * made in the lost WAL included.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { PipelineFixture } from './support/pipeline.ts';

/**
 * Pauses the pipeline, changes the source, and pushes WAL past a 1 MB max_slot_wal_keep_size until the slot is lost.
 */
async function loseSlot(f: PipelineFixture): Promise<void> {
  await f.handle.signal('pause');
  await f.waitFor('paused', async () => (await f.status()).phase === 'paused');
  await f.sql(`UPDATE items SET note = 'changed in lost WAL' WHERE id <= 50;
    DELETE FROM items WHERE id BETWEEN 51 AND 100;
    CREATE TABLE IF NOT EXISTS filler (v text)`);
  try {
    await f.adminSql(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
    await f.adminSql('SELECT pg_reload_conf()');
    await f.waitFor('the slot to be invalidated', async () => {
      await f.sql(`INSERT INTO filler SELECT repeat(md5(g::text), 30) FROM generate_series(1, 2000) g`);
      await f.sql('SELECT pg_switch_wal()');
      await f.sql('CHECKPOINT');
      const { rows } = await f.sql<{ wal_status: string }>(
        `SELECT wal_status FROM pg_replication_slots WHERE database = current_database() AND NOT temporary`,
      );
      return rows[0]?.wal_status === 'lost';
    });
  } finally {
    await f.adminSql('ALTER SYSTEM RESET max_slot_wal_keep_size');
    await f.adminSql('SELECT pg_reload_conf()');
  }
}

for (const onSlotLost of ['fail', 'resync'] as const) {
  describe(`a lost slot with onSlotLost: ${onSlotLost}`, () => {
    const f = new PipelineFixture({
      name: `slotlost_${onSlotLost}`,
      setup: `CREATE TABLE items (id int8 PRIMARY KEY, note text);
        INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 3000) g;`,
      tables: ['items'],
      pipeline: { onSlotLost },
    });
    after(() => f.teardown());

    test('says the slot was lost and what to do, then recreates it and resyncs every table', async () => {
      await f.setup();
      await f.start();
      await f.waitForConvergence();
      await loseSlot(f);
      await f.handle.signal('resume');
      if (onSlotLost === 'fail') {
        const failed = await f.waitFor('the pipeline to stop for the operator', async () => {
          const s = await f.status();
          return s.phase === 'failed' && s;
        });
        assert.match(
          failed.lastError!,
          /replication slot \S+ was invalidated by Postgres \(wal_status lost\): the WAL it needed is gone; changes after \S+ cannot be streamed\. Run `walflow resume \S+` to recreate the slot and resync every table/,
        );
        assert.match(failed.errors!.pipeline!.message, /max_slot_wal_keep_size/);
        await f.handle.signal('resume');
      }
      await f.sql(`INSERT INTO items VALUES (5000, 'after the new slot')`);
      await f.waitForConvergence();
      const { counts } = await f.compare();
      assert.deepEqual(counts['public.items'], [2951, 2951]);
      const s = await f.waitFor('errors cleared', async () => {
        const st = await f.status();
        return st.lastError === null && st;
      });
      assert.equal(s.phase, 'streaming');
      const { rows } = await f.sql<{ wal_status: string }>(
        `SELECT wal_status FROM pg_replication_slots WHERE database = current_database() AND NOT temporary`,
      );
      assert.deepEqual(
        rows.map((r) => r.wal_status),
        ['reserved'],
      );
    });
  });
}
