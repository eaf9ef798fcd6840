/**
 * ClickHouse: one ReplacingMergeTree per source table, versioned by walflow's
 * row version and collapsing deletes through its deleted flag, so retries and
 * reordering converge on the newest image per key. Rows go in as JSONEachRow; backfill ranges of tables
 * without arrays go in as TabSeparated made from the COPY text itself (clickhouse-tsv.ts).
 * A `<table>_live` view reads FINAL and hides deleted rows.
 */
import { Readable } from 'node:stream';
import { ClickHouseError, createClient, type ClickHouseClient } from '@clickhouse/client';
import type { Version } from '../../lib/lsn.ts';
import {
  tableKey,
  type Change,
  type ColumnSchema,
  type Row,
  type RowChange,
  type SchemaChange,
  type TableId,
  type TableSchema,
  type Value,
} from '../../lib/model.ts';
import { toPgText } from '../../lib/pgtext.ts';
import { parseColumnText } from '../../lib/pgvalues.ts';
import { columnsLacking, type Destination } from './destination.ts';
import {
  applyVersioned,
  DELETED_COLUMN,
  liveViewName,
  PreparedTables,
  SYNCED_AT_COLUMN,
  targetName,
  VERSION_COLUMN,
  WATERMARKS_TABLE as WATERMARKS,
} from './versioned.ts';
import { unrepresentableFor, type ClickHouseConfig, type Unrepresentable } from '../../lib/config.ts';
import {
  checkDateRange,
  ClickHouseValueError,
  decimalOutOfRange,
  mayNotFit,
  outOfRangeOf,
  unrepresentable,
  type OutOfRange,
  type ValueAt,
} from './clickhouse-values.ts';
import { describeKey, refusing, type Refusal } from './refused.ts';
import { acceptsCopyText, copyTextToTsv } from './clickhouse-tsv.ts';

export interface ClickHouseOptions {
  url: string;
  database: string;
  username?: string;
  password?: string;
  /** Create `<table>_live` views (FINAL, deleted rows hidden). */
  views: boolean;
  onUnrepresentable?: ClickHouseConfig['onUnrepresentable'];
}

/** Identifiers go through ClickHouse's own `{name:Identifier}` parameters wherever SQL allows them. */
const id = (name: string) => `\`${name.replace(/\\/g, '\\\\').replace(/`/g, '\\`')}\``;

const SCALAR: Record<ColumnSchema['kind'], (c: ColumnSchema) => string> = {
  int: (c) => (c.typeOid === 21 ? 'Int16' : c.typeOid === 23 ? 'Int32' : 'Int64'),
  bigint: () => 'Int64',
  float: (c) => (c.typeOid === 700 ? 'Float32' : 'Float64'),
  // Declared numeric(p,s) is exact in Decimal; unconstrained numeric (any precision, NaN) stays exact as text.
  decimal: (c) =>
    c.precision !== undefined && c.precision <= 76 ? `Decimal(${c.precision}, ${c.scale ?? 0})` : 'String',
  bool: () => 'Bool',
  bytes: () => 'String',
  json: () => 'String',
  text: (c) => (c.enumLabels ? 'LowCardinality(String)' : 'String'),
  date: () => 'Date32',
  time: () => 'String',
  timestamp: () => "DateTime64(6, 'UTC')",
  timestamptz: () => "DateTime64(6, 'UTC')",
  interval: () => 'String',
  uuid: () => 'UUID',
};

/**
 * ClickHouse type for a source column: Nullable only where the source column is. `asText`: the column
 * holds its Postgres text (`onUnrepresentable: text`).
 */
export function clickhouseType(c: ColumnSchema, key: boolean, asText = false): string {
  const scalar = SCALAR[c.kind](c);
  const nullable = (t: string) =>
    t === 'LowCardinality(String)' ? 'LowCardinality(Nullable(String))' : `Nullable(${t})`;
  if (arrayAsText(c)) return 'Nullable(String)';
  if (asText) return c.nullable && !key ? 'Nullable(String)' : 'String';
  if (c.arrayDims > 0) return `${'Array('.repeat(c.arrayDims)}${nullable(scalar)}${')'.repeat(c.arrayDims)}`;
  return c.nullable && !key ? nullable(scalar) : scalar;
}

