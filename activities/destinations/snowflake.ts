/**
 * Snowflake through the official snowflake-sdk. Per source table, a target table (walflow's version /
 * deleted / synced-at columns beside the source's) and a staging table of text columns. A batch is
 * staged with one array-bound INSERT (the driver moves large ones through a temporary stage, PUT +
 * COPY, on its own), then one MERGE applies each key's newest change only where its version is newer
 * than the target's: upserts, soft deletes, and retries that change nothing. Truncations leave a
 * watermark that keeps older, late rows out.
 */
import { randomUUID } from 'node:crypto';
import snowflake from 'snowflake-sdk';
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
import { columnsLacking, type Destination } from './destination.ts';
import { snowflakeName } from './names.ts';
import { newestPerKey } from './newest.ts';
import { applyVersioned, PreparedTables, storedValues, targetName } from './versioned.ts';
import { isDataSqlState, type Refusal } from './refused.ts';
import { parseColumnText } from '../../lib/pgvalues.ts';
import { numberText } from '../../lib/pgtext.ts';

snowflake.configure({ logLevel: 'ERROR' });

export const VERSION_COLUMN = '_WALFLOW_VERSION';
export const DELETED_COLUMN = '_WALFLOW_DELETED';
export const SYNCED_AT_COLUMN = '_WALFLOW_SYNCED_AT';
const BATCH_COLUMN = '_WALFLOW_BATCH';
const WATERMARKS = '_WALFLOW_TRUNCATIONS';
/**
 * Versions are 96-bit (lib/lsn.ts). NUMBER(30,0) holds them; NUMBER(38,0) would too on Snowflake, but
 * the emulator stores NUMBER(38,0) as a 64-bit integer.
 */
const VERSION_TYPE = 'NUMBER(30,0)';
/** Rows per staging INSERT (one request; the driver stages big bindings as files). */
const STAGE_ROWS = 5_000;
/** How long a login may take before the activity fails and Temporal retries it (the driver would retry for minutes). */
const CONNECT_TIMEOUT_MS = 30_000;

/** Snowflake's identifier quoting: double quotes, inner quotes doubled (the driver offers no escaping function). */
export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

export { snowflakeName };

/** How a column is stored, and how its staged text becomes that type. */
function columnType(c: ColumnSchema): { type: string; load: (staged: string) => string } {
  const cast = (type: string) => ({ type, load: (s: string) => `CAST(${s} AS ${type})` });
  if (c.arrayDims > 0) return { type: 'VARIANT', load: (s) => `PARSE_JSON(${s})` };
  switch (c.kind) {
    case 'int':
    case 'bigint':
      return cast('NUMBER(38,0)');
    case 'decimal':
      // Only a declared precision fits NUMBER exactly; unconstrained numeric keeps its exact text.
      return c.precision !== undefined && c.precision <= 38
        ? cast(`NUMBER(${c.precision},${c.scale ?? 0})`)
        : { type: 'VARCHAR', load: (s) => s };
    case 'float':
      return cast('FLOAT');
    case 'bool':
      return cast('BOOLEAN');
    case 'bytes':
      return { type: 'BINARY', load: (s) => `TO_BINARY(${s}, 'HEX')` };
    case 'json':
      return { type: 'VARIANT', load: (s) => `PARSE_JSON(${s})` };
    case 'date':
      return cast('DATE');
    case 'time':
      return c.typeOid === 1083 ? cast('TIME(6)') : { type: 'VARCHAR', load: (s) => s }; // timetz has no Snowflake type
    case 'timestamp':
      return cast('TIMESTAMP_NTZ(6)');
    case 'timestamptz':
      return cast('TIMESTAMP_TZ(6)');
    default:
      return { type: 'VARCHAR', load: (s) => s };
  }
}

/** An array element inside the VARIANT: numbers stay numbers (NaN and infinities as text), bytes as hex. */
function jsonElement(v: Value): unknown {
  if (Array.isArray(v)) return v.map(jsonElement);
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (Buffer.isBuffer(v)) return v.toString('hex');
  return v;
}

function fromJsonElement(c: ColumnSchema, e: unknown): Value {
  if (e === null) return null;
  if (Array.isArray(e)) return e.map((x) => fromJsonElement(c, x));
  if (c.kind === 'int' || c.kind === 'float') return Number(e);
  if (c.kind === 'bytes') return Buffer.from(String(e), 'hex');
  if (c.kind === 'bool') return Boolean(e);
  return String(e);
}

