/** What ClickHouse can hold, shared by its row path (JSONEachRow) and its COPY-text path (TabSeparated). */
import type { Unrepresentable } from '../../lib/config.ts';
import type { ColumnSchema, TableSchema } from '../../lib/model.ts';

/** Where a value goes: `table` as "schema.name". */
export interface ValueAt {
  table: string;
  column: string;
}

export const describeAt = (at: ValueAt): string => `${at.table}.${at.column}`;

/** A value ClickHouse cannot hold, refused by walflow before ClickHouse would clamp or mangle it. */
export class ClickHouseValueError extends Error {
  override name = 'ClickHouseValueError';
  /** The refused row's key (`id=42`), added by the row path; the COPY-text path does not parse rows. */
  key?: string;

  constructor(
    readonly at: ValueAt,
    problem: string,
    readonly valueClass: string,
  ) {
    super(`${describeAt(at)}: ${problem}`);
  }
}

/** Date32 and DateTime64 hold these days only; ClickHouse would clamp others silently. */
export const DATE_RANGE = { min: '1900-01-01', max: '2299-12-31' };

/**
 * What a table's `onUnrepresentable` makes of one value ClickHouse cannot hold: NULL where its column is
 * Nullable, the nearest value it can hold where there is one, else (and with `fail`) the refusal, which
 * stops the table. `text` never gets here: its columns hold Postgres text, which fits every value.
 */
export interface OutOfRange {
  policy: Unrepresentable;
  /** The ClickHouse column (or array element) is Nullable. */
  nullable: boolean;
}

/** `table`'s policy for column `c`, whose ClickHouse column is Nullable where the source's is and it is no key. */
export const outOfRangeOf = (table: TableSchema, c: ColumnSchema, policy: Unrepresentable): OutOfRange => ({
  policy,
  nullable: c.nullable && !table.key.includes(c.name),
});

export function unrepresentable(error: ClickHouseValueError, how: OutOfRange, nearest?: string): string | null {
  if (how.policy === 'null' && how.nullable) return null;
  if (how.policy === 'clamp' && nearest !== undefined) return nearest;
  if (how.policy === 'null' || how.policy === 'clamp')
    error.message +=
      how.policy === 'null'
        ? ' (onUnrepresentable: null cannot apply, the ClickHouse column is not Nullable: a key or NOT NULL column)'
        : ' (onUnrepresentable: clamp cannot apply, the value has no nearest one; use null or text)';
  throw error;
}

/**
 * `text` (a date or timestamp without zone suffix) if ClickHouse can hold it; else what `how` makes of it
 * (by default a loud error naming the column). `time`: a timestamp, clamped to the range's first or last
 * microsecond.
 */
export function checkDateRange(
  text: string,
  original: string,
  at: ValueAt,
  how: OutOfRange = { policy: 'fail', nullable: false },
  time = false,
): string | null {
  // ISO days compare as text; "infinity", "-infinity" and years past 9999 fall outside too.
  const day = text.slice(0, 10);
  const early = day < DATE_RANGE.min || text.endsWith(' BC') || text === '-infinity';
  if (!early && day <= DATE_RANGE.max && text !== 'infinity') return text;
  const valueClass =
    text === 'infinity' || text === '-infinity'
      ? text
      : text.endsWith(' BC')
        ? 'BC date'
        : early
          ? `date before ${DATE_RANGE.min}`
          : `date after ${DATE_RANGE.max}`;
  const error = new ClickHouseValueError(
    at,
    `${original} is outside ClickHouse's date range ${DATE_RANGE.min}..${DATE_RANGE.max}`,
    valueClass,
  );
  const nearest = early
    ? `${DATE_RANGE.min}${time ? ' 00:00:00' : ''}`
    : `${DATE_RANGE.max}${time ? ' 23:59:59.999999' : ''}`;
  return unrepresentable(error, how, nearest);
}

/** NaN, the one numeric value a Decimal column cannot hold (Postgres keeps ±Infinity out of numeric(p,s)). */
export function decimalOutOfRange(value: string, type: string, at: ValueAt, how: OutOfRange): string | null {
  return unrepresentable(new ClickHouseValueError(at, `${value} cannot be stored in ${type}`, value), how);
}

/** Columns `text` keeps as their Postgres text: those of types with values ClickHouse cannot hold. */
export const mayNotFit = (c: ColumnSchema): boolean =>
  c.kind === 'date' ||
  c.kind === 'timestamp' ||
  c.kind === 'timestamptz' ||
  (c.kind === 'decimal' && c.precision !== undefined && c.precision <= 76);
