/**
 * A Destination held in memory, for tests that need one without the stack: per table and key, the row
 * image of the highest version (deletes as tombstones), TRUNCATE watermarks, schema changes as the
 * interface documents them. It keeps values as the canonical `Value`s they arrive as, and it applies
 * a batch all or nothing, as the transactional destinations do.
 */
import { columnsLacking, type Destination } from '../../activities/destinations/destination.ts';
import { newestPerKey } from '../../activities/destinations/newest.ts';
import { applyVersioned, PreparedTables, storedValues } from '../../activities/destinations/versioned.ts';
import { parseColumnText } from '../../lib/pgvalues.ts';
import type { Version } from '../../lib/lsn.ts';
import {
  tableKey,
  type Change,
  type Row,
  type RowChange,
  type SchemaChange,
  type TableId,
  type TableSchema,
} from '../../lib/model.ts';
import { keyText, toPgText } from '../../lib/pgtext.ts';

interface StoredRow {
  row: Row;
  version: Version;
  deleted: boolean;
}

/** One table's rows by key; replaced, never mutated, once a batch commits (so a failed batch leaves nothing). */
type TableRows = Map<string, StoredRow>;

export class MemoryDestination implements Destination {
  private readonly prepared = new PreparedTables();
  private tables = new Map<string, TableRows>();
  /** Per table, the version of its latest TRUNCATE. */
  private watermarks = new Map<string, Version>();

  async prepare(tables: TableSchema[]): Promise<void> {
    for (const t of tables) {
      this.prepared.add(t);
      if (!this.tables.has(tableKey(t))) this.tables.set(tableKey(t), new Map());
    }
  }

  async apply(changes: Change[]): Promise<void> {
    // Writes go to copies of the tables they touch, swapped in only when the whole batch succeeded.
    const tables = new Map(this.tables);
    const watermarks = new Map(this.watermarks);
    const touched = new Set<string>();
    const rowsOf = (t: TableId): TableRows => {
      const key = tableKey(t);
      if (!touched.has(key)) {
        touched.add(key);
        tables.set(key, new Map(tables.get(key)));
      }
      return tables.get(key)!;
    };
    await applyVersioned(changes, {
      rows: async (rows) => this.upsert(this.prepared.get(rows[0]!.table), rows, rowsOf(rows[0]!.table), watermarks),
      schema: async (change) => {
        this.evolve(change, rowsOf(change.table));
        // Rows after the change in this batch use its shape (kept if the batch fails: a retry applies it again).
        this.prepared.add(change.schema);
      },
      truncate: async (change) => {
        const key = tableKey(change.table);
        const mark = watermarks.get(key);
        if (mark === undefined || mark < change.version) watermarks.set(key, change.version);
        const rows = rowsOf(change.table);
        for (const [k, r] of rows) if (r.version < change.version) rows.delete(k);
      },
    });
    this.tables = tables;
    this.watermarks = watermarks;
  }

  private upsert(schema: TableSchema, changes: RowChange[], rows: TableRows, watermarks: Map<string, Version>): void {
    const floor = watermarks.get(tableKey(schema)) ?? -1n;
    for (const c of newestPerKey(schema, changes)) {
      if (c.version <= floor) continue; // older than a truncate that already happened
      const values = storedValues(schema, c);
      const row = Object.fromEntries(schema.columns.map((col, i) => [col.name, values[i]!]));
      const key = keyText(schema, row);
      const held = rows.get(key);
      if (!held || held.version < c.version) rows.set(key, { row, version: c.version, deleted: c.kind === 'delete' });
    }
  }

  /** Renames first, then widenings; added columns read as NULL in older rows, dropped ones stay. */
  private evolve(change: SchemaChange, rows: TableRows): void {
    for (const [key, held] of rows) {
      const row = { ...held.row };
      for (const r of change.renamed ?? []) {
        if (!(r.from in row)) continue;
        row[r.to] = row[r.from]!;
        delete row[r.from];
      }
      // A widening that changes how walflow carries the value (int4 -> int8: number -> decimal text).
      for (const r of change.retyped ?? []) {
        if (r.from.kind !== r.to.kind && r.to.name in row)
          row[r.to.name] = parseColumnText(r.to, toPgText(row[r.to.name]!));
      }
      rows.set(key, { ...held, row });
    }
  }

  canRetype(): boolean {
    return true;
  }

  canRename(): boolean {
    return true;
  }

  async missingColumns(table: TableSchema): Promise<string[]> {
    const held = this.tables.has(tableKey(table)) ? this.prepared.get(table).columns.map((c) => c.name) : [];
    return columnsLacking(table, held);
  }

  async dropTable(table: TableSchema): Promise<void> {
    this.tables.delete(tableKey(table));
    this.prepared.delete(table);
  }

  async removeStale(table: TableSchema, before: Version): Promise<void> {
    const rows = new Map(this.tables.get(tableKey(this.prepared.get(table))));
    for (const [key, held] of rows) {
      if (held.version < before && !held.deleted) rows.set(key, { ...held, version: before, deleted: true });
    }
    this.tables.set(tableKey(table), rows);
  }

  async *readLive(table: TableSchema): AsyncIterable<Row> {
    for (const { row, deleted } of this.tables.get(tableKey(this.prepared.get(table)))?.values() ?? []) {
      if (!deleted) yield Object.fromEntries(table.columns.map((c) => [c.name, row[c.name] ?? null]));
    }
  }

  async close(): Promise<void> {}
}
