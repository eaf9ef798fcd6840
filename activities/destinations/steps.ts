/**
 * A batch of changes as the few writes a destination makes: per table, one write of its row changes
 * between that table's schema changes and truncates, instead of one per run of consecutive changes
 * (a multi-table transaction alternates tables, which made one tiny insert per change).
 *
 * Reordering row changes across tables, and within a table up to its next barrier, is safe because
 * destinations keep the highest version per key. A truncate removes everything older than itself, so
 * the table's row changes still pending when it arrives are dropped, and consecutive truncates with
 * nothing written in between collapse into the newest one.
 */
import { tableKey, type Change, type RowChange, type SchemaChange, type TruncateChange } from '../../lib/model.ts';

export type ApplyStep =
  | { kind: 'rows'; changes: RowChange[] }
  | { kind: 'schema'; change: SchemaChange }
  | { kind: 'truncate'; change: TruncateChange };

export function applySteps(changes: Change[]): ApplyStep[] {
  const steps: ApplyStep[] = [];
  const pending = new Map<string, RowChange[]>();
  // A table's truncate step not followed (yet) by any other step of that table.
  const lastTruncate = new Map<string, { kind: 'truncate'; change: TruncateChange }>();
  const flushRows = (key: string) => {
    const rows = pending.get(key);
    if (!rows) return;
    pending.delete(key);
    lastTruncate.delete(key);
    steps.push({ kind: 'rows', changes: rows });
  };
  for (const c of changes) {
    const key = tableKey(c.table);
    if (c.kind === 'insert' || c.kind === 'update' || c.kind === 'delete') {
      const rows = pending.get(key);
      if (rows) rows.push(c);
      else pending.set(key, [c]);
    } else if (c.kind === 'truncate') {
      pending.delete(key);
      const earlier = lastTruncate.get(key);
      if (earlier) earlier.change = c;
      else {
        const step = { kind: 'truncate' as const, change: c };
        steps.push(step);
        lastTruncate.set(key, step);
      }
    } else {
      // New columns must exist before the rows that carry them.
      flushRows(key);
      lastTruncate.delete(key);
      steps.push({ kind: 'schema', change: c });
    }
  }
  for (const key of [...pending.keys()]) flushRows(key);
  return steps;
}
