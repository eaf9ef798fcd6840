/**
 * The pipeline workflow's rules with fake activities (no Postgres, no destination): the real workflow
 * bundle on the stack's Temporal server, each test on its own task queue, its activities answering as
 * the real ones do and held where a test needs to choose when they finish. What each test checks is
 * what an operator sees: the status query and the workflow's history.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CancelledFailure, Context } from '@temporalio/activity';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../activities/index.ts';
import type { CopyRangeInput, PlanContext, PlannedBackfill } from '../activities/backfill.ts';
import type { StreamInput } from '../activities/stream.ts';
import { parsePipelineConfig, type PipelineConfig } from '../lib/config.ts';
import {
  addTablesUpdate,
  pauseSignal,
  tableShapeSignal,
  removeTablesUpdate,
  resumeSignal,
  resyncTablesUpdate,
  snapshotReadySignal,
  statusQuery,
  streamProgressSignal,
  type PipelineInput,
  type PipelineState,
} from '../lib/contract/pipeline.ts';
import { newTableProgress, type PipelineStatus } from '../lib/contract/status.ts';
import type { pipelineWorkflow } from '../workflows/index.ts';
import { workflowBundlePath } from '../worker/bundle.ts';
import { keyAndTextTable } from './support/conformance.ts';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await TestWorkflowEnvironment.createFromExistingServer({
    address: process.env.WALFLOW_TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
  });
});
after(() => env?.teardown());

/** A promise the test settles when it chooses. */
class Gate {
  open!: () => void;
  readonly opened = new Promise<void>((resolve) => {
    this.open = resolve;
  });
}

/** Heartbeats (the only way an activity learns it is cancelled) until `work` settles or the activity is cancelled. */
async function heartbeatingUntil<T>(work: Promise<T>, onCancel: () => void): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(), 50);
  try {
    return await Promise.race([work, ctx.cancelled]);
  } catch (e) {
    if (e instanceof CancelledFailure) onCancel();
    throw e;
  } finally {
    clearInterval(timer);
  }
}

const never = new Promise<never>(() => {});
const RANGES_PER_TABLE = 2;

/** The activities the pipeline workflow runs, with a record of what it asked of them. */
class FakeActivities {
  readonly streams: StreamInput[] = [];
  streamsCancelled = 0;
  snapshotsHeld = 0;
  readonly planned: string[][] = [];
  readonly copies: CopyRangeInput[] = [];
  copiesCancelled = 0;
  readonly altered: Parameters<Activities['alterPublication']>[1][] = [];
  readonly rebuilt: string[][] = [];
  /** What range copies, alterPublication and rebuildTables wait for; open unless a test holds them. */
  readonly copyGate = new Gate();
  readonly alterGate = new Gate();
  readonly rebuildGate = new Gate();

  /** The stream's worker "dies" when it is cancelled: the run ends in a failure, not in the cancellation. */
  streamDiesOnCancel = false;
  /** Tables planRanges finds gone from the source (renamed since they were added). */
  readonly missing = new Set<string>();
  /** Tables planRanges finds of another shape than recorded, once each. */
  readonly reshapedOnce = new Set<string>();
  /** What each planRanges was told besides its tables. */
  readonly planContexts: (PlanContext | undefined)[] = [];

  constructor(hold: { copies?: boolean; alterPublication?: boolean; rebuildTables?: boolean } = {}) {
    if (!hold.copies) this.copyGate.open();
    if (!hold.alterPublication) this.alterGate.open();
    if (!hold.rebuildTables) this.rebuildGate.open();
  }

  /** Lets every held activity finish: a worker shuts down only once its activities have. */
  releaseAll(): void {
    this.copyGate.open();
    this.alterGate.open();
    this.rebuildGate.open();
  }

