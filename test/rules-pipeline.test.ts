/**
 * Rules on the real stack into ClickHouse: a filter's rows entering and leaving through backfill and
 * CDC, mask, hash, regex, set, drop, rename and include; resync and `walflow verify` under the rules;
 * `walflow check` and the pipeline itself naming a rule's missing column; no salt or clear value in
 * ClickHouse or in any workflow history.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { createClient } from '@clickhouse/client';
import { parse, stringify } from 'yaml';
import { PipelineFixture } from './support/pipeline.ts';
import { requireEnv } from './support/env.ts';

const SALT = 'salt-that-never-leaves-the-worker-7f3a';
const emails = [
  'alice.wonder@example.com',
  'bob.builder@example.com',
  'carol.singer@example.com',
  'dave.diver@example.com',
  'erin.e@example.com',
  'frank.f@example.com',
  'dave.new@example.com',
];
const ssns = ['111-11-1111', '222-22-2222', '333-33-3333', '444-44-4444', '555-55-5555', '666-66-6666'];
const run = (args: string[]) =>
  new Promise<{ status: number | null; output: string }>((resolve) => {
    const child = spawn(process.execPath, ['bin/walflow.js', ...args]);
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d;
    });
    child.on('close', (status) => resolve({ status, output }));
  });
const hmac = (s: string) => createHmac('sha256', SALT).update(s).digest('hex');

describe('rules into ClickHouse', () => {
  const f = new PipelineFixture({
    name: 'rules',
    destination: 'clickhouse',
    setup: `CREATE TABLE customers (id bigint PRIMARY KEY, email text, ssn text, phone text, country text, big bigint,
      note text, created timestamptz);
      INSERT INTO customers VALUES
        (1, '${emails[0]}', '${ssns[0]}', '+33 6 12 34 56 78', 'FR', 9007199254740993, 'n1',
          '2024-01-01 00:00:00.5+00'),
        (2, '${emails[1]}', '${ssns[1]}', '555-0102', 'US', 9007199254740993, 'n2', now()),
        (3, '${emails[2]}', '${ssns[2]}', '555-0103', 'DE', 9007199254740992, 'n3', now()),
        (4, '${emails[3]}', '${ssns[3]}', '555-0104', 'DE', 9223372036854775807, 'n4', now());
      CREATE TABLE accounts (id int PRIMARY KEY, owner text, status text, secret text, score numeric(10,2));
      ALTER TABLE accounts REPLICA IDENTITY FULL;
      INSERT INTO accounts VALUES (1, 'ann', 'active', 's1', 1.5), (2, 'ben', 'closed', 's2', 2), (3, 'cat',
        'active', 's3', 3.25);`,
    tables: ['customers', 'accounts'],
    pipeline: {
      rules: {
        customers: {
          // 9007199254740992 and ...993 are one float: only an exact comparison tells them apart.
          filter: {
            where: {
              all: [
                { column: 'country', in: ['FR', 'DE'] },
                { column: 'big', gt: '9007199254740992' },
              ],
            },
          },
          transform: [
            { column: 'email', mask: { keepFirst: 2, keepLast: 4, char: '*' } },
            { column: 'ssn', hash: { salt: 'env:WALFLOW_TEST_RULES_SALT' } },
            { column: 'phone', regex: { pattern: '\\d', replace: '#' } },
            { column: 'created', set: '2000-01-01 00:00:00+00' },
            { column: 'note', drop: true },
          ],
          rename: { table: 'clients', columns: { email: 'contact' } },
        },
        accounts: {
          filter: { where: { column: 'status', eq: 'active' } },
          columns: { include: ['id', 'owner', 'status', 'score'] },
          rename: { columns: { owner: 'holder' } },
        },
      },
    },
  });
  after(() => f.teardown());

  test(
    'filtered, masked, hashed, renamed rows through backfill and CDC; verify equal; nothing in clear downstream ' +
      'or in history',
    async () => {
      process.env.WALFLOW_TEST_RULES_SALT = SALT;
      await f.setup();
      await f.start();
      await f.waitForConvergence();
      const ch = createClient({ url: requireEnv('CLICKHOUSE_URL') });
      const db = f.target.name;
      const rows = async <T>(query: string) => (await (await ch.query({ query, format: 'JSONEachRow' })).json()) as T[];
      const live = async (table: string) =>
        (
          await rows<{ id: string | number }>(
            `SELECT id FROM ${db}.${table} FINAL WHERE NOT _walflow_deleted ORDER BY id`,
          )
        ).map((r) => String(r.id));
      try {
        assert.deepEqual(await live('clients'), ['1', '4'], 'backfill (read): only rows in the filter');
        assert.deepEqual(await live('accounts'), ['1', '3']);

        await f.sql(`INSERT INTO customers VALUES (5, '${emails[4]}', '${ssns[4]}', '555-0105', 'FR',
          9007199254740994, 'n5', now()),
          (6, '${emails[5]}', '${ssns[5]}', '555-0106', 'US', 9007199254740994, 'n6', now());
        UPDATE customers SET country = 'US' WHERE id = 1;           -- leaves the filter
        UPDATE customers SET country = 'FR' WHERE id = 2;           -- enters it
        UPDATE customers SET email = '${emails[6]}' WHERE id = 4;  -- stays in
        DELETE FROM customers WHERE id = 3;                          -- never in: a harmless tombstone
        UPDATE accounts SET status = 'closed' WHERE id = 1;          -- leaves (the full old image says it was in)
        UPDATE accounts SET status = 'active' WHERE id = 2;          -- enters: an insert
        UPDATE accounts SET secret = 'changed', score = 4 WHERE id = 3;
        INSERT INTO accounts VALUES (4, 'dan', 'closed', 's4', 0);
        DELETE FROM accounts WHERE id = 4;`);
        await f.waitForConvergence();
        await f.sql('DELETE FROM customers WHERE id = 4');
        await f.waitForConvergence();
        assert.deepEqual(await live('clients'), ['2', '5']);
        assert.deepEqual(await live('accounts'), ['2', '3']);

        const clients = await rows<Record<string, string>>(
          `SELECT id, contact, ssn, phone, toString(created) AS created FROM ${db}.clients FINAL WHERE NOT ` +
            `_walflow_deleted ORDER BY id`,
        );
        assert.deepEqual(clients, [
          {
            id: '2',
            contact: 'bo*****************.com',
            ssn: hmac(ssns[1]!),
            phone: '###-####',
            created: '2000-01-01 00:00:00.000000',
          },
          {
            id: '5',
            contact: 'er************.com',
            ssn: hmac(ssns[4]!),
            phone: '###-####',
            created: '2000-01-01 00:00:00.000000',
          },
        ]);
        const columns = async (table: string) =>
          (await rows<{ name: string }>(`DESCRIBE TABLE ${db}.${table}`))
            .map((c) => c.name)
            .filter((c) => !c.startsWith('_walflow'));
        assert.deepEqual(await columns('clients'), ['id', 'contact', 'ssn', 'phone', 'country', 'big', 'created']);
        assert.deepEqual(await columns('accounts'), ['id', 'holder', 'status', 'score']);
        assert.deepEqual(await rows(`EXISTS TABLE ${db}.customers`), [{ result: 0 }], 'the source name is not used');

        // Every version ClickHouse holds (not only the live ones): no clear e-mail, SSN, note or secret ever arrived.
        const stored = JSON.stringify([
          ...(await rows(`SELECT * FROM ${db}.clients`)),
          ...(await rows(`SELECT * FROM ${db}.accounts`)),
        ]);
        for (const clear of [...emails, ...ssns, 'n1', 'n5', 's1', 's3', 'changed'])
          assert.ok(!stored.includes(clear), `${clear} reached ClickHouse in clear`);
        assert.ok(stored.includes(`da${'*'.repeat(14)}.com`), 'the update of a row in the filter arrived, masked');

        const verify = spawnSync(
          process.execPath,
          ['bin/walflow.js', 'verify', f.config.id, '--config', f.configFile, '--json'],
          { encoding: 'utf8' },
        );
        assert.equal(verify.status, 0, verify.stdout + verify.stderr);
        const report = JSON.parse(verify.stdout) as {
          equal: boolean;
          tables: { table: string; destinationTable?: string; sourceRows: number; destinationRows: number }[];
        };
        assert.equal(report.equal, true);
        assert.deepEqual(
          report.tables.map((t) => [t.table, t.destinationTable, t.sourceRows, t.destinationRows]),
          [
            ['public.customers', 'public.clients', 2, 2],
            ['public.accounts', undefined, 2, 2],
          ],
        );
        // A row ClickHouse has that the source lost without a change event: a resync (through the rules, into
        // the renamed table) removes it and rewrites only rows in the filter.
        await ch.command({
          query:
            `INSERT INTO ${db}.clients (id, contact, _walflow_version, _walflow_deleted) VALUES (99, 'ghost', 1, ` +
            `false)`,
        });
        assert.deepEqual(await live('clients'), ['2', '5', '99']);
        // Not spawnSync: the worker runs in this process and must keep running while the CLI waits.
        const resync = await run(['resync', f.config.id, '--config', f.configFile, '--wait']);
        assert.equal(resync.status, 0, resync.output);
        assert.deepEqual(await live('clients'), ['2', '5']);
        assert.deepEqual(await live('accounts'), ['2', '3']);
        await f.waitForConvergence();

        // The rules also make verify see a drift in a column they keep (and only there).
        await f.handle.signal('pause');
        await f.waitFor('paused', async () => (await f.status()).phase === 'paused');
        await f.sql(
          `UPDATE customers SET note = 'not replicated' WHERE id = 2; UPDATE customers SET phone = '1' WHERE id = 5`,
        );
        const drift = spawnSync(process.execPath, ['bin/walflow.js', 'verify', f.config.id, '--config', f.configFile], {
          encoding: 'utf8',
        });
        assert.equal(drift.status, 1, drift.stdout);
        assert.match(
          drift.stdout,
          /DIFF public\.customers -> public\.clients: source 2 rows, destination 2 rows\n\s+values differ: key \["5"\]\n/,
        );

        // Histories of the pipeline and its copy workflows: the salt's reference only, never the salt or a row.
        const histories: string[] = [];
        for await (const wf of f.client.workflow.list({ query: `WorkflowId STARTS_WITH '${f.handle.workflowId}'` })) {
          const history = await f.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
          histories.push(
            JSON.stringify(history, (k, v) =>
              k === 'data' && typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : v,
            ),
          );
        }
        const all = histories.join('\n');
        assert.ok(histories.length >= 2, `histories read: ${histories.length}`);
        assert.ok(all.includes('env:WALFLOW_TEST_RULES_SALT'), 'the reference is in the history');
        for (const secret of [SALT, ...emails, ...ssns])
          assert.ok(!all.includes(secret), `${secret} is in a workflow history`);
      } finally {
        await ch.close();
      }
    },
  );

  test('walflow check names the pipeline, table, rule and column of a rule on a missing column', () => {
    const raw = parse(readFileSync(f.configFile, 'utf8')) as { pipelines: { rules: Record<string, unknown> }[] };
    raw.pipelines[0]!.rules.accounts = { transform: [{ column: 'secrett', mask: {} }] };
    const file = `${f.configFile}.bad.yaml`;
    writeFileSync(file, stringify(raw));
    const check = spawnSync(process.execPath, ['bin/walflow.js', 'check', f.config.id, '--config', file], {
      encoding: 'utf8',
    });
    assert.equal(check.status, 1, check.stdout + check.stderr);
    assert.match(
      check.stdout,
      new RegExp(
        `- pipeline ${f.config.id}, table accounts, rule transform\\[0\\]: column "secrett" does not exist in ` +
          `public\\.accounts \\(columns: id, owner, status, secret, score\\)`,
      ),
    );
  });
});

describe('a rule on a missing column stops the pipeline for the operator', () => {
  const f = new PipelineFixture({
    name: 'rulesbad',
    destination: 'clickhouse',
    setup: "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a');",
    tables: ['items'],
    pipeline: { rules: { items: { filter: { where: { column: 'nmae', eq: 'a' } } } } },
  });
  after(() => f.teardown());

  test('phase failed, lastError naming pipeline, table, rule and column', async () => {
    await f.setup();
    await f.start();
    const status = await f.waitFor('the pipeline to stop', async () => {
      const s = await f.status();
      return s.phase === 'failed' && s;
    });
    assert.match(
      status.lastError ?? '',
      new RegExp(
        `pipeline ${f.config.id}, table items, rule filter\\.where: column "nmae" does not exist in public\\.items ` +
          `\\(columns: id, name\\)`,
      ),
    );
  });
});