/**
 * ClickHouse arrays cannot be NULL. A nullable array column is therefore kept as its Postgres
 * array text in a Nullable(String) (exact, NULL kept); a NOT NULL one becomes Array(Nullable(T)),
 * nested once per dimension the column declares (int[][] is Array(Array(Nullable(Int32)))).
 */
function arrayAsText(c: ColumnSchema): boolean {
  return c.arrayDims > 0 && c.nullable;
}

/**
 * A canonical value as ClickHouse's JSONEachRow input reads it for the column; one it cannot hold as
 * `how` says (its `nullable` is the ClickHouse column's).
 */
function toClickHouse(c: ColumnSchema, v: Value, at: ValueAt, how: OutOfRange): unknown {
  if (v === null) return null;
  if (arrayAsText(c) || (how.policy === 'text' && mayNotFit(c))) return toPgText(v);
  if (Array.isArray(v)) {
    // Postgres does not enforce declared dimensions; a ClickHouse column has exactly its own.
    const dims = arrayDepth(v);
    if (v.length && dims !== c.arrayDims) {
      const error = new ClickHouseValueError(
        at,
        `a ${dims}-dimensional array does not fit ${clickhouseType(c, false)}, made for the ${c.arrayDims} ` +
          `dimension(s) the column declares: ` +
          `declare its dimensions in the source (e.g. ${c.type.replace(/(\[\])+$/, '')}${'[]'.repeat(dims)}) and ` +
          `recreate the ClickHouse table`,
        `${dims}-dimensional array`,
      );
      return unrepresentable(error, how);
    }
    const element = { ...how, nullable: true };
    return mapLeaves(v, (e) => toClickHouse({ ...c, arrayDims: 0, nullable: true }, e, at, element));
  }
  switch (c.kind) {
    case 'bytes':
      return (v as Buffer).toString('hex');
    case 'float':
      if (Object.is(v, -0)) return '-0'; // JSON.stringify(-0) is "0"
      return typeof v === 'number' && !Number.isFinite(v) ? (Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf') : v;
    case 'decimal':
      if (SCALAR.decimal(c) !== 'String' && !/^-?\d/.test(v as string))
        return decimalOutOfRange(v as string, SCALAR.decimal(c), at, how);
      return v;
    case 'date':
    case 'timestamp':
    case 'timestamptz': {
      return checkDateRange((v as string).replace(/\+00$/, ''), v as string, at, how, c.kind !== 'date');
    }
    default:
      return v;
  }
}

function arrayDepth(v: Value): number {
  let depth = 0;
  for (let x: Value | undefined = v; Array.isArray(x); x = x[0]) depth++;
  return depth;
}

const mapLeaves = (v: Value[], f: (leaf: Value) => unknown): unknown[] =>
  v.map((e) => (Array.isArray(e) ? mapLeaves(e, f) : f(e)));

/** A value read back (JSONEachRow output with quoted 64-bit ints and decimals) as the canonical value. */
function fromClickHouse(c: ColumnSchema, v: unknown, asText: boolean): Value {
  if (v === null || v === undefined) return null;
  if (arrayAsText(c) || asText) return parseColumnText(c, v as string);
  if (Array.isArray(v)) return v.map((e) => fromClickHouse({ ...c, arrayDims: 0, nullable: true }, e, false));
  switch (c.kind) {
    case 'bytes':
      return Buffer.from(v as string, 'hex');
    case 'float':
      return typeof v === 'string'
        ? Number(v.replace(/^(-?)inf$/, '$1Infinity').replace(/^nan$/, 'NaN'))
        : (v as number);
    case 'int':
      return Number(v);
    case 'bigint':
    case 'decimal':
      return String(v);
    case 'timestamp':
    case 'timestamptz':
    case 'date': {
      // Postgres prints no trailing fractional zeros, and no fraction when it is zero.
      const text = (v as string).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
      return c.kind === 'timestamptz' ? `${text}+00` : text;
    }
    default:
      return v as Value;
  }
}

/**
 * ClickHouse's errors about the data it was sent (by their type, as the client parses it from `Code: N.
 * DB::Exception: … (TYPE)`), each with its code: a value it cannot parse or hold, a constraint. Anything
 * else (network, memory, too many parts, a server restarting) is no refusal and is retried.
 */
export const CLICKHOUSE_DATA_ERRORS: Record<string, number> = {
  CANNOT_PARSE_TEXT: 6,
  CANNOT_PARSE_ESCAPE_SEQUENCE: 25,
  CANNOT_PARSE_QUOTED_STRING: 26,
  CANNOT_PARSE_INPUT_ASSERTION_FAILED: 27,
  CANNOT_PARSE_DATE: 38,
  CANNOT_PARSE_DATETIME: 41,
  TYPE_MISMATCH: 53,
  ARGUMENT_OUT_OF_BOUND: 69,
  CANNOT_CONVERT_TYPE: 70,
  CANNOT_PARSE_NUMBER: 72,
  INCORRECT_DATA: 117,
  CANNOT_READ_ARRAY_FROM_TEXT: 130,
  TOO_LARGE_STRING_SIZE: 131,
  SIZES_OF_ARRAYS_DOESNT_MATCH: 190,
  VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE: 321,
  CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN: 349,
  CANNOT_PARSE_UUID: 376,
  DECIMAL_OVERFLOW: 407,
  CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING: 441,
  VIOLATED_CONSTRAINT: 469,
};
const DATA_ERROR_CODES = new Set(Object.values(CLICKHOUSE_DATA_ERRORS).map(String));

/** A refusal of the data: walflow's own check of a value (ClickHouseValueError) or one of ClickHouse's data errors. */
export function clickhouseRefusal(e: unknown): Refusal | undefined {
  if (e instanceof ClickHouseValueError)
    return { column: e.at.column, valueClass: e.valueClass, ...(e.key ? { key: e.key } : {}) };
  if (!(e instanceof ClickHouseError) || !((e.type ?? '') in CLICKHOUSE_DATA_ERRORS || DATA_ERROR_CODES.has(e.code)))
    return undefined;
  // JSONEachRow says "(while reading the value of key d)", TabSeparated "Column 2, name: d, type: Date32".
  const column =
    /while reading the value of key ([^)\s]+)\)/.exec(e.message)?.[1] ?? /\bname: ([^,]+), type:/.exec(e.message)?.[1];
  return { ...(column ? { column } : {}), valueClass: e.type?.toLowerCase() ?? `ClickHouse error ${e.code}` };
}

