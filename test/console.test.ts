/**
 * Temporal as the console: a pipeline and a resync started with the `temporal` CLI alone from the
 * YAML's JSON; a config fixed in walflow.yaml applied in place; the worker stopped with SIGTERM as the
 * README starts it; every command with no worker running.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { ensureTemporalCli } from '../stack/temporal.ts';
import { pipelineWorkflowId } from '../lib/contract/pipeline.ts';
import { temporalAddress } from './support/env.ts';
import { PipelineFixture } from './support/pipeline.ts';

const exec = promisify(execFile);

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function run(command: string, args: string[], timeout = 120_000): Promise<Ran> {
  const started = Date.now();
  try {
    const { stdout, stderr } = await exec(command, args, { encoding: 'utf8', timeout });
    return { code: 0, stdout, stderr, ms: Date.now() - started };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string; killed?: boolean };
    if (err.killed) throw new Error(`${command} ${args.join(' ')} did not finish within ${timeout} ms`);
    return {
      code: typeof err.code === 'number' ? err.code : 1,
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? '',
      ms: Date.now() - started,
    };
  }
}

const walflow = (f: PipelineFixture, ...args: string[]) =>
  run(process.execPath, ['bin/walflow.js', ...args, '--config', f.configFile]);
const temporal = (...args: string[]) => run(ensureTemporalCli(), [...args, '--address', temporalAddress()]);

/** The pipeline exactly as written in the fixture's walflow.yaml (no defaults applied). */
const yamlPipeline = (f: PipelineFixture) => parse(readFileSync(f.configFile, 'utf8')).pipelines[0];

// biome-ignore lint/suspicious/noExplicitAny: the tests edit walflow.yaml freely, as a user would
function rewriteYaml(f: PipelineFixture, edit: (doc: { pipelines: Record<string, any>[] }) => void): void {
  const doc = parse(readFileSync(f.configFile, 'utf8'));
  edit(doc);
  writeFileSync(f.configFile, stringify(doc));
}

describe('started from the temporal CLI alone', () => {
  const f = new PipelineFixture({
    name: 'tcli',
    setup:
      `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM ` +
      `generate_series(1, 3000) g;`,
    tables: ['items'],
  });
  after(() => f.teardown());

  test('pipeline and resync from the YAML as JSON: backfills, streams, found by WalflowPipeline, verifies equal', async () => {
    await f.setup();
    const raw = yamlPipeline(f);
    assert.equal(raw.source.createPublication, undefined, 'the YAML leaves createPublication to its default');
    const started = await temporal(
      'workflow',
      'start',
      '--type',
      'pipelineWorkflow',
      '--task-queue',
      f.taskQueue,
      '--workflow-id',
      pipelineWorkflowId(raw.id),
      '--input',
      JSON.stringify({ config: raw }),
    );
    assert.equal(started.code, 0, started.stderr);
    await f.waitForConvergence();
    await f.sql(
      `INSERT INTO items VALUES (5001, 'new'); UPDATE items SET v = 'changed' WHERE id = 1; DELETE FROM items WHERE ` +
        `id = 2`,
    );
    await f.waitForConvergence();

    const listed = await f.waitFor('the pipeline in a WalflowPipeline search', async () => {
      const r = await temporal('workflow', 'list', '--query', `WalflowPipeline="${raw.id}"`, '--output', 'json');
      return r.code === 0 && r.stdout.includes(pipelineWorkflowId(raw.id)) && r.stdout;
    });
    assert.match(listed, /pipelineWorkflow/);
    const streaming = await temporal(
      'workflow',
      'list',
      '--query',
      `WalflowPipeline="${raw.id}" AND WalflowPhase="streaming"`,
      '--output',
      'json',
    );
    assert.ok(streaming.stdout.includes(pipelineWorkflowId(raw.id)), 'the phase search attribute is kept current');

    // A row only the destination has: the resync must remove it.
    await f.destinationSql(`INSERT INTO replica.items (id, v, _walflow_version) VALUES (9999, 'ghost', 1)`);
    assert.equal((await walflow(f, 'verify', raw.id)).code, 1);
    const resyncId = `resync-${raw.id}`;
    const resync = await temporal(
      'workflow',
      'start',
      '--type',
      'resyncWorkflow',
      '--task-queue',
      f.taskQueue,
      '--workflow-id',
      resyncId,
      '--input',
      JSON.stringify({ config: raw }),
    );
    assert.equal(resync.code, 0, resync.stderr);
    await f.client.workflow.getHandle(resyncId).result();
    const verified = await walflow(f, 'verify', raw.id);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /ok\s+public\.items/);

    // The README's other Temporal commands: applyConfig, then drop, which also removes the resync schedule.
    assert.equal((await walflow(f, 'schedule', 'resync', raw.id, '--cron', '0 3 * * *')).code, 0);
    const applied = await temporal(
      'workflow',
      'update',
      'execute',
      '-w',
      pipelineWorkflowId(raw.id),
      '--name',
      'applyConfig',
      '--input',
      JSON.stringify({ ...raw, cdc: { flushIntervalMs: 300 } }),
    );
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /cdc\.flushIntervalMs/);
    const dropped = await temporal('workflow', 'update', 'execute', '-w', pipelineWorkflowId(raw.id), '--name', 'drop');
    assert.equal(dropped.code, 0, dropped.stderr);
    await f.handle.result();
    await assert.rejects(f.client.schedule.getHandle(`walflow-${raw.id}-resync`).describe(), /not found/i);
    assert.equal(
      (await f.sql('SELECT 1 FROM pg_replication_slots WHERE NOT temporary')).rowCount,
      0,
      'the slot is dropped',
    );
  });

  test('a bad input fails the run at once, naming the key', async () => {
    const raw = yamlPipeline(f);
    const id = `walflow-bad-${Date.now()}`;
    const started = await temporal(
      'workflow',
      'start',
      '--type',
      'pipelineWorkflow',
      '--task-queue',
      f.taskQueue,
      '--workflow-id',
      id,
      '--input',
      JSON.stringify({ config: { ...raw, cdc: { flushIntervalMs: 'soon' } } }),
    );
    assert.equal(started.code, 0, started.stderr);
    await assert.rejects(
      f.client.workflow.getHandle(id).result(),
      (e: Error & { cause?: Error & { nonRetryable?: boolean } }) => {
        assert.match(e.cause?.message ?? '', /config\.cdc\.flushIntervalMs/);
        assert.equal(e.cause?.nonRetryable, true);
        return true;
      },
    );
  });
});

