/**
 * The stream's batching rules (activities/batcher.ts), without a stack: what is written when, and what may be
 * confirmed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Batcher } from '../activities/batcher.ts';
import { advancesConfirmed, makeVersion } from '../lib/lsn.ts';
import type { Change, TableSchema } from '../lib/model.ts';
import { keyAndTextTable } from './support/conformance.ts';

const table = { schema: 'public', name: 't' };
const insert = (lsn: bigint, seq: number): Change => ({
  kind: 'insert',
  table,
  version: makeVersion(lsn, seq),
  row: { id: String(seq), note: 'x' },
});
const rules = { maxRows: 3, flushIntervalMs: 1000 };

test(
  'a full batch is written at once, but only the last commit received is confirmed: a transaction is never split ' +
    'across a confirmation',
  () => {
    const b = new Batcher(rules, 100n);
    b.begin();
    assert.equal(b.add(insert(200n, 1), 't', 0), false);
    assert.equal(b.add(insert(200n, 2), 't', 0), false);
    assert.equal(b.add(insert(200n, 3), 't', 0), true, 'the third change fills the batch');
    const mid = b.take();
    assert.equal(mid.changes.length, 3);
    assert.equal(mid.confirm, undefined, 'mid-transaction: nothing new to confirm');
    b.add(insert(200n, 4), 't', 0);
    b.commit(250n);
    const end = b.take();
    assert.deepEqual(
      end.changes.map((c) => c.version),
      [makeVersion(200n, 4)],
    );
    assert.equal(end.confirm, 250n, 'the commit end, once the rest of its transaction is written');
  },
);

test('by time: the batch is due a flush interval after its oldest change, not its newest', () => {
  const b = new Batcher(rules, undefined);
  assert.equal(b.dueIn(0), 1000, 'empty: the timer runs a whole interval');
  b.begin();
  b.add(insert(10n, 1), 't', 5_000);
  b.add(insert(10n, 2), 't', 5_900);
  assert.equal(b.dueIn(5_900), 100);
  assert.equal(b.shouldFlush(5_999, false), false);
  assert.equal(b.shouldFlush(6_000, false), true);
  assert.equal(b.shouldFlush(5_001, true), true, 'a quiet pass writes what is buffered');
});

test('keepalives move the confirmable position only between transactions, and never back', () => {
  const b = new Batcher(rules, 100n);
  b.keepalive(150n);
  assert.equal(
    b.shouldFlush(0, false),
    true,
    'nothing buffered and a new position: confirm it now (a shutting-down server waits for it)',
  );
  assert.equal(b.take().confirm, 150n);
  b.begin();
  b.add(insert(160n, 1), 't', 0);
  b.keepalive(400n);
  assert.equal(b.take().confirm, undefined, 'inside a transaction a keepalive says nothing about its commit');
  b.commit(170n);
  b.keepalive(165n);
  assert.equal(b.take().confirm, 170n, 'an older keepalive does not move it back');
  b.keepalive(170n);
  assert.equal(b.shouldFlush(0, false), false, 'nothing new: no flush, no confirmation');
  assert.equal(b.take().confirm, undefined);
});

test('a schema change travels with its batch, so its shape is reported before the position past it is confirmed', () => {
  const before = keyAndTextTable('t', 'note');
  const after: TableSchema = {
    ...before,
    columns: [
      ...before.columns,
      { name: 'n', type: 'integer', typeOid: 23, kind: 'int', arrayDims: 0, nullable: true },
    ],
  };
  const b = new Batcher(rules, undefined);
  const change = {
    kind: 'schema' as const,
    table,
    version: makeVersion(300n, 0),
    schema: after,
    added: [after.columns[2]!],
    dropped: [],
  };
  assert.equal(b.startsBatch(change), false, 'nothing buffered: it joins the batch');
  b.begin();
  b.add(insert(290n, 1), 't', 0);
  assert.equal(b.startsBatch(change), true, 'rows before it are written first');
  assert.equal(b.startsBatch(insert(290n, 2)), false);
  b.take();
  b.add(change, 't', 0);
  b.add(insert(300n, 1), 't', 0);
  b.commit(310n);
  const f = b.take();
  assert.deepEqual(Object.keys(f.schemas), ['t']);
  assert.equal(f.schemas.t, after);
  assert.equal(f.confirm, 310n);
  assert.deepEqual(b.take().schemas, {}, 'reported once');
});

test('confirmations never go back', () => {
  assert.equal(advancesConfirmed(undefined, 5n), true);
  assert.equal(advancesConfirmed(5n, 5n), false);
  assert.equal(advancesConfirmed(5n, 4n), false);
  assert.equal(advancesConfirmed(5n, undefined), false);
});
