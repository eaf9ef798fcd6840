/**
 * The `walflow serve` HTTP and websocket server (pgdeltastream's API): POST /v1/init, POST
 * /v1/snapshot/data, POST /v1/snapshot/done, DELETE /v1/session/<slot>, and the websocket
 * /v1/lr/stream?slotName=. Every request needs a bearer token from serve.tokens; a session answers
 * only the token that created it. Refusals are JSON `{error: {status, field, message}}`.
 */
import { qualifyTable } from '../lib/config.ts';
import { once } from 'node:events';
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { timingSafeEqual } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { WebSocketServer, type WebSocket } from 'ws';
import type { SecretRef, ServeConfig } from '../lib/config.ts';
import { jsonRow, type JsonRow } from '../lib/envelope.ts';
import { resolveSecret } from '../lib/secrets.ts';
import { connect } from '../activities/postgres/session.ts';
import { importSnapshot, isSnapshotGone } from '../activities/postgres/snapshot.ts';
import { readTable } from '../activities/postgres/read.ts';
import { postgresConnection } from '../activities/source.ts';
import { badRequest, RequestError } from './errors.ts';
import { parseOrderBy, readPage } from './pages.ts';
import { Sessions, type SessionInfo } from './sessions.ts';
import { streamSession } from './stream.ts';

export interface ServeOptions {
  config: ServeConfig;
  client: Client;
  taskQueue: string;
}

export interface RunningServer {
  /** host:port actually bound (the port may have been 0). */
  address: string;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_PAGE_SIZE = 1000;

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const { config } = opts;
  const tokens = config.tokens.map((ref) => ({ ref, value: Buffer.from(resolveSecret(ref)!) }));
  const connection = postgresConnection(config.source.url, config.source.password);
  const sessions = new Sessions({ config, connection, client: opts.client, taskQueue: opts.taskQueue });
  /** The one streaming client of each slot (a placeholder while its upgrade is under way). */
  const readers = new Map<string, WebSocket | null>();

  const authenticate = (req: IncomingMessage): SecretRef => {
    const m = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
    const given = m ? Buffer.from(m[1]!.trim()) : undefined;
    const token = given && tokens.find((t) => t.value.length === given.length && timingSafeEqual(t.value, given));
    if (!token)
      throw new RequestError(401, 'Authorization', 'needs "Bearer <token>" with one of the tokens in serve.tokens');
    return token.ref;
  };
  const touch = (info: SessionInfo) => sessions.touch(info, { connected: readers.has(info.slot) });

