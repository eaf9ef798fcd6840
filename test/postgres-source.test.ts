/**
 * The Postgres source against real servers (every major the stack runs):
 * exact values through backfill (COPY) and CDC (pgoutput), unchanged TOAST,
 * schema changes, range planning, and a 1,000,000-row transaction.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { parseLsn } from '../lib/lsn.ts';
import type { Change, Row, SchemaChange, TableSchema, UpdateChange } from '../lib/model.ts';
import { copyTableRange, planTableRanges } from '../activities/postgres/ranges.ts';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { connect } from '../activities/postgres/session.ts';
import { createSlot } from '../activities/postgres/slot.ts';
import { openChangeStream, type ChangeStream } from '../activities/postgres/stream.ts';
import { outputTextSql, parseColumnText } from '../lib/pgvalues.ts';
import { readTable } from '../activities/postgres/read.ts';
import { createTestDatabase, pgAdminUrls, type TestDatabase } from './support/env.ts';

const ALL_TYPES = `
  CREATE EXTENSION IF NOT EXISTS hstore;
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀');
  CREATE DOMAIN posint AS int CHECK (VALUE > 0);
  CREATE TYPE pair AS (a int, b text);
  CREATE TABLE all_types (
    id int PRIMARY KEY, c_int2 int2, c_int4 int4, c_int8 int8, c_numeric numeric, c_numeric_p numeric(40,10),
    c_float4 float4, c_float8 float8, c_bool bool, c_text text, c_varchar varchar(10), c_char char(5), c_bytea bytea,
    c_uuid uuid, c_json json, c_jsonb jsonb, c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz
      timestamptz,
    c_interval interval, c_int_arr int[], c_text_arr2 text[][], c_float_arr float8[], c_enum mood, c_enum_arr mood[],
      c_domain posint,
    c_inet inet, c_cidr cidr, c_macaddr macaddr, c_money money, c_bit bit(4), c_varbit varbit, c_tsvector tsvector,
    c_range int4range, c_tstzrange tstzrange, c_hstore hstore, c_composite pair, c_point point, c_big text
  );`;

const ROWS = `
  INSERT INTO all_types VALUES
  (1, 32767, 2147483647, 9223372036854775807, 123456789012345678901234567890.123456789012345,
    123456789012345678901234567890.0123456789,
   3.4028235e38, 1.7976931348623157e308, true, 'unicode ✓ 😀 "quotes" \\ backslash, tab\t newline\n', 'ten chars!',
     'ab',
   '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"n": 12345678901234567890123, "s": "x"}',
     '{"b": [1, 2.50, {"c": null}], "a": "é"}',
   '2024-02-29', '23:59:59.999999', '12:00:00.5+05:30', '2024-01-01 00:00:00.000001', '2024-06-30 23:59:59.123456+02',
   '1 year 2 mons 3 days 04:05:06.789', '{1,NULL,3}', '{{"a","b"},{"c",NULL}}', '{NaN,Infinity,-Infinity,0.1}',
     'happy 😀', '{sad,ok}', 7,
   '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34, B'1010', B'110', 'a fat cat', '[1,10)',
     '[2024-01-01 00:00+00,infinity)',
   'a=>1, b=>NULL', ROW(1, 'x, "y"'), '(1.5,2)', repeat('walflow ', 10)),
  (2, -32768, -2147483648, -9223372036854775808, 'NaN', -0.0000000001, 'NaN', '-Infinity', false, '', '', '', '\\x',
    NULL,
   '[]', '{}', '-infinity', '00:00:00', '00:00:00+00', 'infinity', '-infinity', '-178000000 years', '{}', '{}', '{}',
     'sad', '{}', 1,
   '::1', '::/0', 'ff:ff:ff:ff:ff:ff', -0.01, B'0000', B'', '', 'empty', '(,)', '', ROW(NULL, NULL), '(0,0)', ''),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL),
  (4, 1, 1, 1, 1e-20, 1, 1.1, 0.1, true, repeat(md5('x'), 1), 'x', 'x', decode(repeat('ab', 1000), 'hex'),
    gen_random_uuid(),
   (SELECT json_agg(g)::json FROM generate_series(1, 20000) g), (SELECT jsonb_object_agg('k' || g, g) FROM
     generate_series(1, 5000) g),
   '0001-01-01 BC', '24:00:00', '24:00:00-15:59', '4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999+00',
     '-1 days +02:00:00',
   '{{{1,2}},{{3,4}}}', '{{"x"}}', '{1e-300}', 'ok', '{happy 😀}', 2147483647, '2001:db8::1', '2001:db8::/32',
     '00:00:00:00:00:00',
   92233720368547758.07, B'1111', repeat('1', 100)::varbit, 'x:1 y:2', 'empty', NULL, '"k"=>"v"', NULL, NULL,
   (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 32768) g));`;

/** What Postgres itself says each value is, through the same exact parser. */
async function expectedRows(client: pg.Client, schema: TableSchema): Promise<Map<number, Row>> {
  const { rows } = await client.query({
    text:
      `SELECT ${schema.columns.map((c) => outputTextSql(pg.escapeIdentifier(c.name))).join(', ')} FROM ` +
      `all_types ORDER BY id`,
    rowMode: 'array',
  });
  return new Map(
    (rows as (string | null)[][]).map((r) => {
      const row: Row = {};
      schema.columns.forEach((c, i) => {
        row[c.name] = parseColumnText(c, r[i] ?? null);
      });
      return [row.id as number, row];
    }),
  );
}