describe('tables remove, then resume', () => {
  const f = new PipelineFixture({
    name: 'gone',
    setup:
      `CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept SELECT g, 'k' || g FROM ` +
      `generate_series(1, 300) g;`,
    tables: ['kept', 'gone'],
  });
  after(() => f.teardown());

  test(
    'a pipeline stopped on a missing table resumes after `tables remove` of it; stdout cannot be scheduled for ' +
      'resync',
    async () => {
      await f.setup();
      const id = f.config.id;
      assert.equal((await walflow(f, 'start', id)).code, 0);
      await f.waitFor('preflight to stop the pipeline', async () => (await f.status()).phase === 'failed');
      assert.match((await f.status()).lastError ?? '', /gone/);
      const removed = await walflow(f, 'tables', 'remove', id, 'gone');
      assert.equal(removed.code, 0, removed.stderr);
      assert.equal((await walflow(f, 'resume', id)).code, 0);
      f.opts.tables.splice(f.opts.tables.indexOf('gone'), 1);
      await f.waitForConvergence();

      rewriteYaml(f, (d) => {
        d.pipelines.push({ ...d.pipelines[0], id: 'to-stdout', destination: { type: 'stdout' } });
      });
      const scheduled = await walflow(f, 'schedule', 'resync', 'to-stdout', '--cron', '0 3 * * *');
      assert.notEqual(scheduled.code, 0);
      assert.match(scheduled.stderr, /stdout destination cannot be resynced/);
    },
  );
});

