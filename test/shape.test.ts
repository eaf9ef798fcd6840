/** Shape comparison (activities/postgres/shape.ts): every relation difference is applied exactly or stops the table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ColumnSchema, TableSchema } from '../lib/model.ts';
import { partitionChange } from '../activities/postgres/partitions.ts';
import { compareShape, sameShape, widens, type DestinationAbilities } from '../activities/postgres/shape.ts';

const col = (
  name: string,
  attnum: number,
  typeOid: number,
  typeMod: number,
  type: string,
  extra: Partial<ColumnSchema> = {},
): ColumnSchema => ({
  name,
  attnum,
  typeOid,
  typeMod,
  type,
  kind: typeOid === 20 ? 'bigint' : typeOid === 1700 ? 'decimal' : typeOid === 25 || typeOid === 1043 ? 'text' : 'int',
  arrayDims: 0,
  nullable: name !== 'id',
  ...extra,
});
const numeric = (p: number, s: number) => ((p << 16) | s) + 4;
const table = (columns: ColumnSchema[]): TableSchema => ({
  schema: 'public',
  name: 't',
  oid: 1,
  key: ['id'],
  replicaIdentity: 'default',
  columns,
});
const dest = table([
  col('id', 1, 23, -1, 'integer'),
  col('n', 2, 23, -1, 'integer'),
  col('amount', 3, 1700, numeric(10, 2), 'numeric(10,2)'),
  col('note', 4, 25, -1, 'text'),
]);
const rel = (t: TableSchema) =>
  t.columns.filter((c) => !c.dropped).map((c) => ({ name: c.name, typeOid: c.typeOid, typeMod: c.typeMod! }));
const all: DestinationAbilities = { canRetype: () => true, canRename: () => true };
const none: DestinationAbilities = { canRetype: () => false, canRename: () => false };

test('widening is only what keeps every value and its text', () => {
  assert.ok(widens({ typeOid: 23, typeMod: -1 }, { typeOid: 20, typeMod: -1 }));
  assert.ok(!widens({ typeOid: 20, typeMod: -1 }, { typeOid: 23, typeMod: -1 }));
  assert.ok(widens({ typeOid: 1700, typeMod: numeric(10, 2) }, { typeOid: 1700, typeMod: numeric(12, 4) }));
  assert.ok(
    !widens({ typeOid: 1700, typeMod: numeric(10, 2) }, { typeOid: 1700, typeMod: numeric(10, 4) }),
    'fewer integer digits',
  );
  assert.ok(!widens({ typeOid: 1700, typeMod: -1 }, { typeOid: 1700, typeMod: numeric(30, 4) }));
  assert.ok(widens({ typeOid: 1043, typeMod: 14 }, { typeOid: 25, typeMod: -1 }));
  assert.ok(!widens({ typeOid: 25, typeMod: -1 }, { typeOid: 1043, typeMod: 14 }));
  assert.ok(widens({ typeOid: 700, typeMod: -1 }, { typeOid: 701, typeMod: -1 }));
  assert.ok(!widens({ typeOid: 23, typeMod: -1 }, { typeOid: 25, typeMod: -1 }));
});

test('the same shape is no change; a widening is a retype the destination must accept; replayed older types fit', () => {
  assert.deepEqual(compareShape(dest, rel(dest), undefined, none), {
    kind: 'ok',
    schema: dest,
    names: ['id', 'n', 'amount', 'note'],
  });
  const wider = rel(dest).map((c) => (c.name === 'n' ? { ...c, typeOid: 20 } : c));
  const v = compareShape(dest, wider, undefined, all);
  assert.equal(v.kind, 'ok');
  assert.deepEqual(v.kind === 'ok' && v.change?.retyped.map((r) => [r.from.type, r.to.type, r.to.kind]), [
    ['integer', 'bigint', 'bigint'],
  ]);
  const after = v.kind === 'ok' ? v.schema : dest;
  assert.deepEqual(
    compareShape(after, rel(dest), undefined, none).kind === 'ok' && compareShape(after, rel(dest), undefined, none),
    { kind: 'ok', schema: after, names: ['id', 'n', 'amount', 'note'] },
  );
  const refused = compareShape(dest, wider, undefined, none);
  assert.equal(refused.kind, 'stop');
  assert.match(
    refused.kind === 'stop' ? refused.problem.reason : '',
    /n changed type from integer to bigint, which the destination cannot change/,
  );
});

test('narrowing stops the table naming column, old and new type', () => {
  const v = compareShape(
    dest,
    rel(dest).map((c) => (c.name === 'amount' ? { ...c, typeMod: numeric(8, 2) } : c)),
    undefined,
    all,
  );
  assert.equal(v.kind, 'stop');
  assert.deepEqual(v.kind === 'stop' && [v.problem.column, v.problem.oldType, v.problem.newType], [
    'amount',
    'numeric(10,2)',
    'numeric(8,2)',
  ]);
});

test(
  'RENAME COLUMN is told by attnum; an unconfirmable one stops; ADD COLUMN with a default stops for a re-copy; ' +
    'DROP keeps the column; an unpublished generated column stays',
  () => {
    const renamed = rel(dest).map((c) => (c.name === 'n' ? { ...c, name: 'm' } : c));
    const catalog = table(dest.columns.map((c) => (c.name === 'n' ? { ...c, name: 'm' } : c)));
    const v = compareShape(dest, renamed, catalog, all);
    assert.deepEqual(v.kind === 'ok' && [v.change?.renamed, v.names], [
      [{ from: 'n', to: 'm' }],
      ['id', 'm', 'amount', 'note'],
    ]);
    // The catalog renamed it again since: cannot tell.
    assert.equal(
      compareShape(dest, renamed, table(dest.columns.map((c) => (c.name === 'n' ? { ...c, name: 'k' } : c))), all).kind,
      'stop',
    );
    assert.equal(compareShape(dest, renamed, catalog, none).kind, 'stop');

    const extra = col('extra', 5, 23, -1, 'integer');
    const added = compareShape(
      dest,
      [...rel(dest), { name: 'extra', typeOid: 23, typeMod: -1 }],
      table([...dest.columns, extra]),
      none,
    );
    assert.deepEqual(added.kind === 'ok' && added.change?.added.map((c) => c.name), ['extra']);
    const defaulted = compareShape(
      dest,
      [...rel(dest), { name: 'extra', typeOid: 23, typeMod: -1 }],
      table([...dest.columns, { ...extra, hasDefault: true }]),
      all,
    );
    assert.match(defaulted.kind === 'stop' ? defaulted.problem.reason : '', /added with a default/);
    assert.equal(
      defaulted.kind === 'stop' && defaulted.problem.recopy,
      true,
      'a re-copy cures it: walflow does it itself',
    );

    const dropped = compareShape(
      dest,
      rel(dest).filter((c) => c.name !== 'note'),
      table(dest.columns.filter((c) => c.name !== 'note')),
      none,
    );
    assert.ok(dropped.kind === 'ok');
    assert.deepEqual(dropped.change?.dropped, ['note']);
    assert.equal(dropped.schema.columns.find((c) => c.name === 'note')?.dropped, true);
    assert.ok(
      !Object.hasOwn(compareShape(dropped.schema, rel(dropped.schema), undefined, none), 'change'),
      'a kept dropped column is no change',
    );
    // Added again under the same name: the destination still has the old values.
    assert.equal(compareShape(dropped.schema, rel(dest), table(dest.columns), all).kind, 'stop');
    // A generated column missing from the relation (not published) is not a drop: it stays, to be read by key.
    const generated = table(dest.columns.map((c) => (c.name === 'note' ? { ...c, generated: true } : c)));
    const unpublished = compareShape(
      dest,
      rel(dest).filter((c) => c.name !== 'note'),
      generated,
      all,
    );
    assert.equal(unpublished.kind, 'ok');
    assert.ok(unpublished.kind === 'ok' && !unpublished.change, 'no schema change');
    assert.ok(
      unpublished.kind === 'ok' && unpublished.schema.columns.some((c) => c.name === 'note' && !c.dropped),
      'the column stays',
    );
    assert.ok(
      unpublished.kind === 'ok' && !unpublished.names.includes('note'),
      'and is not among the columns the relation sends',
    );
  },
);

test('a partition attached, detached or truncated is a change the WAL does not carry: the table is re-copied', () => {
  const reflected = { 'public.p_eu': 16400, 'public.p_us': 16410, 'public.p_asia': 16420 };
  assert.equal(partitionChange('public.p', reflected, { ...reflected }), undefined, 'the same partitions: nothing');
  const problem = partitionChange('public.p', reflected, {
    'public.p_eu': 16400,
    'public.p_asia': 16430,
    'public.p_af': 16440,
  });
  assert.equal(problem?.recopy, true);
  assert.equal(
    problem?.reason,
    'partitions of public.p changed (public.p_af attached, public.p_us detached, public.p_asia truncated or ' +
      'rewritten); the WAL carries no rows for that, so walflow re-copies the table',
  );
});

test('sameShape: the recorded live columns, exact types and column numbers, against the catalog', () => {
  assert.equal(sameShape(dest, dest), true);
  const widenedAndKept = table([
    col('id', 1, 23, -1, 'integer'),
    col('n', 2, 20, -1, 'bigint', { widenedFrom: [{ typeOid: 23, typeMod: -1 }] }),
    col('amount', 3, 1700, numeric(10, 2), 'numeric(10,2)'),
    col('note', 4, 25, -1, 'text'),
    col('gone', 5, 25, -1, 'text', { dropped: true }),
  ]);
  const catalog = table(widenedAndKept.columns.filter((c) => !c.dropped).map(({ widenedFrom: _, ...c }) => c));
  assert.equal(sameShape(widenedAndKept, catalog), true, 'history and a dropped column kept are not differences');
  assert.equal(sameShape(dest, catalog), false, 'a widened type');
  const rescaled = table(dest.columns.map((c) => (c.name === 'amount' ? { ...c, typeMod: numeric(12, 4) } : c)));
  assert.equal(sameShape(dest, rescaled), false, 'a new scale');
  const renamed = table(dest.columns.map((c) => (c.name === 'note' ? { ...c, name: 'remark' } : c)));
  assert.equal(sameShape(dest, renamed), false, 'a renamed column');
  const readded = table(dest.columns.map((c) => (c.name === 'note' ? { ...c, attnum: 9 } : c)));
  assert.equal(sameShape(dest, readded), false, 'dropped and added again under its name');
  assert.equal(sameShape(dest, table([...dest.columns, col('x', 5, 25, -1, 'text')])), false, 'an added column');
});
