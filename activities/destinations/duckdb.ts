/**
 * DuckDB, in a local file or in MotherDuck (`md:<database>`, the same code), through @duckdb/node-api,
 * which ships the engine. Per source table, a table with the source's primary key and walflow's version /
 * deleted / synced-at columns, and a `<table>_live` view of its live rows. A batch is one transaction: per
 * table, its newest change per key goes through DuckDB's appender into a temporary staging table, then one
 * INSERT ... ON CONFLICT DO UPDATE keeps the row of highest version per key; deletes are tombstones; a
 * truncate leaves a watermark that keeps older, late rows out. One writer per file: duckdb-database.ts.
 */
import { quotedIdentifier as q, type DuckDBConnection } from '@duckdb/node-api';
import type { Version } from '../../lib/lsn.ts';
import { tableKey, type Change, type Row, type RowChange, type TableId, type TableSchema } from '../../lib/model.ts';
import type { Destination } from './destination.ts';
import { describeKey, type Refusal } from './refused.ts';
import { DuckDBDatabase } from './duckdb-database.ts';
import { columnMapping, DuckDBValueError } from './duckdb-types.ts';
import { newestPerKey } from './newest.ts';
import {
  applyVersioned,
  DELETED_COLUMN,
  liveViewName,
  PreparedTables,
  storedValues,
  SYNCED_AT_COLUMN,
  targetName,
  VERSION_COLUMN,
  WATERMARKS_TABLE,
} from './versioned.ts';

export interface DuckDBDestinationOptions {
  /** A database file (created if missing) or `md:<database>`. */
  path: string;
  /** The MotherDuck access token (resolved from its reference). */
  token?: string;
  schema: string;
  /** How long work waits for another process to let go of the file before it fails (and is retried). */
  lockWaitMs?: number;
}

const LOCK_WAIT_MS = 30_000;
const STAGE = '_walflow_stage';

export class DuckDBDestination implements Destination {
  private readonly db: DuckDBDatabase;
  private readonly tables = new PreparedTables();
  private detached = false;

  constructor(private readonly opts: DuckDBDestinationOptions) {
    this.db = DuckDBDatabase.attach(opts.path, opts.token);
  }

  private get lockWaitMs(): number {
    return this.opts.lockWaitMs ?? LOCK_WAIT_MS;
  }

  private name(name: string): string {
    return `${q(this.opts.schema)}.${q(name)}`;
  }

  private target(t: TableId): string {
    return this.name(targetName(t));
  }

  /** For a resync of an errored table (a shape change, refused data): rebuilt with the source's shape by prepare. */
  async dropTable(table: TableId): Promise<void> {
    await this.db.run(this.lockWaitMs, async (conn) => {
      await conn.run(`DROP VIEW IF EXISTS ${this.name(liveViewName(table))}`);
      await conn.run(`DROP TABLE IF EXISTS ${this.target(table)}`);
    });
    this.tables.delete(table);
  }

  async prepare(tables: TableSchema[]): Promise<void> {
    await this.db.run(this.lockWaitMs, async (conn) => {
      await conn.run(`CREATE SCHEMA IF NOT EXISTS ${q(this.opts.schema)}`);
      await conn.run(
        `CREATE TABLE IF NOT EXISTS ${this.name(WATERMARKS_TABLE)} (table_name VARCHAR PRIMARY KEY, version HUGEINT ` +
          `NOT NULL)`,
      );
      for (const t of tables) await this.create(conn, t);
    });
  }

  /** Creates the table, adds the columns it lacks, and (re)creates its live view. */
  private async create(conn: DuckDBConnection, t: TableSchema): Promise<void> {
    const cols = t.columns.map(
      (c) => `${q(c.name)} ${columnMapping(c).type}${t.key.includes(c.name) ? ' NOT NULL' : ''}`,
    );
    await conn.run(`CREATE TABLE IF NOT EXISTS ${this.target(t)} (${cols.join(', ')},
      ${q(VERSION_COLUMN)} HUGEINT NOT NULL, ${q(DELETED_COLUMN)} BOOLEAN NOT NULL DEFAULT false,
      ${q(SYNCED_AT_COLUMN)} TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (${t.key.map(q).join(', ')}))`);
    const existing = await conn.runAndReadAll(
      `SELECT column_name FROM duckdb_columns()
      WHERE database_name = current_database() AND schema_name = $1 AND table_name = $2`,
      [this.opts.schema, targetName(t)],
    );
    const have = new Set(existing.getRows().map((r) => r[0]));
    for (const c of t.columns) {
      if (!have.has(c.name))
        await conn.run(`ALTER TABLE ${this.target(t)} ADD COLUMN ${q(c.name)} ${columnMapping(c).type}`);
    }
    await conn.run(`CREATE OR REPLACE VIEW ${this.name(liveViewName(t))} AS
      SELECT ${t.columns.map((c) => q(c.name)).join(', ')} FROM ${this.target(t)} WHERE NOT ${q(DELETED_COLUMN)}`);
    this.tables.add(t);
  }

