/**
 * The pipeline on the real stack: backfill fan-out, CDC, retries of a single
 * range, pause/resume, continue-as-new, and no password in the history.
 * Destination: a Postgres database (real, readable, version-aware).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { defaultPayloadConverter } from '@temporalio/common';
import { parseLsn } from '../lib/lsn.ts';
import type { CopyProgress } from '../lib/contract/pipeline.ts';
import { PipelineFixture } from './support/pipeline.ts';

// Big enough for ten ranges at four at a time; the copy's speed is bench/'s to measure, not this suite's.
describe('backfill of 250,000 rows with parallelism 4', () => {
  const f = new PipelineFixture({
    name: 'big',
    setup: `CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL, price numeric(12,2), at timestamptz,
            doc jsonb);
            INSERT INTO items SELECT g, 'item ' || g, g / 100.0, '2024-01-01'::timestamptz + g * interval '1 second',
              jsonb_build_object('g', g)
            FROM generate_series(1, 250000) g;`,
    tables: ['items'],
    pipeline: { backfill: { parallelism: 4, rowsPerRange: 25_000, batchRows: 10_000 } },
  });
  after(() => f.teardown());

  test('every row arrives exactly once, a failing range is retried alone, then changes stream', async () => {
    await f.setup();
    f.faults.arm('copyRange', { fail: 1 });
    await f.start();
    const status = await f.waitFor(
      'backfill done',
      async () => {
        const s = await f.status();
        return s.tables.items?.backfill === 'done' && s;
      },
      600_000,
    );
    assert.equal(
      status.tables.items!.rowsCopied,
      250_000,
      'rows copied across ranges add up to the table: no range twice',
    );
    assert.equal(status.tables.items!.rangesDone, status.tables.items!.rangesTotal);
    assert.ok(status.tables.items!.rangesTotal >= 4, `ranges planned: ${status.tables.items!.rangesTotal}`);

    // Exactly one range activity ran twice (the injected failure), every other one once.
    const attempts = await copyAttempts(f);
    assert.equal(attempts.filter((a) => a === 2).length, 1, `attempts per range: ${attempts}`);
    assert.equal(attempts.filter((a) => a === 1).length, attempts.length - 1);
    // ... and the failure was reported to the pipeline, whose status shows it as lastError.
    const reported = (await f.handle.fetchHistory()).events!.flatMap((e) => {
      const signal = e.workflowExecutionSignaledEventAttributes;
      if (signal?.signalName !== 'copyProgress') return [];
      return [(defaultPayloadConverter.fromPayload(signal.input!.payloads![0]!) as CopyProgress).error ?? []].flat();
    });
    assert.equal(reported.length, 1, `errors reported: ${reported}`);
    assert.match(reported[0]!, /^copy of items pages \d+\.\.\S+ failed \(attempt 1\): /);

    await f.sql(
      `UPDATE items SET name = 'changed' WHERE id % 25000 = 0; DELETE FROM items WHERE id <= 10; INSERT INTO items ` +
        `VALUES (2000000, 'new', 1.5, now(), '{}')`,
    );
    await f.waitForConvergence();
    const { counts } = await f.compare();
    assert.deepEqual(counts['public.items'], [249_991, 249_991]);
  });
});

/** The attempt of every copyRange activity, in the pipeline's history (a small plan) and its copy children's. */
async function copyAttempts(f: PipelineFixture): Promise<number[]> {
  const attempts: number[] = [];
  for await (const wf of f.client.workflow.list({ query: `WorkflowId STARTS_WITH '${f.handle.workflowId}'` })) {
    const events = (await f.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory()).events ?? [];
    const copies = new Set(
      events.flatMap((e) =>
        e.activityTaskScheduledEventAttributes?.activityType?.name === 'copyRange' ? [String(e.eventId)] : [],
      ),
    );
    for (const e of events) {
      const started = e.activityTaskStartedEventAttributes;
      if (started && copies.has(String(started.scheduledEventId))) attempts.push(started.attempt ?? 1);
    }
  }
  return attempts;
}

