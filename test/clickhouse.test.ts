/**
 * ClickHouse: the stack's chDB endpoint speaks ClickHouse's HTTP protocol to
 * the unchanged client, and the destination converges to the newest version
 * per key whatever the order or repetition of batches.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient } from '@clickhouse/client';
import { ClickHouseDestination } from '../activities/destinations/clickhouse.ts';
import { describeDestination } from './support/conformance.ts';
import { describePipelineInto } from './support/scenario.ts';
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

const conformanceDb = `dest_test_${process.pid}`;
describeDestination('ClickHouseDestination', new ClickHouseDestination({ url: url(), database: conformanceDb, views: true }), async () => {
  const c = createClient({ url: url() });
  await c.command({ query: `DROP DATABASE IF EXISTS ${conformanceDb}` });
  await c.close();
});

describePipelineInto('clickhouse', 20_000);
