/**
 * Source/destination comparison for `walflow verify`: row counts and an
 * order-independent comparison of every row (key and values, canonical form).
 * Memory holds one hash per source row (not the rows themselves).
 */
import { createHash } from 'node:crypto';
import type { Row } from './model.ts';
import { toPgText } from './pgtext.ts';

export interface TableVerification {
  table: string;
  sourceRows: number;
  destinationRows: number;
  equal: boolean;
  /** The first keys whose rows differ or exist on one side only. */
  firstDifferences: { key: string; problem: 'missing in destination' | 'only in destination' | 'values differ' }[];
}

function rowHash(row: Row, columns: string[]): string {
  const h = createHash('sha1');
  for (const c of columns) h.update(`${toPgText(row[c] ?? null) ?? '\u0000NULL'}\u0001`);
  return h.digest('base64');
}

export async function verifyTable(opts: {
  table: string;
  key: string[];
  columns: string[];
  source: AsyncIterable<Row>;
  destination: AsyncIterable<Row>;
  maxDifferences?: number;
}): Promise<TableVerification> {
  const max = opts.maxDifferences ?? 10;
  const keyOf = (r: Row) => JSON.stringify(opts.key.map((k) => toPgText(r[k] ?? null)));
  const pending = new Map<string, string>();
  let sourceRows = 0;
  for await (const r of opts.source) {
    pending.set(keyOf(r), rowHash(r, opts.columns));
    sourceRows++;
  }
  let destinationRows = 0;
  const firstDifferences: TableVerification['firstDifferences'] = [];
  let differences = 0;
  const note = (key: string, problem: TableVerification['firstDifferences'][number]['problem']) => {
    differences++;
    if (firstDifferences.length < max) firstDifferences.push({ key, problem });
  };
  for await (const r of opts.destination) {
    destinationRows++;
    const key = keyOf(r);
    const expected = pending.get(key);
    if (expected === undefined) note(key, 'only in destination');
    else if (expected !== rowHash(r, opts.columns)) note(key, 'values differ');
    pending.delete(key);
  }
  for (const key of pending.keys()) note(key, 'missing in destination');
  return { table: opts.table, sourceRows, destinationRows, equal: differences === 0, firstDifferences };
}