  readonly activities = {
    preflightPipeline: async () => {},
    ensureSlot: async (_config: PipelineConfig, tables: string[] = []) => ({
      confirmedLsn: '0/1000',
      schemas: Object.fromEntries(tables.map((t) => [t, keyAndTextTable(t, 'at_slot_start')])),
    }),
    streamChanges: async (input: StreamInput) => {
      this.streams.push(input);
      await heartbeatingUntil(never, () => this.streamsCancelled++).catch((e: unknown) => {
        // What a timeout after the cancellation looks like to the workflow: an activity failure, not a cancellation.
        throw this.streamDiesOnCancel && e instanceof CancelledFailure
          ? ApplicationFailure.nonRetryable('heartbeat timeout: the worker died')
          : e;
      });
    },
    holdSnapshot: async (input: Parameters<Activities['holdSnapshot']>[0]) => {
      this.snapshotsHeld++;
      await env.client.workflow.getHandle(input.notify.workflowId).signal(snapshotReadySignal, {
        token: input.notify.token,
        snapshotName: `snap-${this.snapshotsHeld}`,
        lsn: '0/2000',
      });
      await heartbeatingUntil(never, () => {});
    },
    planRanges: async (_config: PipelineConfig, tables: string[], at?: PlanContext): Promise<PlannedBackfill> => {
      this.planned.push(tables);
      this.planContexts.push(at);
      const gone = tables.filter((t) => this.missing.has(t));
      const reshaped = tables.filter((t) => this.reshapedOnce.delete(t));
      tables = tables.filter((t) => !this.missing.has(t) && !reshaped.includes(t));
      return {
        ...(gone.length
          ? { missing: gone.map((table) => ({ table, reason: `table public.${table} does not exist in the source` })) }
          : {}),
        ...(reshaped.length ? { reshaped: reshaped.map((table) => ({ table, reason: `${table} reshaped` })) } : {}),
        tables: tables.map((table) => ({ table, ranges: RANGES_PER_TABLE, rowsEstimate: 100 })),
        ranges: tables.flatMap((table) =>
          Array.from({ length: RANGES_PER_TABLE }, (_, i) => ({
            table,
            relation: `public.${table}`,
            startPage: i * 10,
            endPage: i * 10 + 10,
          })),
        ),
      };
    },
    copyRange: async (input: CopyRangeInput) => {
      this.copies.push(input);
      await heartbeatingUntil(this.copyGate.opened, () => this.copiesCancelled++);
      return { rows: 50 };
    },
    alterPublication: async (_config: PipelineConfig, change: Parameters<Activities['alterPublication']>[1]) => {
      this.altered.push(change);
      await this.alterGate.opened;
      return {
        lsn: '0/2000',
        schemas: Object.fromEntries((change.add ?? []).map((t) => [t, keyAndTextTable(t, 'added')])),
      };
    },
    rebuildTables: async (_config: PipelineConfig, tables: string[]) => {
      this.rebuilt.push(tables);
      await this.rebuildGate.opened;
      return { schemas: Object.fromEntries(tables.map((t) => [t, keyAndTextTable(t, 'note')])), lsn: '0/3000' };
    },
  } satisfies Partial<Activities>;
}

/** `destination`: what the pipeline's rules see (the fake activities never reach it). */
const config = (id: string, tables: string[], destination: object = { type: 'null' }): PipelineConfig =>
  parsePipelineConfig({
    id,
    source: { url: 'postgres://walflow@127.0.0.1:1/unused', publication: 'unused', tables },
    destination,
  });

/** A pipeline already past its first backfill: every table done, streaming from `confirmedLsn`. */
function streamingState(tables: string[], confirmedLsn: string): PipelineState {
  return {
    initialized: true,
    paused: false,
    tables,
    confirmedLsn,
    lagBytes: 0,
    lastError: null,
    continuedAsNew: 0,
    progress: Object.fromEntries(tables.map((t) => [t, { ...newTableProgress(), backfill: 'done' as const }])),
  };
}

type Pipeline = WorkflowHandle<typeof pipelineWorkflow>;

/**
 * Runs `body` with a worker of the real workflow bundle and `fakes` on a task queue of its own; `start` starts a
 * pipeline there.
 */
