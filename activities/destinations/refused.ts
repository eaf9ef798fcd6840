/**
 * A destination refusing the data of one table (a value it cannot hold, a constraint it enforces), told
 * apart from a destination that is down or slow: no retry of the same data can succeed, so the stream
 * stops only that table (errored, its way out a resync) instead of retrying every table's batch forever,
 * and a range copy fails without retry. Each destination says which of its own errors are refusals (its
 * error codes, `classify`); anything it does not recognise stays an ordinary failure, retried without end.
 */
import { ErrorType } from '../../lib/errors.ts';
import { tableKey, type TableId, type TableSchema, type Value } from '../../lib/model.ts';
import { toPgText } from '../../lib/pgtext.ts';

/** What a destination's error tells about the refused data, as far as it tells. */
export interface Refusal {
  column?: string;
  valueClass?: string;
  /** The refused row's key as `col=value, …`. */
  key?: string;
}

/** Whether an error of this destination is a refusal of the data (and what it says), or undefined. */
export type RefusalClassifier = (e: unknown) => Refusal | undefined;

export class DataRefused extends Error {
  override name = ErrorType.DataRefused;

  /**
   * @param table the source table whose data was refused (a RuledDestination maps a renamed one back)
   * @param cause the destination's own error: its message is kept whole, it is what the operator reads
   */
  constructor(
    public table: TableId,
    readonly refusal: Refusal,
    cause: unknown,
  ) {
    const column = refusal.column ? `, column ${refusal.column}` : '';
    super(
      `refused the data of ` +
        `table ${tableKey(table)}${column}: ${(cause instanceof Error ? cause.message : String(cause)).trim()}`,
      { cause },
    );
  }
}

/** `write` of `table`'s data, its failures that `classify` recognises as refusals thrown as DataRefused. */
export async function refusing<T>(
  table: TableId,
  classify: RefusalClassifier | undefined,
  write: () => Promise<T>,
): Promise<T> {
  try {
    return await write();
  } catch (e) {
    if (e instanceof DataRefused || !classify) throw e;
    const refusal = classify(e);
    throw refusal ? new DataRefused(table, refusal, e) : e;
  }
}

/** A row's key as `id=42, region=eu` (Postgres text of each value), for the operator to find the row. */
export function describeKey(schema: TableSchema, values: Record<string, Value | undefined>): string {
  return schema.key.map((k) => `${k}=${toPgText(values[k] ?? null) ?? 'NULL'}`).join(', ');
}

/** Postgres SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation): the data, not the server. */
export const isDataSqlState = (code: unknown): boolean => typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
