/**
 * Preflight against really misconfigured servers: every failure is found, all
 * are reported together, and each message says what to change.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { stringify } from 'yaml';
import { preflight } from '../activities/postgres/preflight.ts';
import { connect } from '../activities/postgres/session.ts';
import {
  embeddedPostgresBinDir,
  postgresUrl,
  startPostgres,
  stopPostgres,
  type PostgresInstance,
} from '../stack/postgres.ts';
import { createTestDatabase, type TestDatabase } from './support/env.ts';

let bad: PostgresInstance;
let db: TestDatabase;

before(async () => {
  bad = {
    name: 'postgres-preflight-misconfigured',
    binDir: await embeddedPostgresBinDir(),
    port: 26511,
    portEnv: 'TEST_PORT',
    settings: { wal_level: 'replica', max_replication_slots: '0', max_wal_senders: '0' },
  };
  await startPostgres(bad);
  db = await createTestDatabase('preflight', postgresUrl(bad));
  const c = await connect({ connectionString: db.url });
  await c.query(`DROP ROLE IF EXISTS plain_role; CREATE ROLE plain_role LOGIN PASSWORD 'x';
    CREATE TABLE keyless (v text); CREATE TABLE keyed (id int PRIMARY KEY); GRANT SELECT ON keyed, keyless TO
      plain_role;
    CREATE TABLE secret (id int PRIMARY KEY); CREATE PUBLICATION partial FOR TABLE keyed`);
  await c.end();
});

after(async () => {
  await db.drop();
  await stopPostgres(bad);
});

test('every problem of a misconfigured database is reported at once, each with its fix', async () => {
  const url = new URL(db.url);
  url.username = 'plain_role';
  url.password = 'x';
  const client = await connect({ connectionString: url.toString() });
  try {
    const report = await preflight(client, {
      publication: 'partial',
      tables: ['public.keyed', 'public.keyless', 'public.missing', 'public.secret'],
      createPublication: false,
      slot: 'walflow_x',
    });
    const expected = [
      /wal_level is replica; .*ALTER SYSTEM SET wal_level = logical.*restart Postgres/,
      /role plain_role lacks the REPLICATION privilege: run ALTER ROLE plain_role REPLICATION;/,
      /max_replication_slots = 0 .* raise max_replication_slots/,
      /max_wal_senders = 0 .* raise max_wal_senders/,
      /table public\.keyless has no primary key and no REPLICA IDENTITY FULL.*ADD PRIMARY KEY.*REPLICA IDENTITY FULL/,
      /table public\.missing does not exist/,
      /role plain_role cannot read public\.secret: GRANT SELECT ON public\.secret TO plain_role/,
      /publication partial does not publish public\.keyless, public\.secret: ALTER PUBLICATION partial ADD TABLE/,
    ];
    for (const re of expected)
      assert.ok(
        report.failures.some((f) => re.test(f)),
        `expected a failure matching ${re}\ngot:\n${report.failures.join('\n')}`,
      );
    assert.equal(report.failures.length, expected.length, report.failures.join('\n'));
  } finally {
    await client.end();
  }
});

test('a role that cannot add tables to the publication it is to manage is told why and how to fix it', async () => {
  const url = new URL(db.url);
  url.username = 'plain_role';
  url.password = 'x';
  const client = await connect({ connectionString: url.toString() });
  try {
    const report = await preflight(client, {
      publication: 'partial',
      tables: ['public.keyed', 'public.keyless'],
      createPublication: true,
      slot: 'walflow_x',
    });
    const owner = report.failures.filter((f) => /does not own/.test(f));
    assert.equal(owner.length, 1, report.failures.join('\n'));
    // keyed is published already: only keyless must be added, and so owned.
    assert.match(
      owner[0]!,
      /^role plain_role does not own public\.keyless \(owner postgres\), and adding a table to publication partial requires owning it: ALTER TABLE public\.keyless OWNER TO plain_role;.*set source\.createPublication: false/,
    );
    assert.ok(
      report.failures.some((f) =>
        /^publication partial belongs to postgres, so role plain_role cannot ALTER it .*ALTER PUBLICATION partial OWNER TO plain_role;/.test(
          f,
        ),
      ),
      report.failures.join('\n'),
    );
  } finally {
    await client.end();
  }
});

test('a missing publication is reported when walflow is not to create it, and `walflow check` exits 1 with the list', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walflow-check-'));
  const config = join(dir, 'walflow.yaml');
  writeFileSync(
    config,
    stringify({
      pipelines: [
        {
          id: 'checked',
          source: { url: db.url, publication: 'nope', tables: ['keyed'], createPublication: false },
          destination: { type: 'null' },
        },
      ],
    }),
  );
  const r = spawnSync(process.execPath, ['bin/walflow.js', 'check', 'checked', '--config', config], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /pipeline checked: \d+ problem\(s\):/);
  assert.match(r.stdout, /- publication nope does not exist: CREATE PUBLICATION nope FOR TABLE public\.keyed/);
  assert.match(r.stdout, /- wal_level is replica/);
});

test('a well-configured database passes', async () => {
  const good = await createTestDatabase('preflight_ok');
  const c = await connect({ connectionString: good.url });
  try {
    await c.query('CREATE TABLE t (id int PRIMARY KEY)');
    const report = await preflight(c, { publication: 'p', tables: ['public.t'], createPublication: true, slot: 's' });
    assert.deepEqual(report.failures, []);
    assert.ok(report.majorVersion >= 14);
    const keep = (await c.query<{ v: string }>(`SELECT current_setting('max_slot_wal_keep_size') AS v`)).rows[0]!.v;
    if (keep === '-1')
      assert.match(
        report.warnings.join('\n'),
        /^max_slot_wal_keep_size is -1: .*ALTER SYSTEM SET max_slot_wal_keep_size/,
      );
    else assert.deepEqual(report.warnings, []);
  } finally {
    await c.end();
    await good.drop();
  }
});

test(
  'tables whose destination names collide, and keyless tables a keyed destination would collapse, are refused by ' +
    '`walflow check`',
  async () => {
    const good = await createTestDatabase('preflight_names');
    const c = await connect({ connectionString: good.url });
    try {
      await c.query(`CREATE SCHEMA x; CREATE SCHEMA x_y; CREATE TABLE x.y_z (id int PRIMARY KEY);
      CREATE TABLE x_y.z (id int PRIMARY KEY);
      CREATE TABLE bag (v text); ALTER TABLE bag REPLICA IDENTITY FULL`);
      const dir = mkdtempSync(join(tmpdir(), 'walflow-check-'));
      const config = join(dir, 'walflow.yaml');
      const pipeline = (id: string, type: string) => ({
        id,
        source: { url: good.url, publication: 'p', tables: ['x.y_z', 'x_y.z', 'bag'] },
        destination: type === 'clickhouse' ? { type, url: 'http://127.0.0.1:1', database: 'd' } : { type },
      });
      writeFileSync(config, stringify({ pipelines: [pipeline('ch', 'clickhouse'), pipeline('out', 'stdout')] }));
      const r = spawnSync(process.execPath, ['bin/walflow.js', 'check', 'ch', '--config', config], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stdout, /tables x\.y_z and x_y\.z would both be written to clickhouse table x_y_z/);
      assert.match(
        r.stdout,
        /table public\.bag has no primary key \(REPLICA IDENTITY FULL\): the clickhouse destination keeps one row per key/,
      );
      const ok = spawnSync(process.execPath, ['bin/walflow.js', 'check', 'out', '--config', config], {
        encoding: 'utf8',
      });
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    } finally {
      await c.end();
      await good.drop();
    }
  },
);
