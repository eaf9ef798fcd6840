/**
 * The COPY text → ClickHouse TabSeparated conversion of the backfill fast path (pure; end to end in
 * clickhouse.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ColumnSchema, TableSchema } from '../lib/model.ts';
import { acceptsCopyText, copyTextToTsv } from '../activities/destinations/clickhouse-tsv.ts';

const col = (name: string, kind: ColumnSchema['kind'], extra: Partial<ColumnSchema> = {}): ColumnSchema => ({
  name,
  type: kind,
  typeOid: 0,
  kind,
  arrayDims: 0,
  nullable: true,
  ...extra,
});
const table = (columns: ColumnSchema[]): TableSchema => ({
  schema: 'public',
  name: 't',
  columns,
  key: [columns[0]!.name],
  replicaIdentity: 'default',
});
const decimal = (c: ColumnSchema) =>
  c.precision !== undefined ? `Decimal(${c.precision}, ${c.scale ?? 0})` : 'String';

test(
  'columns ClickHouse reads as Postgres writes them pass through, escapes and NULLs included, with version and ' +
    'deleted appended',
  () => {
    const convert = copyTextToTsv(
      table([col('id', 'bigint'), col('t', 'text'), col('f', 'float'), col('b', 'bool')]),
      decimal,
    );
    const copy = '1\ta\\tb\\\\c\\nd\tInfinity\tt\n2\t\\N\t-0\tf\n';
    assert.equal(convert(copy, 42n), '1\ta\\tb\\\\c\\nd\tInfinity\tt\t42\t0\n2\t\\N\t-0\tf\t42\t0\n');
  },
);

test('bytea becomes hex, timestamptz loses its +00, dates are range-checked, NaN is refused for a Decimal', () => {
  const t = table([
    col('id', 'int'),
    col('bin', 'bytes'),
    col('at', 'timestamptz'),
    col('d', 'date'),
    col('n', 'decimal', { precision: 10, scale: 2 }),
  ]);
  const convert = copyTextToTsv(t, decimal);
  assert.equal(
    convert('7\t\\\\x00ff\t2024-02-29 10:00:00.5+00\t2299-12-31\t1.50\n', 9n),
    '7\t00ff\t2024-02-29 10:00:00.5\t2299-12-31\t1.50\t9\t0\n',
  );
  assert.equal(convert('8\t\\N\t\\N\t\\N\t\\N\n', 9n), '8\t\\N\t\\N\t\\N\t\\N\t9\t0\n');
  assert.throws(
    () => convert('9\t\\N\t\\N\tinfinity\t\\N\n', 9n),
    /public\.t\.d: infinity is outside ClickHouse's date range/,
  );
  assert.throws(
    () => convert('9\t\\N\t1899-12-31 23:00:00+00\t\\N\t\\N\n', 9n),
    /public\.t\.at: 1899-12-31 23:00:00\+00 is outside/,
  );
  assert.throws(() => convert('9\t\\N\t\\N\t\\N\tNaN\n', 9n), /public\.t\.n: NaN cannot be stored in Decimal\(10, 2\)/);
});

test('unconstrained numeric (a String column) keeps NaN; tables with arrays keep the row path', () => {
  const convert = copyTextToTsv(table([col('id', 'int'), col('n', 'decimal')]), decimal);
  assert.equal(convert('1\tNaN\n', 1n), '1\tNaN\t1\t0\n');
  assert.equal(acceptsCopyText(table([col('id', 'int'), col('a', 'int', { arrayDims: 1, nullable: false })])), false);
  assert.equal(acceptsCopyText(table([col('id', 'int'), col('a', 'text')])), true);
});

test('onUnrepresentable: null writes NULL where the column is Nullable, clamp the nearest value, text the text', () => {
  const columns = [
    col('id', 'bigint'),
    col('d', 'date'),
    col('at', 'timestamptz'),
    col('n', 'decimal', { precision: 6, scale: 2 }),
  ];
  const copy = '1\tinfinity\t-infinity\tNaN\n2\t0044-03-15 BC\t2400-01-01 00:00:00+00\t-1.50\n';
  assert.equal(
    copyTextToTsv(table(columns), decimal, 'null')(copy, 7n),
    '1\t\\N\t\\N\t\\N\t7\t0\n2\t\\N\t\\N\t-1.50\t7\t0\n',
  );
  assert.equal(
    copyTextToTsv(table(columns), decimal, 'clamp')(copy.replace('NaN', '1.00'), 7n),
    '1\t2299-12-31\t1900-01-01 00:00:00\t1.00\t7\t0\n' + '2\t1900-01-01\t2299-12-31 23:59:59.999999\t-1.50\t7\t0\n',
  );
  assert.equal(copyTextToTsv(table(columns), decimal, 'text')(copy, 7n), copy.replaceAll('\n', '\t7\t0\n'));
  // Without a nearest value (NaN), or a NULL the column cannot hold (NOT NULL), the value is still refused.
  assert.throws(
    () => copyTextToTsv(table(columns), decimal, 'clamp')('3\t\\N\t\\N\tNaN\n', 7n),
    /public\.t\.n: NaN cannot be stored in Decimal\(6, 2\) \(onUnrepresentable: clamp cannot apply/,
  );
  const notNull = table([col('id', 'bigint'), col('d', 'date', { nullable: false })]);
  assert.throws(
    () => copyTextToTsv(notNull, decimal, 'null')('3\tinfinity\n', 7n),
    /infinity is outside ClickHouse's date range .*\(onUnrepresentable: null cannot apply, the ClickHouse column is not Nullable/,
  );
});
