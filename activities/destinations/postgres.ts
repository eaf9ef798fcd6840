/**
 * Postgres as a destination: one table per source table in a target schema,
 * same column types (user-defined types become their base kind), plus
 * walflow's version / deleted / synced-at columns. An upsert applies a row
 * only when its version is higher than the stored one; deletes are tombstones;
 * a truncate watermark keeps late older rows out.
 */
import pg from 'pg';
import type { Version } from '../../lib/lsn.ts';
import {
  SESSION_SETTINGS,
  tableKey,
  type Change,
  type ColumnSchema,
  type Row,
  type RowChange,
  type SchemaChange,
  type TableId,
  type TableSchema,
} from '../../lib/model.ts';
import { toPgText } from '../../lib/pgtext.ts';
import { columnsLacking, type Destination } from './destination.ts';
import { applySteps } from './steps.ts';
import { newestPerKey } from './newest.ts';
import { isDataSqlState, refusing, type Refusal } from './refused.ts';
import { outputTextSql, parseColumnText } from '../../lib/pgvalues.ts';
import {
  DELETED_COLUMN,
  PreparedTables,
  storedValues,
  SYNCED_AT_COLUMN,
  targetName,
  VERSION_COLUMN,
  WATERMARKS_TABLE as WATERMARKS,
} from './versioned.ts';
/** Bind parameters per statement stay under Postgres's limit of 65,535. */
const MAX_PARAMS = 60_000;

/** Highest OID of a type built into Postgres; anything above is user-defined (enum, domain, composite, extension). */
const LAST_BUILTIN_OID = 16383;

const KIND_TYPES: Record<ColumnSchema['kind'], string> = {
  int: 'integer',
  float: 'double precision',
  bigint: 'bigint',
  decimal: 'numeric',
  bool: 'boolean',
  bytes: 'bytea',
  json: 'json',
  text: 'text',
  date: 'date',
  time: 'time',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
  interval: 'interval',
  uuid: 'uuid',
};

function columnType(c: ColumnSchema): string {
  if (c.typeOid <= LAST_BUILTIN_OID) return c.type;
  return KIND_TYPES[c.kind] + '[]'.repeat(c.arrayDims ? 1 : 0);
}

const q = (name: string) => pg.escapeIdentifier(name);

/**
 * A refusal of the data: SQLSTATE class 22 (data exception: a value out of range, invalid input) or 23
 * (a NOT NULL, check, unique or foreign-key constraint, such as one an operator added to a destination
 * table). Connection failures (08), a server shutting down (57), locks and serialization (40) are retried.
 */
export function postgresRefusal(e: unknown): Refusal | undefined {
  const err = e as pg.DatabaseError;
  if (!(err instanceof pg.DatabaseError) || !isDataSqlState(err.code)) return undefined;
  const key = err.detail && /^Key \((.+?)\)=\((.*)\) /.exec(err.detail);
  return {
    ...(err.column ? { column: err.column } : {}),
    valueClass: err.constraint
      ? `${PG_CONDITIONS[err.code!] ?? err.code} (${err.constraint})`
      : (PG_CONDITIONS[err.code!] ?? `SQLSTATE ${err.code}`),
    ...(key ? { key: `${key[1]}=${key[2]}` } : {}),
  };
}

/** The condition names of the SQLSTATEs a destination write most often meets (the others show as their code). */
const PG_CONDITIONS: Record<string, string> = {
  22001: 'string_data_right_truncation',
  22003: 'numeric_value_out_of_range',
  22007: 'invalid_datetime_format',
  22008: 'datetime_field_overflow',
  22021: 'character_not_in_repertoire',
  '22P02': 'invalid_text_representation',
  23502: 'not_null_violation',
  23503: 'foreign_key_violation',
  23505: 'unique_violation',
  23514: 'check_violation',
  '23P01': 'exclusion_violation',
};

export interface PostgresDestinationOptions {
  connection: pg.ClientConfig;
  schema: string;
}

