/**
 * DuckDB: the destination converges to the newest version per key (the shared conformance suite and
 * pipeline scenario), stores every Postgres type exactly in its DuckDB type, has one writer per file in a
 * process, and waits for, then names, another process holding the file. MotherDuck (`md:`) runs the same
 * code but needs the network: only its configuration is checked here.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createDestination } from '../activities/destinations/index.ts';
import { DuckDBDestination } from '../activities/destinations/duckdb.ts';
import { DuckDBDatabase } from '../activities/destinations/duckdb-database.ts';
import { readTable } from '../activities/postgres/read.ts';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { connect } from '../activities/postgres/session.ts';
import { DestinationConfig } from '../lib/config.ts';
import { makeVersion } from '../lib/lsn.ts';
import type { Change, Row, TableSchema } from '../lib/model.ts';
import { comparableValues, jsonColumns } from '../lib/verify.ts';
import { describeDestination, keyAndTextTable } from './support/conformance.ts';
import { holdDuckDBFile } from './support/duckdb.ts';
import { createTestDatabase } from './support/env.ts';
import { describePipelineInto } from './support/scenario.ts';

const dir = mkdtempSync(join(tmpdir(), 'walflow-duckdb-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string) => join(dir, `${name}.duckdb`);

describeDestination(
  'DuckDBDestination',
  new DuckDBDestination({ path: file('conformance'), schema: 'main' }),
  async () => {
    rmSync(file('conformance'), { force: true });
  },
);

/** Live rows of `schema` as the comparison form verify uses. */
async function liveRows(dest: DuckDBDestination, schema: TableSchema): Promise<(string | null)[][]> {
  const rows: Row[] = [];
  for await (const r of dest.readLive(schema)) rows.push(r);
  const json = new Set(jsonColumns(schema));
  return rows
    .map((r) =>
      comparableValues(
        r,
        schema.columns.map((c) => c.name),
        json,
      ),
    )
    .sort((a, b) => Number(a[0]) - Number(b[0]));
}

