/**
 * streamChanges on its own, in MockActivityEnvironment: a real Postgres slot, an in-memory destination
 * and a recording client instead of the worker's (unit tests may fake a boundary). What a retried
 * attempt relies on: the heartbeat carries the confirmed LSN, the slot never passes what the destination
 * holds, and a cancellation writes the batch in hand and confirms it before the activity ends.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CancelledFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import pg from 'pg';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { createStreamActivities, type StreamHeartbeat } from '../activities/stream.ts';
import { parsePipelineConfig } from '../lib/config.ts';
import { parseLsn } from '../lib/lsn.ts';
import { createTestDatabase, type TestDatabase } from './support/env.ts';
import { MemoryDestination } from './support/memory-destination.ts';

let db: TestDatabase;
let sql: pg.Client;
before(async () => {
  db = await createTestDatabase('stream_activity');
  sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  await sql.query(
    'CREATE TABLE items (id int PRIMARY KEY, note text); CREATE PUBLICATION walflow_items FOR TABLE items',
  );
  // not in the same transaction as writes
  await sql.query("SELECT pg_create_logical_replication_slot('walflow_unit', 'pgoutput')");
});
after(async () => {
  await sql.end();
  await db.drop();
});

test('a cancelled stream writes and confirms the batch in hand; heartbeat, slot and destination agree', async () => {
  // A long flush interval and a large batch: nothing is written before the cancellation asks for it.
  const config = parsePipelineConfig({
    id: 'unit',
    source: {
      url: db.url,
      publication: 'walflow_items',
      createPublication: false,
      slot: 'walflow_unit',
      tables: ['items'],
    },
    destination: { type: 'null' },
    cdc: { flushIntervalMs: 60_000, maxBatchRows: 100_000 },
  });
  const destination = new MemoryDestination();
  const signals: { name: string; arg: unknown }[] = [];
  const client = {
    connection: { withDeadline: <T>(_deadline: number, fn: () => Promise<T>) => fn() },
    workflow: {
      getHandle: () => ({
        signal: async (def: { name: string }, arg: unknown) => {
          signals.push({ name: def.name, arg });
        },
      }),
    },
  } as unknown as Client;
  const { streamChanges } = createStreamActivities({ client, destination: async () => destination });

  const env = new MockActivityEnvironment();
  const beats: StreamHeartbeat[] = [];
  env.on('heartbeat', (d: StreamHeartbeat) => beats.push(d));
  const run = env.run(streamChanges, { config, tables: ['items'], startLsn: null, workflowId: 'walflow-unit' });
  const settled = run.then(
    () => undefined,
    (e: unknown) => e,
  );

  await sql.query(`INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 500) g`);
  await sql.query(`UPDATE items SET note = 'changed' WHERE id <= 10; DELETE FROM items WHERE id > 490`);
  const {
    rows: [{ lsn: end }],
  } = await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  // The changes are received (heartbeats keep coming) but not written: the flush interval has not passed.
  await new Promise((r) => setTimeout(r, 3_000));
  const unconfirmed = (
    await sql.query<{ lsn: string | null }>(
      "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'walflow_unit'",
    )
  ).rows[0]!.lsn;
  assert.ok(parseLsn(unconfirmed!) < parseLsn(end), 'nothing confirmed before the write');

  env.cancel();
  const outcome = await settled;
  assert.ok(outcome instanceof CancelledFailure, `ends cancelled after its final flush (got ${String(outcome)})`);

  const live: unknown[] = [];
  const [schema] = await loadTableSchemas(sql, ['public.items']);
  for await (const r of destination.readLive(schema!)) live.push(r);
  const { rows: source } = await sql.query<{ id: number; note: string }>('SELECT id, note FROM items ORDER BY id');
  assert.deepEqual(
    live.map((r) => r as { id: number; note: string }).sort((a, b) => a.id - b.id),
    source,
    'the destination holds the source',
  );

  const last = beats.at(-1)!;
  assert.ok(
    last.confirmedLsn && parseLsn(last.confirmedLsn) >= parseLsn(end),
    `the last heartbeat (${last.confirmedLsn}) covers the changes (${end})`,
  );
  // The walsender records the confirmation as it reads it: give it a moment.
  let slotLsn: string | null = null;
  for (let i = 0; i < 50 && slotLsn !== last.confirmedLsn; i++) {
    slotLsn = (
      await sql.query<{ lsn: string | null }>(
        "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'walflow_unit'",
      )
    ).rows[0]!.lsn;
    if (slotLsn !== last.confirmedLsn) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(slotLsn, last.confirmedLsn, 'the slot is confirmed exactly as far as the heartbeat says');
  assert.deepEqual(last.counters.items, { inserts: 500, updates: 10, deletes: 10, truncates: 0 });
  const progress = signals.filter((s) => s.name === 'streamProgress').at(-1)?.arg as
    | { confirmedLsn: string }
    | undefined;
  assert.equal(progress?.confirmedLsn, last.confirmedLsn, 'the final report says the same');
});
