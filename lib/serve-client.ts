/**
 * A client of `walflow serve`: init → snapshot pages → stream → ACK, and `TableReplica`, a table
 * rebuilt in memory (newest version per key wins, as in every walflow destination). Used by the
 * tests; a starting point for applications (see README "walflow serve").
 */
import { WebSocket } from 'ws';
import type { InitAnswer } from '../serve/sessions.ts';
import type { StreamMessage } from '../serve/stream.ts';
import type { ChangeEnvelope, JsonRow } from './envelope.ts';
import { makeVersion, parseLsn, type Version } from './lsn.ts';

export type { InitAnswer, StreamMessage };
export type ChangeMessage = ChangeEnvelope & { nextlsn: string };

export interface PageAnswer {
  slotName: string;
  table: string;
  snapshotLsn: string;
  snapshotExpiresAt: string;
  rows: JsonRow[];
  /** Pass as `after` for the next page (key order); null after the last. */
  nextAfter: JsonRow | null;
}

export interface PageQuery {
  slotName: string;
  table: string;
  limit?: number;
  offset?: number;
  after?: JsonRow;
  order_by?: { column: string; order?: 'ASC' | 'DESC' } | { column: string; order?: 'ASC' | 'DESC' }[];
}

/** A refused request: the server's status, the field to fix and its message. */
export class ServeError extends Error {
  override name = 'ServeError';
  constructor(
    readonly status: number,
    readonly field: string | null,
    message: string,
  ) {
    super(message);
  }
}