/** A value as the staging table's text. */
function stagedText(c: ColumnSchema, v: Value): string | null {
  if (v === null) return null;
  if (c.arrayDims > 0) return JSON.stringify(jsonElement(v));
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number')
    return Number.isNaN(v) ? 'NaN' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : numberText(v);
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (c.kind === 'timestamptz' && typeof v === 'string') return v.replace(/([+-]\d\d)$/, '$1:00'); // "+00" -> "+00:00"
  return v as string;
}

/** SQL reading a column back as Postgres's text form (or a value the driver gives exactly). */
function readSql(c: ColumnSchema, col: string): string {
  if (c.arrayDims > 0 || c.kind === 'json') return `TO_JSON(${col})`;
  switch (columnType(c).type) {
    case 'BINARY':
      return `HEX_ENCODE(${col})`;
    case 'DATE':
      return `TO_VARCHAR(${col}, 'YYYY-MM-DD')`;
    case 'TIME(6)':
      return `TO_VARCHAR(${col}, 'HH24:MI:SS.FF6')`;
    case 'TIMESTAMP_NTZ(6)':
    case 'TIMESTAMP_TZ(6)':
      return `TO_VARCHAR(${col}, 'YYYY-MM-DD HH24:MI:SS.FF6')`;
    default:
      return col;
  }
}

/** Postgres trims trailing fractional zeros of times; the fixed six-digit format does not. */
const trimFraction = (t: string) => t.replace(/\.?0+$/, (m) => (m.startsWith('.') || t.includes('.') ? '' : m));

function readValue(c: ColumnSchema, raw: unknown): Value {
  if (raw === null || raw === undefined) return null;
  if (c.arrayDims > 0) return fromJsonElement(c, JSON.parse(String(raw)));
  const type = columnType(c).type;
  if (c.kind === 'bool') return raw === true || raw === 'true' || raw === '1';
  if (c.kind === 'float') {
    const s = String(raw).toLowerCase();
    return s === 'nan' ? Number.NaN : s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(raw);
  }
  if (type === 'BINARY') return Buffer.from(String(raw), 'hex');
  if (type === 'TIME(6)' || type === 'TIMESTAMP_NTZ(6)') return trimFraction(String(raw));
  // Written in UTC; the emulator's TO_VARCHAR appends the offset even without TZH in the format.
  if (type === 'TIMESTAMP_TZ(6)') return `${trimFraction(String(raw).replace(/\s*[+-]\d\d(:?\d\d)?$/, ''))}+00`;
  return parseColumnText(c, String(raw));
}

export interface SnowflakeDestinationOptions {
  account: string;
  username: string;
  password?: string;
  /** PEM private key for key-pair authentication. */
  privateKey?: string;
  warehouse: string;
  database: string;
  schema: string;
  role?: string;
  host?: string;
  port?: number;
  protocol?: 'http' | 'https';
}

export class SnowflakeDestination implements Destination {
  private connection?: Promise<snowflake.Connection>;
  private readonly tables = new PreparedTables();

  constructor(private readonly opts: SnowflakeDestinationOptions) {}

  private target(t: TableId): string {
    return `${quoteIdent(snowflakeName(this.opts.schema))}.${quoteIdent(this.baseName(t))}`;
  }

  private stage(t: TableId): string {
    return `${quoteIdent(snowflakeName(this.opts.schema))}.${quoteIdent(`_WALFLOW_STAGE_${this.baseName(t)}`)}`;
  }

  private baseName(t: TableId): string {
    return snowflakeName(targetName(t));
  }

  private get watermarkTable(): string {
    return `${quoteIdent(snowflakeName(this.opts.schema))}.${quoteIdent(WATERMARKS)}`;
  }

  private where(): string {
    return `Snowflake account ${this.opts.account} as user ${this.opts.username}`;
  }

