/**
 * ClickHouse: the stack's chDB endpoint speaks ClickHouse's HTTP protocol to
 * the unchanged client, and the destination converges to the newest version
 * per key whatever the order or repetition of batches.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { createClient } from '@clickhouse/client';
import { ClickHouseDestination } from '../activities/destinations/clickhouse.ts';
import { describeDestination } from './support/conformance.ts';
import { describePipelineInto } from './support/scenario.ts';
import { PipelineFixture } from './support/pipeline.ts';
import { requireEnv } from './support/env.ts';

const url = () => requireEnv('CLICKHOUSE_URL');

test('the endpoint answers the official client: ping, DDL, insert, parameters, errors with codes', async () => {
  const client = createClient({ url: url() });
  try {
    assert.deepEqual(await client.ping(), { success: true });
    await client.command({ query: 'CREATE DATABASE IF NOT EXISTS proto_test' });
    await client.command({
      query: 'CREATE OR REPLACE TABLE proto_test.t (id UInt64, s String) ENGINE = MergeTree ORDER BY id',
    });
    await client.insert({
      table: 'proto_test.t',
      values: [
        { id: 1, s: 'a' },
        { id: 2, s: `quote ' backslash \\ "` },
      ],
      format: 'JSONEachRow',
    });
    const rs = await client.query({
      query: 'SELECT s FROM proto_test.t WHERE id = {id:UInt64}',
      query_params: { id: 2 },
      format: 'JSONEachRow',
    });
    assert.deepEqual(await rs.json(), [{ s: `quote ' backslash \\ "` }]);
    await assert.rejects(
      client.query({ query: 'SELECT nope FROM proto_test.t', format: 'JSONEachRow' }),
      (e: Error & { code?: string; type?: string }) => {
        assert.equal(e.code, '47');
        assert.equal(e.type, 'UNKNOWN_IDENTIFIER');
        return true;
      },
    );
  } finally {
    await client.close();
  }
});

const conformanceDb = `dest_test_${process.pid}`;
describeDestination(
  'ClickHouseDestination',
  new ClickHouseDestination({ url: url(), database: conformanceDb, views: true }),
  async () => {
    const c = createClient({ url: url() });
    await c.command({ query: `DROP DATABASE IF EXISTS ${conformanceDb}` });
    await c.close();
  },
);

describePipelineInto('clickhouse', 20_000);

describe('a backfill into clickhouse through COPY text (tables without arrays)', () => {
  const f = new PipelineFixture({
    name: 'chcopy',
    destination: 'clickhouse',
    setup: `CREATE TYPE mood AS ENUM ('ok', 'meh');
      CREATE TABLE flat (id int8 PRIMARY KEY, i2 int2, i4 int4, f4 float4, f8 float8, exact numeric(20,6), loose
        numeric, ok bool,
        at timestamptz, ts timestamp, day date, t time, tz timetz, span interval, txt text, pad char(5), doc jsonb,
          js json, raw bytea,
        uid uuid, m mood, addr inet, cash money);
      INSERT INTO flat SELECT g, (g % 100)::int2, g * 7, g / 3.0, g / 7.0, g * 1.000001, (g::numeric ^ 3) / 7, g % 2
        = 0,
        '2024-01-01'::timestamptz + g * interval '1.5 seconds', '2299-12-31 23:59:59.999999'::timestamp - g *
          interval '1 day',
        '1900-01-01'::date + g, '12:34:56.789', '01:02:03+05:30', g * interval '1 minute 3 seconds',
        E'tab\\there\\nnew line \\\\ back ' || g, 'ab', jsonb_build_object('g', g, 'big', 12345678901234567890, 'e',
          E'\\u00e9\\n'),
        '{"k": [1, 2.50]}', decode(md5(g::text) || '5c0a09', 'hex'), gen_random_uuid(), (ARRAY['ok','meh'])[1 + g %
          2]::mood,
        '10.0.0.1/8', g FROM generate_series(1, 3000) g;
      INSERT INTO flat (id, f4, f8, loose, txt) VALUES (-1, 'NaN', '-Infinity', 'NaN', ''), (-2, '-0', 'Infinity',
        '-1e-30', '\\N');`,
    tables: ['flat'],
  });
  after(() => f.teardown());

  test('every scalar type equals the source, edge values and escapes included', async () => {
    await f.setup();
    await f.start();
    await f.waitForConvergence();
    const { equal, diffs, counts } = await f.compare();
    assert.ok(equal, diffs.join('\n'));
    assert.deepEqual(counts['public.flat'], [3002, 3002]);
  });
});
