/** What ClickHouse can hold, shared by its row path (JSONEachRow) and its COPY-text path (TabSeparated). */

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

/** `text` (a date or timestamp without zone suffix) if ClickHouse can hold it; else a loud error naming the column. */
export function checkDateRange(text: string, original: string, at: ValueAt): string {
  // ISO days compare as text; "infinity", "-infinity" and years past 9999 fall outside too.
  const day = text.slice(0, 10);
  if (day < DATE_RANGE.min || day > DATE_RANGE.max || text.endsWith(' BC')) {
    const valueClass =
      text === 'infinity' || text === '-infinity'
        ? text
        : text.endsWith(' BC')
          ? 'BC date'
          : day < DATE_RANGE.min
            ? `date before ${DATE_RANGE.min}`
            : `date after ${DATE_RANGE.max}`;
    throw new ClickHouseValueError(
      at,
      `${original} is outside ClickHouse's date range ${DATE_RANGE.min}..${DATE_RANGE.max}`,
      valueClass,
    );
  }
  return text;
}
