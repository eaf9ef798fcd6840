/**
 * Consumers of the stream destinations, for the oracle: each receives the envelopes as a user's consumer
 * would (a JetStream consumer, an HTTP endpoint that verifies signatures and sometimes answers 500, a
 * reader of the files), and rebuilds the tables from them: per key, the row of the highest version,
 * deletes and truncates applied by version. `problems()` lists what breaks the destination's own promise
 * (an id delivered twice by JetStream, a bad signature, files out of LSN order).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { gunzipSync, constants as zlib } from 'node:zlib';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { ChangeEnvelope, JsonRow } from '../../lib/envelope.ts';
import { tableKey, type Row, type TableSchema } from '../../lib/model.ts';
import { startNats, stopNats } from '../../stack/nats.ts';
import { rng } from './workload.ts';

export interface StreamConsumer {
  /** The pipeline's destination config, as a user writes it. */
  destination: Record<string, unknown>;
  /** Every envelope received so far, in the order received. */
  envelopes(): Promise<ChangeEnvelope[]>;
  /** The destination unreachable or failing for a while (the fault harness's destination-down). */
  outage?(ms: number): Promise<void>;
  problems(): Promise<string[]>;
  close(): Promise<void>;
}

/** The tables as a consumer rebuilds them: the highest version per key wins; a truncate drops older rows. */
export function materialize(envelopes: ChangeEnvelope[], schemas: TableSchema[]): Map<string, Map<string, Row>> {
  const keys = new Map(schemas.map((s) => [tableKey(s), s.key]));
  const state = new Map<string, { rows: Map<string, { version: bigint; row: JsonRow | null }>; truncatedAt: bigint }>();
  for (const e of envelopes) {
    const table = `${e.table.schema}.${e.table.name}`;
    const key = keys.get(table);
    if (!key) continue;
    const t = state.get(table) ?? { rows: new Map(), truncatedAt: -1n };
    state.set(table, t);
    const version = BigInt(e.version);
    const put = (k: JsonRow, row: JsonRow | null) => {
      const id = JSON.stringify(key.map((c) => k[c]));
      const held = t.rows.get(id);
      if (version > t.truncatedAt && (!held || version > held.version)) t.rows.set(id, { version, row });
    };
    if (e.op === 'truncate') {
      t.truncatedAt = version > t.truncatedAt ? version : t.truncatedAt;
      for (const [id, r] of t.rows) if (r.version < t.truncatedAt) t.rows.delete(id);
    } else if (e.op === 'delete') {
      put(e.key!, null);
    } else if (e.op !== 'schema') {
      // A key change: the old key's row is gone as of this version.
      if (
        e.op === 'update' &&
        e.old &&
        JSON.stringify(key.map((c) => e.old![c])) !== JSON.stringify(key.map((c) => e.row![c]))
      )
        put(e.old, null);
      put(e.row!, e.row);
    }
  }
  const out = new Map<string, Map<string, Row>>();
  for (const s of schemas) {
    const live = new Map<string, Row>();
    for (const [id, r] of state.get(tableKey(s))?.rows ?? []) if (r.row) live.set(id, r.row as Row);
    out.set(tableKey(s), live);
  }
  return out;
}

const duplicates = (ids: string[]) => ids.filter((id, i) => ids.indexOf(id) !== i);

/** A JetStream consumer reading the whole stream each time; JetStream must have stored each id once. */
export async function natsConsumer(url: string, name: string): Promise<StreamConsumer> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1 });
  const stream = `walflow-test-${name}-${Date.now().toString(36)}`;
  let received: { id: string; envelope: ChangeEnvelope }[] = [];
  const read = async () => {
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(stream)).state.last_seq;
    const messages: typeof received = [];
    if (last > 0) {
      const consumer = await jetstream(nc).consumers.get(stream); // an ordered consumer, from the start
      const iter = await consumer.consume();
      for await (const m of iter) {
        messages.push({ id: m.headers?.get('Nats-Msg-Id') ?? '', envelope: m.json<ChangeEnvelope>() });
        if (m.seq >= last) break;
      }
      await iter.close();
    }
    received = messages;
    return messages;
  };
  return {
    destination: { type: 'nats', servers: url, stream: { name: stream } },
    envelopes: async () => (await read()).map((m) => m.envelope),
    outage: async (ms) => {
      await stopNats();
      await new Promise((r) => setTimeout(r, ms));
      await startNats();
    },
    problems: async () => {
      const msgs = await read();
      const wrongIds = msgs.filter((m) => m.id !== m.envelope.id).length;
      const dups = duplicates(msgs.map((m) => m.id));
      return [
        ...(dups.length ? [`JetStream holds ${dups.length} message(s) whose id it already had, e.g. ${dups[0]}`] : []),
        ...(wrongIds ? [`${wrongIds} message(s) whose Nats-Msg-Id is not the envelope id`] : []),
      ];
    },
    close: () => nc.close(),
  };
}