  private async connect(): Promise<snowflake.Connection> {
    const o = this.opts;
    const conn = snowflake.createConnection({
      account: o.account,
      username: o.username,
      warehouse: o.warehouse,
      database: o.database,
      role: o.role,
      // host/port/protocol (an emulator, a private link) become the driver's access URL
      ...(o.host ? { accessUrl: `${o.protocol ?? 'https'}://${o.host}${o.port ? `:${o.port}` : ''}` } : {}),
      application: 'walflow',
      representNullAsStringNull: false, // else NULL numbers read with fetchAsString come back as the text "NULL"
      ...(o.privateKey ? { authenticator: 'SNOWFLAKE_JWT', privateKey: o.privateKey } : { password: o.password }),
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve, reject) => conn.connect((e) => (e ? reject(e) : resolve()))),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS / 1000} s`)),
            CONNECT_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (e) {
      conn.destroy(() => undefined);
      throw new Error(
        `cannot log in to ${this.where()}: ${(e as Error).message}. ` +
          'Check destination.account, destination.username and destination.password (or privateKey).',
        { cause: e },
      );
    } finally {
      clearTimeout(timer);
    }
    const wanted = o.warehouse.toUpperCase();
    const warehouses = await this.run<{ name: string }>(
      conn,
      `SHOW WAREHOUSES LIKE '${o.warehouse.replace(/'/g, "''")}'`,
    );
    if (!warehouses.some((w) => w.name.toUpperCase() === wanted)) {
      conn.destroy(() => undefined);
      throw new Error(
        `Snowflake warehouse "${o.warehouse}" does not exist or the role of user ${o.username} cannot use it: ` +
          'set destination.warehouse to a warehouse that SHOW WAREHOUSES lists (or grant USAGE on it).',
      );
    }
    await this.run(conn, `USE WAREHOUSE ${quoteIdent(o.warehouse)}`);
    await this.run(conn, `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(snowflakeName(o.schema))}`);
    await this.run(
      conn,
      `CREATE TABLE IF NOT EXISTS ${this.watermarkTable} (TABLE_NAME VARCHAR NOT NULL, VERSION ${VERSION_TYPE} NOT ` +
        `NULL)`,
    );
    return conn;
  }

  private ready(): Promise<snowflake.Connection> {
    this.connection ??= this.connect().catch((e) => {
      this.connection = undefined;
      throw e;
    });
    return this.connection;
  }

  private run<T = Record<string, unknown>>(
    conn: snowflake.Connection,
    sqlText: string,
    binds?: snowflake.Binds,
  ): Promise<T[]> {
    return new Promise((resolve, reject) => {
      conn.execute({
        sqlText,
        binds,
        fetchAsString: ['Number'],
        complete: (err, _stmt, rows) => (err ? reject(err) : resolve((rows ?? []) as T[])),
      });
    });
  }

  private async exec<T = Record<string, unknown>>(sqlText: string, binds?: snowflake.Binds): Promise<T[]> {
    return this.run<T>(await this.ready(), sqlText, binds);
  }

  async prepare(tables: TableSchema[]): Promise<void> {
    await this.ready(); // also for no tables: login, warehouse and schema are checked here
    for (const t of tables) {
      const cols = t.columns.map(
        (c) => `${quoteIdent(snowflakeName(c.name))} ${columnType(c).type}${t.key.includes(c.name) ? ' NOT NULL' : ''}`,
      );
      await this.exec(`CREATE TABLE IF NOT EXISTS ${this.target(t)} (${cols.join(', ')},
        ${VERSION_COLUMN} ${VERSION_TYPE} NOT NULL, ${DELETED_COLUMN} BOOLEAN NOT NULL, ${SYNCED_AT_COLUMN}
          TIMESTAMP_TZ NOT NULL)`);
      const stageCols = t.columns.map((c) => `${quoteIdent(snowflakeName(c.name))} VARCHAR`);
      await this.exec(`CREATE TRANSIENT TABLE IF NOT EXISTS ${this.stage(t)} (
        ${BATCH_COLUMN} VARCHAR NOT NULL, ${stageCols.join(', ')},
        ${VERSION_COLUMN} VARCHAR NOT NULL, ${DELETED_COLUMN} BOOLEAN NOT NULL)`);
      for (const c of t.columns) {
        const name = quoteIdent(snowflakeName(c.name));
        await this.exec(`ALTER TABLE ${this.target(t)} ADD COLUMN IF NOT EXISTS ${name} ${columnType(c).type}`);
        await this.exec(`ALTER TABLE ${this.stage(t)} ADD COLUMN IF NOT EXISTS ${name} VARCHAR`);
      }
      this.tables.add(t);
    }
  }

  /**
   * One MERGE per table per batch: tables are independent, and within a table the newest version per
   * key wins whatever the order, so row changes only need flushing at that table's truncate or schema
   * change (Snowflake charges every statement a fixed cost; a MERGE per run of rows would multiply it).
   */
  async apply(changes: Change[]): Promise<void> {
    await applyVersioned(
      changes,
      {
        rows: (rows) => this.merge(rows),
        schema: (change) => this.evolve(change),
        truncate: (change) => this.truncate(change.table, change.version),
      },
      snowflakeRefusal,
    );
  }

  /** Snowflake changes a NUMBER's precision in place, never its scale; every other widening maps to the same type. */
  canRetype(from: ColumnSchema, to: ColumnSchema): boolean {
    const [a, b] = [columnType(from).type, columnType(to).type];
    if (a === b) return true;
    const number = (t: string) => /^NUMBER\((\d+),(\d+)\)$/.exec(t);
    const [x, y] = [number(a), number(b)];
    return !!x && !!y && x[2] === y[2] && Number(y[1]) > Number(x[1]);
  }

  canRename(): boolean {
    return true;
  }

  async missingColumns(t: TableSchema): Promise<string[]> {
    return columnsLacking(t, await this.columnNames(t), snowflakeName);
  }

  private async columnNames(t: TableId): Promise<Set<string>> {
    const rows = await this.exec<{ COLUMN_NAME: string }>(
      `SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`,
      [snowflakeName(this.opts.schema), this.baseName(t)],
    );
    return new Set(rows.map((r) => r.COLUMN_NAME));
  }

  private async evolve(change: SchemaChange): Promise<void> {
    await this.ready();
    if (change.renamed?.length) {
      const present = await this.columnNames(change.table);
      for (const r of change.renamed) {
        if (!present.has(snowflakeName(r.from))) continue; // renamed by an earlier attempt of this batch
        for (const t of [this.target(change.table), this.stage(change.table)]) {
          await this.exec(
            `ALTER TABLE ${t} RENAME COLUMN ${quoteIdent(snowflakeName(r.from))} TO ${quoteIdent(snowflakeName(r.to))}`,
          );
        }
      }
    }
    for (const r of change.retyped ?? []) {
      const type = columnType(r.to).type;
      if (columnType(r.from).type === type) continue;
      await this.exec(
        `ALTER TABLE ${this.target(change.table)} ALTER COLUMN ${quoteIdent(snowflakeName(r.to.name))} SET DATA ` +
          `TYPE ${type}`,
      );
    }
    await this.prepare([change.schema]);
  }

  async dropTable(table: TableId): Promise<void> {
    await this.exec(`DROP TABLE IF EXISTS ${this.target(table)}`);
    await this.exec(`DROP TABLE IF EXISTS ${this.stage(table)}`);
    this.tables.delete(table);
  }

  /** Stage the run's newest change per key under a fresh batch id, MERGE it, then clear the batch. */
  private async merge(changes: RowChange[]): Promise<void> {
    const schema = this.tables.get(changes[0]!.table);
    const batch = randomUUID();
    const rows = newestPerKey(schema, changes).map((c) => {
      const stored = storedValues(schema, c);
      return [
        batch,
        ...schema.columns.map((col, i) => stagedText(col, stored[i]!)),
        c.version.toString(),
        c.kind === 'delete',
      ];
    });
    const names = schema.columns.map((c) => quoteIdent(snowflakeName(c.name)));
    const placeholders = ['?', ...names.map(() => '?'), '?', '?'].join(', ');
    for (let i = 0; i < rows.length; i += STAGE_ROWS) {
      await this.exec(
        `INSERT INTO ${this.stage(schema)} (${BATCH_COLUMN}, ${names.join(', ')}, ${VERSION_COLUMN}, ${DELETED_COLUMN})
        VALUES (${placeholders})`,
        rows.slice(i, i + STAGE_ROWS) as snowflake.Binds,
      );
    }
    const source = schema.columns.map((c, i) => `${columnType(c).load(`s.${names[i]}`)} AS ${names[i]}`);
    const all = [...names, VERSION_COLUMN, DELETED_COLUMN, SYNCED_AT_COLUMN];
    const keyMatch = schema.key
      .map((k) => `t.${quoteIdent(snowflakeName(k))} = u.${quoteIdent(snowflakeName(k))}`)
      .join(' AND ');
    await this.exec(
      `MERGE INTO ${this.target(schema)} t USING (
        SELECT ${source.join(', ')}, CAST(s.${VERSION_COLUMN} AS ${VERSION_TYPE}) AS ${VERSION_COLUMN},
          s.${DELETED_COLUMN},
          CURRENT_TIMESTAMP() AS ${SYNCED_AT_COLUMN}
        FROM ${this.stage(schema)} s
        WHERE s.${BATCH_COLUMN} = ? AND CAST(s.${VERSION_COLUMN} AS ${VERSION_TYPE}) >
          COALESCE((SELECT MAX(w.VERSION) FROM ${this.watermarkTable} w WHERE w.TABLE_NAME = ?), -1)
      ) u ON ${keyMatch}
      WHEN MATCHED AND u.${VERSION_COLUMN} > t.${VERSION_COLUMN} THEN UPDATE
        SET ${all.map((n) => `${n} = u.${n}`).join(', ')}
      WHEN NOT MATCHED THEN INSERT (${all.join(', ')}) VALUES (${all.map((n) => `u.${n}`).join(', ')})`,
      [batch, tableKey(schema)],
    );
    await this.exec(`DELETE FROM ${this.stage(schema)} WHERE ${BATCH_COLUMN} = ?`, [batch]);
  }

  private async truncate(table: TableId, version: Version): Promise<void> {
    const v = version.toString();
    await this.exec(`INSERT INTO ${this.watermarkTable} (TABLE_NAME, VERSION) SELECT ?, CAST(? AS ${VERSION_TYPE})`, [
      tableKey(table),
      v,
    ]);
    await this.exec(`DELETE FROM ${this.target(table)} WHERE ${VERSION_COLUMN} < CAST(? AS ${VERSION_TYPE})`, [v]);
  }

  async removeStale(table: TableSchema, before: Version): Promise<void> {
    await this.exec(
      `UPDATE ${this.target(table)} SET ${DELETED_COLUMN} = TRUE, ${VERSION_COLUMN} = CAST(? AS ${VERSION_TYPE}),
      ${SYNCED_AT_COLUMN} = CURRENT_TIMESTAMP() WHERE ${VERSION_COLUMN} < CAST(? AS ${VERSION_TYPE}) AND
        NOT ${DELETED_COLUMN}`,
      [before.toString(), before.toString()],
    );
  }

  async *readLive(table: TableSchema): AsyncIterable<Row> {
    const conn = await this.ready();
    const cols = table.columns.map((c, i) => `${readSql(c, quoteIdent(snowflakeName(c.name)))} AS C${i}`);
    const stmt = conn.execute({
      sqlText: `SELECT ${cols.join(', ')} FROM ${this.target(table)} WHERE NOT ${DELETED_COLUMN}`,
      streamResult: true,
      fetchAsString: ['Number'],
    });
    for await (const r of stmt.streamRows() as AsyncIterable<Record<string, unknown>>) {
      yield Object.fromEntries(table.columns.map((c, i) => [c.name, readValue(c, r[`C${i}`])]));
    }
  }

  async close(): Promise<void> {
    const conn = await this.connection?.catch(() => undefined);
    if (conn) await new Promise<void>((resolve) => conn.destroy(() => resolve()));
  }
}

