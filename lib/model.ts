/**
 * The canonical change/row model: what the Postgres source emits and every
 * destination consumes. Defined once here and imported everywhere.
 *
 * Values are exact: nothing that could be rounded is ever a JS number.
 *   int2, int4, float4, float8, oid  -> number (NaN and ±Infinity kept)
 *   int8, numeric, money             -> string (decimal text; numeric may be "NaN", "Infinity")
 *   bool                             -> boolean
 *   bytea                            -> Buffer
 *   json, jsonb                      -> string (the JSON text, so big numbers survive)
 *   date, time, timetz, timestamp,
 *   timestamptz, interval            -> string (Postgres ISO text; timestamptz in UTC, "+00")
 *   arrays                           -> nested Value[] with null elements
 *   everything else                  -> string (Postgres text form)
 *
 * Every string is exactly Postgres's own text output under walflow's session
 * settings (SESSION_SETTINGS below), so "canonical" means "what Postgres
 * prints": e.g. timestamptz "2024-01-02 03:04:05.12+00" (trailing fractional
 * zeros trimmed, as Postgres does), date "2024-01-02" or "infinity". A
 * destination that reads rows back (verify, tests) renders them the same way.
 */
export const SESSION_SETTINGS = {
  TimeZone: 'UTC',
  DateStyle: 'ISO, MDY',
  IntervalStyle: 'postgres',
  extra_float_digits: '1',
} as const;

import type { Version } from './lsn.ts';

export type Value = null | boolean | number | string | Buffer | Value[];
export type Row = Record<string, Value>;

export interface TableId {
  schema: string;
  name: string;
}

/** "schema.name", unquoted; for maps, logs and messages only, never SQL. */
export function tableKey(t: TableId): string {
  return `${t.schema}.${t.name}`;
}

/** How walflow carries a column's values (see the table above). */
export type ValueKind =
  | 'int'
  | 'float'
  | 'bigint'
  | 'decimal'
  | 'bool'
  | 'bytes'
  | 'json'
  | 'text'
  | 'date'
  | 'time'
  | 'timestamp'
  | 'timestamptz'
  | 'interval'
  | 'uuid';

export interface ColumnSchema {
  name: string;
  /** Postgres type as `format_type` prints it, e.g. "numeric(20,4)", "text[]". */
  type: string;
  /** OID of the column's type (the array type for arrays, the domain for domains). */
  typeOid: number;
  /** Kind of the scalar (element type for arrays, base type for domains). */
  kind: ValueKind;
  /** Array dimensions the column declares (at least 1 for an array: Postgres does not enforce them); 0 for a scalar. */
  arrayDims: number;
  /** Postgres enum labels, when the (element) type is an enum. */
  enumLabels?: string[];
  /** numeric precision/scale when declared. */
  precision?: number;
  scale?: number;
  nullable: boolean;
  /** atttypmod (-1 for none): with typeOid, the column's exact type (e.g. varchar(20), numeric(12,4)). */
  typeMod?: number;
  /** Catalog column number: kept by RENAME COLUMN and never reused, so it tells a rename from drop + add. */
  attnum?: number;
  /** The column has a default (or a fast default filling existing rows), as the catalog says. */
  hasDefault?: boolean;
  /** A generated STORED column. */
  generated?: boolean;
  /**
   * Destination-side history (set by the stream, not the catalog): narrower types this column had
   * before the destination widened it, and names it had before a rename. A replay of older WAL
   * still carries them; their rows fit as they are.
   */
  widenedFrom?: { typeOid: number; typeMod: number }[];
  renamedFrom?: string[];
  /** Dropped in the source; the destination keeps the column (rows written since leave it NULL). */
  dropped?: true;
}

export interface TableSchema extends TableId {
  /** pg_class OID: survives RENAME TABLE, changes when a table is dropped and created again. */
  oid?: number;
  columns: ColumnSchema[];
  /** Primary key (or replica identity index) columns, in key order. */
  key: string[];
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  /**
   * A partitioned table's leaf partitions ("schema.name") and the relfilenode of each, as the destination
   * table's rows reflect them. pgoutput sends nothing for ATTACH, DETACH or a TRUNCATE of one partition
   * (published via the root); the stream notices them by this record changing, and re-copies the table.
   */
  partitions?: Record<string, number>;
}

/** The source transaction of a stream change; one object shared by all its changes. */
export interface Transaction {
  xid: number;
  /** Commit time, ISO 8601 with microseconds, UTC. */
  commitTime: string;
}

interface ChangeBase {
  table: TableId;
  /** Row version: commit LSN and position in the transaction (see lib/lsn.ts). */
  version: Version;
  /** The transaction, for stream changes (backfill rows have none). */
  tx?: Transaction;
}

export interface InsertChange extends ChangeBase {
  kind: 'insert';
  /** New row image; columns listed in `unchanged` are absent, not null. */
  row: Row;
  /**
   * Generated columns Postgres does not publish (before 18, or not enabled): filled from the source by key before the
   * write.
   */
  unchanged?: string[];
  /** A backfill row copied from the snapshot (not a change from the stream). */
  snapshot?: true;
}

export interface UpdateChange extends ChangeBase {
  kind: 'update';
  /** New row image; columns listed in `unchanged` are absent, not null. */
  row: Row;
  /**
   * Columns Postgres did not send: a TOASTed value the update did not touch, or a generated column it does not publish.
   */
  unchanged: string[];
  /** Old key (or full old row) when the key changed or REPLICA IDENTITY FULL; else undefined. */
  old?: Row;
}

export interface DeleteChange extends ChangeBase {
  kind: 'delete';
  /** Old key columns (or the full old row under REPLICA IDENTITY FULL). */
  old: Row;
}

export interface TruncateChange extends ChangeBase {
  kind: 'truncate';
}

/** A column whose type the destination changes to a wider one before the rows that need it. */
export interface ColumnRetype {
  from: ColumnSchema;
  to: ColumnSchema;
}

/**
 * A relation message showed the table's shape changed since what the destination holds. The stream
 * only emits changes a destination can apply exactly (see activities/postgres/shape.ts); anything
 * else stops the table instead. `schema` is the table's new destination shape.
 */
export interface SchemaChange extends ChangeBase {
  kind: 'schema';
  schema: TableSchema;
  added: ColumnSchema[];
  /** Columns gone from the source; the destination keeps them (later rows leave them NULL). */
  dropped: string[];
  /** Widened types, applied before `added`. */
  retyped?: ColumnRetype[];
  /** Renamed columns (values kept), applied first. */
  renamed?: { from: string; to: string }[];
}

export type RowChange = InsertChange | UpdateChange | DeleteChange;
export type Change = RowChange | TruncateChange | SchemaChange;
