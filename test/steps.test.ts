/** How a batch becomes destination writes: one per table between that table's barriers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applySteps } from '../activities/destinations/steps.ts';
import type { Change, TableSchema } from '../lib/model.ts';

const a = { schema: 'public', name: 'a' };
const b = { schema: 'public', name: 'b' };
const ins = (table: typeof a, n: number): Change => ({
  kind: 'insert',
  table,
  version: BigInt(n),
  row: { id: String(n) },
});
const describeSteps = (changes: Change[]) =>
  applySteps(changes).map((s) =>
    s.kind === 'rows'
      ? `rows ${s.changes[0]!.table.name}:${s.changes.map((c) => c.version).join(',')}`
      : `${s.kind} ${s.change.table.name}:${s.change.version}`,
  );

test('alternating tables make one write per table', () => {
  assert.deepEqual(describeSteps([ins(a, 1), ins(b, 2), ins(a, 3), ins(b, 4)]), ['rows a:1,3', 'rows b:2,4']);
});

test('a truncate drops the rows before it and absorbs the next truncate when nothing was written between', () => {
  const truncate = (n: number): Change => ({ kind: 'truncate', table: b, version: BigInt(n) });
  assert.deepEqual(describeSteps([ins(b, 1), ins(a, 2), truncate(3), ins(b, 4), truncate(5), ins(b, 6)]), [
    'truncate b:5',
    'rows a:2',
    'rows b:6',
  ]);
});

test("a schema change writes its table's earlier rows first; other tables are not held up", () => {
  const schema = { schema: 'public', name: 'b', columns: [], key: ['id'], replicaIdentity: 'default' } as TableSchema;
  const change: Change = { kind: 'schema', table: b, version: 3n, schema, added: [], dropped: [] };
  assert.deepEqual(describeSteps([ins(b, 1), ins(a, 2), change, ins(b, 4), ins(a, 5)]), [
    'rows b:1',
    'schema b:3',
    'rows a:2,5',
    'rows b:4',
  ]);
});
