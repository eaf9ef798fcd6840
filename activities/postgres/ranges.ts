/**
 * Backfill ranges: CTID page ranges, so every range is one TID range scan
 * (Postgres 14+) whatever the key type, and every row is in exactly one range.
 * Each leaf partition is planned on its own. The last range of a relation is
 * open-ended, so rows added after planning (on new pages) are still copied.
 */
import { StringDecoder } from 'node:string_decoder';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { Row, TableSchema } from '../../lib/model.ts';
import { columnParser } from '../../lib/pgvalues.ts';
import { splitTableName } from './schema.ts';

export interface PageRange {
  /** The relation scanned: the table itself or one leaf partition ("schema.name"). */
  relation: string;
  startPage: number;
  /** Exclusive; null for "to the end of the relation". */
  endPage: number | null;
}

export interface TablePlan {
  ranges: PageRange[];
  rowsEstimate: number;
}

interface LeafRelation {
  relation: string;
  pages: number;
  tuples: number;
  bytes: number;
}

/** The relations that hold a table's rows: the table itself, or each leaf partition of a partitioned table. */
export async function leafRelations(client: pg.Client, table: string): Promise<LeafRelation[]> {
  const { schema, name } = splitTableName(table);
  const { rows } = await client.query<{ relation: string; pages: string; tuples: string; bytes: string }>(
    `
    WITH t AS (SELECT format('%I.%I', $1::text, $2::text)::regclass::oid AS oid)
    SELECT format('%s.%s', n.nspname, c.relname) AS relation,
           (pg_relation_size(c.oid) / current_setting('block_size')::int)::text AS pages,
           greatest(c.reltuples, 0)::bigint::text AS tuples, pg_relation_size(c.oid)::text AS bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND (c.oid = (SELECT oid FROM t)
      OR c.oid IN (SELECT relid FROM pg_partition_tree((SELECT oid FROM t)) WHERE isleaf))
    ORDER BY 1`,
    [schema, name],
  );
  return rows.map((r) => ({
    relation: r.relation,
    pages: Number(r.pages),
    tuples: Number(r.tuples),
    bytes: Number(r.bytes),
  }));
}

/** Plans `table` ("schema.table") into page ranges of about `rowsPerRange` rows. */
export async function planTableRanges(
  client: pg.Client,
  table: string,
  opts: { rowsPerRange: number },
): Promise<TablePlan> {
  const ranges: PageRange[] = [];
  let rowsEstimate = 0;
  for (const r of await leafRelations(client, table)) {
    // reltuples is -1/0 before the first ANALYZE: estimate from the size at ~100 bytes a row.
    const tuples = r.tuples || Math.ceil(r.bytes / 100);
    rowsEstimate += tuples;
    const rowsPerPage = r.pages > 0 ? Math.max(1, tuples / r.pages) : 1;
    // Ranges of equal size near rowsPerRange, not full ones and a sliver: the sliver would cost a copy's start alone.
    const count = Math.max(1, Math.round(r.pages / Math.max(1, opts.rowsPerRange / rowsPerPage)));
    const pagesPerRange = Math.max(1, Math.ceil(r.pages / count));
    let start = 0;
    while (start + pagesPerRange < r.pages) {
      ranges.push({ relation: r.relation, startPage: start, endPage: start + pagesPerRange });
      start += pagesPerRange;
    }
    ranges.push({ relation: r.relation, startPage: start, endPage: null });
  }
  return { ranges, rowsEstimate };
}

function rangeQuery(schema: TableSchema, range: PageRange): string {
  const quote = pg.escapeIdentifier;
  const rel = splitTableName(range.relation);
  const cols = schema.columns.map((c) => quote(c.name)).join(', ');
  const conditions = [`ctid >= '(${range.startPage},0)'::tid`];
  if (range.endPage !== null) conditions.push(`ctid < '(${range.endPage},0)'::tid`);
  return `SELECT ${cols} FROM ONLY ${quote(rel.schema)}.${quote(rel.name)} WHERE ${conditions.join(' AND ')}`;
}