/**
 * An HTTP endpoint that verifies each request's signature, answers 500 to some requests (before keeping
 * them, or after: then the re-sent batch arrives twice, and ids de-duplicate it), and all of them during
 * an outage.
 */
export async function webhookConsumer(seed: number, failRate = 0.15): Promise<StreamConsumer> {
  const secret = `test-secret-${seed}`;
  const secretEnv = `WALFLOW_TEST_WEBHOOK_SECRET_${seed}`;
  process.env[secretEnv] = secret;
  const random = rng(seed ^ 0x7e6b);
  const received: ChangeEnvelope[] = [];
  const stats = { requests: 0, failed: 0, badSignatures: 0, missingKeys: 0 };
  let downUntil = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      stats.requests++;
      const body = Buffer.concat(chunks);
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
      const given = Buffer.from(String(req.headers['x-walflow-signature'] ?? ''));
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        stats.badSignatures++;
        res.writeHead(401).end('bad signature');
        return;
      }
      if (!req.headers['idempotency-key']) stats.missingKeys++;
      const roll = random();
      if (Date.now() < downUntil || roll < failRate / 2) {
        stats.failed++;
        res.writeHead(500).end('failing on purpose');
        return;
      }
      received.push(...(JSON.parse(body.toString('utf8')) as ChangeEnvelope[]));
      if (roll < failRate) stats.failed++;
      res.writeHead(roll < failRate ? 500 : 200).end(roll < failRate ? 'kept, but failing on purpose' : 'ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    destination: {
      type: 'webhook',
      url: `http://127.0.0.1:${port}/hook?token=t`,
      secret: `env:${secretEnv}`,
      headers: { 'X-Test': 'walflow' },
      timeoutMs: 5000,
      retries: 3,
    },
    envelopes: async () => received,
    outage: async (ms) => {
      downUntil = Date.now() + ms;
      await new Promise((r) => setTimeout(r, ms));
    },
    problems: async () => [
      ...(stats.badSignatures ? [`${stats.badSignatures} request(s) with a bad signature`] : []),
      ...(stats.missingKeys ? [`${stats.missingKeys} request(s) without an Idempotency-Key`] : []),
      ...(stats.failed === 0 ? ['the endpoint never failed: the test did not test retries'] : []),
    ],
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/**
 * The files of a file destination, read in name order. A torn last line (a writer killed mid-write) is
 * skipped. Stream changes, de-duplicated by id, must come in strictly increasing version order.
 */
export function fileConsumer(
  dir: string,
  pipeline: () => string,
  opts: { maxBytes: number; gzip?: boolean },
): StreamConsumer {
  const read = async () => {
    const folder = join(dir, pipeline());
    const names = (await readdir(folder).catch(() => [] as string[])).filter((n) => /\.jsonl(\.gz)?$/.test(n)).sort();
    const files: { name: string; envelopes: ChangeEnvelope[] }[] = [];
    for (const name of names) {
      const raw = await readFile(join(folder, name));
      const text = name.endsWith('.gz')
        ? gunzipSync(raw, { finishFlush: zlib.Z_SYNC_FLUSH }).toString('utf8')
        : raw.toString('utf8');
      const lines = text.split('\n');
      const envelopes: ChangeEnvelope[] = [];
      lines.forEach((line, i) => {
        if (line === '') return;
        try {
          envelopes.push(JSON.parse(line) as ChangeEnvelope);
        } catch (e) {
          if (i < lines.length - 1)
            throw new Error(`${name}: line ${i + 1} is not JSON and not the last: ${(e as Error).message}`);
        }
      });
      files.push({ name, envelopes });
    }
    return files;
  };
  return {
    destination: { type: 'file', path: dir, maxBytes: opts.maxBytes, gzip: opts.gzip ?? false },
    envelopes: async () => (await read()).flatMap((f) => f.envelopes),
    problems: async () => {
      const files = await read();
      const seen = new Set<string>();
      let last = -1n;
      const problems: string[] = [];
      for (const f of files) {
        for (const e of f.envelopes) {
          if (e.op === 'read' || seen.has(e.id)) continue;
          seen.add(e.id);
          if (BigInt(e.version) <= last) problems.push(`${f.name}: ${e.id} comes after version ${last}`);
          last = BigInt(e.version);
        }
      }
      const streamFiles = files.filter((f) => f.envelopes.some((e) => e.op !== 'read')).length;
      if (streamFiles < 3) problems.push(`only ${streamFiles} file(s) of stream changes: rotation was not exercised`);
      return problems.slice(0, 5);
    },
    close: async () => undefined,
  };
}
