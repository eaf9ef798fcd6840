/**
 * The stream destinations one by one, against the real thing: files on disk, an HTTP server, the stack's
 * nats-server; and a pipeline whose worker prints envelopes on stdout and nothing else there.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { stringify } from 'yaml';
import { PassThrough } from 'node:stream';
import { createDestination } from '../activities/destinations/index.ts';
import { StdoutDestination } from '../activities/destinations/stdout.ts';
import { DestinationConfig, parseConfig } from '../lib/config.ts';
import { toEnvelope, type ChangeEnvelope, type JsonRow } from '../lib/envelope.ts';
import { makeVersion } from '../lib/lsn.ts';
import type { Change, TableSchema } from '../lib/model.ts';
import { fileConsumer, materialize } from './fault/consumers.ts';
import { PipelineFixture } from './support/pipeline.ts';
import { requireEnv } from './support/env.ts';
import { ErrorType } from '../lib/errors.ts';

const schema: TableSchema = {
  schema: 'public',
  name: 'items',
  key: ['id'],
  replicaIdentity: 'default',
  columns: [
    { name: 'id', type: 'bigint', typeOid: 20, kind: 'bigint', arrayDims: 0, nullable: false },
    { name: 'name', type: 'text', typeOid: 25, kind: 'text', arrayDims: 0, nullable: true },
  ],
};
const table = { schema: 'public', name: 'items' };
const tx = { xid: 1, commitTime: '2026-01-01T00:00:00.000000Z' };
const changes = (lsn: number, n: number, name = 'x'): Change[] =>
  Array.from({ length: n }, (_, i) => ({
    kind: 'insert',
    table,
    version: makeVersion(BigInt(lsn), i + 1),
    tx,
    row: { id: String(lsn * 1000 + i), name: `${name} ${i}` },
  }));
const destination = (config: Record<string, unknown>) =>
  createDestination(DestinationConfig.parse(config), { pipeline: 'shop' });
const tmp = mkdtempSync(join(tmpdir(), 'walflow-streams-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('file: JSON Lines named by LSN, rotated by size, gzip members, one folder per table on request', async () => {
  const path = join(tmp, 'files');
  const plain = await destination({ type: 'file', path, maxBytes: 1500 });
  await plain.prepare([schema]);
  for (let lsn = 1; lsn <= 6; lsn++) await plain.apply(changes(0x100 * lsn, 5));
  await plain.close();
  const names = readdirSync(join(path, 'shop'));
  assert.ok(names.length >= 3, `rotated: ${names.join(' ')}`);
  assert.match(names[0]!, /^0000000000000100-00000001-[0-9a-f]{8}-000001\.jsonl$/);
  const lines = names
    .sort()
    .flatMap((n) =>
      readFileSync(join(path, 'shop', n), 'utf8')
        .trimEnd()
        .split('\n'),
    )
    .map((l) => JSON.parse(l) as ChangeEnvelope);
  assert.equal(lines.length, 30);
  assert.deepEqual(
    lines.map((e) => BigInt(e.version)),
    lines.map((e) => BigInt(e.version)).sort((a, b) => (a < b ? -1 : 1)),
    'files in name order hold the changes in LSN order',
  );
  assert.deepEqual(lines[0]!.row, { id: '256000', name: 'x 0' });

  const zipped = await destination({ type: 'file', path: join(tmp, 'gz'), split: 'table', gzip: true });
  await zipped.prepare([schema]);
  await zipped.apply(changes(0x10, 2));
  await zipped.apply(changes(0x20, 3));
  await zipped.close();
  const [folder] = readdirSync(join(tmp, 'gz', 'shop'));
  assert.equal(folder, 'public.items');
  const [file] = readdirSync(join(tmp, 'gz', 'shop', folder!));
  assert.match(file!, /\.jsonl\.gz$/);
  const text = gunzipSync(readFileSync(join(tmp, 'gz', 'shop', folder!, file!))).toString('utf8');
  assert.equal(text.trimEnd().split('\n').length, 5, 'two batches, two gzip members, one stream');
});

/** An HTTP server answering each request with the next of `answers` (then 200), recording what came. */
async function endpoint(answers: (number | 'hang')[]) {
  const requests: { headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString('utf8');
    });
    req.on('end', () => {
      requests.push({ headers: req.headers, body });
      const answer = answers.shift() ?? 200;
      if (answer === 'hang') return; // never answers: the client's timeout must fire
      res.writeHead(answer).end(answer === 400 ? '{"error":"column total is not allowed"}' : 'ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
  return {
    url,
    requests,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

test('webhook: 5xx and timeouts retried with the same key and signature; NDJSON; secret headers resolved', async () => {
  process.env.WALFLOW_TEST_HOOK_SECRET = 's3cret';
  process.env.WALFLOW_TEST_HOOK_TOKEN = 'Bearer abc';
  const server = await endpoint([500, 'hang', 503]);
  try {
    const hook = await destination({
      type: 'webhook',
      url: server.url,
      format: 'ndjson',
      secret: 'env:WALFLOW_TEST_HOOK_SECRET',
      timeoutMs: 500,
      headers: { Authorization: 'env:WALFLOW_TEST_HOOK_TOKEN', 'X-Team': 'data' },
    });
    await hook.prepare([schema]);
    await hook.apply(changes(0x30, 3));
    assert.equal(server.requests.length, 4, 'a 500, a timeout, a 503, then delivered');
    const first = server.requests[0]!;
    for (const r of server.requests) {
      assert.equal(r.body, first.body);
      assert.equal(r.headers['idempotency-key'], `shop:${makeVersion(0x30n, 1)}..shop:${makeVersion(0x30n, 3)}`);
    }
    assert.equal(
      first.headers['x-walflow-signature'],
      `sha256=${createHmac('sha256', 's3cret').update(first.body).digest('hex')}`,
    );
    assert.equal(first.headers.authorization, 'Bearer abc');
    assert.equal(first.headers['x-team'], 'data');
    assert.equal(first.headers['content-type'], 'application/x-ndjson');
    assert.deepEqual(
      first.body
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as ChangeEnvelope).op),
      ['insert', 'insert', 'insert'],
    );
  } finally {
    server.close();
  }
});

test('webhook: a 4xx is permanent: a ConfigError naming the table, the status and the body', async () => {
  const server = await endpoint([400]);
  try {
    const hook = await destination({ type: 'webhook', url: `${server.url}?token=hidden` });
    await hook.prepare([schema]);
    await assert.rejects(hook.apply(changes(0x40, 2)), (e: Error) => {
      assert.equal(e.name, ErrorType.Config, 'a type the pipeline stops on (nonRetryableErrorTypes)');
      assert.match(
        e.message,
        /refused 2 change\(s\) of table public\.items .*HTTP 400 Bad Request: \{"error":"column total is not allowed"\}/,
      );
      assert.doesNotMatch(e.message, /hidden/, 'the query string (it may hold a token) is not repeated');
      return true;
    });
    assert.equal(server.requests.length, 1, 'not retried');
  } finally {
    server.close();
  }
});

test('a pipeline whose webhook answers 400 stops for the operator, saying which table, what status and what body', async () => {
  const server = await endpoint(Array.from({ length: 1000 }, () => 400));
  const f = new PipelineFixture({
    name: 'hook400',
    tables: ['items'],
    setup: `CREATE TABLE items (id int8 PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one');`,
    consumer: { destination: { type: 'webhook', url: server.url }, tables: async () => new Map() },
  });
  try {
    await f.setup();
    await f.start();
    const status = await f.waitFor('the pipeline to stop', async () => {
      const s = await f.status();
      return s.phase === 'failed' && s;
    });
    assert.match(
      status.lastError ?? '',
      /webhook http:\/\/127\.0\.0\.1:\d+\/hook refused 1 change\(s\) of table public\.items .*HTTP 400 Bad Request: \{"error":"column total is not allowed"\}/,
    );
  } finally {
    await f.teardown();
    server.close();
  }
});

test('stdout keeps its legacy line by default', async () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => {
    text += c.toString('utf8');
  });
  const config = DestinationConfig.parse({ type: 'stdout' });
  assert.deepEqual(config, { type: 'stdout', format: 'legacy' });
  const legacy = new StdoutDestination(undefined, out);
  await legacy.apply(changes(0x60, 1));
  assert.deepEqual(JSON.parse(text), {
    op: 'insert',
    table: 'public.items',
    version: makeVersion(0x60n, 1).toString(),
    tx,
    row: { id: '96000', name: 'x 0' },
  });
});