export class PostgresDestination implements Destination {
  private readonly client: pg.Client;
  private connected?: Promise<void>;
  private readonly tables = new PreparedTables();

  constructor(private readonly opts: PostgresDestinationOptions) {
    this.client = new pg.Client({
      ...opts.connection,
      options: Object.entries(SESSION_SETTINGS)
        .map(([k, v]) => `-c ${k}=${v.replace(/ /g, '\\ ')}`)
        .join(' '),
    });
  }

  private target(t: TableId): string {
    return `${q(this.opts.schema)}.${q(targetName(t))}`;
  }

  private async ready(): Promise<pg.Client> {
    this.connected ??= (async () => {
      await this.client.connect();
      await this.client.query(`CREATE SCHEMA IF NOT EXISTS ${q(this.opts.schema)}`);
      await this.client.query(`CREATE TABLE IF NOT EXISTS ${q(this.opts.schema)}.${q(WATERMARKS)} (
        table_name text PRIMARY KEY, version numeric NOT NULL)`);
    })();
    await this.connected;
    return this.client;
  }

  async prepare(tables: TableSchema[]): Promise<void> {
    const client = await this.ready();
    for (const t of tables) {
      const cols = t.columns.map((c) => `${q(c.name)} ${columnType(c)}${t.key.includes(c.name) ? ' NOT NULL' : ''}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${this.target(t)} (${cols.join(', ')},
        ${q(VERSION_COLUMN)} numeric NOT NULL, ${q(DELETED_COLUMN)} boolean NOT NULL DEFAULT false,
        ${q(SYNCED_AT_COLUMN)} timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (${t.key.map(q).join(', ')}))`);
      for (const c of t.columns) {
        await client.query(`ALTER TABLE ${this.target(t)} ADD COLUMN IF NOT EXISTS ${q(c.name)} ${columnType(c)}`);
      }
      this.tables.add(t);
    }
  }