/**
 * The kinds of value Snowflake says it cannot read ("Numeric value 'x' is not recognized", "Date 'x' is not
 * recognized", …).
 */
const UNRECOGNIZED = /^(Numeric value|Boolean value|Date|Timestamp|Time) '.*' is not recognized/s;

/**
 * A refusal of the data: Snowflake's 100xxx errors (a value it cannot convert or hold, e.g. 100038
 * "Numeric value … is not recognized", 100040 "Date … is not recognized", 100072 "NULL result in a
 * non-nullable column"), or an SQLSTATE of class 22/23. The driver's own errors (network, login,
 * 4xxxxx) and the server's others (a warehouse suspended, a timeout) are retried.
 */
export function snowflakeRefusal(e: unknown): Refusal | undefined {
  const err = e as { name?: string; code?: unknown; sqlState?: unknown; message?: string };
  if (err?.name !== 'OperationFailedError') return undefined;
  const code = Number(err.code);
  if (!(code >= 100000 && code < 101000) && !isDataSqlState(err.sqlState)) return undefined;
  const kind = UNRECOGNIZED.exec(err.message ?? '')?.[1];
  return {
    valueClass: kind ? `unrecognized ${kind.replace(/ value$/, '').toLowerCase()}` : `Snowflake error ${err.code}`,
  };
}
