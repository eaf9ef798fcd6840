/**
 * Unchanged TOAST values: an UPDATE that does not touch a TOASTed column makes
 * Postgres send no value for it (nor, with any change, for a generated column it does not publish). Destinations must
 * not store NULL there, and
 * cannot always fill it from their own copy (the row may not have arrived yet
 * while backfill runs), so the stream fills it from the source by key.
 * The source's current value is the value at the update's version, or is
 * superseded by a later change that is still to come: either way the final
 * state converges. A row deleted since yields nothing: the delete follows.
 */
import pg from 'pg';
import {
  tableKey,
  type Change,
  type InsertChange,
  type Row,
  type TableSchema,
  type UpdateChange,
} from '../../lib/model.ts';
import { keyText, toPgText } from '../../lib/pgtext.ts';
import { outputTextSql, parseColumnText } from '../../lib/pgvalues.ts';

export async function fillUnchangedColumns(
  client: pg.Client,
  schemas: Map<string, TableSchema>,
  changes: Change[],
): Promise<void> {
  const byTable = new Map<string, (InsertChange | UpdateChange)[]>();
  for (const c of changes) {
    if ((c.kind !== 'update' && c.kind !== 'insert') || !c.unchanged?.length) continue;
    const key = tableKey(c.table);
    let list = byTable.get(key);
    if (!list) byTable.set(key, (list = []));
    list.push(c);
  }
  for (const [key, updates] of byTable) {
    const schema = schemas.get(key);
    if (!schema) throw new Error(`no schema for ${key}`);
    const wanted = [...new Set(updates.flatMap((u) => u.unchanged ?? []))];
    const columns = schema.columns.filter((c) => wanted.includes(c.name) || schema.key.includes(c.name));
    const keyCols = schema.key.map((k) => schema.columns.find((c) => c.name === k)!);
    const params: (string | null)[] = [];
    const tuples = updates.map(
      (u) =>
        `(${keyCols
          .map((k) => {
            params.push(toPgText(u.row[k.name] ?? null));
            return `$${params.length}::${k.type}`;
          })
          .join(', ')})`,
    );
    const { rows } = await client.query<(string | null)[]>({
      text: `SELECT ${columns.map((c) => outputTextSql(pg.escapeIdentifier(c.name))).join(', ')}
             FROM ${pg.escapeIdentifier(schema.schema)}.${pg.escapeIdentifier(schema.name)}
             WHERE (${keyCols.map((k) => pg.escapeIdentifier(k.name)).join(', ')}) IN (${tuples.join(', ')})`,
      values: params,
      rowMode: 'array',
    });
    const current = new Map<string, Row>();
    for (const r of rows as unknown as (string | null)[][]) {
      const row: Row = {};
      columns.forEach((c, i) => {
        row[c.name] = parseColumnText(c, r[i] ?? null);
      });
      current.set(keyText(schema, row), row);
    }
    for (const u of updates) {
      const now = current.get(keyText(schema, u.row));
      for (const col of u.unchanged ?? []) u.row[col] = now ? now[col]! : null;
      u.unchanged = [];
    }
  }
}
