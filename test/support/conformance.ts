/**
 * What every destination must do, whatever its engine: exact values, the newest version per key
 * whatever the order or repetition of batches, truncation watermarks, ADD COLUMN before its rows.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Destination } from '../../activities/destinations/destination.ts';
import { makeVersion } from '../../lib/lsn.ts';
import type { Change, Row, TableSchema } from '../../lib/model.ts';
import { comparableValues, jsonColumns } from '../../lib/verify.ts';

/** A table of an int8 key `id` and one text column: the simplest a destination holds. */
export function keyAndTextTable(name: string, text: string): TableSchema {
  return {
    schema: 'public',
    name,
    key: ['id'],
    replicaIdentity: 'default',
    columns: [
      { name: 'id', type: 'bigint', typeOid: 20, kind: 'bigint', arrayDims: 0, nullable: false },
      { name: text, type: 'text', typeOid: 25, kind: 'text', arrayDims: 0, nullable: true },
    ],
  };
}

export function describeDestination(name: string, dest: Destination, dropAll: () => Promise<void>): void {
  describe(name, () => {
    const schema: TableSchema = {
      schema: 'public',
      name: 'items',
      key: ['id'],
      replicaIdentity: 'default',
      columns: [
        { name: 'id', type: 'bigint', typeOid: 20, kind: 'bigint', arrayDims: 0, nullable: false },
        { name: 'name', type: 'text', typeOid: 25, kind: 'text', arrayDims: 0, nullable: true },
        {
          name: 'price',
          type: 'numeric(12,2)',
          typeOid: 1700,
          kind: 'decimal',
          arrayDims: 0,
          precision: 12,
          scale: 2,
          nullable: true,
        },
        {
          name: 'at',
          type: 'timestamp with time zone',
          typeOid: 1184,
          kind: 'timestamptz',
          arrayDims: 0,
          nullable: true,
        },
        { name: 'tags', type: 'text[]', typeOid: 1009, kind: 'text', arrayDims: 1, nullable: false },
        { name: 'maybe_tags', type: 'int4[]', typeOid: 1007, kind: 'int', arrayDims: 1, nullable: true },
        { name: 'grid', type: 'integer[]', typeOid: 1007, kind: 'int', arrayDims: 2, nullable: false },
        { name: 'blob', type: 'bytea', typeOid: 17, kind: 'bytes', arrayDims: 0, nullable: true },
        { name: 'ratio', type: 'double precision', typeOid: 701, kind: 'float', arrayDims: 0, nullable: true },
        { name: 'doc', type: 'jsonb', typeOid: 3802, kind: 'json', arrayDims: 0, nullable: true },
        { name: 'day', type: 'date', typeOid: 1082, kind: 'date', arrayDims: 0, nullable: true },
        { name: 't', type: 'time without time zone', typeOid: 1083, kind: 'time', arrayDims: 0, nullable: true },
        {
          name: 'local',
          type: 'timestamp without time zone',
          typeOid: 1114,
          kind: 'timestamp',
          arrayDims: 0,
          nullable: true,
        },
        { name: 'ok', type: 'boolean', typeOid: 16, kind: 'bool', arrayDims: 0, nullable: true },
        { name: 'exact', type: 'numeric', typeOid: 1700, kind: 'decimal', arrayDims: 0, nullable: true },
      ],
    };
    const table = { schema: 'public', name: 'items' };
    // LSNs past 1 TiB of WAL, as on a long-lived server: versions need more than 64 bits.
    const v = (lsn: number, seq: number) => makeVersion((1n << 40n) + BigInt(lsn), seq);
    const same = (r: Row) =>
      comparableValues(
        r,
        schema.columns.map((c) => c.name),
        new Set(jsonColumns(schema)),
      );
    const row = (id: number, name: string): Row => ({
      id: String(id),
      name,
      price: '12.50',
      at: '2024-05-06 07:08:09.123456+00',
      tags: ['a', null],
      maybe_tags: id % 2 ? null : [1, null],
      grid:
        id % 3
          ? [
              [id, null],
              [3, 4],
            ]
          : [],
      blob: Buffer.from([1, 2, 255]),
      ratio: Number.NaN,
      doc: '{"a": [1, "x", null], "b": {"c": true}}',
      day: '2024-02-29',
      t: '23:59:59.5',
      local: '1999-12-31 23:59:59.000001',
      ok: id % 2 === 0,
      exact: '123456789012345678901234567890.123456789',
    });
    const live = async () => {
      const rows: Row[] = [];
      for await (const r of dest.readLive!(schema)) rows.push(r);
      return rows.sort((a, b) => Number(a.id) - Number(b.id));
    };

    before(() => dest.prepare([schema]));
    after(async () => {
      await dropAll();
      await dest.close();
    });

    test('values round-trip exactly; replays and late backfill rows leave the newest version', async () => {
      const backfill: Change[] = [1, 2, 3].map((id) => ({
        kind: 'insert',
        table,
        version: v(100, 0),
        row: row(id, `copy ${id}`),
      }));
      const stream: Change[] = [
        { kind: 'update', table, version: v(200, 1), row: row(1, 'updated'), unchanged: [] },
        { kind: 'delete', table, version: v(200, 2), old: { id: '2' } },
        { kind: 'insert', table, version: v(300, 1), row: row(4, 'new') },
      ];
      await dest.apply(stream);
      await dest.apply(stream); // a retried batch
      await dest.apply(backfill); // backfill rows arriving after newer changes
      const rows = await live();
      assert.deepEqual(
        rows.map((r) => [r.id, r.name]),
        [
          ['1', 'updated'],
          ['3', 'copy 3'],
          ['4', 'new'],
        ],
      );
      assert.deepEqual(same(rows[0]!), same(row(1, 'updated')), 'every value comes back as it went in');
      assert.deepEqual(Object.keys(rows[0]!).sort(), Object.keys(row(1, 'updated')).sort());
    });

    test(
      'TRUNCATE removes older rows and keeps late older rows out, newer rows stay; ADD COLUMN applies before its ' +
        'rows',
      async () => {
        await dest.apply([
          { kind: 'truncate', table, version: v(400, 1) },
          { kind: 'insert', table, version: v(400, 2), row: row(10, 'after truncate') },
        ]);
        await dest.apply([{ kind: 'insert', table, version: v(150, 0), row: row(11, 'late backfill row') }]);
        assert.deepEqual(
          (await live()).map((r) => r.id),
          ['10'],
        );

        const added = {
          name: 'extra',
          type: 'integer',
          typeOid: 23,
          kind: 'int' as const,
          arrayDims: 0,
          nullable: true,
        };
        const evolved = { ...schema, columns: [...schema.columns, added] };
        await dest.apply([
          { kind: 'schema', table, version: v(500, 0), schema: evolved, added: [added], dropped: [] },
          { kind: 'insert', table, version: v(500, 1), row: { ...row(12, 'with extra'), extra: 7 } },
        ]);
        const rows: Row[] = [];
        for await (const r of dest.readLive!(evolved)) rows.push(r);
        assert.deepEqual(rows.find((r) => r.id === '12')?.extra, 7);
      },
    );

    test('a batch interleaving two tables, with truncates between changes, ends in the source state', async () => {
      const events = keyAndTextTable('events', 'note');
      const ev = { schema: 'public', name: 'events' };
      await dest.prepare([events]);
      // What a multi-table transaction looks like in the stream: the tables alternate change by change.
      await dest.apply([
        { kind: 'insert', table, version: v(600, 1), row: row(20, 'first') },
        { kind: 'insert', table: ev, version: v(600, 2), row: { id: '1', note: 'gone' } },
        { kind: 'update', table, version: v(600, 3), row: row(20, 'second'), unchanged: [] },
        { kind: 'insert', table: ev, version: v(600, 4), row: { id: '2', note: 'gone' } },
        { kind: 'truncate', table: ev, version: v(600, 5) },
        { kind: 'insert', table: ev, version: v(600, 6), row: { id: '3', note: 'gone' } },
        { kind: 'truncate', table: ev, version: v(600, 7) },
        { kind: 'insert', table: ev, version: v(600, 8), row: { id: '4', note: 'kept' } },
        { kind: 'insert', table, version: v(600, 9), row: row(21, 'third') },
        { kind: 'update', table: ev, version: v(600, 10), row: { id: '4', note: 'kept, updated' }, unchanged: [] },
      ]);
      const eventRows: Row[] = [];
      for await (const r of dest.readLive!(events)) eventRows.push(r);
      assert.deepEqual(eventRows, [{ id: '4', note: 'kept, updated' }]);
      const items = new Map((await live()).map((r) => [r.id, r.name]));
      assert.equal(items.get('20'), 'second');
      assert.equal(items.get('21'), 'third');
    });

    // A stream that ended between a rename it applied and its record must be able to tell, before writing by old names.
    test('renaming a column keeps its values, and the destination tells which columns of a shape it lacks', {
      skip: dest.canRename === undefined && 'the destination does not rename columns',
    }, async () => {
      assert.ok(dest.missingColumns, 'a destination that renames columns has missingColumns');
      const before = keyAndTextTable('renames', 'a');
      const afterRename = keyAndTextTable('renames', 'b');
      const renames = { schema: 'public', name: 'renames' };
      assert.deepEqual(await dest.missingColumns(before), [], 'no table yet: nothing lacking');
      await dest.prepare([before]);
      assert.deepEqual(await dest.missingColumns(before), []);
      await dest.apply([
        { kind: 'insert', table: renames, version: v(800, 1), row: { id: '1', a: 'kept' } },
        {
          kind: 'schema',
          table: renames,
          version: v(800, 2),
          schema: afterRename,
          added: [],
          dropped: [],
          renamed: [{ from: 'a', to: 'b' }],
        },
      ]);
      assert.deepEqual(await dest.missingColumns(before), ['a']);
      assert.deepEqual(await dest.missingColumns(afterRename), []);
      const rows: Row[] = [];
      for await (const r of dest.readLive!(afterRename)) rows.push(r);
      assert.deepEqual(rows, [{ id: '1', b: 'kept' }]);
    });

    // (A decimal longer than a double inside JSON does not survive the Snowflake emulator's VARIANT; `verify` reports
    // it.)
    test('float -0 comes back as -0; JSON numbers are compared exactly, as Postgres prints them', async () => {
      const exact = { ...row(30, 'exact'), ratio: -0, doc: '{"long": 1.5, "n": [-0.5, 12345678901234567890]}' };
      await dest.apply([{ kind: 'insert', table, version: v(700, 1), row: exact }]);
      const back = (await live()).find((r) => r.id === '30')!;
      assert.ok(Object.is(back.ratio, -0), `ratio ${String(back.ratio)} is -0`);
      assert.deepEqual(same(back), same(exact));
      assert.notDeepEqual(
        same({ ...back, doc: '{"long": 1.5000000000000000001, "n": [-0.5, 12345678901234567890]}' }),
        same(exact),
        'a rounded decimal is a difference',
      );
      assert.notDeepEqual(same({ ...back, ratio: 0 }), same(exact), '+0 is not -0');
    });
  });
}
