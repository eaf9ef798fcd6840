/**
 * The in-memory destination passes the conformance suite every destination passes, so tests of the
 * pipeline's rules can stand on it without a database; and it follows the interface where the suite
 * does not look (shape changes, resync's removeStale and dropTable, a failed batch).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { makeVersion } from '../lib/lsn.ts';
import type { Row, TableSchema } from '../lib/model.ts';
import { describeDestination, keyAndTextTable } from './support/conformance.ts';
import { MemoryDestination } from './support/memory-destination.ts';

describeDestination('MemoryDestination', new MemoryDestination(), async () => {});

const v = (lsn: number, seq = 1) => makeVersion(BigInt(lsn), seq);
const table = { schema: 'public', name: 'notes' };

async function live(dest: MemoryDestination, schema: TableSchema): Promise<Row[]> {
  const rows: Row[] = [];
  for await (const r of dest.readLive(schema)) rows.push(r);
  return rows.sort((a, b) => Number(a.id) - Number(b.id));
}

describe('MemoryDestination beyond the conformance suite', () => {
  test(
    'a rename keeps values, an int4 widened to int8 comes back as int8 text, a dropped column stays and later ' +
      'rows leave it NULL',
    async () => {
      const before: TableSchema = {
        ...keyAndTextTable('notes', 'body'),
        columns: [
          ...keyAndTextTable('notes', 'body').columns,
          { name: 'n', type: 'integer', typeOid: 23, kind: 'int', arrayDims: 0, nullable: true },
        ],
      };
      const dest = new MemoryDestination();
      await dest.prepare([before]);
      await dest.apply([{ kind: 'insert', table, version: v(10), row: { id: '1', body: 'kept', n: 7 } }]);
      const [id, body, n] = before.columns as [
        TableSchema['columns'][0],
        TableSchema['columns'][0],
        TableSchema['columns'][0],
      ];
      const wide = { ...n, type: 'bigint', typeOid: 20, kind: 'bigint' as const };
      const after: TableSchema = { ...before, columns: [id, { ...body, name: 'text', dropped: true }, wide] };
      await dest.apply([
        {
          kind: 'schema',
          table,
          version: v(20, 0),
          schema: after,
          added: [],
          dropped: ['text'],
          renamed: [{ from: 'body', to: 'text' }],
          retyped: [{ from: n, to: wide }],
        },
        { kind: 'insert', table, version: v(20, 1), row: { id: '2', n: '9000000000' } },
      ]);
      assert.deepEqual(await live(dest, after), [
        { id: '1', text: 'kept', n: '7' },
        { id: '2', text: null, n: '9000000000' },
      ]);
    },
  );

  test(
    'removeStale hides the rows a resync did not rewrite; a later older row of them stays out, a newer one comes ' +
      'back',
    async () => {
      const schema = keyAndTextTable('notes', 'body');
      const dest = new MemoryDestination();
      await dest.prepare([schema]);
      await dest.apply(
        [1, 2, 3].map((id) => ({
          kind: 'insert' as const,
          table,
          version: v(10),
          row: { id: String(id), body: 'old copy' },
        })),
      );
      await dest.apply([{ kind: 'insert', table, version: v(50, 0), row: { id: '2', body: 'fresh copy' } }]);
      await dest.removeStale(schema, v(50, 0));
      assert.deepEqual(await live(dest, schema), [{ id: '2', body: 'fresh copy' }]);
      await dest.apply([
        { kind: 'update', table, version: v(40), row: { id: '1', body: 'older than the resync' }, unchanged: [] },
      ]);
      await dest.apply([
        { kind: 'update', table, version: v(60), row: { id: '3', body: 'changed since' }, unchanged: [] },
      ]);
      assert.deepEqual(
        (await live(dest, schema)).map((r) => r.id),
        ['2', '3'],
      );
    },
  );

  test('dropTable empties the table and needs a prepare before the next write', async () => {
    const schema = keyAndTextTable('notes', 'body');
    const dest = new MemoryDestination();
    await dest.prepare([schema]);
    await dest.apply([{ kind: 'insert', table, version: v(10), row: { id: '1', body: 'x' } }]);
    await dest.dropTable(schema);
    await assert.rejects(
      dest.apply([{ kind: 'insert', table, version: v(20), row: { id: '2', body: 'y' } }]),
      /public\.notes was not prepared/,
    );
    await dest.prepare([schema]);
    assert.deepEqual(await live(dest, schema), []);
  });

  test('a batch that fails part-way writes nothing, like a transaction rolled back', async () => {
    const schema = keyAndTextTable('notes', 'body');
    const dest = new MemoryDestination();
    await dest.prepare([schema]);
    await dest.apply([{ kind: 'insert', table, version: v(10), row: { id: '1', body: 'before' } }]);
    await assert.rejects(
      dest.apply([
        { kind: 'update', table, version: v(20), row: { id: '1', body: 'lost with the batch' }, unchanged: [] },
        { kind: 'truncate', table, version: v(20, 2) },
        { kind: 'insert', table: { schema: 'public', name: 'unprepared' }, version: v(20, 3), row: { id: '1' } },
      ]),
      /not prepared/,
    );
    assert.deepEqual(await live(dest, schema), [{ id: '1', body: 'before' }]);
    await dest.apply([{ kind: 'insert', table, version: v(15), row: { id: '2', body: 'no truncate happened' } }]);
    assert.deepEqual(
      (await live(dest, schema)).map((r) => r.id),
      ['1', '2'],
    );
  });
});
