/**
 * Operating a pipeline through the walflow CLI, as an operator would: a worker
 * process killed with -9 mid-backfill and mid-CDC, status (JSON and --watch),
 * tables add, a resync Schedule, and a source password that never reaches history.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { PipelineFixture } from './support/pipeline.ts';

function walflow(f: PipelineFixture, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['bin/walflow.js', ...args, '--config', f.configFile], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `walflow ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** Runs `walflow status --watch` until its output matches `until` (or `ms` pass), and returns the output. */
async function watch(f: PipelineFixture, until: RegExp, ms: number): Promise<string> {
  const child = spawn(
    process.execPath,
    ['bin/walflow.js', 'status', f.config.id, '--watch', '--config', f.configFile],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    child.stdout.on('data', (d) => {
      out += d;
      if (until.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.kill('SIGINT');
  return out;
}

describe('a worker killed with -9 during backfill and during CDC', () => {
  const password = 's3cret-Pa55word-never-in-history';
  const role = `walflow_crash_${process.pid}`;
  const f = new PipelineFixture({
    name: 'crash',
    setup: `CREATE ROLE ${role} LOGIN REPLICATION PASSWORD '${password}';
            CREATE TABLE accounts (id int8 PRIMARY KEY, owner text, balance numeric(20,2), note text);
            INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.25, repeat('x', g % 50)
              FROM generate_series(1, 300000) g;
            GRANT SELECT ON accounts TO ${role};
            CREATE PUBLICATION pub_crash FOR TABLE accounts;`,
    tables: ['accounts'],
    workerProcess: true,
    faults: 'copyBatch:delay=300', // a backfill slow enough (about 20 s) to be caught in the middle
    pipeline: {
      backfill: { parallelism: 2, rowsPerRange: 20_000, batchRows: 2000 },
      source: { createPublication: false },
    },
  });
  after(async () => {
    await f.teardown();
    await f.adminSql(`DROP ROLE IF EXISTS ${role}`);
  });

  test('nothing is lost and the destination ends equal to the source; no password in history', async () => {
    process.env.WALFLOW_TEST_CRASH_PASSWORD = password;
    await f.setup({ sourceRole: role, passwordEnv: 'WALFLOW_TEST_CRASH_PASSWORD' });
    assert.match(walflow(f, ['start', f.config.id]), /started pipeline/);

    // Mid-backfill: some ranges done, not all.
    await f.waitFor('backfill under way', async () => {
      const s = await f.status();
      const t = s.tables.accounts;
      return t && t.rangesDone > 0 && t.rangesDone < t.rangesTotal;
    });
    const bar = /accounts\s+\[#*\.*\]\s+\d+%/;
    assert.match(await watch(f, bar, 60_000), bar, 'status --watch shows a progress bar per table');
    assert.equal((await f.status()).tables.accounts!.backfill, 'copying', 'killed in the middle of the backfill');
    f.killWorker();
    await f.sql(`UPDATE accounts SET balance = balance + 1 WHERE id % 1000 = 0`);
    await new Promise((r) => setTimeout(r, 1000));
    await f.startWorker();
    await f.waitForConvergence(300_000);

    // Mid-CDC: a stream of changes, a kill, more changes, a new worker.
    const writer = (async () => {
      for (let i = 0; i < 40; i++) {
        await f.sql(
          `INSERT INTO accounts VALUES (${1_000_000 + i}, 'new', ${i}, 'n'); UPDATE accounts SET note = 'tick ${i}' ` +
            `WHERE id = ${i + 1}; DELETE FROM accounts WHERE id = ${200_000 + i}`,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await new Promise((r) => setTimeout(r, 1500));
    f.killWorker();
    await writer;
    await f.startWorker();
    await f.waitForConvergence(300_000);

    const status = JSON.parse(walflow(f, ['status', f.config.id, '--json']));
    assert.equal(status.phase, 'streaming');
    assert.match(status.confirmedLsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal(typeof status.lagBytes, 'number');

    // Payload data comes base64-encoded: decode every one, so a secret cannot hide in an encoding.
    const history = JSON.stringify(await f.handle.fetchHistory(), (k, v) =>
      k === 'data' && typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : v,
    );
    assert.ok(!history.includes(password), 'the source password is not in the workflow history');
    assert.ok(history.includes('env:WALFLOW_TEST_CRASH_PASSWORD'), 'only its reference is');
  });
});

describe('operator commands', () => {
  const f = new PipelineFixture({
    name: 'ops',
    setup: `CREATE TABLE a (id int PRIMARY KEY, v text);
            INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 1000) g;
            CREATE TABLE b (id int PRIMARY KEY, v text);
            INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 1000) g;
            CREATE TABLE nokey (v text);`,
    tables: ['a'],
    workerProcess: true, // the CLI runs synchronously here: an in-process worker could not answer its updates
  });
  after(() => f.teardown());

  test('tables add validates and backfills; a resync schedule removes rows gone from the source', async () => {
    await f.setup();
    walflow(f, ['start', f.config.id]);
    await f.waitForConvergence();

    const bad = spawnSync(
      process.execPath,
      ['bin/walflow.js', 'tables', 'add', f.config.id, 'nokey', '--config', f.configFile],
      { encoding: 'utf8' },
    );
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /nokey.*(primary key|REPLICA IDENTITY FULL)/i);

    assert.match(walflow(f, ['tables', 'add', f.config.id, 'b']), /tables: a, b/);
    f.opts.tables.push('b');
    await f.waitForConvergence();

    // A row the destination has but the source lost without a change event (e.g. restored from backup).
    await f.destinationSql(`INSERT INTO replica.a (id, v, _walflow_version) VALUES (5000, 'ghost', 1)`);
    assert.equal((await f.compare()).equal, false);

    assert.match(
      walflow(f, ['schedule', 'resync', f.config.id, '--cron', '0 3 * * *']),
      /schedule walflow-.*-resync created/,
    );
    const schedule = f.client.schedule.getHandle(`walflow-${f.config.id}-resync`);
    const described = await schedule.describe();
    assert.equal(described.spec.calendars?.length, 1, "the cron expression became the schedule's calendar");
    await schedule.trigger();
    await f.waitFor('a resync run to complete', async () => {
      const d = await schedule.describe();
      const run = d.info.recentActions.at(-1)?.action;
      if (!run) return false;
      const r = await f.client.workflow.getHandle(run.workflow.workflowId, run.workflow.firstExecutionRunId).describe();
      return r.status.name === 'COMPLETED';
    });
    await f.waitForConvergence();
  });
});