/** A batch's bound in COPY text bytes, whatever its row count: wide rows must not make batches large. */
export const COPY_BATCH_BYTES = 4 * 2 ** 20;

const copyStream = (client: pg.Client, schema: TableSchema, range: PageRange): AsyncIterable<Buffer> =>
  client.query(copyTo(`COPY (${rangeQuery(schema, range)}) TO STDOUT`)) as unknown as AsyncIterable<Buffer>;

/**
 * Streams one range as rows in batches of at most `batchRows` rows and about `batchBytes` of COPY text,
 * through COPY (text format), parsed incrementally: memory holds one batch and one network chunk, never
 * the range. Runs inside the caller's transaction (which has imported the snapshot).
 */
export async function* copyTableRange(
  client: pg.Client,
  schema: TableSchema,
  range: PageRange,
  opts: { batchRows: number; batchBytes?: number },
): AsyncGenerator<Row[]> {
  const batchBytes = opts.batchBytes ?? COPY_BATCH_BYTES;
  let bytes = 0;
  const decoder = new StringDecoder('utf8');
  const names = schema.columns.map((c) => c.name);
  const parsers = schema.columns.map(columnParser);
  const last = names.length - 1;
  let tail = '';
  let batch: Row[] = [];
  for await (const chunk of copyStream(client, schema, range)) {
    bytes += chunk.length;
    const text = tail + decoder.write(chunk);
    // Fields are cut straight out of the chunk's text (COPY escapes tabs and newlines inside values).
    let pos = 0;
    for (let nl = text.indexOf('\n', pos); nl >= 0; nl = text.indexOf('\n', pos)) {
      const row: Row = {};
      for (let i = 0; i <= last; i++) {
        const end = i === last ? nl : text.indexOf('\t', pos);
        const field = text.slice(pos, end);
        row[names[i]!] = field === '\\N' ? null : parsers[i]!(field.includes('\\') ? unescapeCopy(field) : field);
        pos = end + 1;
      }
      batch.push(row);
      if (batch.length >= opts.batchRows) {
        yield batch;
        batch = [];
        bytes = 0;
      }
    }
    tail = text.slice(pos);
    if (bytes >= batchBytes && batch.length) {
      yield batch;
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length) yield batch;
}

/**
 * The same range as COPY text, unparsed, in pieces of about `batchBytes` cut after a row's newline (COPY
 * escapes newlines inside values, so a raw newline always ends a row): for destinations that take COPY
 * text (Destination.applyCopyText) without a row object per row.
 */
export async function* copyTableRangeText(
  client: pg.Client,
  schema: TableSchema,
  range: PageRange,
  opts: { batchBytes?: number } = {},
): AsyncGenerator<{ text: Buffer; rows: number }> {
  const batchBytes = opts.batchBytes ?? COPY_BATCH_BYTES;
  let parts: Buffer[] = [];
  let size = 0;
  const take = (all: boolean) => {
    const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    const cut = all ? buf.length : buf.lastIndexOf(10) + 1;
    let rows = 0;
    for (let i = buf.indexOf(10); i >= 0 && i < cut; i = buf.indexOf(10, i + 1)) rows++;
    const rest = buf.subarray(cut);
    parts = rest.length ? [rest] : [];
    size = rest.length;
    return { text: buf.subarray(0, cut), rows };
  };
  for await (const chunk of copyStream(client, schema, range)) {
    parts.push(chunk);
    size += chunk.length;
    if (size < batchBytes) continue;
    const piece = take(false);
    if (piece.rows) yield piece;
  }
  if (size) yield take(true);
}

const COPY_ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

/** COPY text format escapes (Postgres writes only these, plus \N for NULL handled above). */
function unescapeCopy(field: string): string {
  return field.replace(/\\(.)/g, (_, c: string) => COPY_ESCAPES[c] ?? c);
}
