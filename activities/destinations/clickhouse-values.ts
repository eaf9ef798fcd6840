/** What ClickHouse can hold, shared by its row path (JSONEachRow) and its COPY-text path (TabSeparated). */

export class ClickHouseValueError extends Error {
  override name = 'ClickHouseValueError';
}

/** Date32 and DateTime64 hold these days only; ClickHouse would clamp others silently. */
export const DATE_RANGE = { min: '1900-01-01', max: '2299-12-31' };

/** `text` (a date or timestamp without zone suffix) if ClickHouse can hold it; else a loud error naming the column. */
export function checkDateRange(text: string, original: string, where: () => string): string {
  // ISO days compare as text; "infinity", "-infinity" and years past 9999 fall outside too.
  const day = text.slice(0, 10);
  if (day < DATE_RANGE.min || day > DATE_RANGE.max || text.endsWith(' BC')) {
    throw new ClickHouseValueError(`${where()}: ${original} is outside ClickHouse's date range ${DATE_RANGE.min}..${DATE_RANGE.max}`);
  }
  return text;
}
