/**
 * A value the destination refuses stops only its table: the table shows `errored` (the destination's
 * message, the column, the key, the fix), the other tables' changes keep arriving (in the same
 * transaction and after), the slot moves on, and after the source row is fixed `resyncTables` brings
 * the table back equal to the source.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { type ClickHouseError, createClient, parseError } from '@clickhouse/client';
import { defaultPayloadConverter } from '@temporalio/common';
import pg from 'pg';
import type { DataRefusedDetails } from '../lib/errors.ts';
import { parseLsn } from '../lib/lsn.ts';
import { clickhouseRefusal } from '../activities/destinations/clickhouse.ts';
import { ClickHouseValueError } from '../activities/destinations/clickhouse-values.ts';
import { duckdbRefusal } from '../activities/destinations/duckdb.ts';
import { DuckDBValueError } from '../activities/destinations/duckdb-types.ts';
import { postgresRefusal } from '../activities/destinations/postgres.ts';
import { snowflakeRefusal } from '../activities/destinations/snowflake.ts';
import { requireEnv } from './support/env.ts';
import { resyncTablesUpdate } from '../lib/contract/pipeline.ts';
import type { TableError } from '../lib/contract/status.ts';
import { PipelineFixture, type FixtureDestination } from './support/pipeline.ts';

test('each destination tells a refusal of the data from a destination that is down, by its own error codes', () => {
  const refused = new ClickHouseValueError(
    { table: 'public.t', column: 'd' },
    "infinity is outside ClickHouse's date range",
    'infinity',
  );
  refused.key = 'id=1';
  assert.deepEqual(clickhouseRefusal(refused), { column: 'd', valueClass: 'infinity', key: 'id=1' });
  const parse = (text: string) => parseError(text) as ClickHouseError;
  assert.deepEqual(
    clickhouseRefusal(
      parse(
        "Code: 27. DB::Exception: Cannot parse input: expected '\"' before: 'x': (while reading the value of key " +
          'd): (at row 1)\n: While executing ParallelParsingBlockInputFormat. (CANNOT_PARSE_INPUT_ASSERTION_FAILED) ' +
          '(version 24.8.1.1)',
      ),
    ),
    { column: 'd', valueClass: 'cannot_parse_input_assertion_failed' },
  );
  assert.deepEqual(
    clickhouseRefusal(
      parse(
        'Code: 469. DB::Exception: Constraint `positive` for table db.t is violated at row 1. Expression: (n > 0). ' +
          'Column values: n = -1. (VIOLATED_CONSTRAINT) (version 24.8.1.1)',
      ),
    ),
    { valueClass: 'violated_constraint' },
  );
  for (const down of [
    parse('Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED) (version 24.8.1.1)'),
    parse('Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS) (version 24.8.1.1)'),
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' }),
  ])
    assert.equal(clickhouseRefusal(down), undefined, (down as Error).message);

  const pgError = (code: string, fields: Partial<pg.DatabaseError> = {}) =>
    Object.assign(new pg.DatabaseError('m', 1, 'error'), { code, ...fields });
  assert.deepEqual(postgresRefusal(pgError('23502', { column: 'n' })), {
    column: 'n',
    valueClass: 'not_null_violation',
  });
  assert.deepEqual(
    postgresRefusal(pgError('23505', { constraint: 't_pkey', detail: 'Key (id)=(1) already exists.' })),
    { valueClass: 'unique_violation (t_pkey)', key: 'id=1' },
  );
  assert.deepEqual(postgresRefusal(pgError('22008')), { valueClass: 'datetime_field_overflow' });
  for (const code of ['57P01', '08006', '40001', '53300', '42P01'])
    assert.equal(postgresRefusal(pgError(code)), undefined, code);
  assert.equal(postgresRefusal(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), undefined);

  const sf = (code: string, message: string, sqlState?: string) => ({
    name: 'OperationFailedError',
    code,
    message,
    sqlState,
  });
  assert.deepEqual(snowflakeRefusal(sf('100038', "Numeric value 'abc' is not recognized", '22018')), {
    valueClass: 'unrecognized numeric',
  });
  assert.deepEqual(snowflakeRefusal(sf('100040', "Date 'infinity' is not recognized", '22007')), {
    valueClass: 'unrecognized date',
  });
  assert.deepEqual(snowflakeRefusal(sf('100072', 'NULL result in a non-nullable column', '22000')), {
    valueClass: 'Snowflake error 100072',
  });
  assert.equal(snowflakeRefusal(sf('390114', 'Authentication token has expired.', '08001')), undefined);
  assert.equal(
    snowflakeRefusal({ name: 'NetworkError', code: 401001, message: 'Network error. Could not reach Snowflake.' }),
    undefined,
  );

  assert.deepEqual(duckdbRefusal(new Error("Conversion Error: Could not convert string 'x' to INT32")), {
    valueClass: 'conversion error',
  });
  assert.deepEqual(
    duckdbRefusal(
      Object.assign(new DuckDBValueError('public.t.n: NaN cannot be stored in DECIMAL(10,2)', 'NaN'), {
        column: 'n',
        key: 'id=1',
      }),
    ),
    { valueClass: 'NaN', column: 'n', key: 'id=1' },
  );
  assert.equal(duckdbRefusal(new Error('IO Error: Could not set lock on file')), undefined);
});

interface Refusal {
  /** The fixture's name, when a destination has more than one case. */
  name?: string;
  destination: FixtureDestination;
  /** Table ta's columns (after `id int PRIMARY KEY`) and its three first rows' values. */
  columns: string;
  rows: string;
  /** Run on the destination once it holds the backfill (e.g. a constraint the operator added). */
  destinationSetup?: (f: PipelineFixture) => Promise<void>;
  /** ta's row 10, which the destination refuses, and the fix of that row in the source. */
  refused: string;
  fix: string;
  expect: (error: TableError, f: PipelineFixture) => void;
}

