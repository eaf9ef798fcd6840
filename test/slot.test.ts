/**
 * Slot and WAL safety as an operator sees it: a destination that is down while the source keeps writing
 * shows in `walflow status` (lag read live from the slot, wal_status, a warning naming the destination), in
 * `walflow check` and in the worker's /metrics; when it comes back everything converges and the errors clear.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createConnection, createServer, type Server } from 'node:net';
import { after, describe, test } from 'node:test';
import type { PipelineStatus } from '../lib/contract/status.ts';
import { requireEnv } from './support/env.ts';
import { PipelineFixture } from './support/pipeline.ts';

/** A TCP port nothing listens on yet. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Forwards `port` to ClickHouse once started: before that the destination's address refuses connections. */
function clickhouseProxy(port: number) {
  const target = new URL(requireEnv('CLICKHOUSE_URL'));
  let server: Server | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    async start() {
      server = createServer((client) => {
        const upstream = createConnection(Number(target.port), target.hostname);
        client.pipe(upstream).pipe(client);
        const end = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('error', end);
        upstream.on('error', end);
      });
      await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r));
    },
    stop: () => new Promise((r) => (server ? server.close(r) : r(undefined))),
  };
}

/** The walflow CLI, run without blocking this process (whose in-process worker must answer the CLI's queries). */
const cli = (f: PipelineFixture, ...args: string[]) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['bin/walflow.js', ...args, f.config.id, '--config', f.configFile],
      { encoding: 'utf8' },
      (e, stdout, stderr) => {
        resolve({ status: e ? Number((e as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });

async function liveStatus(f: PipelineFixture): Promise<PipelineStatus> {
  const r = await cli(f, 'status', '--json');
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as PipelineStatus;
}

/** One sample of a metric with exactly these labels, from the Prometheus text format. */
async function metric(port: number, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line);
    if (m?.[1] === name && m[2]!.split(',').sort().join(',') === want) return Number(m[3]);
  }
  return undefined;
}

const MiB = 1024 * 1024;

describe('a destination that is down while WAL grows', async () => {
  const proxy = clickhouseProxy(await freePort());
  const metricsPort = await freePort();
  const f = new PipelineFixture({
    name: 'slotwatch',
    destination: 'clickhouse',
    destinationOverride: { url: proxy.url },
    metricsPort,
    setup: `CREATE TABLE events (id int8 PRIMARY KEY, payload text NOT NULL);
      INSERT INTO events SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g;`,
    tables: ['events'],
    pipeline: { alerts: { lagBytes: MiB, snapshotAgeMinutes: 60 } },
  });
  after(async () => {
    await f.teardown();
    await proxy.stop();
  });
  const grow = (from: number) =>
    f.sql(`INSERT INTO events SELECT g, repeat(md5(g::text), 20) FROM generate_series(${from}, ${from + 9999}) g`);

  test('status shows the lag growing, wal_status and a warning naming the destination; check and /metrics too', async () => {
    await f.setup();
    await f.start();
    await f.waitFor('the slot', async () => (await f.status()).confirmedLsn !== null);
    await grow(100_000);
    const first = await f.waitFor('a lag warning naming the destination', async () => {
      const s = await liveStatus(f);
      return s.warnings?.some((w) => w.includes(`destination clickhouse ${proxy.url}`)) && s;
    });
    assert.equal(first.slot?.walStatus, 'reserved');
    assert.equal(first.slot?.safeWalSize, null, 'the stack runs with max_slot_wal_keep_size = -1');
    assert.ok(first.lagBytes! > MiB, `lag ${first.lagBytes}`);
    const warning = first.warnings!.find((w) => w.includes('destination clickhouse'))!;
    assert.match(
      warning,
      /^replication slot \S+ is [\d.]+ MiB behind the server's WAL \(alerts\.lagBytes 1\.0 MiB\), retaining .*wal_status reserved, nothing limits the WAL it keeps \(max_slot_wal_keep_size = -1\)/,
    );
    assert.match(warning, /the stream is failing: destination clickhouse http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    // Each component keeps its own error, saying where and since when.
    assert.match(first.errors!.stream!.message, /^destination clickhouse http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    assert.match(
      first.lastError!,
      /^(stream: |backfill: planning the backfill of events failed \(attempt \d+\): )destination clickhouse .*\(since \d{4}-\d\d-\d\dT/,
    );
    await f.waitFor('the backfill error too', async () =>
      (await liveStatus(f)).errors?.backfill?.message.match(
        /^planning the backfill of events failed \(attempt \d+\): destination clickhouse/,
      ),
    );

    // The lag keeps growing while the destination stays down, in status and in the metrics.
    const lagMetric = await f.waitFor('lag in the metrics', () =>
      metric(metricsPort, 'walflow_lag_bytes', { pipeline: f.config.id }),
    );
    assert.ok(lagMetric > MiB, `walflow_lag_bytes ${lagMetric}`);
    await grow(200_000);
    const later = await f.waitFor('lag to grow', async () => {
      const s = await liveStatus(f);
      return s.lagBytes! > first.lagBytes! + MiB && s;
    });
    assert.equal(later.slot?.walStatus, 'reserved');
    await f.waitFor(
      'the metric to grow',
      async () => (await metric(metricsPort, 'walflow_lag_bytes', { pipeline: f.config.id }))! > lagMetric + MiB,
      60_000,
    );
    assert.ok((await metric(metricsPort, 'walflow_wal_retained_bytes', { pipeline: f.config.id }))! >= lagMetric);
    assert.ok(
      (await metric(metricsPort, 'walflow_errors_total', { pipeline: f.config.id, component: 'stream', table: '' }))! >
        0,
    );

    const text = await cli(f, 'status');
    assert.match(text.stdout, /slot \S+: wal_status reserved, .*no WAL limit \(max_slot_wal_keep_size = -1\)/);
    assert.match(text.stdout, /warning: replication slot .* behind/);
    assert.match(text.stdout, /error in stream since \S+ .*: destination clickhouse/);

    const check = await cli(f, 'check');
    assert.equal(check.status, 1, check.stderr);
    assert.match(
      check.stdout,
      /- destination clickhouse http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED.*: check that the destination is up/,
    );
    assert.match(check.stdout, /warning: max_slot_wal_keep_size is -1: .*ALTER SYSTEM SET max_slot_wal_keep_size/);
  });

  test('once the destination is back it converges, the errors clear and the row counters move', async () => {
    await proxy.start();
    await f.waitForConvergence();
    const copied = await f.waitFor('rows copied counted', async () => {
      const n = await metric(metricsPort, 'walflow_rows_copied_total', { pipeline: f.config.id, table: 'events' });
      return n !== undefined && n >= 5000 && n;
    });
    const applied =
      (await metric(metricsPort, 'walflow_changes_applied_total', { pipeline: f.config.id, table: 'events' })) ?? 0;
    await f.sql(`UPDATE events SET payload = 'changed' WHERE id <= 100`);
    await f.waitForConvergence();
    await f.waitFor(
      'changes applied counted',
      async () =>
        (await metric(metricsPort, 'walflow_changes_applied_total', { pipeline: f.config.id, table: 'events' }))! >=
        applied + 100,
    );
    assert.ok(copied >= 5000);
    const latency = await metric(metricsPort, 'walflow_apply_latency_seconds_count', {
      pipeline: f.config.id,
      table: 'events',
    });
    assert.ok(latency! > 0, 'apply latency observed');
    await f.waitFor(
      'lag to drop',
      async () => (await metric(metricsPort, 'walflow_lag_bytes', { pipeline: f.config.id }))! < MiB,
    );

    const s = await f.waitFor('errors and warnings cleared', async () => {
      const st = await liveStatus(f);
      return st.lastError === null && st.warnings?.length === 0 && st;
    });
    assert.deepEqual(s.errors, {});
    assert.ok(s.lagBytes! < MiB);
  });
});