/** Collects change events until `until` says stop. */
async function collect(
  stream: ChangeStream,
  until: (changes: Change[]) => boolean,
  timeoutMs = 60_000,
): Promise<Change[]> {
  const changes: Change[] = [];
  const deadline = Date.now() + timeoutMs;
  for await (const burst of stream) {
    for (const ev of burst) {
      if (ev.type === 'change') changes.push(ev.change);
      if (until(changes)) return changes;
    }
    if (Date.now() > deadline) throw new Error(`timed out with ${changes.length} changes`);
  }
  return changes;
}

for (const adminUrl of pgAdminUrls()) {
  describe(`Postgres source on ${new URL(adminUrl).port}`, () => {
    let db: TestDatabase;
    let client: pg.Client;
    let major: number;
    before(async () => {
      db = await createTestDatabase('source', adminUrl);
      client = await connect({ connectionString: db.url });
      major = (Number((await client.query('SHOW server_version_num')).rows[0].server_version_num) / 10000) | 0;
      await client.query(ALL_TYPES);
      await client.query('CREATE PUBLICATION pub FOR ALL TABLES');
    });
    after(async () => {
      await client.end();
      await db.drop();
    });

    test('every type round-trips exactly through backfill and CDC, equal to what Postgres returns', async () => {
      const slot = await createSlot({ connectionString: db.url }, 'types_slot');
      const [schema] = await loadTableSchemas(client, ['public.all_types']);
      const stream = await openChangeStream({
        connection: { connectionString: db.url },
        slot: 'types_slot',
        publication: 'pub',
        startLsn: parseLsn(slot.confirmedLsn),
        known: new Map([['public.all_types', schema!]]),
        lookup: async () => schema!,
      });
      try {
        await client.query(ROWS);
        const cdc = await collect(stream, (c) => c.length >= 4);
        const expected = await expectedRows(client, schema!);
        const copied: Row[] = [];
        for await (const r of readTable(client, schema!)) copied.push(r);

        assert.equal(copied.length, 4);
        for (const row of copied) assert.deepEqual(row, expected.get(row.id as number), `backfill row ${row.id}`);
        for (const c of cdc) {
          assert.equal(c.kind, 'insert');
          const row = (c as Extract<Change, { kind: 'insert' }>).row;
          assert.deepEqual(row, expected.get(row.id as number), `CDC row ${row.id}`);
        }

        // Spot checks of the mapping itself, not just agreement between paths.
        const e1 = expected.get(1)!;
        const e2 = expected.get(2)!;
        const e4 = expected.get(4)!;
        assert.equal(e1.c_int8, '9223372036854775807');
        assert.equal(e1.c_numeric, '123456789012345678901234567890.123456789012345');
        assert.equal(e1.c_float8, 1.7976931348623157e308);
        assert.equal(e1.c_tstz, '2024-06-30 21:59:59.123456+00');
        assert.equal(e1.c_ts, '2024-01-01 00:00:00.000001');
        assert.deepEqual(e1.c_bytea, Buffer.from([0x00, 0xff, 0x10]));
        assert.deepEqual(e1.c_int_arr, [1, null, 3]);
        assert.deepEqual(e1.c_text_arr2, [
          ['a', 'b'],
          ['c', null],
        ]);
        assert.deepEqual(e1.c_enum_arr, ['sad', 'ok']);
        assert.equal(e1.c_json, '{"n": 12345678901234567890123, "s": "x"}', 'json text kept exactly');
        assert.ok(Number.isNaN(e2.c_float4));
        assert.equal(e2.c_float8, -Infinity);
        assert.equal(e2.c_numeric, 'NaN');
        assert.equal(e2.c_tstz, '-infinity');
        assert.deepEqual(e2.c_int_arr, []);
        assert.deepEqual(e4.c_int_arr, [[[1, 2]], [[3, 4]]]);
        assert.equal((e4.c_big as string).length, 32 * 32768, 'a 1 MB TOASTed text arrives whole');
        assert.ok(
          expected.get(3)!.c_text === null &&
            Object.values(expected.get(3)!).filter((v) => v === null).length === schema!.columns.length - 1,
        );
        assert.equal(major >= 14, true);
      } finally {
        await stream.close();
      }
    });

    test(
      'an UPDATE leaving a TOASTed column untouched marks it unchanged, never NULL; ADD COLUMN surfaces as a ' +
        'schema change',
      async () => {
        const [schema] = await loadTableSchemas(client, ['public.all_types']);
        const slot = await createSlot({ connectionString: db.url }, 'toast_slot');
        const known = new Map([['public.all_types', schema!]]);
        const stream = await openChangeStream({
          connection: { connectionString: db.url },
          slot: 'toast_slot',
          publication: 'pub',
          startLsn: parseLsn(slot.confirmedLsn),
          known,
          lookup: async (t) => (await loadTableSchemas(client, [`${t.schema}.${t.name}`]))[0]!,
        });
        try {
          await client.query(`UPDATE all_types SET c_int4 = 42 WHERE id = 4`);
          // Without a default: one would fill existing rows outside the WAL, which stops the table
          // (test/shape.test.ts).
          await client.query(`ALTER TABLE all_types ADD COLUMN c_added numeric(5,2)`);
          await client.query(`INSERT INTO all_types (id, c_added) VALUES (5, 2.25)`);
          const changes = await collect(stream, (c) => c.some((x) => x.kind === 'insert'));
          const update = changes.find((c) => c.kind === 'update') as UpdateChange;
          // Every TOASTed column the update left alone (the 1 MB text, the large json/jsonb) is marked, not sent.
          assert.deepEqual(update.unchanged, ['c_json', 'c_jsonb', 'c_big']);
          for (const c of update.unchanged) assert.ok(!(c in update.row), `${c} absent, not null`);
          assert.equal(update.row.c_int4, 42);
          const schemaChange = changes.find((c) => c.kind === 'schema') as SchemaChange;
          assert.ok(schemaChange, 'schema change surfaced');
          assert.deepEqual(
            schemaChange.added.map((c) => [c.name, c.type, c.kind]),
            [['c_added', 'numeric(5,2)', 'decimal']],
          );
          assert.ok(
            changes.indexOf(schemaChange) < changes.findIndex((c) => c.kind === 'insert'),
            'before the rows that carry it',
          );
          assert.equal(
            (changes.find((c) => c.kind === 'insert') as Extract<Change, { kind: 'insert' }>).row.c_added,
            '2.25',
          );
        } finally {
          await stream.close();
        }
      },
    );
  });
}

