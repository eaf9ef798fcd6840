/**
 * Pages of a table read under a session's snapshot: offset/limit in any validated column order, or
 * keyset pagination (`after` a key, in key order), which stays fast on big tables. Values are read as
 * their output text and parsed exactly as backfill and CDC parse them.
 */
import pg from 'pg';
import type { JsonRow } from '../lib/envelope.ts';
import type { Row, TableSchema } from '../lib/model.ts';
import { columnParser, outputTextSql } from '../lib/pgvalues.ts';
import { badRequest } from './errors.ts';

export interface OrderBy {
  column: string;
  order: 'ASC' | 'DESC';
}

export interface PageRequest {
  limit: number;
  offset: number;
  /** Key of the last row of the previous page: rows after it in key order. */
  after?: JsonRow;
  orderBy: OrderBy[];
}

/** `order_by` as pgdeltastream takes it (one `{column, order}`) or a list of them. */
export function parseOrderBy(schema: TableSchema, raw: unknown): OrderBy[] {
  if (raw === undefined || raw === null) return [];
  const list = Array.isArray(raw) ? raw : [raw];
  return list.map((o, i) => {
    const field = Array.isArray(raw) ? `order_by[${i}]` : 'order_by';
    const { column, order = 'ASC' } = (o ?? {}) as { column?: unknown; order?: unknown };
    if (typeof column !== 'string' || !schema.columns.some((c) => c.name === column)) {
      throw badRequest(
        `${field}.column`,
        `no column ${JSON.stringify(column)} in ${schema.schema}.${schema.name} ` +
          `(columns: ${schema.columns.map((c) => c.name).join(', ')})`,
      );
    }
    const dir = typeof order === 'string' ? order.toUpperCase() : order;
    if (dir !== 'ASC' && dir !== 'DESC') throw badRequest(`${field}.order`, 'must be "ASC" or "DESC"');
    return { column, order: dir };
  });
}

/** The key values of `after` as text parameters, in key order. */
function afterParams(schema: TableSchema, after: JsonRow): string[] {
  return schema.key.map((k) => {
    const v = after[k];
    if (v === undefined || v === null || typeof v === 'object') {
      throw badRequest(`after.${k}`, `must be the key value of the last row read (key: ${schema.key.join(', ')})`);
    }
    return String(v);
  });
}

export async function readPage(client: pg.Client, schema: TableSchema, req: PageRequest): Promise<Row[]> {
  const q = pg.escapeIdentifier;
  const keyList = schema.key.map(q).join(', ');
  const params: unknown[] = [];
  let where = '';
  if (req.after) {
    if (req.orderBy.length) throw badRequest('after', 'pages after a key are in key order: leave order_by out');
    params.push(...afterParams(schema, req.after));
    where = `WHERE (${keyList}) > (${schema.key.map((_, i) => `$${i + 1}`).join(', ')})`;
  }
  // The key ends every order, so offset pages are stable (the snapshot does not change).
  const order = [...req.orderBy.map((o) => `${q(o.column)} ${o.order}`), keyList].join(', ');
  params.push(req.limit, req.offset);
  const columns = schema.columns.map((c) => outputTextSql(q(c.name))).join(', ');
  const sql = `SELECT ${columns} FROM ${q(schema.schema)}.${q(schema.name)}
    ${where} ORDER BY ${order} LIMIT $${params.length - 1} OFFSET $${params.length}`;
  const { rows } = await client.query<(string | null)[]>({ text: sql, values: params, rowMode: 'array' });
  const parsers = schema.columns.map(columnParser);
  return rows.map((values) => {
    const row: Row = {};
    schema.columns.forEach((c, i) => {
      const t = values[i];
      row[c.name] = t === null || t === undefined ? null : parsers[i]!(t);
    });
    return row;
  });
}