test(
  'nats: the stream is created with its settings; a batch sent twice is stored once; a name that cannot be a ' +
    'subject is a config error',
  async () => {
    const servers = requireEnv('WALFLOW_NATS_URL');
    const name = `walflow-test-unit-${Date.now().toString(36)}`;
    const nats = await destination({
      type: 'nats',
      servers,
      stream: { name, duplicateWindowSeconds: 300, maxAgeSeconds: 86400 },
    });
    const nc = await connect({ servers });
    try {
      await nats.prepare([schema]);
      const batch = changes(0x50, 10);
      await nats.apply(batch);
      await nats.apply(batch); // a retry after a crash
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(name);
      assert.deepEqual(info.config.subjects, ['walflow.shop.*.*']);
      assert.equal(info.config.duplicate_window, 300 * 1e9);
      assert.equal(info.config.max_age, 86400 * 1e9);
      assert.equal(info.state.messages, 10, 'JetStream de-duplicated the re-sent batch by Nats-Msg-Id');
      const msg = await jsm.streams.getMessage(name, { seq: 1 });
      assert.equal(msg!.subject, 'walflow.shop.public.items');
      assert.equal(msg!.header.get('Nats-Msg-Id'), `shop:${makeVersion(0x50n, 1)}`);
      await assert.rejects(
        nats.prepare([{ ...schema, name: 'odd.name' }]),
        /table public\.odd\.name: the table name "odd\.name" cannot be part of a NATS subject/,
      );
      await jsm.streams.delete(name);
    } finally {
      await nats.close();
      await nc.close();
    }
  },
);

