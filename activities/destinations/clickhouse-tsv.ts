/**
 * The backfill fast path into ClickHouse: Postgres COPY text becomes ClickHouse TabSeparated without a
 * row object or a JSON document per row. The two formats share their escapes (\t \n \\ \b \f \r \v) and
 * NULL (\N), and ClickHouse reads Postgres's numbers, Infinity/NaN, t/f and ISO dates as they are, so
 * most columns pass through verbatim; only bytea (hex), timestamptz (its "+00") and the date-range
 * check touch a field. Tables with array columns keep the row path (their text differs).
 */
import type { Version } from '../../lib/lsn.ts';
import type { ColumnSchema, TableSchema } from '../../lib/model.ts';
import { checkDateRange, ClickHouseValueError } from './clickhouse-values.ts';

type FieldRewrite = (field: string, where: () => string) => string;

/** How one column's COPY field is rewritten, or undefined when it passes through verbatim. */
function rewrite(c: ColumnSchema, decimalType: string): FieldRewrite | undefined {
  switch (c.kind) {
    // COPY writes bytea as \\x<hex> (its backslash escaped); the destination keeps the hex.
    case 'bytes': return (f) => f.slice(3);
    case 'date':
    case 'timestamp': return (f, where) => checkDateRange(f, f, where);
    case 'timestamptz': return (f, where) => checkDateRange(f.endsWith('+00') ? f.slice(0, -3) : f, f, where);
    case 'decimal':
      if (decimalType === 'String') return undefined;
      return (f, where) => {
        if (!/^-?\d/.test(f)) throw new ClickHouseValueError(`${where()}: ${f} cannot be stored in ${decimalType}`);
        return f;
      };
    default: return undefined;
  }
}

/** Whether a table's COPY text can go to ClickHouse as TabSeparated (no array columns). */
export const acceptsCopyText = (table: TableSchema): boolean => table.columns.every((c) => c.arrayDims === 0);

/**
 * A converter for one table: COPY text (complete lines) → TabSeparated lines with walflow's version and
 * deleted columns appended, in the order of `columns` (the table's columns, then version, deleted).
 */
export function copyTextToTsv(table: TableSchema, decimalType: (c: ColumnSchema) => string): (text: string, version: Version) => string {
  const rewrites = table.columns.map((c) => rewrite(c, decimalType(c)));
  const last = table.columns.length - 1;
  const anyRewrite = rewrites.some(Boolean);
  const whereOf = (i: number) => () => `${table.schema}.${table.name}.${table.columns[i]!.name}`;
  return (text, version) => {
    const suffix = `\t${version}\t0\n`;
    if (!anyRewrite) return text.replaceAll('\n', suffix);
    const out: string[] = [];
    let pos = 0;
    for (let nl = text.indexOf('\n', pos); nl >= 0; nl = text.indexOf('\n', pos)) {
      for (let i = 0; i <= last; i++) {
        const end = i === last ? nl : text.indexOf('\t', pos);
        const fix = rewrites[i];
        const field = text.slice(pos, end);
        out.push(fix && field !== '\\N' ? fix(field, whereOf(i)) : field, i === last ? suffix : '\t');
        pos = end + 1;
      }
    }
    return out.join('');
  };
}