  async function snapshotData(
    owner: SecretRef,
    body: Record<string, unknown>,
    res: ServerResponse,
    ndjsonAccepted: boolean,
  ) {
    const info = await sessions.get(body.slotName, owner);
    touch(info);
    const snap = sessions.snapshot(info.slot);
    if (typeof body.table !== 'string')
      throw badRequest('table', `must be one of this session's tables: ${info.tables.join(', ')}`);
    const table = qualifyTable(body.table);
    if (!info.tables.includes(table))
      throw badRequest('table', `${table} is not one of this session's tables (${info.tables.join(', ')})`);
    const ndjson = body.format === 'ndjson' || (body.format === undefined && ndjsonAccepted);
    if (body.format !== undefined && body.format !== 'ndjson' && body.format !== 'json')
      throw badRequest('format', 'must be "json" (pages) or "ndjson" (the whole table)');
    const limit = body.limit ?? Math.min(DEFAULT_PAGE_SIZE, config.maxPageSize);
    if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > config.maxPageSize)
      throw badRequest('limit', `must be a whole number from 1 to ${config.maxPageSize} (serve.maxPageSize)`);
    const offset = body.offset ?? 0;
    if (!Number.isInteger(offset) || (offset as number) < 0) throw badRequest('offset', 'must be a whole number ≥ 0');
    if (
      body.after !== undefined &&
      (typeof body.after !== 'object' || body.after === null || Array.isArray(body.after))
    )
      throw badRequest('after', 'must be the key object (nextAfter) of the previous page');
    const client = await connect(connection);
    try {
      try {
        await importSnapshot(client, snap.name);
      } catch (e) {
        if (isSnapshotGone(e))
          throw new RequestError(
            410,
            'slotName',
            `the snapshot of session ${info.slot} is gone: ${(e as Error).message}`,
          );
        throw e;
      }
      const [schema] = await sessions.keyedSchemas(client, [table], 'table');
      if (ndjson) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-walflow-snapshot-lsn': info.snapshotLsn });
        for await (const row of readTable(client, schema!)) {
          if (res.destroyed) break;
          if (!res.write(`${JSON.stringify(jsonRow(row))}\n`)) await drained(res);
        }
        res.end();
      } else {
        const orderBy = parseOrderBy(schema!, body.order_by);
        const rows = await readPage(client, schema!, {
          limit: limit as number,
          offset: offset as number,
          orderBy,
          ...(body.after ? { after: body.after as JsonRow } : {}),
        });
        const last = rows.length === limit && orderBy.length === 0 ? jsonRow(rows[rows.length - 1]!) : undefined;
        const nextAfter = last ? Object.fromEntries(schema!.key.map((k) => [k, last[k]!])) : null;
        json(res, 200, {
          slotName: info.slot,
          table,
          snapshotLsn: info.snapshotLsn,
          snapshotExpiresAt: snap.expiresAt.toISOString(),
          rows: rows.map(jsonRow),
          nextAfter,
        });
      }
      await client.query('COMMIT');
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://serve');
    const owner = authenticate(req);
    const sessionPath = /^\/v1\/session\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'POST' && url.pathname === '/v1/init')
      return json(res, 200, await sessions.init(owner, await readBody(req)));
    if (req.method === 'POST' && url.pathname === '/v1/snapshot/data') {
      return snapshotData(owner, await readBody(req), res, (req.headers.accept ?? '').includes('application/x-ndjson'));
    }
    if (req.method === 'POST' && url.pathname === '/v1/snapshot/done') {
      const info = await sessions.get((await readBody(req)).slotName, owner);
      touch(info);
      return json(res, 200, { slotName: info.slot, released: sessions.releaseSnapshot(info.slot) });
    }
    if (req.method === 'DELETE' && sessionPath) {
      const info = await sessions.get(decodeURIComponent(sessionPath[1]!), owner);
      const reader = readers.get(info.slot);
      if (reader) {
        reader.close(4410, 'session ended');
        if (reader.readyState !== reader.CLOSED) await once(reader, 'close');
      }
      await sessions.end(info, 'ended by DELETE /v1/session');
      return json(res, 200, { slotName: info.slot, ended: true });
    }
    throw new RequestError(404, null, `no endpoint ${req.method} ${url.pathname} (see README "walflow serve")`);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((e) => {
      const err = asRequestError(e);
      if (res.headersSent) res.destroy(err);
      else json(res, err.status, { error: { status: err.status, field: err.field, message: err.message } });
    });
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://serve');
      if (url.pathname !== '/v1/lr/stream') throw new RequestError(404, null, `no websocket endpoint ${url.pathname}`);
      const owner = authenticate(req);
      const info = await sessions.get(url.searchParams.get('slotName') ?? undefined, owner);
      if (readers.has(info.slot))
        throw new RequestError(
          409,
          'slotName',
          `session ${info.slot} already has a streaming client: one reader per slot (close it first)`,
        );
      readers.set(info.slot, null);
      wss.handleUpgrade(req, socket, head, (ws) => {
        readers.set(info.slot, ws);
        ws.on('close', () => {
          if (readers.get(info.slot) === ws) readers.delete(info.slot);
        });
        void streamSession(ws, info, { connection, sessions });
      });
    })().catch((e) => {
      const err = asRequestError(e);
      const body = JSON.stringify({ error: { status: err.status, field: err.field, message: err.message } });
      socket.end(
        `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status]}\r\ncontent-type: ` +
          `application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
  });

  const [host, port] = splitListen(config.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as { address: string; port: number };
  return {
    address: `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`,
    async close() {
      for (const ws of readers.values()) ws?.terminate();
      await sessions.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Resolves when `res` can take more (or the client went away). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function splitListen(listen: string): [string, number] {
  const i = listen.lastIndexOf(':');
  return [listen.slice(0, i).replace(/^\[(.*)\]$/, '$1'), Number(listen.slice(i + 1))];
}

function asRequestError(e: unknown): RequestError {
  if (e instanceof RequestError) return e;
  console.error(`walflow serve: ${(e as Error).stack ?? e}`);
  return new RequestError(500, null, (e as Error).message);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new RequestError(413, 'body', `at most ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) return {};
  try {
    const body = JSON.parse(text) as unknown;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('not an object');
    return body as Record<string, unknown>;
  } catch {
    throw badRequest('body', 'must be a JSON object');
  }
}
