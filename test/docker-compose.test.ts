/** No Docker engine runs here, so docker-compose.yml is checked statically: the services a user needs, wired right. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';

const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as {
  services: Record<
    string,
    { image?: string; build?: string; command?: string[]; entrypoint?: string[]; ports?: string[]; depends_on?: object }
  >;
};

test('docker-compose.yml has Postgres with logical replication, Temporal with its UI, ClickHouse and a walflow worker', () => {
  const { postgres, temporal, clickhouse, worker } = compose.services;
  assert.ok(postgres && temporal && clickhouse && worker, 'all four services are defined');

  const pgArgs = postgres.command!.join(' ');
  assert.match(pgArgs, /wal_level=logical/);
  assert.match(pgArgs, /max_replication_slots=\d+/);

  assert.ok(temporal.entrypoint!.includes('start-dev'));
  for (const attr of ['WalflowPipeline=Keyword', 'WalflowPhase=Keyword'])
    assert.ok(temporal.entrypoint!.includes(attr));
  assert.deepEqual(temporal.ports, ['127.0.0.1:7233:7233', '127.0.0.1:8233:8233']);

  for (const svc of [postgres, temporal, clickhouse]) {
    for (const p of svc.ports ?? []) assert.match(p, /^127\.0\.0\.1:/, `port ${p} is published on loopback only`);
  }

  assert.equal(worker.build, '.');
  assert.ok(existsSync('Dockerfile'), 'the worker image is built from the repo');
  assert.deepEqual(Object.keys(worker.depends_on!).sort(), ['clickhouse', 'postgres', 'temporal']);
  assert.ok(worker.command!.includes('worker'));
});

test('docker-compose.prod.yml: Temporal on its own Postgres, the UI, two worker replicas started without npx', () => {
  const prod = parse(readFileSync('docker-compose.prod.yml', 'utf8')) as {
    services: Record<
      string,
      {
        image?: string;
        environment?: Record<string, string>;
        command?: string[];
        deploy?: { replicas?: number };
        stop_grace_period?: string;
      }
    >;
  };
  const { 'temporal-db': db, temporal, 'temporal-ui': ui, 'temporal-setup': setup, worker } = prod.services;
  assert.match(db!.image!, /^postgres:/);
  assert.equal(temporal!.environment!.DB, 'postgres12');
  assert.equal(temporal!.environment!.POSTGRES_SEEDS, 'temporal-db');
  assert.match(ui!.image!, /^temporalio\/ui:/);
  assert.equal(ui!.environment!.TEMPORAL_ADDRESS, 'temporal:7233');
  assert.match(JSON.stringify(setup), /WalflowPipeline --type Keyword/);
  assert.equal(worker!.deploy!.replicas, 2);
  assert.deepEqual(
    worker!.command!.slice(0, 3),
    ['node', 'bin/walflow.js', 'worker'],
    'SIGTERM reaches the worker itself',
  );
});
