/**
 * The one interface every destination implements (one file per destination).
 *
 * Correctness rests on versions, not on delivery order: a destination keeps,
 * per primary key, the row image with the highest version (deletes are
 * tombstones with their version). Applying a batch twice, or applying an
 * older batch after a newer one, must leave the same final state.
 */
import type { Change, ColumnSchema, Row, TableSchema } from '../../lib/model.ts';
import type { Version } from '../../lib/lsn.ts';

export interface Destination {
  /** Creates (or evolves, adding missing columns) the destination tables. Idempotent. */
  prepare(tables: TableSchema[]): Promise<void>;
  /**
   * Writes changes in order, durably: when the promise resolves the data
   * survives a crash of walflow and of the destination. Schema changes in the
   * batch are applied before the rows after them; a truncate removes rows of
   * lower version only, and keeps later-arriving older rows out.
   *
   * A `schema` change (lib/model.ts SchemaChange) is applied in this order: `renamed` columns (values
   * kept), `retyped` columns (widened in place, values kept), then `added` columns; `dropped` columns
   * stay (rows written later leave them NULL). `schema` is the table's shape afterwards: rows after
   * the change use its column names. Applying the same change again must be harmless (a retried batch).
   */
  apply(changes: Change[]): Promise<void>;
  /**
   * Shape changes the destination makes itself. The stream asks before emitting a `retyped` or
   * `renamed` change; a destination without these methods (or answering false) gets none: the table
   * is stopped instead (status `errored`, the fix `walflow resync <id> --tables t`).
   * canRetype: column `from` can become the wider `to` in place with every value kept exactly
   * (true also when both map to the same destination type). `key`: the column is part of the key.
   */
  canRetype?(from: ColumnSchema, to: ColumnSchema, key: boolean): boolean;
  canRename?(column: ColumnSchema, key: boolean): boolean;
  /**
   * The columns of `table` its destination table lacks ([] while there is no such table). A destination that renames
   * columns has it: a column lacking was renamed by a shape change the stream applied but had not recorded when it
   * ended, and rows by the recorded names would go astray, so the stream re-copies that table instead.
   */
  missingColumns?(table: TableSchema): Promise<string[]>;
  /** Drops the destination table of `table`, so a resync of a stopped table rebuilds it with the source's shape. */
  dropTable?(table: TableSchema): Promise<void>;
  /**
   * Resync support: rows of `table` with a version below `before` that the
   * fresh copy did not rewrite no longer exist in the source; remove them.
   */
  removeStale?(table: TableSchema, before: Version): Promise<void>;
  /**
   * The backfill fast path, optional: where `acceptsCopyText(table)` says so, a range's rows arrive as
   * Postgres COPY text (complete lines, walflow's session settings, columns in `table.columns` order), all
   * at `version`, to be written without building a row object each. Same durability as apply().
   */
  acceptsCopyText?(table: TableSchema): boolean;
  applyCopyText?(table: TableSchema, version: Version, text: Buffer, rows: number): Promise<void>;
  /** Live (not deleted) rows of a table as canonical values, for `walflow verify` and tests. */
  readLive?(table: TableSchema): AsyncIterable<Row>;
  close(): Promise<void>;
}

/** The columns of `table` not among `present` (a table that does not exist has none present and lacks none). */
export function columnsLacking(table: TableSchema, present: Iterable<string>, nameOf = (c: string) => c): string[] {
  const names = new Set(present);
  return names.size ? table.columns.map((c) => c.name).filter((c) => !names.has(nameOf(c))) : [];
}