describe('a config fixed in walflow.yaml, applied in place', () => {
  const f = new PipelineFixture({
    name: 'apply',
    setup: `CREATE TABLE a (id int PRIMARY KEY, v text);
            INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 2000) g;
            CREATE TABLE b (id int PRIMARY KEY, v text);
            INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 500) g;`,
    tables: ['a'],
  });
  after(() => f.teardown());

  test('a wrong destination URL fixed with `walflow apply`: it streams, same slot, no table re-backfilled, nothing lost', async () => {
    await f.setup();
    const id = f.config.id;
    assert.equal((await walflow(f, 'start', id)).code, 0);
    await f.waitForConvergence();
    const slots = async () =>
      (await f.sql<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots WHERE NOT temporary ORDER BY 1'))
        .rows;
    const before = await slots();
    assert.equal(before.length, 1);

    // The destination's URL goes wrong: changes wait in the slot, errors show in status.
    const goodUrl = yamlPipeline(f).destination.url;
    rewriteYaml(f, (d) => {
      d.pipelines[0]!.destination.url = goodUrl.replace(/\/[^/]*$/, '/no_such_database');
    });
    const wrong = await walflow(f, 'apply', id);
    assert.equal(wrong.code, 0, wrong.stderr);
    assert.match(wrong.stdout, /applied destination\.url/);
    await f.sql(
      `INSERT INTO a SELECT g, 'late' || g FROM generate_series(5001, 5100) g; UPDATE a SET v = 'upd' WHERE id <= ` +
        `10; DELETE FROM a WHERE id = 20`,
    );
    await f.waitFor('the stream to report the wrong URL', async () =>
      /no_such_database/.test((await f.status()).lastError ?? ''),
    );

    // What cannot change live is refused, naming the key; a bad sibling pipeline blocks nothing.
    rewriteYaml(f, (d) => {
      d.pipelines[0]!.destination.url = goodUrl;
      d.pipelines[0]!.source.tables = ['a', 'b'];
      d.pipelines.push({ id: 'broken', source: { url: 'mysql://x' }, destination: { type: 'null' } });
    });
    const bad = await walflow(f, 'status', 'broken');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /pipelines\[1\]\.source\.url/);
    const badJson = await walflow(f, 'status', 'broken', '--json');
    assert.match(
      JSON.parse(badJson.stdout).error,
      /pipelines\[1\]\.source\.url/,
      'status --json prints JSON even when it fails',
    );
    const refuse = structuredClone(parse(readFileSync(f.configFile, 'utf8')));
    refuse.pipelines[0].source.slot = 'another_slot';
    const refusedFile = `${f.configFile}.refused.yaml`;
    writeFileSync(refusedFile, stringify(refuse));
    const refused = await run(process.execPath, ['bin/walflow.js', 'apply', id, '--config', refusedFile]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /source\.slot/);

    const fixed = await walflow(f, 'apply', id);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.match(fixed.stdout, /destination\.url/);
    assert.match(fixed.stdout, /tables: a, b/);
    f.opts.tables.push('b');
    await f.waitForConvergence();
    const status = await f.status();
    assert.equal(status.tables.a!.rowsCopied, 2000, 'table a was backfilled once, not again');
    assert.equal(status.tables.b!.rowsCopied, 500, 'table b, new in the file, was backfilled');
    assert.deepEqual(await slots(), before, 'the same slot');
    assert.equal((await walflow(f, 'verify', id)).code, 0);

    // tables remove leaves the file behind: status says so.
    assert.equal((await walflow(f, 'tables', 'remove', id, 'b')).code, 0);
    const differs = await walflow(f, 'status', id);
    assert.match(differs.stdout, /config file lists other tables \(a, b\)/);
  });
});

describe('the worker as the README starts it, and no worker at all', () => {
  const f = new PipelineFixture({
    name: 'noworker',
    setup:
      `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, ` +
      `500) g;`,
    tables: ['t'],
    workerProcess: true, // `node bin/walflow.js worker`, the README's way
  });
  after(() => f.teardown());

  test('SIGTERM to the worker PID stops it within the grace time; then status answers from the published state', async () => {
    await f.setup();
    const id = f.config.id;
    assert.equal((await walflow(f, 'start', id)).code, 0);
    await f.waitForConvergence();
    await f.waitFor('the streaming state to be published', async () => {
      const memo = (await f.handle.describe()).memo as { status?: { phase: string } } | undefined;
      return memo?.status?.phase === 'streaming';
    });

    const worker = f.workerChild!;
    const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));
    worker.kill('SIGTERM');
    const graceMs = 30_000 + 15_000;
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), graceMs))]);
    assert.notEqual(code, 'still running', 'the worker stopped on SIGTERM within the grace time');
    f.workerChild = undefined;

    const status = await walflow(f, 'status', id);
    assert.equal(status.code, 0, status.stderr);
    // It waits 2 s for a worker's answer, not the server's 30 s query timeout; the bound is loose because
    // the process's own start (node + tsx) takes seconds on a loaded machine.
    assert.ok(status.ms < 15_000, `status answered in ${status.ms} ms`);
    console.log(`status without a worker answered in ${status.ms} ms (process start included)`);
    assert.match(status.stdout, /no worker .*task queue test-noworker/);
    assert.match(status.stdout, /pipeline .*: streaming/);
    const json = await walflow(f, 'status', id, '--json');
    const parsed = JSON.parse(json.stdout);
    assert.equal(parsed.phase, 'streaming');
    assert.match(parsed.noWorker, /no worker/);
    assert.ok(parsed.publishedAt);

    const pause = await walflow(f, 'pause', id);
    assert.equal(pause.code, 0);
    assert.match(pause.stderr, /no worker .*the pause takes effect when one runs/);
    const drop = await walflow(f, 'drop', id);
    assert.notEqual(drop.code, 0);
    assert.match(drop.stderr, /no worker/);
    const add = await walflow(f, 'tables', 'add', id, 'other');
    assert.match(add.stderr, /no worker/);
  });
});