  async apply(changes: Change[]): Promise<void> {
    const client = await this.ready();
    await client.query('BEGIN');
    try {
      // Each step is one table's: a refusal of its data is that table's alone (refused.ts).
      for (const step of applySteps(changes)) {
        if (step.kind === 'rows')
          await refusing(step.changes[0]!.table, postgresRefusal, () => this.upsert(client, step.changes));
        else if (step.kind === 'truncate')
          await refusing(step.change.table, postgresRefusal, () =>
            this.truncate(client, step.change.table, step.change.version),
          );
        else {
          await client.query('COMMIT');
          await refusing(step.change.table, postgresRefusal, () => this.evolve(client, step.change));
          await client.query('BEGIN');
        }
      }
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  /** Postgres changes any widening in place (ALTER COLUMN TYPE) and renames any column. */
  canRetype(): boolean {
    return true;
  }

  canRename(): boolean {
    return true;
  }

  async missingColumns(t: TableSchema): Promise<string[]> {
    return columnsLacking(t, await this.columnNames(await this.ready(), t));
  }

  private async columnNames(client: pg.Client, t: TableId): Promise<string[]> {
    const { rows } = await client.query<{ name: string }>(
      `SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
      [this.target(t)],
    );
    return rows.map((r) => r.name);
  }

  private async evolve(client: pg.Client, change: SchemaChange): Promise<void> {
    const target = this.target(change.table);
    const present = change.renamed?.length ? await this.columnNames(client, change.table) : [];
    for (const r of change.renamed ?? []) {
      // renamed by an earlier attempt of this batch
      if (present.includes(r.from))
        await client.query(`ALTER TABLE ${target} RENAME COLUMN ${q(r.from)} TO ${q(r.to)}`);
    }
    for (const r of change.retyped ?? []) {
      if (columnType(r.from) !== columnType(r.to))
        await client.query(`ALTER TABLE ${target} ALTER COLUMN ${q(r.to.name)} TYPE ${columnType(r.to)}`);
    }
    await this.prepare([change.schema]);
  }

  async dropTable(table: TableId): Promise<void> {
    const client = await this.ready();
    await client.query(`DROP TABLE IF EXISTS ${this.target(table)}`);
    this.tables.delete(table);
  }

  /** One statement per run of same-table row changes; the newest version per key wins inside the run too. */
  private async upsert(client: pg.Client, changes: RowChange[]): Promise<void> {
    const schema = this.tables.get(changes[0]!.table);
    const all = newestPerKey(schema, changes);
    const perStatement = Math.max(1, Math.floor(MAX_PARAMS / (schema.columns.length + 1)));
    for (let i = 0; i < all.length; i += perStatement)
      await this.upsertRows(client, schema, all.slice(i, i + perStatement));
  }

  private async upsertRows(client: pg.Client, schema: TableSchema, changes: RowChange[]): Promise<void> {
    const cols = schema.columns;
    const params: (string | null)[] = [];
    const rows: string[] = [];
    for (const c of changes) {
      const stored = storedValues(schema, c);
      const values = cols.map((col, i) => {
        params.push(toPgText(stored[i]!));
        return `$${params.length}::${columnType(col)}`;
      });
      params.push(c.version.toString());
      values.push(`$${params.length}::numeric`);
      values.push(c.kind === 'delete' ? 'true' : 'false');
      rows.push(`(${values.join(', ')})`);
    }
    const names = [...cols.map((c) => q(c.name)), q(VERSION_COLUMN), q(DELETED_COLUMN)];
    await client.query(
      `INSERT INTO ${this.target(schema)} AS t (${names.join(', ')})
      SELECT v.* FROM (VALUES ${rows.join(', ')}) AS v(${names.join(', ')})
      WHERE v.${q(VERSION_COLUMN)} > COALESCE((SELECT version FROM ${q(this.opts.schema)}.${q(WATERMARKS)} WHERE
        table_name = $${params.length + 1}), -1)
      ON CONFLICT (${schema.key.map(q).join(', ')}) DO UPDATE SET
        ${names.map((n) => `${n} = EXCLUDED.${n}`).join(', ')}, ${q(SYNCED_AT_COLUMN)} = now()
      WHERE t.${q(VERSION_COLUMN)} < EXCLUDED.${q(VERSION_COLUMN)}`,
      [...params, tableKey(schema)],
    );
  }

  private async truncate(client: pg.Client, table: TableId, version: Version): Promise<void> {
    const v = version.toString();
    await client.query(
      `INSERT INTO ${q(this.opts.schema)}.${q(WATERMARKS)} (table_name, version) VALUES ($1, $2::numeric)
      ON CONFLICT (table_name) DO UPDATE SET version = GREATEST(${q(WATERMARKS)}.version, EXCLUDED.version)`,
      [tableKey(table), v],
    );
    await client.query(`DELETE FROM ${this.target(table)} WHERE ${q(VERSION_COLUMN)} < $1::numeric`, [v]);
  }

  async removeStale(table: TableSchema, before: Version): Promise<void> {
    const client = await this.ready();
    await client.query(
      `UPDATE ${this.target(table)}
      SET ${q(DELETED_COLUMN)} = true, ${q(VERSION_COLUMN)} = $1::numeric, ${q(SYNCED_AT_COLUMN)} = now()
      WHERE ${q(VERSION_COLUMN)} < $1::numeric AND NOT ${q(DELETED_COLUMN)}`,
      [before.toString()],
    );
  }

  async *readLive(table: TableSchema): AsyncIterable<Row> {
    const client = await this.ready();
    const { rows } = await client.query({
      text:
        `SELECT ${table.columns.map((c) => outputTextSql(q(c.name))).join(', ')} FROM ${this.target(table)} ` +
        `WHERE NOT ${q(DELETED_COLUMN)}`,
      rowMode: 'array',
    });
    for (const r of rows as (string | null)[][]) {
      yield Object.fromEntries(table.columns.map((c, i) => [c.name, parseColumnText(c, r[i] ?? null)]));
    }
  }

  async close(): Promise<void> {
    if (this.connected) await this.client.end().catch(() => undefined);
  }
}