export class ClickHouseDestination implements Destination {
  private readonly client: ClickHouseClient;
  private readonly tables = new PreparedTables();
  private watermarks?: Map<string, bigint>;
  /** COPY text → TabSeparated converters per table, built once (see clickhouse-tsv.ts). */
  private readonly tsv = new Map<string, (text: string, version: Version) => string>();

  constructor(private readonly opts: ClickHouseOptions) {
    this.client = createClient({
      url: opts.url,
      username: opts.username,
      password: opts.password,
      clickhouse_settings: {
        output_format_json_quote_64bit_integers: 1,
        output_format_json_quote_decimals: 1,
        output_format_decimal_trailing_zeros: 1,
        output_format_json_quote_denormals: 1,
      },
    });
  }

  private target(t: TableId): string {
    return `${id(this.opts.database)}.${id(targetName(t))}`;
  }

  private policy(t: TableId): Unrepresentable {
    return unrepresentableFor(this.opts.onUnrepresentable ?? 'fail', tableKey(t));
  }

  /** The column holds its Postgres text (`onUnrepresentable: text`). */
  private asText(t: TableId, c: ColumnSchema): boolean {
    return this.policy(t) === 'text' && mayNotFit(c);
  }

  private async loadWatermarks(): Promise<Map<string, bigint>> {
    if (!this.watermarks) {
      const rs = await this.client.query({
        query: `SELECT table, max(version) AS v FROM ${id(this.opts.database)}.${id(WATERMARKS)} GROUP BY table`,
        format: 'JSONEachRow',
      });
      this.watermarks = new Map((await rs.json<{ table: string; v: string }>()).map((r) => [r.table, BigInt(r.v)]));
    }
    return this.watermarks;
  }