test('stdout with format envelope: the worker prints one envelope per change on stdout and nothing else there', async () => {
  let out = '';
  const envelopes = () =>
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as ChangeEnvelope);
  const f = new PipelineFixture({
    name: 'stdoutenv',
    tables: ['items'],
    workerProcess: true,
    setup:
      `CREATE TABLE items (id int8 PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM ` +
      `generate_series(1, 50) g;`,
    consumer: {
      destination: { type: 'stdout', format: 'envelope' },
      tables: async (schemas) => materialize(envelopes(), schemas),
    },
  });
  try {
    await f.setup();
    f.killWorker(); // replaced by one whose stdout the test reads
    const worker = spawn(process.execPath, ['bin/walflow.js', 'worker', '--config', f.configFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    worker.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    f.workerChild = worker;
    await f.start();
    await f.waitForConvergence();
    await f.sql(`UPDATE items SET name = 'renamed' WHERE id <= 10; DELETE FROM items WHERE id > 45`);
    await f.waitForConvergence();
    const ops = envelopes().map((e) => e.op);
    assert.equal(ops.filter((o) => o === 'read').length, 50);
    assert.equal(ops.filter((o) => o === 'update').length, 10);
    assert.equal(ops.filter((o) => o === 'delete').length, 5);
    assert.ok(envelopes().every((e) => e.pipeline === f.config.id && e.id.startsWith(`${f.config.id}:`)));
  } finally {
    await f.teardown();
  }
});

test(
  "the consumers' oracle can fail: newest version per key, key changes, truncates; files out of LSN order are " +
    'reported',
  async () => {
    const env = (
      version: number,
      op: ChangeEnvelope['op'],
      key: JsonRow | null,
      row: JsonRow | null,
      old: JsonRow | null = null,
    ) => ({
      ...toEnvelope('p', { kind: 'truncate', table, version: BigInt(version) }),
      op,
      key,
      row,
      old,
      version: String(version),
      id: `p:${version}`,
    });
    const tables = materialize(
      [
        env(5, 'read', { id: '1' }, { id: '1', name: 'copied' }),
        env(3, 'insert', { id: '1' }, { id: '1', name: 'older than the copy' }),
        env(6, 'update', { id: '9' }, { id: '9', name: 'moved' }, { id: '1' }),
        env(7, 'insert', { id: '2' }, { id: '2', name: 'gone by the truncate' }),
        env(8, 'truncate', null, null),
        env(4, 'insert', { id: '3' }, { id: '3', name: 'older than the truncate' }),
        env(9, 'insert', { id: '4' }, { id: '4', name: 'kept' }),
      ],
      [schema],
    );
    assert.deepEqual([...tables.get('public.items')!.values()], [{ id: '4', name: 'kept' }]);
    const before = materialize(
      [
        env(5, 'read', { id: '1' }, { id: '1', name: 'copied' }),
        env(6, 'update', { id: '9' }, { id: '9', name: 'moved' }, { id: '1' }),
      ],
      [schema],
    );
    assert.deepEqual(
      [...before.get('public.items')!.values()],
      [{ id: '9', name: 'moved' }],
      'a key change removes the old key',
    );

    const dir = join(tmp, 'order');
    mkdirSync(join(dir, 'p'), { recursive: true });
    const lines = (...versions: number[]) =>
      versions.map((v) => JSON.stringify(env(v, 'insert', { id: String(v) }, { id: String(v) }))).join('\n');
    writeFileSync(join(dir, 'p', 'a.jsonl'), `${lines(1, 2, 5)}\n{"torn`);
    writeFileSync(join(dir, 'p', 'b.jsonl'), `${lines(3, 4, 6)}\n`);
    writeFileSync(join(dir, 'p', 'c.jsonl'), `${lines(7)}\n`);
    const problems = await fileConsumer(dir, () => 'p', { maxBytes: 1 }).problems();
    assert.deepEqual(
      problems,
      ['b.jsonl: p:3 comes after version 5'],
      'a torn last line is skipped, an order break is not',
    );
  },
);

test('walflow verify on a stream destination says it does not apply, and exits 0', () => {
  const file = join(tmp, 'walflow.yaml');
  const raw = {
    pipelines: [
      {
        id: 'hooks',
        source: { url: 'postgres://nobody@127.0.0.1:1/none', publication: 'p', tables: ['t'] },
        destination: { type: 'webhook', url: 'http://127.0.0.1:1/hook' },
      },
    ],
  };
  parseConfig(raw);
  writeFileSync(file, stringify(raw));
  const r = spawnSync(process.execPath, ['bin/walflow.js', 'verify', 'hooks', '--config', file, '--json'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const result = JSON.parse(r.stdout) as { applies: boolean; reason: string };
  assert.equal(result.applies, false);
  assert.match(result.reason, /webhook destination keeps the change stream/);
});