  async apply(changes: Change[]): Promise<void> {
    await this.db.run(this.lockWaitMs, async (conn) => {
      await conn.run('BEGIN TRANSACTION');
      try {
        await applyVersioned(
          changes,
          {
            rows: (rows) => this.upsert(conn, rows),
            schema: (change) => this.create(conn, change.schema),
            truncate: (change) => this.truncate(conn, change.table, change.version),
          },
          duckdbRefusal,
        );
        await conn.run('COMMIT');
      } catch (e) {
        await conn.run('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }

  /** The newest change per key, appended to the staging table, then one upsert that keeps the higher version. */
  private async upsert(conn: DuckDBConnection, changes: RowChange[]): Promise<void> {
    const schema = this.tables.get(changes[0]!.table);
    const columns = schema.columns.map(columnMapping);
    const names = schema.columns.map((c) => q(c.name));
    const staged = names.map((n, i) => `${n} ${columns[i]!.stagedSql}`).join(', ');
    await conn.run(`CREATE OR REPLACE TEMP TABLE ${q(STAGE)} (${staged},
      ${q(VERSION_COLUMN)} HUGEINT NOT NULL, ${q(DELETED_COLUMN)} BOOLEAN NOT NULL)`);
    const appender = await conn.createAppender(STAGE, null, 'temp');
    try {
      for (const c of newestPerKey(schema, changes)) {
        storedValues(schema, c).forEach((v, i) => {
          let staged: ReturnType<(typeof columns)[number]['stage']>;
          try {
            staged = columns[i]!.stage(v, () => `${tableKey(schema)}.${schema.columns[i]!.name}`);
          } catch (e) {
            if (e instanceof DuckDBValueError)
              Object.assign(e, {
                column: schema.columns[i]!.name,
                key: describeKey(schema, c.kind === 'delete' ? c.old : c.row),
              });
            throw e;
          }
          if (staged === null) appender.appendNull();
          else if (typeof staged === 'string') appender.appendVarchar(staged);
          else appender.appendValue(staged, columns[i]!.staged);
        });
        appender.appendHugeInt(c.version);
        appender.appendBoolean(c.kind === 'delete');
        appender.endRow();
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    const walflow = [VERSION_COLUMN, DELETED_COLUMN, SYNCED_AT_COLUMN].map(q);
    const updated = [...schema.columns.filter((c) => !schema.key.includes(c.name)).map((c) => q(c.name)), ...walflow];
    await conn.run(
      `INSERT INTO ${this.target(schema)} AS t (${[...names, ...walflow].join(', ')})
      SELECT ${names.map((n, i) => `CAST(s.${n} AS ${columns[i]!.type})`).join(', ')}, s.${walflow[0]},
        s.${walflow[1]}, now()
      FROM temp.${q(STAGE)} s
      WHERE s.${walflow[0]} > COALESCE((SELECT version FROM ${this.name(WATERMARKS_TABLE)} WHERE table_name = $1), -1)
      ON CONFLICT (${schema.key.map(q).join(', ')}) DO UPDATE
        SET ${updated.map((n) => `${n} = excluded.${n}`).join(', ')}
      WHERE excluded.${walflow[0]} > t.${walflow[0]}`,
      [tableKey(schema)],
    );
  }

  private async truncate(conn: DuckDBConnection, table: TableId, version: Version): Promise<void> {
    await conn.run(
      `INSERT INTO ${this.name(WATERMARKS_TABLE)} VALUES ($1, CAST($2 AS HUGEINT))
      ON CONFLICT (table_name) DO UPDATE SET version = greatest(version, excluded.version)`,
      [tableKey(table), version.toString()],
    );
    await conn.run(`DELETE FROM ${this.target(table)} WHERE ${q(VERSION_COLUMN)} < CAST($1 AS HUGEINT)`, [
      version.toString(),
    ]);
  }

  async removeStale(table: TableSchema, before: Version): Promise<void> {
    await this.db.run(this.lockWaitMs, (conn) =>
      conn.run(
        `UPDATE ${this.target(table)}
      SET ${q(DELETED_COLUMN)} = true, ${q(VERSION_COLUMN)} = CAST($1 AS HUGEINT), ${q(SYNCED_AT_COLUMN)} = now()
      WHERE ${q(VERSION_COLUMN)} < CAST($1 AS HUGEINT) AND NOT ${q(DELETED_COLUMN)}`,
        [before.toString()],
      ),
    );
  }

  async *readLive(table: TableSchema): AsyncIterable<Row> {
    const columns = table.columns.map(columnMapping);
    const lease = await this.db.acquire(this.lockWaitMs);
    try {
      const result =
        await lease.connection.stream(`SELECT ${columns.map((m, i) => m.read(q(table.columns[i]!.name))).join(', ')}
        FROM ${this.target(table)} WHERE NOT ${q(DELETED_COLUMN)}`);
      for await (const rows of result.yieldRowsJs()) {
        for (const r of rows) yield Object.fromEntries(table.columns.map((c, i) => [c.name, columns[i]!.value(r[i])]));
      }
    } finally {
      lease.release();
    }
  }

  async close(): Promise<void> {
    if (this.detached) return;
    this.detached = true;
    this.db.detach();
  }
}

/**
 * DuckDB's error classes about the data ("Conversion Error: Could not convert …", "Constraint Error: NOT NULL
 * constraint failed: …").
 */
const DATA_ERRORS = /^(Conversion|Constraint|Out of Range) Error: /;

/**
 * A refusal of the data: walflow's own check of a value (DuckDBValueError) or one of DuckDB's data error classes; file
 * locks and I/O are retried.
 */
export function duckdbRefusal(e: unknown): Refusal | undefined {
  if (e instanceof DuckDBValueError)
    return { valueClass: e.valueClass, ...(e.column ? { column: e.column } : {}), ...(e.key ? { key: e.key } : {}) };
  const kind = e instanceof Error ? DATA_ERRORS.exec(e.message)?.[1] : undefined;
  return kind ? { valueClass: `${kind.toLowerCase()} error` } : undefined;
}