async function withPipelineWorker(
  fakes: FakeActivities,
  body: (
    start: (input: Omit<PipelineInput, 'config'> & { tables: string[]; destination?: object }) => Promise<Pipeline>,
  ) => Promise<void>,
): Promise<void> {
  const taskQueue = `pipeline-workflow-test-${randomBytes(4).toString('hex')}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: env.namespace,
    taskQueue,
    workflowBundle: { codePath: workflowBundlePath() },
    activities: fakes.activities,
    // Cancellation reaches an activity in a heartbeat's answer: send them at once, not every 24 s.
    maxHeartbeatThrottleInterval: '50ms',
    defaultHeartbeatThrottleInterval: '50ms',
  });
  const started: Pipeline[] = [];
  await worker.runUntil(async () => {
    try {
      await body(async ({ tables, destination, ...input }) => {
        const id = `t-${randomBytes(4).toString('hex')}`;
        const handle = await env.client.workflow.start<typeof pipelineWorkflow>('pipelineWorkflow', {
          taskQueue,
          workflowId: `walflow-${id}`,
          args: [{ config: config(id, tables, destination), ...input }],
        });
        started.push(handle);
        // Pinned to this run: a handle without a run id follows the pipeline into its next run.
        return env.client.workflow.getHandle<typeof pipelineWorkflow>(handle.workflowId, handle.firstExecutionRunId);
      });
    } finally {
      fakes.releaseAll();
      // Only the latest run of a pipeline that continued-as-new is still running.
      for (const h of started)
        await env.client.workflow
          .getHandle(h.workflowId)
          .terminate('test over')
          .catch(() => undefined);
    }
  });
}

/** Polls `probe` until it returns something truthy (what the test then looks at). */
async function until<T>(
  what: string,
  probe: () => T | Promise<T>,
  timeoutMs = 30_000,
): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as Exclude<T, false | null | undefined | 0 | ''>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const statusWhen = (handle: Pipeline, what: string, ok: (s: PipelineStatus) => boolean) =>
  until(what, async () => {
    const s = await handle.query(statusQuery);
    return ok(s) && s;
  });

const allDone = (s: PipelineStatus) =>
  s.phase === 'streaming' && Object.values(s.tables).every((t) => t.backfill === 'done');

/** Per table, in one line: its backfill, its state, ranges copied of planned. */
const tableLines = (s: PipelineStatus) =>
  Object.fromEntries(
    Object.entries(s.tables).map(([t, p]) => [t, `${p.backfill} ${p.state} ${p.rangesDone}/${p.rangesTotal}`]),
  );

/**
 * `p`, or a failure naming `what` after `ms` (a workflow that never answers fails the test, not the suite's timeout).
 */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Sends what the stream reports (one insert into `table` each, the confirmed LSN moving on) until the
 * run's history is past `events`: how a long-running pipeline reaches its continue-as-new point.
 */
async function reportUntilHistoryPasses(
  handle: Pipeline,
  events: number,
  table: string,
): Promise<{ confirmedLsn: string; reports: number }> {
  let lsn = 0x1000;
  let reports = 0;
  let confirmedLsn = '';
  while ((await handle.describe()).historyLength <= events) {
    lsn += 0x100;
    reports++;
    confirmedLsn = `0/${lsn.toString(16).toUpperCase()}`;
    await handle.signal(streamProgressSignal, {
      confirmedLsn,
      lagBytes: 0,
      changes: { [table]: { inserts: 1, updates: 0, deletes: 0, truncates: 0 } },
    });
  }
  return { confirmedLsn, reports };
}

const historyEvents = async (handle: Pipeline) => (await handle.fetchHistory()).events ?? [];

/** The activity types the history shows ended cancelled. */
async function cancelledActivities(handle: Pipeline): Promise<string[]> {
  const events = await historyEvents(handle);
  const scheduled = new Map(
    events
      .filter((e) => e.activityTaskScheduledEventAttributes)
      .map((e) => [String(e.eventId), e.activityTaskScheduledEventAttributes!.activityType!.name!]),
  );
  return events
    .filter((e) => e.activityTaskCanceledEventAttributes)
    .map((e) => scheduled.get(String(e.activityTaskCanceledEventAttributes!.scheduledEventId))!);
}

/** A hung workflow fails its test in a minute, not at the harness's 15. */
const TIMEOUT = { timeout: 60_000 };

describe('pipeline workflow rules (fake activities)', () => {
  test('a table gone from the source before its backfill stops alone, saying how to add it back', TIMEOUT, async () => {
    const fakes = new FakeActivities();
    fakes.missing.add('b');
    await withPipelineWorker(fakes, async (start) => {
      const handle = await start({ tables: ['a', 'b'] });
      const s = await statusWhen(handle, 'a streaming, b errored', (st) => st.tables.b?.state === 'errored');
      assert.equal((await statusWhen(handle, 'a done', (st) => st.tables.a?.backfill === 'done')).phase, 'streaming');
      assert.match(s.tables.b!.error!.reason, /public\.b does not exist in the source \(renamed or dropped\?\)/);
      assert.match(s.tables.b!.error!.fix, /walflow tables remove \S+ b, then walflow tables add/);
      assert.equal(s.lastError?.startsWith('table b stopped'), true);
    });
  });

  // The catalog when the stream starts may be past a DDL of WAL still to come: the destination tables' shapes are
  // recorded where the stream starts following them, and every stream, from the first on, is given them.
  test(
    "the stream follows the shapes of the slot's start and of each add, however late it starts",
    TIMEOUT,
    async () => {
      const fakes = new FakeActivities();
      await withPipelineWorker(fakes, async (start) => {
        const handle = await start({ tables: ['a'] });
        await until('the stream running', () => fakes.streams.length === 1);
        assert.deepEqual(fakes.streams[0]!.schemas, { a: keyAndTextTable('a', 'at_slot_start') });
        await handle.executeUpdate(addTablesUpdate, { args: [['b']] });
        await until('the stream restarted on a and b', () => fakes.streams.length === 2);
        assert.deepEqual(fakes.streams[1]!.schemas, {
          a: keyAndTextTable('a', 'at_slot_start'),
          b: keyAndTextTable('b', 'added'),
        });
      });
    },
  );

  test(
    "a table whose shape changed before the backfill's snapshot is re-copied, the others copied",
    TIMEOUT,
    async () => {
      // The rebuild outlasts the copy of a (the backfill's end must not cancel it).
      const fakes = new FakeActivities({ rebuildTables: true });
      fakes.reshapedOnce.add('b');
      await withPipelineWorker(fakes, async (start) => {
        // A destination walflow can rebuild a table in (a change stream cannot be re-copied).
        const destination = { type: 'postgres', url: 'postgres://x@127.0.0.1:1/d' };
        const handle = await start({ tables: ['a', 'b'], destination });
        await statusWhen(handle, 'a copied', (s) => s.tables.a?.backfill === 'done');
        await until('b being rebuilt', () => fakes.rebuilt.length === 1);
        await new Promise((resolve) => setTimeout(resolve, 500)); // time enough for the backfill's end to show
        fakes.rebuildGate.open();
        await statusWhen(handle, 'a and b copied, streaming', allDone);
        assert.deepEqual(fakes.rebuilt, [['b']], 'b rebuilt with the source shape');
        assert.deepEqual(fakes.planned, [['a', 'b'], ['b']]);
        assert.equal(fakes.planContexts[0]?.snapshotName, 'snap-1', 'planned under the backfill snapshot');
        assert.deepEqual(fakes.planContexts[0]?.schemas?.b, keyAndTextTable('b', 'at_slot_start'));
        assert.deepEqual(fakes.planContexts[1]?.schemas?.b, keyAndTextTable('b', 'note'), 'against the rebuilt shape');
      });
    },
  );

  test(
    'pause during a backfill cancels the stream and the copy; resume copies again and ends streaming, every table done',
    TIMEOUT,
    async () => {
      const fakes = new FakeActivities({ copies: true });
      await withPipelineWorker(fakes, async (start) => {
        const handle = await start({ tables: ['a', 'b'] });
        await until('range copies under way', () => fakes.copies.length > 0);
        assert.equal((await handle.query(statusQuery)).phase, 'backfilling');

        await handle.signal(pauseSignal);
        const paused = await statusWhen(handle, 'phase paused', (s) => s.phase === 'paused');
        await until(
          'the stream and the held copies cancelled',
          () =>
            fakes.streamsCancelled === 1 && fakes.copiesCancelled > 0 && fakes.copiesCancelled === fakes.copies.length,
        );
        assert.equal(paused.paused, true);
        assert.deepEqual(tableLines(paused), { a: 'copying paused 0/2', b: 'copying paused 0/2' });
        assert.ok(
          (await cancelledActivities(handle)).includes('streamChanges'),
          'the stream ends cancelled in the history',
        );

        fakes.copyGate.open();
        await handle.signal(resumeSignal);
        const done = await statusWhen(handle, 'streaming with every table done', allDone);
        assert.deepEqual(tableLines(done), { a: 'done streaming 2/2', b: 'done streaming 2/2' });
        assert.equal(done.paused, false);
        assert.equal(fakes.streams.length, 2, 'the stream runs again after resume');
        assert.equal(fakes.snapshotsHeld, 2, 'the copy starts over on a fresh snapshot');
        assert.deepEqual(fakes.planned, [
          ['a', 'b'],
          ['a', 'b'],
        ]);
      });
    },
  );

  test(
    'a cancelled stream whose worker dies (it fails instead of ending cancelled) has ended: a restart and a pause ' +
      'go on, nothing fails',
    TIMEOUT,
    async () => {
      const fakes = new FakeActivities();
      fakes.streamDiesOnCancel = true;
      await withPipelineWorker(fakes, async (start) => {
        const handle = await start({ tables: ['a', 'b'], state: streamingState(['a', 'b'], '0/1000') });
        await until('the stream running', () => fakes.streams.length === 1);
        await handle.executeUpdate(removeTablesUpdate, { args: [['b']] });
        await until('the stream restarted', () => fakes.streams.length === 2);
        const restarted = await handle.query(statusQuery);
        assert.equal(restarted.phase, 'streaming');
        assert.equal(restarted.lastError, null);
        await handle.signal(pauseSignal);
        const paused = await statusWhen(handle, 'phase paused', (s) => s.phase === 'paused' || s.phase === 'failed');
        assert.equal(paused.phase, 'paused', `paused, not failed (${paused.lastError})`);
        await handle.signal(resumeSignal);
        await until('the stream running again', () => fakes.streams.length === 3);
        assert.equal((await handle.query(statusQuery)).phase, 'streaming');
      });
    },
  );

  test(
    'a table added while a copy runs: the publication gets it, the stream restarts with it, it is backfilled',
    TIMEOUT,
    async () => {
      const fakes = new FakeActivities({ copies: true });
      await withPipelineWorker(fakes, async (start) => {
        const handle = await start({ tables: ['a'] });
        await until('the copy of a under way', () => fakes.copies.length > 0);

        assert.deepEqual(await handle.executeUpdate(addTablesUpdate, { args: [['b']] }), ['a', 'b']);
        assert.deepEqual(fakes.altered, [{ add: ['b'], remove: [], tables: ['a', 'b'] }]);
        await until('the stream restarted', () => fakes.streams.length === 2);
        assert.deepEqual(
          fakes.streams.map((s) => s.tables),
          [['a'], ['a', 'b']],
        );
        assert.equal(fakes.streamsCancelled, 1);
        assert.deepEqual(tableLines(await handle.query(statusQuery)), {
          a: 'copying backfilling 0/2',
          b: 'pending backfilling 0/0',
        });
        assert.equal(fakes.copiesCancelled, 0, 'the copy of a goes on');

        fakes.copyGate.open();
        const done = await statusWhen(handle, 'streaming with every table done', allDone);
        assert.deepEqual(tableLines(done), { a: 'done streaming 2/2', b: 'done streaming 2/2' });
        assert.deepEqual(fakes.planned, [['a'], ['b']], 'b is copied after a, on a snapshot of its own');
        assert.deepEqual(
          fakes.copies.map((c) => c.range.table),
          ['a', 'a', 'b', 'b'],
        );
      });
    },
  );

  test(
    'continue-as-new waits for an update still running, then carries tables, progress and the confirmed LSN',
    TIMEOUT,
    async () => {
      const fakes = new FakeActivities({ alterPublication: true });
      const maxHistoryEvents = 40;
      await withPipelineWorker(fakes, async (start) => {
        const first = await start({ tables: ['a'], state: streamingState(['a'], '0/1000'), maxHistoryEvents });
        await until('the stream running', () => fakes.streams.length === 1);

        const added = first.executeUpdate(addTablesUpdate, { args: [['b']] });
        added.catch(() => undefined); // awaited below; a failure before then must fail the test, not the process
        await until('alterPublication called', () => fakes.altered.length === 1);
        const { confirmedLsn, reports } = await reportUntilHistoryPasses(first, maxHistoryEvents, 'a');
        await until('the stream stopped for continue-as-new', () => fakes.streamsCancelled === 1);
        await new Promise((resolve) => setTimeout(resolve, 500)); // time enough for a premature continue-as-new to show
        assert.equal((await first.describe()).status.name, 'RUNNING', 'no continue-as-new while addTables runs');
        assert.deepEqual(tableLines(await first.query(statusQuery)), { a: 'done streaming 0/0' });

        fakes.alterGate.open();
        assert.deepEqual(await within(10_000, 'addTables to complete', added), ['a', 'b']);
        await until(
          'the first run continued as new',
          async () => (await first.describe()).status.name === 'CONTINUED_AS_NEW',
        );
        const events = await historyEvents(first);
        const updateDone = events.findIndex((e) => e.workflowExecutionUpdateCompletedEventAttributes);
        const continued = events.findIndex((e) => e.workflowExecutionContinuedAsNewEventAttributes);
        assert.ok(
          updateDone >= 0 && updateDone < continued,
          `addTables completed (event ${updateDone}) before continue-as-new (event ${continued})`,
        );
        const [next] = events[continued]!.workflowExecutionContinuedAsNewEventAttributes!.input!.payloads!;
        const carried = defaultPayloadConverter.fromPayload<PipelineInput>(next!);
        assert.equal(carried.maxHistoryEvents, maxHistoryEvents);
        assert.deepEqual(carried.state?.tables, ['a', 'b']);
        assert.equal(carried.state?.confirmedLsn, confirmedLsn);
        assert.equal(carried.state?.continuedAsNew, 1);
        assert.equal(carried.state?.progress.a?.changes.inserts, reports);
        assert.equal(carried.state?.progress.b?.backfill, 'pending');

        const latest = env.client.workflow.getHandle<typeof pipelineWorkflow>(first.workflowId);
        const done = await statusWhen(latest, 'the new run streaming with b backfilled', allDone);
        assert.ok(done.continuedAsNew >= 1);
        assert.equal(done.confirmedLsn, confirmedLsn);
        assert.deepEqual(tableLines(done), { a: 'done streaming 0/0', b: 'done streaming 2/2' });
        assert.equal(fakes.streams.at(-1)?.startLsn, confirmedLsn, 'the new run streams from the carried LSN');
      });
    },
  );

  // The run stops its stream to continue-as-new and waits for the handler, which waits for a stream run: it must
  // not wait for one the run will never start (a deadlock until a pause, before it was fixed).
  test('continue-as-new due while resyncTables rebuilds a table: the resync finishes, then the run continues as new', {
    ...TIMEOUT,
  }, async () => {
    const fakes = new FakeActivities({ rebuildTables: true });
    const maxHistoryEvents = 40;
    await withPipelineWorker(fakes, async (start) => {
      const first = await start({ tables: ['a', 'b'], state: streamingState(['a', 'b'], '0/1000'), maxHistoryEvents });
      await until('the stream running', () => fakes.streams.length === 1);
      await first.signal(tableShapeSignal, {
        errors: {
          a: {
            reason: 'column n changed type from integer to text',
            fix: 'walflow resync p --tables a',
            lsn: '0/1100',
            since: new Date().toISOString(),
          },
        },
      });
      await statusWhen(first, 'table a errored', (s) => s.tables.a?.state === 'errored');

      const resynced = first.executeUpdate(resyncTablesUpdate, { args: [['a']] });
      resynced.catch(() => undefined); // awaited below
      await until('rebuildTables called', () => fakes.rebuilt.length === 1);
      const { confirmedLsn } = await reportUntilHistoryPasses(first, maxHistoryEvents, 'b');
      await until('the stream stopped for continue-as-new', () => fakes.streamsCancelled === 1);
      fakes.rebuildGate.open();
      assert.deepEqual(await within(10_000, 'resyncTables to complete', resynced), ['a']);

      await until(
        'the first run continued as new',
        async () => (await first.describe()).status.name === 'CONTINUED_AS_NEW',
      );
      const events = await historyEvents(first);
      const [next] = events.find((e) => e.workflowExecutionContinuedAsNewEventAttributes)!
        .workflowExecutionContinuedAsNewEventAttributes!.input!.payloads!;
      const carried = defaultPayloadConverter.fromPayload<PipelineInput>(next!).state!;
      assert.equal(carried.confirmedLsn, confirmedLsn);
      assert.deepEqual(carried.tableErrors ?? {}, {});
      assert.equal(carried.copyFrom?.a, '0/3000', 'the stream writes a from the rebuild on');
    });
  });

  test('refused requests say why and leave no trace of themselves in the history', TIMEOUT, async () => {
    const fakes = new FakeActivities();
    await withPipelineWorker(fakes, async (start) => {
      const handle = await start({ tables: ['a', 'b'], state: streamingState(['a', 'b'], '0/1000') });
      await until('the stream running', () => fakes.streams.length === 1);
      const id = handle.workflowId.replace(/^walflow-/, '');
      const before = (await historyEvents(handle)).length;

      const refusal = async (p: Promise<unknown>) => {
        const e = await p.then(
          () => assert.fail('the request was accepted'),
          (err: unknown) => err,
        );
        assert.ok(e instanceof WorkflowUpdateFailedError, String(e));
        return (e.cause as Error).message;
      };
      assert.equal(
        await refusal(handle.executeUpdate(addTablesUpdate, { args: [['a']] })),
        `already in pipeline ${id}: a`,
      );
      assert.equal(
        await refusal(handle.executeUpdate(removeTablesUpdate, { args: [['a', 'b']] })),
        'a pipeline keeps at least one table; use `walflow drop` to end it',
      );
      assert.equal(
        await refusal(handle.executeUpdate(resyncTablesUpdate, { args: [['b']] })),
        `not errored in pipeline ${id}: b`,
      );

      // The server keeps a rejecting workflow task (its three events, no command) when an activity heartbeats
      // meanwhile, as the stream does.
      const added = (await historyEvents(handle))
        .slice(before)
        .map((e) => Object.keys(e).find((k) => k.endsWith('EventAttributes')));
      assert.deepEqual(
        added.filter((k) => !/^workflowTask(Scheduled|Started|Completed)EventAttributes$/.test(k ?? '')),
        [],
        'no update event, no command',
      );
      assert.deepEqual(fakes.altered, []);
      assert.equal(fakes.streams.length, 1, 'the stream was not restarted');
      assert.deepEqual(tableLines(await handle.query(statusQuery)), {
        a: 'done streaming 0/0',
        b: 'done streaming 0/0',
      });
    });
  });
});
