/**
 * The backfill fast path into ClickHouse: Postgres COPY text becomes ClickHouse TabSeparated without a
 * row object or a JSON document per row. The two formats share their escapes (\t \n \\ \b \f \r \v) and
 * NULL (\N), and ClickHouse reads Postgres's numbers, Infinity/NaN, t/f and ISO dates as they are, so
 * most columns pass through verbatim; only bytea (hex), timestamptz (its "+00") and the date-range
 * check touch a field (or none of these, for a column `onUnrepresentable: text` keeps as Postgres text).
 * Tables with array columns keep the row path (their text differs).
 */
import type { Unrepresentable } from '../../lib/config.ts';
import type { Version } from '../../lib/lsn.ts';
import type { ColumnSchema, TableSchema } from '../../lib/model.ts';
import {
  checkDateRange,
  decimalOutOfRange,
  mayNotFit,
  outOfRangeOf,
  type OutOfRange,
  type ValueAt,
} from './clickhouse-values.ts';

type FieldRewrite = (field: string, at: ValueAt) => string;

const isDigit = (code: number) => code >= 48 && code <= 57;

/** How one column's COPY field is rewritten, or undefined when it passes through verbatim. */
function rewrite(c: ColumnSchema, decimalType: string, how: OutOfRange): FieldRewrite | undefined {
  if (how.policy === 'text' && mayNotFit(c)) return undefined; // held as its Postgres text
  const orNull = (f: string | null) => f ?? '\\N';
  switch (c.kind) {
    // COPY writes bytea as \\x<hex> (its backslash escaped); the destination keeps the hex.
    case 'bytes':
      return (f) => f.slice(3);
    case 'date':
    case 'timestamp':
      return (f, at) => orNull(checkDateRange(f, f, at, how, c.kind === 'timestamp'));
    case 'timestamptz':
      return (f, at) => orNull(checkDateRange(f.endsWith('+00') ? f.slice(0, -3) : f, f, at, how, true));
    case 'decimal':
      if (decimalType === 'String') return undefined;
      return (f, at) => {
        const first = f.charCodeAt(0);
        if (!isDigit(first) && !(first === 45 && isDigit(f.charCodeAt(1))))
          return orNull(decimalOutOfRange(f, decimalType, at, how));
        return f;
      };
    default:
      return undefined;
  }
}

/** Whether a table's COPY text can go to ClickHouse as TabSeparated (no array columns). */
export const acceptsCopyText = (table: TableSchema): boolean => table.columns.every((c) => c.arrayDims === 0);

/**
 * A converter for one table: COPY text (complete lines) → TabSeparated lines with walflow's version and
 * deleted columns appended, in the order of `columns` (the table's columns, then version, deleted).
 * Text between rewritten fields is copied as one slice, so a row costs a few strings, not one per field.
 */
export function copyTextToTsv(
  table: TableSchema,
  decimalType: (c: ColumnSchema) => string,
  policy: Unrepresentable = 'fail',
): (text: string, version: Version) => string {
  const rewrites = table.columns.map((c) => rewrite(c, decimalType(c), outOfRangeOf(table, c, policy)));
  const lastRewrite = rewrites.reduce((last, r, i) => (r ? i : last), -1);
  const wheres = table.columns.map((c): ValueAt => ({ table: `${table.schema}.${table.name}`, column: c.name }));
  return (text, version) => {
    const suffix = `\t${version}\t0\n`;
    if (lastRewrite < 0) return text.replaceAll('\n', suffix);
    const out: string[] = [];
    let pos = 0;
    let copied = 0; // text before this offset is already in `out`
    for (let nl = text.indexOf('\n', pos); nl >= 0; nl = text.indexOf('\n', pos)) {
      for (let i = 0; i <= lastRewrite; i++) {
        const tab = text.indexOf('\t', pos);
        const end = tab < 0 || tab > nl ? nl : tab;
        const fix = rewrites[i];
        if (fix) {
          const field = text.slice(pos, end);
          const fixed = field === '\\N' ? field : fix(field, wheres[i]!);
          // Most checks pass the field as it is: only a changed one splits the row's text.
          if (fixed !== field) {
            out.push(text.slice(copied, pos), fixed);
            copied = end;
          }
        }
        pos = end + 1;
      }
      out.push(text.slice(copied, nl), suffix);
      pos = copied = nl + 1;
    }
    return out.join('');
  };
}
