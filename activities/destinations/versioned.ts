/**
 * The shared core of the destinations that keep the newest version of each row per key (ClickHouse,
 * Snowflake, Postgres, DuckDB): walflow's own column and table names, what a source table is called
 * there, the tables a destination has prepared, a batch dispatched as steps (steps.ts) to the
 * destination's own writes, and what a row change stores. A destination file holds its SQL and client.
 */
import {
  tableKey,
  type Change,
  type RowChange,
  type SchemaChange,
  type TableId,
  type TableSchema,
  type TruncateChange,
  type Value,
} from '../../lib/model.ts';
import { refusing, type RefusalClassifier } from './refused.ts';
import { applySteps } from './steps.ts';

/** The row's version (lib/lsn.ts): the destination keeps the highest per key. */
export const VERSION_COLUMN = '_walflow_version';
/** A tombstone: the row was deleted at its version. */
export const DELETED_COLUMN = '_walflow_deleted';
export const SYNCED_AT_COLUMN = '_walflow_synced_at';
/** Per table, the version of its latest TRUNCATE: older rows are gone, and kept out when they arrive late. */
export const WATERMARKS_TABLE = '_walflow_truncations';

/** A source table's name in the destination: its own for `public`, else `<schema>_<table>`. */
export const targetName = (t: TableId): string => (t.schema === 'public' ? t.name : `${t.schema}_${t.name}`);

/** The view of a table's live rows (deleted ones hidden). */
export const liveViewName = (t: TableId): string => `${targetName(t)}_live`;

/** The schemas of the tables a destination has prepared, by source table. */
export class PreparedTables {
  private readonly tables = new Map<string, TableSchema>();

  add(t: TableSchema): void {
    this.tables.set(tableKey(t), t);
  }

  delete(t: TableId): void {
    this.tables.delete(tableKey(t));
  }

  get(t: TableId): TableSchema {
    const s = this.tables.get(tableKey(t));
    if (!s) throw new Error(`destination table for ${tableKey(t)} was not prepared`);
    return s;
  }
}

export interface VersionedWrites {
  /** Row changes of one table (between its schema changes and truncates). */
  rows(changes: RowChange[]): Promise<void>;
  schema(change: SchemaChange): Promise<void>;
  truncate(change: TruncateChange): Promise<void>;
}

/**
 * A batch as per-table steps (steps.ts), each given to the destination's write for it, in order. A step
 * is one table's: an error `classify` recognises as a refusal of its data is thrown as DataRefused of that
 * table (refused.ts), so the stream can stop that table alone.
 */
export async function applyVersioned(
  changes: Change[],
  writes: VersionedWrites,
  classify?: RefusalClassifier,
): Promise<void> {
  for (const step of applySteps(changes)) {
    if (step.kind === 'rows') await refusing(step.changes[0]!.table, classify, () => writes.rows(step.changes));
    else if (step.kind === 'schema') await refusing(step.change.table, classify, () => writes.schema(step.change));
    else await refusing(step.change.table, classify, () => writes.truncate(step.change));
  }
}

/** What a row change stores per column of `schema`: the new row image, or for a delete a tombstone of the key alone. */
export function storedValues(schema: TableSchema, c: RowChange): Value[] {
  if (c.kind !== 'delete') return schema.columns.map((col) => c.row[col.name] ?? null);
  return schema.columns.map((col) => (schema.key.includes(col.name) ? (c.old[col.name] ?? null) : null));
}