describe('range planning', () => {
  let db: TestDatabase;
  let client: pg.Client;
  before(async () => {
    db = await createTestDatabase('ranges');
    client = await connect({ connectionString: db.url });
  });
  after(async () => {
    await client.end();
    await db.drop();
  });

  async function copyAll(table: string): Promise<number[]> {
    const [schema] = await loadTableSchemas(client, [table]);
    const plan = await planTableRanges(client, table, { rowsPerRange: 100_000 });
    const ids: number[] = [];
    for (const range of plan.ranges) {
      for await (const batch of copyTableRange(client, schema!, range, { batchRows: 50_000 }))
        for (const r of batch) ids.push(Number(r.id));
    }
    return ids;
  }

  const exactlyOnce = (ids: number[], n: number) => {
    assert.equal(ids.length, n, 'row count');
    assert.equal(new Set(ids).size, n, 'no row twice');
  };

  test('covers every row of a 1,000,000-row table exactly once', async () => {
    await client.query(
      `CREATE TABLE big (id int8 PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM ` +
        `generate_series(1, 1000000) g; ANALYZE big`,
    );
    const plan = await planTableRanges(client, 'public.big', { rowsPerRange: 100_000 });
    assert.ok(plan.ranges.length >= 9 && plan.ranges.length <= 12, `about 10 ranges: ${plan.ranges.length}`);
    assert.equal(plan.ranges.at(-1)!.endPage, null, 'the last range is open-ended');
    const {
      rows: [{ pages }],
    } = await client.query(`SELECT pg_relation_size('big') / current_setting('block_size')::int AS pages`);
    const spans = plan.ranges.map((r) => (r.endPage ?? Number(pages)) - r.startPage);
    assert.ok(Math.min(...spans) >= Math.max(...spans) * 0.9, `ranges of one size, no sliver: ${spans}`);
    exactlyOnce(await copyAll('public.big'), 1_000_000);
  });

  test('an empty table is one open range with no rows', async () => {
    await client.query(`CREATE TABLE empty (id int PRIMARY KEY)`);
    const plan = await planTableRanges(client, 'public.empty', { rowsPerRange: 1000 });
    assert.deepEqual(plan.ranges, [{ relation: 'public.empty', startPage: 0, endPage: null }]);
    exactlyOnce(await copyAll('public.empty'), 0);
  });

  test('a partitioned table is planned per leaf partition', async () => {
    await client.query(`CREATE TABLE parted (id int8 PRIMARY KEY, v text) PARTITION BY RANGE (id);
      CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (150000);
      CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (150000) TO (MAXVALUE);
      INSERT INTO parted SELECT g, 'p' FROM generate_series(1, 300000) g; ANALYZE parted`);
    const plan = await planTableRanges(client, 'public.parted', { rowsPerRange: 100_000 });
    assert.deepEqual([...new Set(plan.ranges.map((r) => r.relation))], ['public.parted_1', 'public.parted_2']);
    exactlyOnce(await copyAll('public.parted'), 300_000);
  });

  test('rows inserted after planning land in the open last range', async () => {
    await client.query(
      `CREATE TABLE growing (id int8 PRIMARY KEY, v text); INSERT INTO growing SELECT g, 'x' FROM ` +
        `generate_series(1, 200000) g; ANALYZE growing`,
    );
    const [schema] = await loadTableSchemas(client, ['public.growing']);
    const plan = await planTableRanges(client, 'public.growing', { rowsPerRange: 50_000 });
    await client.query(`INSERT INTO growing SELECT g, 'late' FROM generate_series(200001, 260000) g`);
    const ids: number[] = [];
    for (const range of plan.ranges) {
      for await (const batch of copyTableRange(client, schema!, range, { batchRows: 10_000 }))
        for (const r of batch) ids.push(Number(r.id));
    }
    exactlyOnce(ids, 260_000);
  });
});