describe('DuckDB types', () => {
  test('every Postgres type comes back exactly from its DuckDB type, through backfill rows, updates and deletes', async () => {
    const db = await createTestDatabase('duckdb_types');
    const pg = await connect({ connectionString: db.url });
    const dest = new DuckDBDestination({ path: file('types'), schema: 'typed' });
    try {
      await pg.query(`CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE DOMAIN positive AS int4 CHECK (VALUE > 0);
        CREATE TABLE every (id int8 PRIMARY KEY, i2 int2, i4 int4, f4 float4, f8 float8, n numeric(12,4), n38
          numeric(38,10), nbig numeric(50,2),
          nfree numeric, nneg numeric(3,-2), ok bool, t text, c char(5), b bytea, u uuid, j json, jb jsonb, d date,
            ts timestamp, tstz timestamptz(6),
          tm time, tmtz timetz, iv interval, e mood, dom positive, ip inet, ia int4[], ta text[], da date[], ba
            bytea[], iva interval[], na numeric(8,3)[],
          tza timestamptz[], ja jsonb[], f4a float4[], ua uuid[]);
        INSERT INTO every VALUES
          (1, -32768, 2147483647, 0.1, 1e-300, 12345678.1234, 1234567890123456789012345678.0123456789,
            123456789012345678901234567890123456789012345678.99,
           'NaN', 12300, true, 'a ''quoted'' "text" \\ with backslash', 'ab', '\\x00ff10',
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '{"b": 1, "a": [1, 2.50, 123456789012345678901234567890]}', '{"big": 12345678901234567890, "x": null}',
             '2024-02-29', '2024-06-30 21:59:59.123456',
           '2024-06-30 21:59:59.123456+02', '24:00:00', '12:34:56.789+05:30',
             '1 year 2 mons -3 days +04:05:06.000001', 'happy', 7, '10.0.0.1/8',
           '{1,NULL,-3}', '{"a,b","",NULL,"{x}"}', '{2024-01-01,infinity}', '{"\\\\x01",NULL}',
             '{"1 day","-00:00:01"}', '{1.5,NULL}',
           '{"2000-01-01 00:00:00+00"}', ARRAY['{"k": [true]}'::jsonb], '{NaN,-Infinity,3.4028235e38}',
             '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'),
          (2, NULL, NULL, 'NaN', '-Infinity', -0.0001, -1, NULL, '-Infinity', -100, false, '', NULL, '\\x', NULL,
            '[]', '"s"', '0044-03-15 BC',
           '0001-01-01 00:00:00 BC', '-infinity', '00:00:00', '00:00:00-15:59', '-178000000 years', 'sad', NULL, NULL,
           '{}', '{}', NULL, '{}', NULL, NULL, NULL, NULL, NULL, NULL),
          (3, 0, 0, '-0', 1.7976931348623157e308, 0, 0, 0, '0.000000000000000000000000000001', 0, NULL, NULL,
            'abcde', NULL, NULL, NULL, NULL,
           'infinity', '294276-12-31 23:59:59.999999', '4713-11-24 00:00:00+00 BC', '23:59:59.999999', '24:00:00+15:59',
           '-1 days +02:03:04', NULL, NULL, '::1', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL,
           '3 mons 1 day -12:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{"2 years 1 mon","00:00:00"}', NULL,
             NULL, NULL, NULL, NULL),
          (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL,
           '00:00:00.5', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);`);
      const [schema] = await loadTableSchemas(pg, ['public.every']);
      const source: Row[] = [];
      for await (const r of readTable(pg, schema!)) source.push(r);
      // DuckDB's TIMESTAMP ends in 294247 AD, Postgres's in 294276: row 3's timestamp is refused loudly below, not
      // altered.
      const table = { schema: 'public', name: 'every' };
      const v = (n: number) => makeVersion(1n << 40n, n);
      await dest.prepare([schema!]);
      const tooLate = source.find((r) => r.id === '3')!;
      await assert.rejects(dest.apply([{ kind: 'insert', table, version: v(0), row: tooLate }]), /294276-12-31/);
      const fits = { ...tooLate, ts: '294247-01-01 00:00:00' };
      const rows = source.map((r) => (r.id === '3' ? fits : r));
      await dest.apply(rows.map((row): Change => ({ kind: 'insert', table, version: v(0), row, snapshot: true })));
      const json = new Set(jsonColumns(schema!));
      const expected = rows.map((r) =>
        comparableValues(
          r,
          schema!.columns.map((c) => c.name),
          json,
        ),
      );
      assert.deepEqual(await liveRows(dest, schema!), expected);

      await dest.apply([
        { kind: 'update', table, version: v(2), row: { ...rows[1]!, t: 'updated', iv: '1 day' }, unchanged: [] },
        { kind: 'delete', table, version: v(3), old: { id: '4' } },
      ]);
      const after = await liveRows(dest, schema!);
      assert.deepEqual(
        after.map((r) => r[0]),
        ['1', '2', '3', '5'],
      );
      assert.equal(after[1]![schema!.columns.findIndex((c) => c.name === 't')], 'updated');

      assert.deepEqual(await storedTypes(file('types'), 'every'), {
        id: 'BIGINT',
        i2: 'SMALLINT',
        i4: 'INTEGER',
        f4: 'FLOAT',
        f8: 'DOUBLE',
        n: 'DECIMAL(12,4)',
        n38: 'DECIMAL(38,10)',
        nbig: 'VARCHAR',
        nfree: 'VARCHAR',
        nneg: 'VARCHAR',
        ok: 'BOOLEAN',
        t: 'VARCHAR',
        c: 'VARCHAR',
        b: 'BLOB',
        u: 'UUID',
        j: 'JSON',
        jb: 'JSON',
        d: 'DATE',
        ts: 'TIMESTAMP',
        tstz: 'TIMESTAMP WITH TIME ZONE',
        tm: 'TIME',
        tmtz: 'TIME WITH TIME ZONE',
        iv: 'INTERVAL',
        e: 'VARCHAR',
        dom: 'BIGINT',
        ip: 'VARCHAR',
        ia: 'INTEGER[]',
        ta: 'VARCHAR[]',
        da: 'DATE[]',
        ba: 'BLOB[]',
        iva: 'INTERVAL[]',
        na: 'DECIMAL(8,3)[]',
        tza: 'TIMESTAMP WITH TIME ZONE[]',
        ja: 'JSON[]',
        f4a: 'FLOAT[]',
        ua: 'UUID[]',
        _walflow_version: 'HUGEINT',
        _walflow_deleted: 'BOOLEAN',
        _walflow_synced_at: 'TIMESTAMP WITH TIME ZONE',
      });
    } finally {
      await dest.close();
      await pg.end();
      await db.drop();
    }
  });

  test(
    'a value DuckDB cannot hold fails the batch with the column named: NaN in a DECIMAL, an array of other ' +
      'dimensions than declared',
    async () => {
      const dest = new DuckDBDestination({ path: file('refusals'), schema: 'main' });
      const schema: TableSchema = {
        schema: 'public',
        name: 'r',
        key: ['id'],
        replicaIdentity: 'default',
        columns: [
          { name: 'id', type: 'integer', typeOid: 23, kind: 'int', arrayDims: 0, nullable: false },
          {
            name: 'amount',
            type: 'numeric(10,2)',
            typeOid: 1700,
            kind: 'decimal',
            arrayDims: 0,
            precision: 10,
            scale: 2,
            nullable: true,
          },
          { name: 'grid', type: 'integer[]', typeOid: 1007, kind: 'int', arrayDims: 1, nullable: true },
        ],
      };
      const table = { schema: 'public', name: 'r' };
      try {
        await dest.prepare([schema]);
        await assert.rejects(
          dest.apply([{ kind: 'insert', table, version: 1n, row: { id: 1, amount: 'NaN', grid: null } }]),
          /public\.r\.amount: NaN cannot be stored in DECIMAL\(10,2\)/,
        );
        await assert.rejects(
          dest.apply([
            {
              kind: 'insert',
              table,
              version: 1n,
              row: {
                id: 1,
                amount: null,
                grid: [
                  [1, 2],
                  [3, 4],
                ],
              },
            },
          ]),
          /public\.r\.grid: a value with other dimensions than the column's 1 \(a declared integer\[\]\)/,
        );
        assert.deepEqual(await liveRows(dest, schema), [], 'nothing of a refused batch is written');
      } finally {
        await dest.close();
      }
    },
  );
});

