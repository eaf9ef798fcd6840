/**
 * ClickHouse: the stack's chDB endpoint speaks ClickHouse's HTTP protocol to
 * the unchanged client, and the destination converges to the newest version
 * per key whatever the order or repetition of batches.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { createClient } from '@clickhouse/client';
import { ClickHouseDestination } from '../activities/destinations/clickhouse.ts';
import { makeVersion } from '../lib/lsn.ts';
import type { Change, Row, TableSchema } from '../lib/model.ts';
import { PipelineFixture } from './support/pipeline.ts';
import { requireEnv } from './support/env.ts';

const url = () => requireEnv('CLICKHOUSE_URL');

test('the endpoint answers the official client: ping, DDL, insert, parameters, errors with codes', async () => {
  const client = createClient({ url: url() });
  try {
    assert.deepEqual(await client.ping(), { success: true });
    await client.command({ query: 'CREATE DATABASE IF NOT EXISTS proto_test' });
    await client.command({ query: 'CREATE OR REPLACE TABLE proto_test.t (id UInt64, s String) ENGINE = MergeTree ORDER BY id' });
    await client.insert({ table: 'proto_test.t', values: [{ id: 1, s: 'a' }, { id: 2, s: `quote ' backslash \\ "` }], format: 'JSONEachRow' });
    const rs = await client.query({ query: 'SELECT s FROM proto_test.t WHERE id = {id:UInt64}', query_params: { id: 2 }, format: 'JSONEachRow' });
    assert.deepEqual(await rs.json(), [{ s: `quote ' backslash \\ "` }]);
    await assert.rejects(client.query({ query: 'SELECT nope FROM proto_test.t', format: 'JSONEachRow' }), (e: Error & { code?: string; type?: string }) => {
      assert.equal(e.code, '47');
      assert.equal(e.type, 'UNKNOWN_IDENTIFIER');
      return true;
    });
  } finally {
    await client.close();
  }
});

describe('ClickHouseDestination', () => {
  const db = `dest_test_${process.pid}`;
  const dest = new ClickHouseDestination({ url: url(), database: db, views: true });
  const schema: TableSchema = {
    schema: 'public', name: 'items', key: ['id'], replicaIdentity: 'default',
    columns: [
      { name: 'id', type: 'bigint', typeOid: 20, kind: 'bigint', arrayDims: 0, nullable: false },
      { name: 'name', type: 'text', typeOid: 25, kind: 'text', arrayDims: 0, nullable: true },
      { name: 'price', type: 'numeric(12,2)', typeOid: 1700, kind: 'decimal', arrayDims: 0, precision: 12, scale: 2, nullable: true },
      { name: 'at', type: 'timestamp with time zone', typeOid: 1184, kind: 'timestamptz', arrayDims: 0, nullable: true },
      { name: 'tags', type: 'text[]', typeOid: 1009, kind: 'text', arrayDims: 1, nullable: false },
      { name: 'maybe_tags', type: 'int4[]', typeOid: 1007, kind: 'int', arrayDims: 1, nullable: true },
      { name: 'blob', type: 'bytea', typeOid: 17, kind: 'bytes', arrayDims: 0, nullable: true },
      { name: 'ratio', type: 'double precision', typeOid: 701, kind: 'float', arrayDims: 0, nullable: true },
    ],
  };
  const table = { schema: 'public', name: 'items' };
  const v = (lsn: number, seq: number) => makeVersion(BigInt(lsn), seq);
  const row = (id: number, name: string): Row => ({
    id: String(id), name, price: '12.50', at: '2024-05-06 07:08:09.123456+00', tags: ['a', null], maybe_tags: id % 2 ? null : [1, null], blob: Buffer.from([1, 2, 255]), ratio: Number.NaN,
  });
  const live = async () => {
    const rows: Row[] = [];
    for await (const r of dest.readLive(schema)) rows.push(r);
    return rows.sort((a, b) => Number(a.id) - Number(b.id));
  };

  before(() => dest.prepare([schema]));
  after(async () => {
    const c = createClient({ url: url() });
    await c.command({ query: `DROP DATABASE IF EXISTS ${db}` });
    await c.close();
    await dest.close();
  });

  test('values round-trip exactly; replays and late backfill rows leave the newest version', async () => {
    const backfill: Change[] = [1, 2, 3].map((id) => ({ kind: 'insert', table, version: v(100, 0), row: row(id, `copy ${id}`) }));
    const stream: Change[] = [
      { kind: 'update', table, version: v(200, 1), row: row(1, 'updated'), unchanged: [] },
      { kind: 'delete', table, version: v(200, 2), old: { id: '2' } },
      { kind: 'insert', table, version: v(300, 1), row: row(4, 'new') },
    ];
    await dest.apply(stream);
    await dest.apply(stream); // a retried batch
    await dest.apply(backfill); // backfill rows arriving after newer changes
    const rows = await live();
    assert.deepEqual(rows.map((r) => [r.id, r.name]), [['1', 'updated'], ['3', 'copy 3'], ['4', 'new']]);
    assert.deepEqual(rows[0], row(1, 'updated'), 'every value comes back as it went in');
  });

  test('TRUNCATE removes older rows and keeps late older rows out, newer rows stay; ADD COLUMN applies before its rows', async () => {
    await dest.apply([{ kind: 'truncate', table, version: v(400, 1) }, { kind: 'insert', table, version: v(400, 2), row: row(10, 'after truncate') }]);
    await dest.apply([{ kind: 'insert', table, version: v(150, 0), row: row(11, 'late backfill row') }]);
    assert.deepEqual((await live()).map((r) => r.id), ['10']);

    const added = { name: 'extra', type: 'integer', typeOid: 23, kind: 'int' as const, arrayDims: 0, nullable: true };
    const evolved = { ...schema, columns: [...schema.columns, added] };
    await dest.apply([
      { kind: 'schema', table, version: v(500, 0), schema: evolved, added: [added], dropped: [] },
      { kind: 'insert', table, version: v(500, 1), row: { ...row(12, 'with extra'), extra: 7 } },
    ]);
    const rows: Row[] = [];
    for await (const r of dest.readLive(evolved)) rows.push(r);
    assert.deepEqual(rows.find((r) => r.id === '12')?.extra, 7);
  });
});

describe('a pipeline into ClickHouse', () => {
  const f = new PipelineFixture({
    name: 'ch',
    destination: 'clickhouse',
    setup: `CREATE TYPE level AS ENUM ('low', 'high');
      CREATE TABLE metrics (id int8 PRIMARY KEY, name text NOT NULL, small int2, value float8, exact numeric(20,6), loose numeric,
        ok bool, at timestamptz, day date, t time, span interval, tags text[], doc jsonb, raw bytea, uid uuid, lvl level, note text);
      INSERT INTO metrics SELECT g, 'm' || g, (g % 100)::int2, g / 3.0, g * 1.000001, (g::numeric ^ 3) / 7, g % 2 = 0,
        '2024-01-01'::timestamptz + g * interval '1.5 seconds', '2024-01-01'::date + g % 365, '12:34:56.789', g * interval '1 minute',
        ARRAY['x' || g, NULL], jsonb_build_object('g', g, 'big', 12345678901234567890), decode(md5(g::text), 'hex'), gen_random_uuid(),
        (ARRAY['low','high'])[1 + g % 2]::level, repeat('n', g % 10) FROM generate_series(1, 20000) g;`,
    tables: ['metrics'],
  });
  after(() => f.teardown());

  test('backfill and CDC of many types converge; deletes, truncate and ADD COLUMN mid-stream', async () => {
    await f.setup();
    await f.start();
    await f.waitForConvergence(Number(process.env.CONVERGE_MS ?? 180_000));
    await f.sql(`UPDATE metrics SET value = 'NaN', note = NULL WHERE id <= 100; DELETE FROM metrics WHERE id BETWEEN 101 AND 200;
      INSERT INTO metrics (id, name, loose) VALUES (30000, 'late', 'NaN');`);
    await f.waitForConvergence();
    await f.sql(`ALTER TABLE metrics ADD COLUMN extra numeric(8,3); INSERT INTO metrics (id, name, extra) VALUES (30001, 'extra', 1.25)`);
    await f.waitForConvergence();
    await f.sql(`TRUNCATE metrics; INSERT INTO metrics (id, name) VALUES (1, 'after truncate')`);
    await f.waitForConvergence();
    const { counts } = await f.compare();
    assert.deepEqual(counts['public.metrics'], [1, 1]);

    const ok = spawnSync(process.execPath, ['bin/walflow.js', 'verify', f.config.id, '--config', f.configFile, '--json'], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).equal, true);
    // A change the destination never saw: verify names the key and exits 1.
    await f.handle.signal('pause');
    await f.waitFor('paused', async () => (await f.status()).phase === 'paused');
    await f.sql(`UPDATE metrics SET name = 'drifted' WHERE id = 1`);
    const bad = spawnSync(process.execPath, ['bin/walflow.js', 'verify', f.config.id, '--config', f.configFile], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /DIFF public\.metrics: source 1 rows, destination 1 rows\n\s+values differ: key \["1"\]/);
  });
});