export class ServeClient {
  /** `url`: http://host:port of `walflow serve`. */
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  private async request(method: string, path: string, body?: unknown, accept = 'application/json'): Promise<Response> {
    const res = await fetch(new URL(path, this.url), {
      method,
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json', accept },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!res.ok) {
      const e = (await res.json().catch(() => ({}))) as { error?: { field: string | null; message: string } };
      throw new ServeError(
        res.status,
        e.error?.field ?? null,
        e.error?.message ?? `${method} ${path}: HTTP ${res.status}`,
      );
    }
    return res;
  }

  async init(
    body: { tables: string[]; idleTimeoutSeconds?: number } | { publication: string; idleTimeoutSeconds?: number },
  ): Promise<InitAnswer> {
    return (await this.request('POST', '/v1/init', body)).json() as Promise<InitAnswer>;
  }

  async page(query: PageQuery): Promise<PageAnswer> {
    return (await this.request('POST', '/v1/snapshot/data', query)).json() as Promise<PageAnswer>;
  }

  /** Every row of `table` in the snapshot, page by page in key order (keyset pagination). */
  async *snapshotRows(slotName: string, table: string, limit?: number): AsyncGenerator<JsonRow> {
    let after: JsonRow | undefined;
    do {
      const page = await this.page({ slotName, table, ...(limit ? { limit } : {}), ...(after ? { after } : {}) });
      yield* page.rows;
      after = page.nextAfter ?? undefined;
    } while (after);
  }

  /** The whole table in one streamed answer (NDJSON). */
  async *snapshotNdjson(slotName: string, table: string): AsyncGenerator<JsonRow> {
    const res = await this.request(
      'POST',
      '/v1/snapshot/data',
      { slotName, table, format: 'ndjson' },
      'application/x-ndjson',
    );
    let rest = '';
    for await (const chunk of res.body!) {
      rest += Buffer.from(chunk).toString('utf8');
      const lines = rest.split('\n');
      rest = lines.pop()!;
      for (const line of lines) if (line) yield JSON.parse(line) as JsonRow;
    }
  }

  async snapshotDone(slotName: string): Promise<{ slotName: string; released: boolean }> {
    return (await this.request('POST', '/v1/snapshot/done', { slotName })).json() as Promise<{
      slotName: string;
      released: boolean;
    }>;
  }

  async endSession(slotName: string): Promise<void> {
    await this.request('DELETE', `/v1/session/${encodeURIComponent(slotName)}`);
  }

  /** Opens the session's change stream (resuming after the last ACK). */
  stream(slotName: string): Promise<StreamConnection> {
    const url = new URL(`/v1/lr/stream?slotName=${encodeURIComponent(slotName)}`, this.url.replace(/^http/, 'ws'));
    return StreamConnection.open(url.toString(), this.token);
  }
}

/** One websocket stream: messages in order; `ack` resolves once the server confirmed the slot. */
export class StreamConnection implements AsyncIterable<StreamMessage> {
  private readonly queue: StreamMessage[] = [];
  private readonly acks: { resolve: (lsn: string) => void; reject: (e: Error) => void }[] = [];
  private wake: (() => void) | undefined;
  /** Set once the socket closed: its code and reason. */
  closed: { code: number; reason: string } | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as StreamMessage;
      if (msg.op === 'acked') this.acks.shift()?.resolve(msg.lsn);
      else if ('error' in msg && this.acks.length)
        this.acks.shift()!.reject(new ServeError(msg.error.status, msg.error.field, msg.error.message));
      else this.queue.push(msg);
      this.notify();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const a of this.acks.splice(0))
        a.reject(new Error(`stream closed (${code} ${reason.toString()}) before the ACK was answered`));
      this.notify();
    });
  }

  static open(url: string, token: string): Promise<StreamConnection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
      const conn = new StreamConnection(ws);
      ws.once('open', () => resolve(conn));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => {
          const e = (JSON.parse(text || '{}') as { error?: { field: string | null; message: string } }).error;
          reject(new ServeError(res.statusCode ?? 0, e?.field ?? null, e?.message ?? `HTTP ${res.statusCode}`));
        });
      });
    });
  }

  private notify() {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Confirms the slot to `lsn` (a `nextlsn` received); resolves with the slot's confirmed position. */
  ack(lsn: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.acks.push({ resolve, reject });
      this.ws.send(JSON.stringify({ lsn }));
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamMessage> {
    for (;;) {
      const msg = this.queue.shift();
      if (msg) {
        yield msg;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
  }

  close(): void {
    this.ws.close();
  }

  /** Drops the connection without a closing handshake (as a crash would). */
  terminate(): void {
    this.ws.terminate();
  }
}

/** A table rebuilt in memory: per key the newest version seen; deletes and truncates are remembered as versions too. */
export class TableReplica {
  private readonly rows = new Map<string, { version: Version; row: JsonRow | null }>();
  private truncatedAt: Version = -1n;

  constructor(readonly keyColumns: string[]) {}

  private keyOf(row: JsonRow): string {
    return JSON.stringify(this.keyColumns.map((k) => row[k]));
  }

  private put(key: string, version: Version, row: JsonRow | null): void {
    if (version <= this.truncatedAt) return;
    const current = this.rows.get(key);
    if (!current || current.version < version) this.rows.set(key, { version, row });
  }

  /** A row read from the session's snapshot (version: the snapshot LSN, position 0). */
  applySnapshotRow(row: JsonRow, snapshotLsn: string): void {
    this.put(this.keyOf(row), makeVersion(parseLsn(snapshotLsn), 0), row);
  }

  /** A change from the stream; a duplicate (already seen version) changes nothing. */
  applyChange(change: ChangeEnvelope): void {
    const version = BigInt(change.version);
    if (change.op === 'truncate') {
      if (version > this.truncatedAt) this.truncatedAt = version;
      for (const [k, v] of this.rows) if (v.version < version) this.rows.delete(k);
    } else if (change.op === 'delete') {
      this.put(this.keyOf(change.key ?? change.old!), version, null);
    } else if (change.row) {
      // An update that changed the key deletes the old key.
      if (change.op === 'update' && change.old && this.keyOf(change.old) !== this.keyOf(change.row))
        this.put(this.keyOf(change.old), version, null);
      this.put(this.keyOf(change.row), version, change.row);
    }
  }

  /** The live rows by key. */
  current(): Map<string, JsonRow> {
    const out = new Map<string, JsonRow>();
    for (const [k, v] of this.rows) if (v.row) out.set(k, v.row);
    return out;
  }
}