describe('CDC: pause, resume, continue-as-new', () => {
  const f = new PipelineFixture({
    name: 'cdc',
    setup: `CREATE TABLE events (id serial PRIMARY KEY, kind text, payload jsonb, at timestamptz DEFAULT now());
            INSERT INTO events (kind, payload) SELECT 'seed', jsonb_build_object('n', g) FROM generate_series(1, 500)
              g;`,
    tables: ['events'],
    maxHistoryEvents: 60,
  });
  after(() => f.teardown());

  test('changes made while paused arrive after resume; the slot does not move while paused', async () => {
    await f.setup();
    await f.start();
    await f.waitForConvergence();
    await f.sql(`INSERT INTO events (kind) SELECT 'live' FROM generate_series(1, 100)`);
    await f.waitForConvergence();

    await f.handle.signal('pause');
    await f.waitFor('paused with no activity running', async () => {
      const [s, d] = await Promise.all([f.status(), f.handle.describe()]);
      return s.phase === 'paused' && d.raw.pendingActivities?.length === 0;
    });
    const pausedAt = await f.slotConfirmedLsn();
    await f.sql(`UPDATE events SET kind = 'while paused' WHERE id <= 50; DELETE FROM events WHERE id > 550`);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await f.slotConfirmedLsn(), pausedAt, 'confirmed_flush_lsn stays put while paused');
    assert.equal((await f.handle.describe()).raw.pendingActivities?.length ?? 0, 0, 'no activity runs while paused');
    assert.equal((await f.compare()).equal, false, 'the paused changes have not been applied');

    await f.handle.signal('resume');
    await f.waitForConvergence();
    const after = await f.slotConfirmedLsn();
    assert.ok(parseLsn(after!) > parseLsn(pausedAt!), 'the slot advanced after resume');
  });

  test('the workflow continued-as-new and kept its confirmed LSN', async () => {
    for (let i = 0; i < 5; i++) {
      await f.sql(`INSERT INTO events (kind) SELECT 'burst' FROM generate_series(1, 20)`);
      await new Promise((r) => setTimeout(r, 2500));
    }
    const s = await f.waitFor('continue-as-new', async () => {
      const st = await f.status();
      return st.continuedAsNew >= 1 && st;
    });
    assert.ok(s.confirmedLsn, 'confirmed LSN carried over');
    const before = parseLsn(s.confirmedLsn!);
    await f.sql(`INSERT INTO events (kind) VALUES ('after continue-as-new')`);
    await f.waitForConvergence();
    const later = await f.waitFor('LSN to advance', async () => {
      const st = await f.status();
      return st.confirmedLsn !== null && parseLsn(st.confirmedLsn) > before ? st : undefined;
    });
    assert.ok(later.continuedAsNew >= 1);
  });
});

describe('CDC: memory', () => {
  const f = new PipelineFixture({
    name: 'mem',
    setup: 'CREATE TABLE ticks (id int8 PRIMARY KEY, note text)',
    tables: ['ticks'],
    pipeline: { cdc: { flushIntervalMs: 50, maxBatchRows: 2_000 } },
  });
  after(() => f.teardown());

  test('what the stream has written is not kept: the heap does not grow with the changes streamed', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    await f.setup();
    await f.start(); // the worker runs in this process: its heap is the one measured
    await f.waitForConvergence();
    const before = heap();
    // 200 transactions of 1,000 rows with a 200-byte value: some 60 MB of changes go through the stream.
    await f.sql(`DO $$ BEGIN FOR t IN 0..199 LOOP
      INSERT INTO ticks SELECT t * 1000 + g, repeat(md5(g::text), 6) FROM generate_series(1, 1000) g; COMMIT;
    END LOOP; END $$`);
    await f.waitForConvergence();
    const grown = (heap() - before) / 2 ** 20;
    assert.ok(grown < 25, `the heap grew by ${grown.toFixed(1)} MB over 200,000 streamed changes`);
  });
});
