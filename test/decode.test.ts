/** The pgoutput decoder's handling of tables it does not follow (activities/postgres/decode.ts), without a stack. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Pgoutput } from 'pg-logical-replication';
import { PgoutputDecoder } from '../activities/postgres/decode.ts';
import { SchemaError } from '../activities/postgres/schema.ts';

const relation = (name: string): Pgoutput.MessageRelation => ({
  tag: 'relation',
  relationOid: 4242,
  schema: 'public',
  name,
  replicaIdentity: 'default',
  keyColumns: ['id'],
  columns: [{ name: 'id', flags: 1, typeOid: 23, typeMod: -1, typeSchema: null, typeName: null, parser: (v) => v }],
});

test('a table the pipeline does not follow, gone from the catalog since its WAL, does not stop the stream', async () => {
  let lookups = 0;
  const decoder = new PgoutputDecoder(new Map(), async (t) => {
    lookups++;
    throw new SchemaError(`table ${t.schema}.${t.name} does not exist in the source`);
  });
  assert.deepEqual(await decoder.decode(relation('renamed_since')), []);
  assert.equal(lookups, 1);
});

test('a catalog that cannot be read is still an error (retried), not a table taken as gone', async () => {
  const decoder = new PgoutputDecoder(new Map(), async () => {
    throw new Error('connection terminated');
  });
  await assert.rejects(async () => decoder.decode(relation('other')), /connection terminated/);
});
