/** Whole-table reads of live source rows as canonical Values: what `walflow verify` and tests compare with. */
import type pg from 'pg';
import type { Row, TableSchema } from '../../lib/model.ts';
import { copyTableRange, leafRelations } from './ranges.ts';

/** Streams every row of `schema` (all partitions) in batches; bounded memory. */
export async function* readTable(client: pg.Client, schema: TableSchema, batchRows = 10_000): AsyncGenerator<Row> {
  for (const { relation } of await leafRelations(client, `${schema.schema}.${schema.name}`)) {
    for await (const batch of copyTableRange(client, schema, { relation, startPage: 0, endPage: null }, { batchRows }))
      yield* batch;
  }
}
