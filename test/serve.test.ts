/**
 * `walflow serve` on the real stack: a real server process (killed -9 and restarted), the real `ws`
 * client of lib/serve-client.ts, session workflows on a real worker, the session slots in Postgres.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { stringify } from 'yaml';
import { jsonRow, type JsonRow } from '../lib/envelope.ts';
import { parseLsn, type Lsn } from '../lib/lsn.ts';
import {
  ServeClient,
  ServeError,
  TableReplica,
  type ChangeMessage,
  type StreamConnection,
  type StreamMessage,
} from '../lib/serve-client.ts';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { readTable } from '../activities/postgres/read.ts';
import { connect } from '../activities/postgres/session.ts';
import { startWorker, type RunningWorker } from '../worker/worker.ts';
import { sessionWorkflowId } from '../lib/contract/session.ts';
import { runningSessionsQuery } from '../cli/sessions.ts';
import { createTestDatabase, temporalAddress, type TestDatabase } from './support/env.ts';

const SETUP = `
  CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(12,2), big int8, data bytea,
    tags text[], at timestamptz, payload jsonb, doc text);
  INSERT INTO items SELECT i, 'item ' || i, i * 1.25, 9007199254740993 + i, decode(md5(i::text), 'hex'),
    ARRAY['a' || i, NULL], '2024-02-29 12:00:00.123456+00'::timestamptz + i * interval '1 minute',
    jsonb_build_object('n', 12345678901234567890 + i), CASE WHEN i % 50 = 0 THEN (SELECT string_agg(md5(g::text), '')
      FROM generate_series(1, 300) g) END
  FROM generate_series(1, 500) i;
  CREATE TABLE others (k text PRIMARY KEY, v int);
  INSERT INTO others SELECT 'k' || i, i FROM generate_series(1, 50) i;
  CREATE TABLE keyless (v int);`;

const deadline = (ms: number) => Date.now() + ms;
const execFileAsync = promisify(execFile);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The source table's live rows, JSON-encoded as the server sends them, by key. */
async function sourceRows(url: string, table: string): Promise<Map<string, JsonRow>> {
  const client = await connect({ connectionString: url });
  try {
    const [schema] = await loadTableSchemas(client, [table]);
    const rows = new Map<string, JsonRow>();
    for await (const row of readTable(client, schema!)) {
      const j = jsonRow(row);
      rows.set(JSON.stringify(schema!.key.map((k) => j[k])), j);
    }
    return rows;
  } finally {
    await client.end();
  }
}

/**
 * Small transactions on `items` until stopped: inserts, updates (some leaving the TOASTed doc untouched), key updates,
 * deletes.
 */
