/**
 * Exact type mapping: Postgres text output (from COPY and from pgoutput, which
 * both use the types' output functions) to walflow's canonical Values.
 */
import { parse as parseArray } from 'postgres-array';
import type { ColumnSchema, Value, ValueKind } from './model.ts';

/** Built-in type OIDs by what walflow carries them as; every other type is its Postgres text. */
export const KIND_BY_OID: Record<number, ValueKind> = {
  21: 'int',
  23: 'int',
  26: 'int',
  20: 'bigint',
  700: 'float',
  701: 'float',
  1700: 'decimal',
  16: 'bool',
  17: 'bytes',
  114: 'json',
  3802: 'json',
  1082: 'date',
  1083: 'time',
  1266: 'time',
  1114: 'timestamp',
  1184: 'timestamptz',
  1186: 'interval',
  2950: 'uuid',
};

/**
 * Types known to round-trip as their text: no warning for these. Anything else
 * still passes through as text, with a warning naming the type.
 */
export const TEXT_TYPES = new Set([
  'text',
  'varchar',
  'bpchar',
  'char',
  'name',
  'inet',
  'cidr',
  'macaddr',
  'macaddr8',
  'money',
  'bit',
  'varbit',
  'tsvector',
  'tsquery',
  'xml',
  'hstore',
  'citext',
  'point',
  'line',
  'lseg',
  'box',
  'path',
  'polygon',
  'circle',
  'pg_lsn',
  'txid_snapshot',
  'pg_snapshot',
  'int2vector',
  'oidvector',
  'regclass',
  'regtype',
  'xid',
  'xid8',
  'cid',
  'tid',
]);

const identity = (text: string): Value => text;
const SCALAR_PARSERS: Partial<Record<ValueKind, (text: string) => Value>> = {
  int: Number, // "NaN", "Infinity" and "-Infinity" parse to themselves
  float: Number,
  bool: (text) => text === 't' || text === 'true', // output function says t, a ::text cast says true
  bytes: (text) => Buffer.from(text.slice(2), 'hex'), // bytea_output = hex: "\x0a0b"
};

/** The parser of a column's non-null text, chosen once per column (the copy and stream hot paths). */
export function columnParser(column: Pick<ColumnSchema, 'kind' | 'arrayDims'>): (text: string) => Value {
  const scalar = SCALAR_PARSERS[column.kind] ?? identity;
  if (column.arrayDims > 0) return (text) => parseArray(text, scalar) as Value[];
  return scalar;
}

export function parseColumnText(column: Pick<ColumnSchema, 'kind' | 'arrayDims'>, text: string | null): Value {
  return text === null ? null : columnParser(column)(text);
}

/**
 * SQL for a column's text exactly as its output function writes it (what COPY and pgoutput send).
 * Not `::text`: that cast trims char(n) padding and spells booleans out.
 */
export function outputTextSql(quotedColumn: string): string {
  // num_nulls, not IS NULL: a composite whose fields are all NULL IS NULL, yet is a value.
  return `CASE WHEN num_nulls(${quotedColumn}) = 1 THEN NULL ELSE format('%s', ${quotedColumn}) END`;
}