  async prepare(tables: TableSchema[]): Promise<void> {
    await this.client.command({ query: `CREATE DATABASE IF NOT EXISTS ${id(this.opts.database)}` });
    await this.client.command({
      query: `CREATE TABLE IF NOT EXISTS ${id(this.opts.database)}.${id(WATERMARKS)}
      (table String, version UInt128) ENGINE = ReplacingMergeTree(version) ORDER BY table`,
    });
    for (const t of tables) {
      const cols = t.columns.map(
        (c) => `${id(c.name)} ${clickhouseType(c, t.key.includes(c.name), this.asText(t, c))}`,
      );
      await this.client.command({
        query: `CREATE TABLE IF NOT EXISTS ${this.target(t)} (${cols.join(', ')},
        ${id(VERSION_COLUMN)} UInt128, ${id(DELETED_COLUMN)} UInt8 DEFAULT 0,
        ${id(SYNCED_AT_COLUMN)} DateTime64(6, 'UTC') DEFAULT now64(6))
        ENGINE = ReplacingMergeTree(${id(VERSION_COLUMN)}, ${id(DELETED_COLUMN)}) ORDER BY
          (${t.key.map(id).join(', ')})`,
      });
      for (const c of t.columns) {
        await this.client.command({
          query:
            `ALTER TABLE ${this.target(t)} ADD COLUMN IF NOT EXISTS ${id(c.name)} ` +
            clickhouseType(c, false, this.asText(t, c)),
        });
      }
      if (this.opts.views) {
        await this.client.command({
          query: `CREATE OR REPLACE VIEW ${id(this.opts.database)}.${id(liveViewName(t))} AS
          SELECT ${t.columns.map((c) => id(c.name)).join(', ')} FROM ${this.target(t)} FINAL
            WHERE ${id(DELETED_COLUMN)} = 0`,
        });
      }
      this.tables.add(t);
    }
    await this.loadWatermarks();
  }

  async apply(changes: Change[]): Promise<void> {
    await applyVersioned(
      changes,
      {
        rows: (rows) => this.insert(rows),
        schema: (change) => this.evolve(change),
        truncate: (change) => this.truncate(change.table, change.version),
      },
      clickhouseRefusal,
    );
  }

