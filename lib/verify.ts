/**
 * Source/destination comparison for `walflow verify`: row counts and an
 * order-independent comparison of every row (key and values, canonical form).
 * Memory holds one hash per source row (not the rows themselves).
 */
import { createHash } from 'node:crypto';
import type { Row, TableSchema } from './model.ts';
import { toPgText } from './pgtext.ts';
import type { PipelineRules } from './rules.ts';

export interface TableVerification {
  table: string;
  /** The destination table, when the pipeline's rules rename it. */
  destinationTable?: string;
  sourceRows: number;
  destinationRows: number;
  equal: boolean;
  /**
   * Set when the table could not be compared at all (gone from the source, e.g. renamed; missing in the destination).
   */
  problem?: string;
  /** The first keys whose rows differ or exist on one side only. */
  firstDifferences: { key: string; problem: 'missing in destination' | 'only in destination' | 'values differ' }[];
}

const NUMBER_MARK = '\u0000walflow-number:';

/**
 * A JSON number's exact value as text (digits and exponent): 1.50 and 15e-1 are one number, 1.0000000000000000001 is
 * not 1.
 */
function exactNumber(lexeme: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(lexeme)!;
  let digits = `${m[2]}${m[3] ?? ''}`.replace(/^0+/, '');
  let exponent = Number(m[4] ?? 0) - (m[3]?.length ?? 0);
  const trailing = /0*$/.exec(digits)![0].length;
  digits = digits.slice(0, digits.length - trailing);
  exponent += trailing;
  return digits ? `${m[1]}${digits}e${exponent}` : '0';
}

/**
 * A JSON document with its object keys sorted and its numbers as exact decimals (never JS numbers,
 * which round long decimals), so equal documents spell the same and unequal ones never do.
 */
export function canonicalJson(text: string): string {
  const marked = text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (t) =>
    t.startsWith('"') ? t : JSON.stringify(NUMBER_MARK + exactNumber(t)),
  );
  const sorted = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  return JSON.stringify(sorted(JSON.parse(marked)));
}

/**
 * A row's values in the form rows are compared in: Postgres text, and JSON columns as documents
 * (a destination that stores JSON parsed, like Snowflake's VARIANT, re-spells it).
 */
export function comparableValues(
  row: Row,
  columns: string[],
  json: ReadonlySet<string> = new Set(),
): (string | null)[] {
  return columns.map((c) => {
    const v = row[c] ?? null;
    return json.has(c) && typeof v === 'string' ? canonicalJson(v) : toPgText(v);
  });
}

/** Scalar JSON columns of a table. */
export const jsonColumns = (schema: TableSchema): string[] =>
  schema.columns.filter((c) => c.kind === 'json' && c.arrayDims === 0).map((c) => c.name);

function rowHash(row: Row, columns: string[], json: ReadonlySet<string>): string {
  const h = createHash('sha1');
  for (const v of comparableValues(row, columns, json)) h.update(`${v ?? '\u0000NULL'}\u0001`);
  return h.digest('base64');
}

export async function verifyTable(opts: {
  table: string;
  key: string[];
  columns: string[];
  /** Columns holding JSON documents (compared as documents). */
  json?: string[];
  source: AsyncIterable<Row>;
  destination: AsyncIterable<Row>;
  maxDifferences?: number;
}): Promise<TableVerification> {
  const max = opts.maxDifferences ?? 10;
  const json = new Set(opts.json);
  const keyOf = (r: Row) => JSON.stringify(opts.key.map((k) => toPgText(r[k] ?? null)));
  const pending = new Map<string, string>();
  let sourceRows = 0;
  for await (const r of opts.source) {
    pending.set(keyOf(r), rowHash(r, opts.columns, json));
    sourceRows++;
  }
  let destinationRows = 0;
  const firstDifferences: TableVerification['firstDifferences'] = [];
  let differences = 0;
  const note = (key: string, problem: TableVerification['firstDifferences'][number]['problem']) => {
    differences++;
    if (firstDifferences.length < max) firstDifferences.push({ key, problem });
  };
  for await (const r of opts.destination) {
    destinationRows++;
    const key = keyOf(r);
    const expected = pending.get(key);
    if (expected === undefined) note(key, 'only in destination');
    else if (expected !== rowHash(r, opts.columns, json)) note(key, 'values differ');
    pending.delete(key);
  }
  for (const key of pending.keys()) note(key, 'missing in destination');
  return { table: opts.table, sourceRows, destinationRows, equal: differences === 0, firstDifferences };
}

/**
 * What the destination should hold of a source table under the pipeline's rules: the destination
 * table's schema, and the source rows filtered and transformed as backfill writes them.
 */
export function expectedTable(
  rules: PipelineRules,
  schema: TableSchema,
  rows: AsyncIterable<Row>,
): { schema: TableSchema; rows: AsyncIterable<Row> } {
  const bound = rules.bind(schema);
  if (!bound) return { schema, rows };
  return {
    schema: bound.schema,
    rows: (async function* () {
      for await (const r of rows) {
        const out = bound.readRow(r);
        if (out) yield out;
      }
    })(),
  };
}