function startWriter(url: string): { stop(): Promise<number> } {
  let running = true;
  let transactions = 0;
  const done = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    let next = 100_000;
    while (running) {
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO items (id, name, price, big, tags) VALUES ($1::int, 'new ' || $1, $1::int * 0.01, $1::int, ` +
          `ARRAY['x'])`,
        [next++],
      );
      await c.query(
        `UPDATE items SET name = name || '+', price = price + 1 WHERE id = (SELECT id FROM items ORDER BY random() ` +
          `LIMIT 1)`,
      );
      await c.query(
        `UPDATE items SET name = 'toasted ' || id WHERE id = (SELECT id FROM items WHERE doc IS NOT NULL ORDER BY ` +
          `random() LIMIT 1)`,
      );
      if (transactions % 7 === 0)
        await c.query(
          `UPDATE items SET id = id + 1000000 WHERE id = (SELECT id FROM items WHERE id < 1000000 ORDER BY random() ` +
            `LIMIT 1)`,
        );
      await c.query(`DELETE FROM items WHERE id = (SELECT id FROM items ORDER BY random() LIMIT 1)`);
      await c.query('COMMIT');
      transactions++;
      await new Promise((r) => setTimeout(r, 15));
    }
    await c.end();
  })();
  return {
    async stop() {
      running = false;
      await done;
      return transactions;
    },
  };
}

/** A `walflow serve` process on a fixed port (so it can be killed and started again at the same address). */
class ServeProcess {
  child?: ChildProcess;
  constructor(
    private readonly configFile: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, ['bin/walflow.js', 'serve', '--config', this.configFile], {
      env: this.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let output = '';
    child.stderr!.on('data', (d: Buffer) => {
      output += d.toString();
      process.stderr.write(`[serve] ${d.toString()}`);
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        output += d.toString();
        if (output.includes('listening on')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`walflow serve exited (${code}): ${output}`)));
    });
  }

  /** kill -9: no goodbye to clients, Postgres or Temporal. */
  async kill(): Promise<void> {
    const child = this.child!;
    this.child = undefined;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}

/** Reads the stream into `replicas` until `until()` holds; returns every change message read. */
async function pump(
  conn: StreamConnection,
  replicas: Record<string, TableReplica>,
  until: (m: StreamMessage | undefined) => boolean | Promise<boolean>,
  ms = 120_000,
): Promise<ChangeMessage[]> {
  const seen: ChangeMessage[] = [];
  const end = deadline(ms);
  const it = conn[Symbol.asyncIterator]();
  if (await until(undefined)) return seen;
  for (;;) {
    const left = end - Date.now();
    assert.ok(left > 0, `stream did not reach the expected state in ${ms} ms (read ${seen.length} changes)`);
    const r = await Promise.race([
      it.next(),
      new Promise<'quiet'>((res) => setTimeout(() => res('quiet'), Math.min(left, 1000))),
    ]);
    if (r === 'quiet') {
      if (await until(undefined)) return seen;
      continue;
    }
    assert.ok(!r.done, `stream closed: ${JSON.stringify(conn.closed)}`);
    const msg = r.value;
    assert.ok(!('error' in msg), `server refused: ${JSON.stringify(msg)}`);
    if (msg.op && msg.op !== 'commit' && msg.op !== 'keepalive' && msg.op !== 'acked') {
      seen.push(msg);
      replicas[`${msg.table.schema}.${msg.table.name}`]!.applyChange(msg);
    }
    if (await until(msg)) return seen;
  }
}

async function expectRefused(p: Promise<unknown>, status: number, field?: string): Promise<ServeError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(e instanceof ServeError, `expected HTTP ${status}, got ${e instanceof Error ? e.message : 'success'}`);
  assert.equal(e.status, status, e.message);
  if (field) {
    assert.equal(e.field, field, e.message);
    assert.match(e.message, new RegExp(field.replace('.', '\\.')));
  }
  return e;
}

describe('walflow serve', { timeout: 600_000 }, () => {
  let db: TestDatabase;
  let worker: RunningWorker;
  let server: ServeProcess;
  let temporal: Client;
  let temporalConnection: Connection;
  let url: string;
  let configFile: string;
  let env: NodeJS.ProcessEnv;
  const tokenA = randomBytes(16).toString('hex');
  const tokenB = randomBytes(16).toString('hex');
  const taskQueue = `test-serve-${Date.now()}`;

  const slotExists = async (slot: string) => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount === 1;
    } finally {
      await c.end();
    }
  };

  before(async () => {
    db = await createTestDatabase('serve');
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query(SETUP);
    await c.end();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    configFile = join(mkdtempSync(join(tmpdir(), 'walflow-serve-')), 'walflow.yaml');
    writeFileSync(
      configFile,
      stringify({
        temporal: { address: temporalAddress(), taskQueue },
        pipelines: [],
        serve: {
          listen: `127.0.0.1:${port}`,
          source: { url: db.url },
          tokens: ['env:WALFLOW_TEST_SERVE_TOKEN_A', 'env:WALFLOW_TEST_SERVE_TOKEN_B'],
          sessionIdleTimeoutSeconds: 300,
          snapshotHoldSeconds: 300,
          maxPageSize: 200,
        },
      }),
    );
    env = { ...process.env, WALFLOW_TEST_SERVE_TOKEN_A: tokenA, WALFLOW_TEST_SERVE_TOKEN_B: tokenB };
    worker = await startWorker({ address: temporalAddress(), taskQueue });
    temporalConnection = await Connection.connect({ address: temporalAddress() });
    temporal = new Client({ connection: temporalConnection });
    server = new ServeProcess(configFile, env);
    await server.start();
  });

  after(async () => {
    if (server?.child) await server.kill();
    // Sessions a failed test left behind would wait for a worker of this task queue forever.
    for await (const w of temporal?.workflow.list({ query: runningSessionsQuery(taskQueue) }) ?? []) {
      await temporal.workflow.getHandle(w.workflowId).terminate('test over');
    }
    await worker?.shutdown();
    await temporalConnection?.close();
    await db?.drop();
  });

  test(
    'init, snapshot paged while changes happen, stream and ACK; connection and server killed mid-stream; the ' +
      'copy equals the source, duplicates only after the last ACK',
    async () => {
      const client = new ServeClient(url, tokenA);
      const init = await client.init({ tables: ['items'] });
      assert.deepEqual(init.tables, ['public.items']);
      assert.deepEqual(init.keys, { 'public.items': ['id'] });
      assert.match(init.slotName, /^walflow_session_[0-9a-f]+$/);
      assert.ok(Date.parse(init.snapshotExpiresAt) > Date.now());
      const atInit = await sourceRows(db.url, 'public.items');
      const writer = startWriter(db.url);
      try {
        // Page the snapshot while the writer changes the table: every way of reading sees the table as it was at init.
        const keyset: JsonRow[] = [];
        for await (const row of client.snapshotRows(init.slotName, 'items', 37)) keyset.push(row);
        const byOffset: JsonRow[] = [];
        for (let offset = 0; ; offset += 150) {
          const page = await client.page({
            slotName: init.slotName,
            table: 'public.items',
            offset,
            limit: 150,
            order_by: { column: 'id', order: 'ASC' },
          });
          byOffset.push(...page.rows);
          if (page.rows.length < 150) break;
        }
        const ndjson: JsonRow[] = [];
        for await (const row of client.snapshotNdjson(init.slotName, 'items')) ndjson.push(row);
        assert.equal(keyset.length, 500);
        assert.deepEqual(byOffset, keyset);
        assert.deepEqual(
          new Map(ndjson.map((r) => [JSON.stringify([r.id]), r])),
          new Map(keyset.map((r) => [JSON.stringify([r.id]), r])),
        );
        assert.deepEqual(
          new Map(keyset.map((r) => [JSON.stringify([r.id]), r])),
          atInit,
          'the snapshot is the table as of init, values exact',
        );
        const desc = await client.page({
          slotName: init.slotName,
          table: 'items',
          limit: 3,
          order_by: [{ column: 'price', order: 'DESC' }],
        });
        assert.deepEqual(
          desc.rows.map((r) => r.id),
          [500, 499, 498],
        );
        assert.deepEqual(desc.rows[0]!.big, '9007199254741493', 'int8 exact as a string');

        const replica = new TableReplica(init.keys['public.items']!);
        for (const row of keyset) replica.applySnapshotRow(row, init.snapshotLsn);
        assert.deepEqual(await client.snapshotDone(init.slotName), { slotName: init.slotName, released: true });
        await expectRefused(client.page({ slotName: init.slotName, table: 'items' }), 410, 'slotName');

        // Stream: ACK the 5th commit (once the server answered, that is the last ACK), read 10 more changes
        // without ACKing, then lose the connection. The next connection must re-send exactly what was not ACKed.
        const replicas = { 'public.items': replica };
        let lastAck: Lsn = parseLsn(init.snapshotLsn);
        const acked = new Set<string>();
        let pending = new Set<string>();
        const round = async (conn: StreamConnection): Promise<void> => {
          const before = pending;
          pending = new Set();
          let commits = 0;
          let afterAck = 0;
          const seen = await pump(conn, replicas, async (m) => {
            if (!m) return false;
            if (m.op === 'commit' && ++commits === 5) {
              const confirmed = parseLsn(await conn.ack(m.nextlsn));
              assert.equal(confirmed, parseLsn(m.nextlsn), 'the slot is confirmed to exactly the ACKed position');
              lastAck = confirmed;
              for (const v of pending) acked.add(v);
              pending = new Set();
              return false;
            }
            if (m.op === undefined || m.op === 'commit' || m.op === 'keepalive' || m.op === 'acked') return false;
            // Duplicates only after the last ACK: nothing ACKed comes again.
            assert.ok(!acked.has(m.version), `change ${m.id} was sent again although ACKed`);
            assert.ok(parseLsn(m.lsn) >= lastAck, `change ${m.id} (commit ${m.lsn}) is before the last ACK`);
            pending.add(m.version);
            if (commits >= 5) afterAck++;
            return afterAck >= 10;
          });
          const resent = seen.filter((m) => before.has(m.version));
          assert.equal(
            new Set(resent.map((m) => m.version)).size,
            before.size,
            'every change received but not ACKed before the connection died is sent again',
          );
        };
        const resume = async (): Promise<StreamConnection> => {
          const end = deadline(60_000);
          for (;;) {
            try {
              return await client.stream(init.slotName);
            } catch (e) {
              // The server may still be starting, or still closing the previous reader's stream.
              if (Date.now() > end || (e instanceof ServeError && e.status !== 409)) throw e;
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        };

        const conn1 = await client.stream(init.slotName);
        await expectRefused(client.stream(init.slotName), 409, 'slotName');
        await round(conn1);
        assert.ok(acked.size > 0 && pending.size >= 10);
        conn1.terminate();

        const conn2 = await resume();
        await round(conn2);
        await server.kill();
        await server.start();

        const conn3 = await resume();
        await round(conn3);

        // The writer stops; the stream catches up and the copy equals the source.
        const transactions = await writer.stop();
        assert.ok(transactions > 20, `writer committed ${transactions} transactions`);
        const final = await sourceRows(db.url, 'public.items');
        const same = () => {
          try {
            assert.deepEqual(replica.current(), final);
            return true;
          } catch {
            return false;
          }
        };
        let lastNext: string | undefined;
        await pump(conn3, replicas, (m) => {
          if (m && 'nextlsn' in m) lastNext = m.nextlsn;
          return !m && same();
        });
        assert.deepEqual(replica.current(), final);
        await conn3.ack(lastNext!);
        conn3.close();
        await client.endSession(init.slotName);
        assert.equal(await slotExists(init.slotName), false, 'DELETE /v1/session drops the slot');
      } finally {
        await writer.stop();
      }
    },
  );
  test(
    'two sessions at once on different tables; a token reads only its own sessions; no token: 401; bad input: ' +
      '4xx naming the field',
    async () => {
      const a = new ServeClient(url, tokenA);
      const b = new ServeClient(url, tokenB);
      const [sa, sb] = await Promise.all([a.init({ tables: ['items'] }), b.init({ tables: ['public.others'] })]);
      assert.notEqual(sa.slotName, sb.slotName);

      for (const stranger of [new ServeClient(url, ''), new ServeClient(url, 'not-a-token')]) {
        await expectRefused(stranger.init({ tables: ['items'] }), 401, 'Authorization');
        await expectRefused(stranger.page({ slotName: sa.slotName, table: 'items' }), 401, 'Authorization');
        await expectRefused(stranger.snapshotDone(sa.slotName), 401, 'Authorization');
        await expectRefused(stranger.endSession(sa.slotName), 401, 'Authorization');
        await expectRefused(stranger.stream(sa.slotName), 401, 'Authorization');
      }
      await expectRefused(b.page({ slotName: sa.slotName, table: 'items' }), 403, 'slotName');
      await expectRefused(b.snapshotDone(sa.slotName), 403, 'slotName');
      await expectRefused(b.endSession(sa.slotName), 403, 'slotName');
      await expectRefused(b.stream(sa.slotName), 403, 'slotName');
      await expectRefused(b.page({ slotName: sb.slotName, table: 'items' }), 400, 'table');

      await expectRefused(a.init({ tables: ['nope'] }), 400, 'tables');
      await expectRefused(a.init({ tables: ['keyless'] }), 400, 'tables');
      await expectRefused(a.init({ publication: 'nope' }), 400, 'publication');
      await expectRefused(a.init({} as { tables: string[] }), 400, 'tables');
      await expectRefused(a.init({ tables: ['items'], idleTimeoutSeconds: 301 }), 400, 'idleTimeoutSeconds');
      await expectRefused(a.page({ slotName: 'walflow_session_0000000000', table: 'items' }), 404, 'slotName');
      await expectRefused(a.page({ slotName: sa.slotName, table: 'nope' }), 400, 'table');
      await expectRefused(a.page({ slotName: sa.slotName, table: 'items', limit: 201 }), 400, 'limit');
      await expectRefused(a.page({ slotName: sa.slotName, table: 'items', offset: -1 }), 400, 'offset');
      await expectRefused(
        a.page({ slotName: sa.slotName, table: 'items', order_by: { column: 'id; DROP TABLE items' } }),
        400,
        'order_by.column',
      );
      await expectRefused(a.page({ slotName: sa.slotName, table: 'items', after: { name: 'x' } }), 400, 'after.id');
      await expectRefused(
        a.page({ slotName: sa.slotName, table: 'items', after: { id: 3 }, order_by: { column: 'name' } }),
        400,
        'after',
      );
      await expectRefused(a.stream('walflow_session_0000000000'), 404, 'slotName');

      // Each session's copy of its own table, from its own snapshot.
      const items = new TableReplica(sa.keys['public.items']!);
      const others = new TableReplica(sb.keys['public.others']!);
      for await (const row of a.snapshotRows(sa.slotName, 'items')) items.applySnapshotRow(row, sa.snapshotLsn);
      for await (const row of b.snapshotRows(sb.slotName, 'others', 7)) others.applySnapshotRow(row, sb.snapshotLsn);
      const [ca, cb] = await Promise.all([a.stream(sa.slotName), b.stream(sb.slotName)]);
      await expectRefused(ca.ack('zz'), 400, 'lsn');
      await expectRefused(ca.ack('FF/0'), 400, 'lsn');

      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      await c.query(`BEGIN; UPDATE others SET v = v + 1 WHERE k IN ('k1', 'k2'); DELETE FROM others WHERE k = 'k3';
      UPDATE items SET name = 'both' WHERE id = (SELECT min(id) FROM items); COMMIT`);
      await c.query(`INSERT INTO others VALUES ('new', 1)`);
      await c.query(
        `BEGIN; TRUNCATE others; INSERT INTO others SELECT 'after' || i, i FROM generate_series(1, 5) i; COMMIT`,
      );
      await c.query(`DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id DESC LIMIT 3)`);
      await c.end();

      const wantItems = await sourceRows(db.url, 'public.items');
      const wantOthers = await sourceRows(db.url, 'public.others');
      const same = (r: TableReplica, want: Map<string, JsonRow>) => {
        try {
          assert.deepEqual(r.current(), want);
          return true;
        } catch {
          return false;
        }
      };
      const [seenA, seenB] = await Promise.all([
        pump(ca, { 'public.items': items }, (m) => !m && same(items, wantItems)),
        pump(cb, { 'public.others': others }, (m) => !m && same(others, wantOthers)),
      ]);
      assert.deepEqual(items.current(), wantItems);
      assert.deepEqual(others.current(), wantOthers);
      assert.ok(
        seenA.every((m) => m.table.name === 'items') && seenB.every((m) => m.table.name === 'others'),
        'each session streams only its tables',
      );
      assert.ok(seenB.some((m) => m.op === 'truncate'));

      // Both sessions show in `walflow status --sessions` (JSON).
      // (Not spawnSync: the worker answering the CLI's queries runs in this process.)
      const status = await execFileAsync(
        process.execPath,
        ['bin/walflow.js', 'status', '--sessions', '--json', '--config', configFile],
        { env, encoding: 'utf8' },
      );
      const listed = (
        JSON.parse(status.stdout) as { sessions: { slot: string; tables: string[]; connected: boolean }[] }
      ).sessions;
      assert.deepEqual(listed.find((s) => s.slot === sa.slotName)?.tables, ['public.items']);
      assert.deepEqual(listed.find((s) => s.slot === sb.slotName)?.tables, ['public.others']);

      ca.close();
      cb.close();
      await a.endSession(sa.slotName);
      await b.endSession(sb.slotName);
      assert.equal(await slotExists(sa.slotName), false);
      assert.equal(await slotExists(sb.slotName), false);
      await expectRefused(a.page({ slotName: sa.slotName, table: 'items' }), 404, 'slotName');
      // The session's history carries the token's reference, never the token.
      const texts: string[] = [];
      const walk = (v: unknown): void => {
        if (v instanceof Uint8Array) texts.push(Buffer.from(v).toString('utf8'));
        else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
      };
      walk(await temporal.workflow.getHandle(sessionWorkflowId(sa.slotName)).fetchHistory());
      const history = texts.join('\n');
      assert.ok(history.includes('env:WALFLOW_TEST_SERVE_TOKEN_A') && !history.includes(tokenA));
    },
  );

  test('an abandoned session is ended after its idle timeout: slot and publication dropped', async () => {
    const a = new ServeClient(url, tokenA);
    const s = await a.init({ tables: ['others'], idleTimeoutSeconds: 2 });
    assert.equal(await slotExists(s.slotName), true);
    // No stream, no request, no ACK from here on (the snapshot is still held by the server).
    const end = deadline(120_000);
    while (await slotExists(s.slotName)) {
      assert.ok(Date.now() < end, `slot ${s.slotName} still exists 120 s after its 2 s idle timeout`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const result = (await temporal.workflow.getHandle(sessionWorkflowId(s.slotName)).result()) as { reason: string };
    assert.match(result.reason, /idle for 2 s/);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    assert.equal((await c.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [s.slotName])).rowCount, 0);
    await c.end();
    await expectRefused(a.page({ slotName: s.slotName, table: 'others' }), 404, 'slotName');
  });
  test(
    'a client that does not read is flow-controlled: the server stops reading the slot, its memory stays ' +
      'bounded, nothing is lost',
    async () => {
      const peakRss = () => {
        const status = readFileSync(`/proc/${server.child!.pid}/status`, 'utf8');
        return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
      };
      const a = new ServeClient(url, tokenA);
      const s = await a.init({ tables: ['others'] });
      const others = new TableReplica(s.keys['public.others']!);
      for await (const row of a.snapshotRows(s.slotName, 'others')) others.applySnapshotRow(row, s.snapshotLsn);
      const conn = await a.stream(s.slotName);
      const socket = (conn.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      socket.pause();
      const before = peakRss();
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      // About 50 MB of messages in one transaction, against a send buffer of 4 MiB.
      await c.query(`INSERT INTO others SELECT 'bulk' || g, g FROM generate_series(1, 150000) g`);
      await c.end();
      // Long enough for a server without flow control to have read and queued much of the stream.
      await new Promise((r) => setTimeout(r, 10_000));
      const stalled = peakRss();
      socket.resume();
      const want = await sourceRows(db.url, 'public.others');
      const seen = await pump(conn, { 'public.others': others }, (m) => m?.op === 'commit');
      assert.equal(seen.length, 150_000);
      assert.deepEqual(others.current(), want);
      const grown = (stalled - before) / 1024 / 1024;
      assert.ok(grown < 100, `the server's peak RSS grew ${grown.toFixed(0)} MB while the client read nothing`);
      conn.close();
      await a.endSession(s.slotName);
    },
  );
});
