/**
 * `walflow stack` as an operator uses it: a second stack under its own state
 * folder and ports, driven through the real CLI. Its ports are below Linux's ephemeral range (32768–60999),
 * where a client socket of the suite could already hold one when this stack starts late in the run.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  embeddedPostgresBinDir,
  postgresUrl,
  startPostgres,
  stopPostgres,
  type PostgresInstance,
} from '../stack/postgres.ts';
import { ensureTemporalCli } from '../stack/temporal.ts';
import { isAlive } from '../stack/process.ts';

const home = mkdtempSync(join(tmpdir(), 'walflow-stack-'));
const env = {
  ...process.env,
  WALFLOW_HOME: home,
  WALFLOW_PG_PORT: '26432',
  WALFLOW_TEMPORAL_PORT: '27233',
  WALFLOW_TEMPORAL_UI_PORT: '28233',
  WALFLOW_CLICKHOUSE_PORT: '28123',
  WALFLOW_SNOWFLAKE_PORT: '28765',
  WALFLOW_NATS_PORT: '28222',
  WALFLOW_NATS_URL: '',
  CLICKHOUSE_URL: '',
  SNOWFLAKE_ACCOUNT: '',
  TEMPORAL_CLI: ensureTemporalCli(),
  WALFLOW_PG_URL: '',
  WALFLOW_TEMPORAL_ADDRESS: '',
};

function walflow(args: string[], extraEnv: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['bin/walflow.js', ...args], {
    env: { ...env, ...extraEnv },
    encoding: 'utf8',
    timeout: 180_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function pids(): number[] {
  const ps = spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).stdout;
  return ps
    .split('\n')
    .filter((l) => l.includes(home))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

after(() => {
  walflow(['stack', 'down']);
  rmSync(home, { recursive: true, force: true });
});

test('stack up twice is harmless, status reports every component, down leaves no process behind', async () => {
  const first = walflow(['stack', 'up']);
  assert.equal(first.code, 0, first.err);
  assert.match(first.out, /started: postgres, temporal, clickhouse, snowflake, nats/);

  const second = walflow(['stack', 'up']);
  assert.equal(second.code, 0, second.err);
  assert.match(second.out, /already running/);

  const status = walflow(['stack', 'status', '--json']);
  assert.equal(status.code, 0, status.err);
  assert.deepEqual(JSON.parse(status.out), {
    postgres: { url: 'postgres://postgres@127.0.0.1:26432/postgres', healthy: true },
    temporal: { url: '127.0.0.1:27233', healthy: true },
    temporalUi: { url: 'http://127.0.0.1:28233', healthy: true },
    clickhouse: { url: 'http://127.0.0.1:28123', healthy: true },
    snowflake: { url: 'http://127.0.0.1:28765', healthy: true },
    nats: { url: 'nats://127.0.0.1:28222', healthy: true },
  });
  assert.ok(pids().length > 0, 'stack processes run under the state folder');

  const down = walflow(['stack', 'down']);
  assert.equal(down.code, 0, down.err);
  assert.match(down.out, /stopped: nats, snowflake, clickhouse, temporal, postgres/);
  assert.deepEqual(pids(), [], 'no process of ours is left');
  const after = walflow(['stack', 'status', '--json']);
  assert.equal(after.code, 1);
  assert.equal(JSON.parse(after.out).temporal.healthy, false);
});

test('a stale PID file is cleared with a message, not trusted', async () => {
  const dead = spawn('true');
  await new Promise((r) => dead.once('exit', r));
  assert.ok(!isAlive(dead.pid!));
  writeFileSync(join(home, 'temporal', 'temporal.pid'), `${dead.pid}\n`);
  const up = walflow(['stack', 'up']);
  assert.equal(up.code, 0, up.err);
  assert.match(up.err, /removing stale PID file .*temporal\.pid/);
  assert.match(up.out, /temporal/);
  walflow(['stack', 'down']);
});

test('a port already in use fails fast with the port, the component and the setting to change', async () => {
  const blocker = createServer().listen(27233, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  try {
    const started = Date.now();
    const up = walflow(['stack', 'up']);
    assert.equal(up.code, 1);
    assert.match(
      up.err,
      /temporal: port 27233 on 127\.0\.0\.1 is already in use by another process.*WALFLOW_TEMPORAL_PORT/,
    );
    assert.ok(Date.now() - started < 60_000, 'no hang');
  } finally {
    blocker.close();
    walflow(['stack', 'down']);
  }
});

test('a Postgres given by URL without wal_level=logical is refused with the setting to change', async () => {
  const replica: PostgresInstance = {
    name: 'postgres-wal-replica',
    binDir: await embeddedPostgresBinDir(),
    port: 26499,
    portEnv: 'TEST_PORT',
    settings: { wal_level: 'replica' },
  };
  await startPostgres(replica);
  try {
    const up = walflow(['stack', 'up'], { WALFLOW_PG_URL: postgresUrl(replica) });
    assert.equal(up.code, 1);
    assert.match(
      up.err,
      /wal_level=replica; walflow needs logical decoding\. Run "ALTER SYSTEM SET wal_level = logical;".*restart Postgres/,
    );
  } finally {
    await stopPostgres(replica);
    walflow(['stack', 'down']);
  }
});
