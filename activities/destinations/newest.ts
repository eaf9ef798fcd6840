/** Collapsing a run of row changes of one table to the newest version per key, for destinations that upsert by key. */
import { keyText } from '../../lib/pgtext.ts';
import type { RowChange, TableSchema } from '../../lib/model.ts';

/**
 * The newest change per primary key. An update that changed the key also
 * yields a delete of the old key at the same version (the row moved).
 */
export function newestPerKey(schema: TableSchema, changes: RowChange[]): RowChange[] {
  const newest = new Map<string, RowChange>();
  const offer = (key: string, c: RowChange) => {
    const prev = newest.get(key);
    if (!prev || prev.version < c.version) newest.set(key, c);
  };
  for (const c of changes) {
    const key = keyText(schema, c.kind === 'delete' ? c.old : c.row);
    offer(key, c);
    if (c.kind === 'update' && c.old) {
      const oldKey = keyText(schema, c.old);
      if (oldKey !== key) offer(oldKey, { kind: 'delete', table: c.table, version: c.version, old: c.old });
    }
  }
  return [...newest.values()];
}
