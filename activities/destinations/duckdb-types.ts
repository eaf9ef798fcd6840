/**
 * Postgres columns as exact DuckDB types, and their values both ways. A batch is staged in a table of
 * text columns (bytea as BLOB, intervals as INTERVAL, arrays as lists of those) that DuckDB's own casts
 * turn into the column types in the upsert; rows are read back as text and become canonical values again.
 */
import {
  BLOB,
  blobValue,
  INTERVAL,
  intervalValue,
  LIST,
  listValue,
  VARCHAR,
  type DuckDBType,
  type DuckDBValue,
} from '@duckdb/node-api';
import { formatPostgresInterval, parseInterval, type IntervalFields } from '../../lib/interval.ts';
import type { ColumnSchema, Value } from '../../lib/model.ts';
import { columnParser } from '../../lib/pgvalues.ts';

/** A value DuckDB cannot hold exactly, refused by walflow before DuckDB would round or mangle it. */
export class DuckDBValueError extends Error {
  override name = 'DuckDBValueError';
  /** Which column and row, added by the writer that stages the row (duckdb.ts). */
  column?: string;
  key?: string;

  constructor(
    message: string,
    readonly valueClass: string,
  ) {
    super(message);
  }
}

type Scalar = Exclude<Value, null | Value[]>;

interface ScalarMapping {
  type: string;
  staged: DuckDBType;
  /** A non-null canonical value as the staging column takes it. */
  stage(v: Scalar, where: () => string): DuckDBValue;
  /** SQL reading a stored scalar back (as text, except intervals). */
  read(x: string): string;
  /** What `read` gave, as the canonical value. */
  value(raw: unknown): Value;
}

/** Postgres writes BC dates as "0044-03-15 BC" (and BC after a timestamp's time); DuckDB reads ISO years (-0043). */
function toDuckDBDate(text: string): string {
  const bc = /^(\d+)(-.*) BC$/.exec(text);
  return bc ? `${Number(bc[1]) === 1 ? '' : '-'}${String(Number(bc[1]) - 1).padStart(4, '0')}${bc[2]}` : text;
}

/** DuckDB prints BC as "0044-03-15 (BC) 12:00:00"; Postgres as "0044-03-15 12:00:00 BC". */
const fromDuckDBDate = (text: string) => text.replace(/^(\S+) \(BC\)(.*)$/, '$1$2 BC');

const asText = (x: string) => `CAST(${x} AS VARCHAR)`;

function textMapping(
  type: string,
  c: ColumnSchema,
  convert: { stage?: (s: string) => string; value?: (s: string) => string } = {},
): ScalarMapping {
  const parse = columnParser({ kind: c.kind, arrayDims: 0 });
  return {
    type,
    staged: VARCHAR,
    stage: (v) => (convert.stage ? convert.stage(String(v)) : String(v)),
    read: asText,
    value: (raw) => parse(convert.value ? convert.value(raw as string) : (raw as string)),
  };
}

const FLOATS: Record<string, number> = { nan: Number.NaN, inf: Infinity, '-inf': -Infinity };

/** A declared numeric(p,s) DuckDB's DECIMAL holds exactly (p ≤ 38, 0 ≤ s ≤ p); anything else stays exact as text. */
const decimalType = (c: ColumnSchema) =>
  c.precision !== undefined && c.precision <= 38 && (c.scale ?? 0) <= c.precision
    ? `DECIMAL(${c.precision},${c.scale ?? 0})`
    : undefined;

/** Type OIDs of a scalar and of its array (a domain has its own OID, and gets the wider or text type). */
const is = (c: ColumnSchema, scalar: number, array: number) => c.typeOid === scalar || c.typeOid === array;