  /**
   * Integer and float widths, and Decimal precision/scale, change in place; key columns never (they order the table).
   */
  canRetype(from: ColumnSchema, to: ColumnSchema, key: boolean): boolean {
    const [a, b] = [clickhouseType(from, false), clickhouseType(to, false)];
    if (a === b) return true;
    if (key || from.arrayDims || to.arrayDims) return false;
    const family = (t: string) => /^Nullable\((Int|Float|Decimal)/.exec(t)?.[1] ?? /^(Int|Float|Decimal)/.exec(t)?.[1];
    return family(a) !== undefined && family(a) === family(b);
  }

  canRename(_column: ColumnSchema, key: boolean): boolean {
    return !key; // ClickHouse cannot rename a sorting-key column
  }

  async missingColumns(t: TableSchema): Promise<string[]> {
    const rs = await this.client.query({
      query: 'SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}',
      query_params: { db: this.opts.database, t: targetName(t) },
      format: 'JSONEachRow',
    });
    return columnsLacking(
      t,
      (await rs.json<{ name: string }>()).map((r) => r.name),
    );
  }

  private async evolve(change: SchemaChange): Promise<void> {
    const target = this.target(change.table);
    for (const r of change.renamed ?? []) {
      await this.client.command({
        query: `ALTER TABLE ${target} RENAME COLUMN IF EXISTS ${id(r.from)} TO ${id(r.to)}`,
      });
    }
    for (const r of change.retyped ?? []) {
      const [from, to] = [this.asText(change.table, r.from), this.asText(change.table, r.to)];
      if (clickhouseType(r.from, false, from) === clickhouseType(r.to, false, to)) continue;
      await this.client.command({
        query: `ALTER TABLE ${target} MODIFY COLUMN ${id(r.to.name)} ${clickhouseType(r.to, false, to)}`,
        clickhouse_settings: { mutations_sync: '1' },
      });
    }
    await this.prepare([change.schema]);
  }

  async dropTable(table: TableId): Promise<void> {
    await this.client.command({ query: `DROP VIEW IF EXISTS ${id(this.opts.database)}.${id(liveViewName(table))}` });
    await this.client.command({ query: `DROP TABLE IF EXISTS ${this.target(table)}` });
    this.tables.delete(table);
  }

  private async insert(changes: RowChange[]): Promise<void> {
    const schema = this.tables.get(changes[0]!.table);
    const floor = (await this.loadWatermarks()).get(tableKey(schema)) ?? -1n;
    const policy = this.policy(schema);
    // Per column once, not per value: where a refusal points, and what the table's policy makes of it.
    const columns = schema.columns.map((c) => ({
      c,
      at: { table: tableKey(schema), column: c.name },
      how: outOfRangeOf(schema, c, policy),
    }));
    const rows: Record<string, unknown>[] = [];
    const add = (row: Row, version: Version, deleted: boolean) => {
      if (version < floor) return; // older than a truncate that already happened
      const out: Record<string, unknown> = { [VERSION_COLUMN]: version.toString(), [DELETED_COLUMN]: deleted ? 1 : 0 };
      try {
        for (const { c, at, how } of columns) {
          if (deleted && !schema.key.includes(c.name)) continue;
          if (!(c.name in row)) continue;
          out[c.name] = toClickHouse(c, row[c.name]!, at, how);
        }
      } catch (e) {
        if (e instanceof ClickHouseValueError) e.key = describeKey(schema, row); // which row, for the operator
        throw e;
      }
      rows.push(out);
    };
    for (const c of changes) {
      if (c.kind === 'delete') add(c.old, c.version, true);
      else {
        // A key change moves the row: the old key becomes a tombstone at the same version.
        if (
          c.kind === 'update' &&
          c.old &&
          schema.key.some((k) => JSON.stringify(c.old![k]) !== JSON.stringify(c.row[k]))
        )
          add(c.old, c.version, true);
        add(c.row, c.version, false);
      }
    }
    if (rows.length) await this.client.insert({ table: this.target(schema), values: rows, format: 'JSONEachRow' });
  }

  acceptsCopyText(table: TableSchema): boolean {
    return acceptsCopyText(table);
  }

  async applyCopyText(table: TableSchema, version: Version, text: Buffer): Promise<void> {
    this.tables.get(table); // refuses a table that was not prepared
    // a truncate came after the snapshot
    if (version < ((await this.loadWatermarks()).get(tableKey(table)) ?? -1n)) return;
    let convert = this.tsv.get(tableKey(table));
    if (!convert) this.tsv.set(tableKey(table), (convert = copyTextToTsv(table, SCALAR.decimal, this.policy(table))));
    await refusing(table, clickhouseRefusal, () =>
      this.client.insert({
        table: this.target(table),
        format: 'TabSeparated',
        values: Readable.from([convert(text.toString('utf8'), version)], { objectMode: false }),
        columns: [
          id(table.columns[0]!.name),
          ...table.columns.slice(1).map((c) => id(c.name)),
          id(VERSION_COLUMN),
          id(DELETED_COLUMN),
        ],
      }),
    );
  }

  private async truncate(table: TableId, version: Version): Promise<void> {
    const key = tableKey(table);
    await this.client.insert({
      table: `${id(this.opts.database)}.${id(WATERMARKS)}`,
      values: [{ table: key, version: version.toString() }],
      format: 'JSONEachRow',
    });
    const marks = await this.loadWatermarks();
    if ((marks.get(key) ?? -1n) < version) marks.set(key, version);
    await this.client.command({
      query: `ALTER TABLE ${this.target(table)} DELETE WHERE ${id(VERSION_COLUMN)} < {v:UInt128}`,
      query_params: { v: version.toString() },
      clickhouse_settings: { mutations_sync: '1' },
    });
  }

  async removeStale(table: TableSchema, before: Version): Promise<void> {
    // Tombstones at the resync's version for every live row the fresh copy did not rewrite.
    const keys = table.key.map(id).join(', ');
    await this.client.command({
      query: `INSERT INTO ${this.target(table)} (${keys}, ${id(VERSION_COLUMN)}, ${id(DELETED_COLUMN)})
        SELECT ${keys}, {v:UInt128}, 1 FROM ${this.target(table)} FINAL WHERE ${id(VERSION_COLUMN)} < {v:UInt128}
          AND ${id(DELETED_COLUMN)} = 0`,
      query_params: { v: before.toString() },
    });
  }

  async *readLive(table: TableSchema): AsyncIterable<Row> {
    const asText = table.columns.map((c) => this.asText(table, c));
    const rs = await this.client.query({
      query:
        `SELECT ${table.columns.map((c) => id(c.name)).join(', ')} FROM ${this.target(table)} FINAL ` +
        `WHERE ${id(DELETED_COLUMN)} = 0`,
      format: 'JSONEachRow',
    });
    for await (const rows of rs.stream<Record<string, unknown>>()) {
      for (const r of rows) {
        const obj = r.json<Record<string, unknown>>();
        const row: Row = {};
        table.columns.forEach((c, i) => {
          row[c.name] = fromClickHouse(c, obj[c.name], asText[i]!);
        });
        yield row;
      }
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