/** A database of its own for a describe block, and a connection to it (read inside tests). */
function withTestDatabase(prefix: string): { db: TestDatabase; client: pg.Client } {
  const it = {} as { db: TestDatabase; client: pg.Client };
  before(async () => {
    it.db = await createTestDatabase(prefix);
    it.client = await connect({ connectionString: it.db.url });
  });
  after(async () => {
    await it.client.end();
    await it.db.drop();
  });
  return it;
}

describe('a 1,000,000-row transaction', () => {
  const t = withTestDatabase('bigtx');

  test('is decoded with bounded memory', async () => {
    await t.client.query(`CREATE TABLE t (id int8 PRIMARY KEY, payload text); CREATE PUBLICATION pub FOR TABLE t`);
    const slot = await createSlot({ connectionString: t.db.url }, 'bigtx');
    const [schema] = await loadTableSchemas(t.client, ['public.t']);
    const stream = await openChangeStream({
      connection: { connectionString: t.db.url },
      slot: 'bigtx',
      publication: 'pub',
      startLsn: parseLsn(slot.confirmedLsn),
      known: new Map([['public.t', schema!]]),
      lookup: async () => schema!,
    });
    try {
      global.gc?.();
      const base = process.memoryUsage();
      let peakHeap = base.heapUsed;
      let peakRss = base.rss;
      await t.client.query(
        `INSERT INTO t SELECT g, '${randomBytes(50).toString('hex')}' FROM generate_series(1, 1000000) g`,
      );
      let n = 0;
      let committed = false;
      read: for await (const burst of stream) {
        for (const ev of burst) {
          if (ev.type === 'change') n++;
          if (n % 20_000 === 0) {
            const m = process.memoryUsage();
            peakHeap = Math.max(peakHeap, m.heapUsed);
            peakRss = Math.max(peakRss, m.rss);
          }
          if (ev.type === 'commit') {
            committed = true;
            break read;
          }
        }
      }
      const mb = (b: number) => Math.round(b / 2 ** 20);
      console.log(
        `1,000,000-row transaction: ${n} changes, heap ${mb(base.heapUsed)} -> peak ${mb(peakHeap)} MB, rss ` +
          `peak ${mb(peakRss)} MB`,
      );
      assert.ok(committed);
      assert.equal(n, 1_000_000);
      assert.ok(peakHeap - base.heapUsed < 300 * 2 ** 20, `heap grew by ${mb(peakHeap - base.heapUsed)} MB`);
    } finally {
      await stream.close();
    }
  });
});