/** Column types as an analyst sees them, read through the process's one instance of the file. */
async function storedTypes(path: string, table: string): Promise<Record<string, string>> {
  const db = DuckDBDatabase.attach(path);
  try {
    return await db.run(1000, async (conn) =>
      Object.fromEntries(
        (
          await conn.runAndReadAll(
            'SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $1 ORDER BY column_index',
            [table],
          )
        ).getRows() as [string, string][],
      ),
    );
  } finally {
    db.detach();
  }
}

describe('one writer per DuckDB file', () => {
  const schema = keyAndTextTable('w', 'by');
  const table = { schema: 'public', name: 'w' };
  const batch = (by: string, from: number, n: number, version: bigint): Change[] =>
    Array.from({ length: n }, (_, i) => ({ kind: 'insert', table, version, row: { id: String(from + i), by } }));

  test('range copies and the stream of one process write the same file at once, through one queue', async () => {
    const path = file('shared');
    const copies = [0, 1, 2].map(() => new DuckDBDestination({ path, schema: 'main' }));
    const stream = new DuckDBDestination({ path, schema: 'main' });
    try {
      await Promise.all([...copies, stream].map((d) => d.prepare([schema])));
      await Promise.all([
        ...copies.map((d, i) => d.apply(batch(`copy ${i}`, i * 1000, 1000, 10n))),
        ...[1, 2, 3].map((k) => stream.apply(batch('stream', k * 500, 10, 20n + BigInt(k)))),
      ]);
      const rows = new Map<string, Row>();
      for await (const r of stream.readLive(schema)) rows.set(r.id as string, r);
      assert.equal(rows.size, 3000);
      assert.equal(rows.get('1500')?.by, 'stream', 'the newer stream change wins over the copy');
      assert.equal(rows.get('999')?.by, 'copy 0');
    } finally {
      await Promise.all([...copies, stream].map((d) => d.close()));
    }
  });

  test(
    'while another process holds the file, writes wait for it; past the wait they fail naming the file and the ' +
      'holder, and a retry succeeds',
    async () => {
      const path = file('held');
      const dest = new DuckDBDestination({ path, schema: 'main', lockWaitMs: 1500 });
      try {
        await dest.prepare([schema]);
        await new Promise((r) => setTimeout(r, 1500)); // the destination lets go of the file when idle
        let holder = (await holdDuckDBFile(path))!;
        await assert.rejects(dest.apply(batch('x', 1, 1, 1n)), (e: Error) => {
          assert.equal(e.name, 'DuckDBFileBusyError');
          assert.ok(e.message.includes(path), e.message);
          assert.match(e.message, new RegExp(`held by another process .*PID ${holder.pid}`));
          return true;
        });
        await holder.release();
        // Held for less than the wait: the write just waits.
        holder = (await holdDuckDBFile(path))!;
        setTimeout(() => void holder.release(), 500);
        await dest.apply(batch('x', 1, 1, 2n));
        assert.equal((await liveRows(dest, schema)).length, 1);
      } finally {
        await dest.close();
      }
    },
  );

  test('resync: rows the fresh copy did not rewrite become tombstones at its version', async () => {
    const dest = new DuckDBDestination({ path: file('resync'), schema: 'main' });
    try {
      await dest.prepare([schema]);
      await dest.apply(batch('old copy', 1, 3, 10n));
      await dest.apply(batch('fresh copy', 2, 1, 30n));
      await dest.removeStale(schema, 20n);
      await dest.apply(batch('late old row', 3, 1, 15n)); // older than the tombstone: kept out
      assert.deepEqual(await liveRows(dest, schema), [['2', 'fresh copy']]);
    } finally {
      await dest.close();
    }
  });

  test('once a process is done with the file, another can open it (walflow verify beside an idle worker)', async () => {
    const path = file('handover');
    const dest = new DuckDBDestination({ path, schema: 'main' });
    await dest.prepare([schema]);
    await dest.apply(batch('w', 1, 5, 1n));
    await new Promise((r) => setTimeout(r, 1500));
    const child = spawn(
      process.execPath,
      [
        '-e',
        `
      const { DuckDBInstance } = require('@duckdb/node-api');
      DuckDBInstance.create(${JSON.stringify(path)}, { access_mode: 'READ_ONLY' })
        .then((i) => i.connect()).then((c) => c.runAndReadAll('SELECT count(*) FROM main.w_live')).then((r) =>
      console.log(String(r.getRows()[0][0])));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    assert.equal(await new Promise((r) => child.once('exit', r)), 0);
    assert.equal(out.trim(), '5');
    await dest.close();
  });
});

test('config: a file or md: path, the MotherDuck token only as a reference and only for md:', () => {
  const ok = DestinationConfig.parse({ type: 'duckdb', path: 'md:analytics', token: 'env:MOTHERDUCK_TOKEN' });
  assert.deepEqual(ok, { type: 'duckdb', path: 'md:analytics', token: 'env:MOTHERDUCK_TOKEN', schema: 'main' });
  assert.throws(
    () => DestinationConfig.parse({ type: 'duckdb', path: 'md:analytics', token: 'eyJhbGciOi' }),
    /secret reference/,
  );
  assert.throws(
    () => DestinationConfig.parse({ type: 'duckdb', path: 'md:analytics?motherduck_token=eyJ' }),
    /must not contain a token/,
  );
  assert.throws(
    () => DestinationConfig.parse({ type: 'duckdb', path: './a.duckdb', token: 'env:T' }),
    /token is for MotherDuck/,
  );
});

test('createDestination builds a DuckDB destination from the config', async () => {
  const dest = await createDestination(
    DestinationConfig.parse({ type: 'duckdb', path: file('created'), schema: 'analytics' }),
    { pipeline: 'p' },
  );
  assert.ok(dest instanceof DuckDBDestination);
  await dest.prepare([]);
  await dest.close();
});

describePipelineInto('duckdb', 20_000);