function scalarMapping(c: ColumnSchema): ScalarMapping {
  switch (c.kind) {
    case 'int':
      return textMapping(is(c, 21, 1005) ? 'SMALLINT' : is(c, 23, 1007) ? 'INTEGER' : 'BIGINT', c);
    case 'bigint':
      return textMapping('BIGINT', c);
    case 'float':
      return {
        type: is(c, 700, 1021) ? 'REAL' : 'DOUBLE',
        staged: VARCHAR,
        // NaN, Infinity and -Infinity read as themselves; String(-0) is "0"
        stage: (v) => (Object.is(v, -0) ? '-0' : String(v)),
        read: asText,
        value: (raw) => FLOATS[raw as string] ?? Number(raw),
      };
    case 'decimal': {
      const type = decimalType(c);
      if (!type) return textMapping('VARCHAR', c);
      return {
        type,
        staged: VARCHAR,
        stage: (v, where) => {
          if (!/^-?\d/.test(v as string))
            throw new DuckDBValueError(`${where()}: ${v} cannot be stored in ${type}`, v as string);
          return v as string;
        },
        read: asText,
        value: (raw) => (raw as string).replace(/^(-?)\./, '$10.'), // DuckDB prints DECIMAL(5,5) as ".00123"
      };
    }
    case 'bool':
      return {
        type: 'BOOLEAN',
        staged: VARCHAR,
        stage: (v) => String(v),
        read: asText,
        value: (raw) => raw === 'true',
      };
    case 'bytes':
      return {
        type: 'BLOB',
        staged: BLOB,
        stage: (v) => blobValue(v as Buffer),
        read: (x) => `lower(hex(${x}))`,
        value: (raw) => Buffer.from(raw as string, 'hex'),
      };
    case 'json':
      return textMapping('JSON', c);
    case 'date':
      return textMapping('DATE', c, { stage: toDuckDBDate, value: fromDuckDBDate });
    case 'timestamp':
      return textMapping('TIMESTAMP', c, { stage: toDuckDBDate, value: fromDuckDBDate });
    case 'timestamptz':
      return textMapping('TIMESTAMPTZ', c, { stage: toDuckDBDate, value: fromDuckDBDate });
    case 'time':
      return textMapping(is(c, 1083, 1183) ? 'TIME' : is(c, 1266, 1270) ? 'TIMETZ' : 'VARCHAR', c);
    case 'interval':
      return {
        type: 'INTERVAL',
        staged: INTERVAL,
        stage: (v) => {
          const f = parseInterval(v as string);
          return intervalValue(f.months, f.days, f.micros);
        },
        read: (x) => x,
        value: (raw) => formatPostgresInterval(raw as IntervalFields),
      };
    case 'uuid':
      return textMapping('UUID', c);
    default:
      return textMapping('VARCHAR', c);
  }
}

export interface ColumnMapping {
  /** The destination column's type. */
  type: string;
  /** The staging column's type (DuckDB casts it to `type` in the upsert). */
  staged: DuckDBType;
  stagedSql: string;
  /** A canonical value as the staging column takes it; `where` names the column for errors. */
  stage(v: Value, where: () => string): DuckDBValue | null;
  /** SQL reading the column back; `value` makes what it gave canonical. */
  read(column: string): string;
  value(raw: unknown): Value;
}

/** How a column is stored. Arrays are lists (NULL lists and NULL elements kept), nested once per declared dimension. */
export function columnMapping(c: ColumnSchema): ColumnMapping {
  const s = scalarMapping(c);
  if (c.arrayDims === 0) {
    return {
      type: s.type,
      staged: s.staged,
      stagedSql: s.staged.toString(),
      stage: (v, where) => (v === null ? null : s.stage(v as Scalar, where)),
      read: s.read,
      value: (raw) => (raw === null || raw === undefined ? null : s.value(raw)),
    };
  }
  const dims = c.arrayDims;
  let staged: DuckDBType = s.staged;
  for (let d = 0; d < dims; d++) staged = LIST(staged);
  const stage = (v: Value, depth: number, where: () => string): DuckDBValue | null => {
    if (v === null) return null;
    if (Array.isArray(v) !== depth > 0) {
      throw new DuckDBValueError(
        `${where()}: a value with other dimensions than the column's ${dims} (a declared ${c.type}); store it in a ` +
          `column declared with ${Array.isArray(v) ? 'more' : 'fewer'} dimensions, or as text`,
        'array of other dimensions',
      );
    }
    return depth === 0 ? s.stage(v as Scalar, where) : listValue((v as Value[]).map((e) => stage(e, depth - 1, where)));
  };
  const read = (x: string, depth: number): string =>
    depth === 0 ? s.read(x) : `list_transform(${x}, lambda e${depth}: ${read(`e${depth}`, depth - 1)})`;
  const value = (raw: unknown, depth: number): Value => {
    if (raw === null || raw === undefined) return null;
    return depth === 0 ? s.value(raw) : (raw as unknown[]).map((e) => value(e, depth - 1));
  };
  return {
    type: `${s.type}${'[]'.repeat(dims)}`,
    staged,
    stagedSql: staged.toString(),
    stage: (v, where) => stage(v, dims, where),
    read: (x) => read(x, dims),
    value: (raw) => value(raw, dims),
  };
}
