/**
 * The heartbeating helpers every long activity step runs under (activities/context.ts), in Temporal's
 * MockActivityEnvironment with Node's mocked timers: no worker, no server, no waiting out the 5 s beat.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { applyHeartbeating, whileHeartbeating } from '../activities/context.ts';
import { MemoryDestination } from './support/memory-destination.ts';
import { keyAndTextTable } from './support/conformance.ts';

/** Lets the activity run up to its next timer (real microtasks and I/O callbacks; only timers are mocked). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('heartbeating activity steps', () => {
  let env: MockActivityEnvironment;
  let beats: unknown[];
  beforeEach(() => {
    mock.timers.enable({ apis: ['setInterval', 'setTimeout'] });
    env = new MockActivityEnvironment();
    beats = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
  });
  afterEach(() => mock.timers.reset());

  test('a running step heartbeats its current details every 5 s, and stops when it ends', async () => {
    let rows = 0;
    let finish!: (v: string) => void;
    const running = env.run(() =>
      whileHeartbeating(
        () =>
          new Promise<string>((resolve) => {
            finish = resolve;
          }),
        { details: () => ({ rows }) },
      ),
    );
    await settle();
    rows = 100;
    mock.timers.tick(4_999);
    assert.deepEqual(beats, [], 'none before 5 s');
    mock.timers.tick(1);
    rows = 250;
    mock.timers.tick(5_000);
    finish('done');
    assert.equal(await running, 'done');
    mock.timers.tick(60_000);
    assert.deepEqual(beats, [{ rows: 100 }, { rows: 250 }]);
  });

  test('a destination write still unfinished after 10 minutes fails the attempt, saying what hung', async () => {
    const hung = new MemoryDestination();
    hung.apply = () => new Promise(() => {}); // a write that never returns (a destination that stopped answering)
    const table = keyAndTextTable('t', 'note');
    await hung.prepare([table]);
    const running = env.run(() =>
      applyHeartbeating(hung, [{ kind: 'insert', table, version: 1n, row: { id: '1', note: 'x' } }], () => ({
        rows: 7,
      })),
    );
    const outcome = running.then(
      () => 'finished',
      (e: Error) => e.message,
    );
    await settle();
    mock.timers.tick(10 * 60_000 - 1);
    await settle();
    assert.equal(beats.length, 119, 'a beat every 5 s meanwhile');
    mock.timers.tick(1);
    assert.equal(await outcome, 'a destination write did not finish within 600 s');
    mock.timers.tick(60_000);
    assert.equal(beats.length, 120, 'the beat at 10 minutes, then none once the attempt failed');
  });
});