/** The events of every run of the pipeline and of its copy children (a small backfill copies in the pipeline itself). */
async function copyEvents(f: PipelineFixture) {
  const events = [];
  for await (const wf of f.client.workflow.list({ query: `WorkflowId STARTS_WITH '${f.handle.workflowId}'` }))
    events.push(...((await f.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory()).events ?? []));
  return events;
}

const walflow = (...args: string[]) =>
  promisify(execFile)(process.execPath, ['bin/walflow.js', ...args], { encoding: 'utf8' });

function describeRefusal(r: Refusal): void {
  describe(`a value ${r.destination} refuses${r.name ? ` (${r.name})` : ''}`, () => {
    const f = new PipelineFixture({
      name: r.name ?? `refused_${r.destination}`,
      destination: r.destination,
      tables: ['ta', 'tb'],
      setup: `CREATE TABLE ta (id int PRIMARY KEY, ${r.columns});
        CREATE TABLE tb (id int PRIMARY KEY, v text);
        INSERT INTO ta VALUES ${r.rows};
        INSERT INTO tb SELECT g, 'v' || g FROM generate_series(1, 3) g;`,
    });
    after(() => f.teardown());

    test(
      'stops only its table (errored, with the column and the fix); the others keep streaming; resync after the ' +
        'fix restores it',
      async () => {
        await f.setup();
        await f.start();
        await f.waitForConvergence();
        await r.destinationSetup?.(f);

        // One transaction: tb's change must arrive although ta's, beside it, is refused.
        await f.sql(`INSERT INTO ta VALUES (10, ${r.refused}); INSERT INTO tb VALUES (10, 'beside the refused row')`);
        const status = await f.waitFor(
          'ta to show errored',
          async () => {
            const s = await f.status();
            return s.tables.ta?.state === 'errored' && s;
          },
          60_000,
        );
        const error = status.tables.ta!.error!;
        assert.equal(status.tables.tb!.state, 'streaming');
        assert.equal(error.attempts, 3);
        assert.match(error.fix, new RegExp(`then walflow tables retry ${f.config.id} ta$`));
        assert.match(error.lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
        assert.ok(!Number.isNaN(Date.parse(error.since)));
        r.expect(error, f);
        assert.match(status.lastError ?? '', /table ta stopped at LSN .*the other tables keep streaming; fix: /);

        // Later changes: tb's arrive within seconds and the slot moves past ta's unwritten ones; ta's are not written.
        const started = Date.now();
        await f.sql(`INSERT INTO tb VALUES (11, 'after'); UPDATE tb SET v = 'updated' WHERE id = 1;
        DELETE FROM tb WHERE id = 2;
        UPDATE ta SET id = id WHERE id = 1; INSERT INTO ta VALUES (11, ${r.refused})`);
        const target = (await f.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
        await f.waitForConvergence(60_000, ['tb']);
        assert.ok(Date.now() - started < 30_000, `tb took ${Date.now() - started} ms to catch up`);
        await f.waitFor(
          "the slot to move past the errored table's changes",
          async () => {
            const confirmed = await f.slotConfirmedLsn();
            return confirmed !== null && parseLsn(confirmed) >= parseLsn(target);
          },
          30_000,
        );
        assert.deepEqual(
          (await f.compare(['ta'])).counts,
          { 'public.ta': [5, 3] },
          "none of ta's changes past the refusal is written",
        );
        assert.equal((await f.status()).tables.ta!.state, 'errored');

        // The way out: fix the rows in the source, resync the table.
        await f.sql(`UPDATE ta SET ${r.fix} WHERE id IN (10, 11)`);
        await f.handle.executeUpdate(resyncTablesUpdate, { args: [['ta']] });
        await f.waitFor('ta to stream again', async () => (await f.status()).tables.ta?.state === 'streaming', 120_000);
        await f.sql(`INSERT INTO tb VALUES (12, 'after the resync')`);
        await f.waitForConvergence(120_000);
        assert.equal((await f.status()).tables.ta!.error, undefined);
      },
    );
  });
}

describeRefusal({
  destination: 'clickhouse',
  columns: 'd date, note text',
  rows: `(1, '2024-01-01', 'a'), (2, '2024-01-02', 'b'), (3, NULL, 'c')`,
  // ClickHouse's Date32 ends in 2299 and has no infinity: walflow refuses rather than let it clamp.
  refused: `'infinity', 'refused'`,
  fix: `d = '2024-06-01'`,
  expect: (error) => {
    assert.equal(error.column, 'd');
    assert.equal(error.valueClass, 'infinity');
    assert.equal(error.key, 'id=10');
    assert.match(
      error.reason,
      /^destination clickhouse http:\/\/\S+: refused the data of table public\.ta, column d: public\.ta\.d: infinity is outside ClickHouse's date range/,
    );
  },
});

describeRefusal({
  destination: 'postgres',
  columns: 'n int',
  rows: '(1, 1), (2, 2), (3, 3)',
  // A constraint the operator added to the destination table, which the source does not have.
  destinationSetup: (f) => f.destinationSql('ALTER TABLE replica.ta ADD CONSTRAINT positive CHECK (n > 0)'),
  refused: '-1',
  fix: 'n = 5',
  expect: (error) => {
    assert.equal(error.valueClass, 'check_violation (positive)');
    assert.match(
      error.reason,
      /^destination postgres \S+: refused the data of table public\.ta: new row for relation "ta" violates check constraint "positive"/,
    );
  },
});

describeRefusal({
  name: 'refused_ch_constraint',
  destination: 'clickhouse',
  columns: 'n int',
  rows: '(1, 1), (2, 2), (3, 3)',
  // Refused by ClickHouse itself (VIOLATED_CONSTRAINT, code 469), not by walflow's own checks.
  destinationSetup: async (f) => {
    const ch = createClient({ url: requireEnv('CLICKHOUSE_URL') });
    await ch.command({ query: `ALTER TABLE \`${f.target.name}\`.ta ADD CONSTRAINT positive CHECK n > 0` });
    await ch.close();
  },
  refused: '-1',
  fix: 'n = 5',
  expect: (error) => {
    assert.equal(error.valueClass, 'violated_constraint');
    assert.match(
      error.reason,
      /^destination clickhouse \S+: refused the data of table public\.ta: Constraint `positive` for table \S+\.ta \(.*\) is violated at row 1\. Expression: \(n > 0\)\. Column values: n = -1\.$/,
    );
  },
});

describeRefusal({
  destination: 'duckdb',
  columns: 'amount numeric(10,2)',
  rows: '(1, 1.5), (2, 2.5), (3, NULL)',
  // DuckDB's DECIMAL has no NaN: walflow refuses rather than let it become something else.
  refused: `'NaN'`,
  fix: 'amount = 4.25',
  expect: (error) => {
    assert.deepEqual([error.column, error.valueClass, error.key], ['amount', 'NaN', 'id=10']);
    assert.match(
      error.reason,
      /^destination duckdb: refused the data of table public\.ta, column amount: public\.ta\.amount: NaN cannot be stored in DECIMAL\(10,2\)/,
    );
  },
});

// A refused backfill: the range copy fails once, non-retryable, with the table in its details; the
// pipeline marks that table errored and finishes the others' backfill, then streams them.
describe('a backfill range ClickHouse refuses', () => {
  const f = new PipelineFixture({
    name: 'refused_backfill',
    destination: 'clickhouse',
    tables: ['ta', 'tb'],
    setup: `CREATE TABLE ta (id int PRIMARY KEY, d date);
      CREATE TABLE tb (id int PRIMARY KEY, v text);
      INSERT INTO ta VALUES (1, '2024-01-01'), (2, 'infinity');
      INSERT INTO tb SELECT g, 'v' || g FROM generate_series(1, 3) g;`,
  });
  after(() => f.teardown());

  test(
    'stops only that table (errored, its copy not retried); the other is copied and streams; a retry after the ' +
      'fix restores it',
    async () => {
      await f.setup();
      await f.start();
      const failure = await f.waitFor(
        'the refused range copy to fail',
        async () => {
          for (const e of await copyEvents(f)) {
            const failed = e.activityTaskFailedEventAttributes?.failure;
            if (failed?.applicationFailureInfo?.type === 'DataRefused') return { failed };
          }
          return undefined;
        },
        60_000,
      );
      const info = failure.failed.applicationFailureInfo!;
      assert.equal(info.nonRetryable, true);
      const details = (info.details?.payloads ?? []).map((p) =>
        defaultPayloadConverter.fromPayload<DataRefusedDetails>(p),
      );
      assert.equal(details.length, 1);
      const [d] = details;
      assert.deepEqual([d!.table, d!.column, d!.valueClass], ['ta', 'd', 'infinity']);
      assert.match(
        d!.reason,
        /^destination clickhouse \S+: refused the data of table public\.ta, column d: public\.ta\.d: infinity is outside ClickHouse's date range/,
      );
      assert.equal(failure.failed.message, d!.reason);

      const status = await f.waitFor(
        'ta errored, tb streaming',
        async () => {
          const s = await f.status();
          return s.tables.ta?.state === 'errored' && s.tables.tb?.state === 'streaming' && s.phase === 'streaming' && s;
        },
        60_000,
      );
      const error = status.tables.ta!.error!;
      assert.equal(error.column, 'd');
      assert.equal(error.valueClass, 'infinity');
      assert.match(error.fix, new RegExp(`then walflow tables retry ${f.config.id} ta$`));
      assert.match(status.lastError ?? '', /table ta stopped at LSN .*refused the data of table public\.ta/);
      await f.sql(`INSERT INTO tb VALUES (4, 'streamed'); UPDATE ta SET id = id WHERE id = 1`);
      await f.waitForConvergence(60_000, ['tb']);
      // Not copied again and again: seconds later still the one copy of ta's range, the one refused.
      await new Promise((r) => setTimeout(r, 5_000));
      const copies = (await copyEvents(f)).filter(
        (e) =>
          e.activityTaskScheduledEventAttributes?.activityType?.name === 'copyRange' &&
          e.activityTaskScheduledEventAttributes.input?.payloads?.some(
            (p) => defaultPayloadConverter.fromPayload<{ range?: { table?: string } }>(p).range?.table === 'ta',
          ),
      );
      assert.equal(copies.length, 1, 'the refused table is held, not re-copied');
      assert.equal((await f.status()).tables.ta!.state, 'errored');

      // The way out: fix the row in the source, retry the table with the CLI (not spawnSync: the worker runs here).
      await f.sql(`UPDATE ta SET d = '2024-06-01' WHERE id = 2`);
      await assert.rejects(
        walflow('tables', 'retry', f.config.id, 'tb', '--config', f.configFile),
        /not errored in pipeline .*: tb/,
      );
      const { stdout } = await walflow('tables', 'retry', f.config.id, 'ta', '--config', f.configFile);
      assert.match(stdout, /retrying table\(s\) ta of /);
      await f.waitFor('ta to stream again', async () => (await f.status()).tables.ta?.state === 'streaming', 120_000);
      await f.waitForConvergence(120_000);
    },
  );
});

describe('onUnrepresentable in ClickHouse: null, clamp and text per table', () => {
  const f = new PipelineFixture({
    name: 'unrepresentable',
    destination: 'clickhouse',
    tables: ['tn', 'tc', 'tt'],
    destinationOverride: {
      onUnrepresentable: { default: 'fail', tables: { tn: 'null', 'public.tc': 'clamp', tt: 'text' } },
    },
    // NaN is the one numeric(p,s) value a Decimal cannot hold (Postgres refuses ±Infinity there); none is near it.
    setup: ['tn', 'tc', 'tt']
      .map(
        (t) => `CREATE TABLE ${t} (id int PRIMARY KEY, d date, at timestamptz, n numeric(6,2), dd date[] NOT NULL);
        INSERT INTO ${t} VALUES (1, '2024-02-29', '2024-02-29 12:00:00+00', 1.5, '{2024-01-01}'),
          (2, 'infinity', '-infinity', ${t === 'tc' ? 2.5 : "'NaN'"}, '{infinity,NULL}'),
          (3, '0044-03-15 BC', '2400-01-01 00:00:00+00', -3, '{1800-01-01}');`,
      )
      .join('\n'),
  });
  after(() => f.teardown());

  test('backfilled and streamed values: NULL where none fits, the nearest one, or the exact text', async () => {
    await f.setup();
    await f.start();
    await f.sql(
      ['tn', 'tc', 'tt']
        .map((t) => `INSERT INTO ${t} VALUES (4, '-infinity', 'infinity', -1.25, '{2300-06-01}')`)
        .join('; '),
    );
    // text: the table holds every value exactly, as verify sees it.
    await f.waitForConvergence(120_000, ['tt']);
    const ch = createClient({ url: requireEnv('CLICKHOUSE_URL') });
    const read = async (t: string) => {
      const rs = await ch.query({
        query: `SELECT id, d, at, n, dd FROM ${f.target.name}.${t}_live ORDER BY id`,
        format: 'JSONEachRow',
        clickhouse_settings: { output_format_json_quote_decimals: 1 },
      });
      return (await rs.json<Record<string, unknown>>()).map((r) => [r.id, r.d, r.at, r.n, r.dd]);
    };
    await f.waitFor(
      'tn and tc to hold 4 rows',
      async () => (await read('tn')).length === 4 && (await read('tc')).length === 4,
    );
    assert.deepEqual(await read('tn'), [
      [1, '2024-02-29', '2024-02-29 12:00:00.000000', '1.50', ['2024-01-01']],
      [2, null, null, null, [null, null]],
      [3, null, null, '-3.00', [null]],
      [4, null, null, '-1.25', [null]],
    ]);
    assert.deepEqual(await read('tc'), [
      [1, '2024-02-29', '2024-02-29 12:00:00.000000', '1.50', ['2024-01-01']],
      [2, '2299-12-31', '1900-01-01 00:00:00.000000', '2.50', ['2299-12-31', null]],
      [3, '1900-01-01', '2299-12-31 23:59:59.999999', '-3.00', ['1900-01-01']],
      [4, '1900-01-01', '2299-12-31 23:59:59.999999', '-1.25', ['2299-12-31']],
    ]);
    const types = await ch.query({
      query: `SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'tt' AND name IN ('d', 'n')`,
      query_params: { db: f.target.name },
      format: 'JSONEachRow',
    });
    assert.deepEqual(await types.json(), [
      { name: 'd', type: 'Nullable(String)' },
      { name: 'n', type: 'Nullable(String)' },
    ]);
    await ch.close();

    // clamp has no nearest value for NaN: that table stops, loudly; the others keep streaming.
    await f.sql(
      `INSERT INTO tc VALUES (5, NULL, NULL, 'NaN', '{}'); INSERT INTO tt VALUES (5, NULL, NULL, 'NaN', '{}')`,
    );
    const status = await f.waitFor('tc errored', async () => {
      const s = await f.status();
      return s.tables.tc?.state === 'errored' && s;
    });
    assert.match(
      status.tables.tc!.error!.reason,
      /NaN cannot be stored in Decimal\(6, 2\) \(onUnrepresentable: clamp cannot apply/,
    );
    await f.waitForConvergence(60_000, ['tt']);
    assert.equal((await f.status()).tables.tn?.state, 'streaming');
  });
});