describe('a slot held by another stream', () => {
  const t = withTestDatabase('held');

  test('is waited for, then refused, without leaving a walsender behind per attempt', async () => {
    await t.client.query(`CREATE TABLE t (id int8 PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t`);
    const slot = await createSlot({ connectionString: t.db.url }, 'held');
    const [schema] = await loadTableSchemas(t.client, ['public.t']);
    const open = (onWait?: () => void) =>
      openChangeStream({
        connection: { connectionString: t.db.url },
        slot: 'held',
        publication: 'pub',
        startLsn: parseLsn(slot.confirmedLsn),
        known: new Map([['public.t', schema!]]),
        lookup: async () => schema!,
        onWait,
      });
    const walsenders = async () =>
      Number(
        (
          await t.client.query(
            `SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = ` +
              `current_database()`,
          )
        ).rows[0].n,
      );
    const holder = await open();
    try {
      assert.equal(await walsenders(), 1);
      let waits = 0;
      // Refused for 30 s (about 60 attempts) while the holder streams.
      await assert.rejects(
        open(() => {
          waits++;
        }),
        /active for PID/,
      );
      assert.ok(waits > 10, `it waited (${waits} attempts)`);
      assert.equal(await walsenders(), 1, "only the holder's walsender remains");
    } finally {
      await holder.close();
    }
  });
});
