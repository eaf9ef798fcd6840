/**
 * The change stream: pgoutput through pg-logical-replication, decoded into
 * walflow's Change model, pulled by the consumer through a bounded queue
 * (the socket is paused while the queue is full, so a large transaction never
 * piles up in memory). Acknowledgement is manual and only of what the
 * consumer says is durably written.
 */
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import type { Pgoutput } from 'pg-logical-replication';
import type pg from 'pg';
import { formatLsn, makeVersion, parseLsn, type Lsn } from '../../lib/lsn.ts';
import { tableKey, type Change, type ColumnSchema, type Row, type TableId, type TableSchema, type Transaction, type Value } from '../../lib/model.ts';
import { formatCommitTime } from '../../lib/envelope.ts';
import { columnParser, KIND_BY_OID } from './values.ts';
import { withSession } from './session.ts';

export type StreamEvent =
  | { type: 'begin'; commitLsn: Lsn }
  | { type: 'change'; change: Change }
  | { type: 'commit'; commitLsn: Lsn; endLsn: Lsn }
  /** Server keepalive: everything before `walEnd` has been sent. */
  | { type: 'keepalive'; walEnd: Lsn };

/** Yields the events in bursts: all that had arrived when the consumer asked (at most MAX_BURST messages). */
export interface ChangeStream extends AsyncIterable<StreamEvent[]> {
  /** Tells Postgres everything up to `lsn` (a commit end or keepalive position) is durably written. */
  acknowledge(lsn: Lsn): Promise<void>;
  close(): Promise<void>;
}

export interface ChangeStreamOptions {
  connection: pg.ClientConfig;
  slot: string;
  publication: string;
  /** Resume position; the server never goes back before the slot's confirmed_flush_lsn. */
  startLsn?: Lsn;
  /** Decoded events buffered before the socket is paused. */
  highWaterMark?: number;
  /** Called while waiting for a slot another stream still holds (the caller heartbeats). */
  onWait?: () => void;
}

const MAX_BURST = 2_000;

/** Text values only: walflow parses them itself (exactly), never with pg's lossy default parsers. */
class TextPgoutputPlugin extends PgoutputPlugin {
  override parse(buffer: Buffer): Pgoutput.Message {
    const msg = super.parse(buffer) as Pgoutput.Message;
    if (msg.tag === 'relation') for (const c of msg.columns) c.parser = (raw: unknown) => raw;
    return msg;
  }
}

/** Looks a table's current schema up in the catalog (for relations whose columns changed). */
export type SchemaLookup = (table: TableId) => Promise<TableSchema>;

interface Relation {
  id: TableId;
  columns: ColumnSchema[];
  /** Each column's text parser, in column order. */
  parsers: ((text: string) => Value)[];
}

const relation = (id: TableId, columns: ColumnSchema[]): Relation => ({ id, columns, parsers: columns.map(columnParser) });

/** Decodes pgoutput messages; keeps the relation cache and the transaction's change counter. */
export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();
  private commitLsn: Lsn = 0n;
  private seq = 0;
  private tx: Transaction | undefined;

  /**
   * @param known schemas the consumer already works with (a relation differing from them is a schema change)
   * @param lookup catalog lookup for the types of added columns
   */
  constructor(private readonly known: Map<string, TableSchema>, private readonly lookup: SchemaLookup) {}

  /** Synchronous for every message but a relation message whose columns changed. */
  decode(msg: Pgoutput.Message): StreamEvent[] | Promise<StreamEvent[]> {
    switch (msg.tag) {
      case 'begin':
        this.commitLsn = parseLsn(msg.commitLsn!);
        this.seq = 0;
        this.tx = { xid: msg.xid, commitTime: formatCommitTime(msg.commitTime as bigint) };
        return [{ type: 'begin', commitLsn: this.commitLsn }];
      case 'commit':
        return [{ type: 'commit', commitLsn: parseLsn(msg.commitLsn!), endLsn: parseLsn(msg.commitEndLsn!) }];
      case 'relation':
        return this.relation(msg);
      case 'insert':
        return [{ type: 'change', change: { kind: 'insert', table: this.table(msg.relation), version: this.version(), tx: this.tx, row: this.row(msg.relation, msg.new) } }];
      case 'update': {
        const rel = this.relations.get(msg.relation.relationOid)!;
        const unchanged = rel.columns.filter((c) => msg.new[c.name] === undefined).map((c) => c.name);
        const row = this.row(msg.relation, msg.new, true);
        const oldRaw = msg.old ?? msg.key;
        return [{ type: 'change', change: {
          kind: 'update', table: this.table(msg.relation), version: this.version(), tx: this.tx, row, unchanged,
          ...(oldRaw ? { old: this.row(msg.relation, oldRaw, true) } : {}),
        } }];
      }
      case 'delete':
        return [{ type: 'change', change: { kind: 'delete', table: this.table(msg.relation), version: this.version(), tx: this.tx, old: this.row(msg.relation, (msg.old ?? msg.key)!, true) } }];
      case 'truncate':
        return msg.relations.map((r): StreamEvent => ({ type: 'change', change: { kind: 'truncate', table: this.table(r), version: this.version(), tx: this.tx } }));
      default:
        return [];
    }
  }

  private version() {
    return makeVersion(this.commitLsn, ++this.seq);
  }

  private table(r: Pgoutput.MessageRelation): TableId {
    return this.relations.get(r.relationOid)!.id;
  }

  /** `partial`: a key-only or unchanged-TOAST tuple, whose missing columns stay absent (never null). */
  private row(r: Pgoutput.MessageRelation, tuple: Record<string, unknown>, partial = false): Row {
    const rel = this.relations.get(r.relationOid)!;
    const row: Row = {};
    const { columns, parsers } = rel;
    for (let i = 0; i < columns.length; i++) {
      const name = columns[i]!.name;
      const raw = tuple[name] as string | null | undefined;
      if (raw === undefined) {
        if (!partial) row[name] = null;
        continue;
      }
      row[name] = raw === null ? null : parsers[i]!(raw);
    }
    return row;
  }

  /**
   * A relation message precedes a table's first change in each session and follows every schema
   * change; columns that differ from what the consumer knows are a schema change.
   */
  private relation(msg: Pgoutput.MessageRelation): StreamEvent[] | Promise<StreamEvent[]> {
    const id = { schema: msg.schema, name: msg.name };
    const known = this.relations.get(msg.relationOid)?.columns ?? this.known.get(tableKey(id))?.columns;
    const names = msg.columns.map((c) => c.name);
    const same = known && known.length === names.length && known.every((c, i) => c.name === names[i] && c.typeOid === msg.columns[i]!.typeOid);
    if (same) {
      this.relations.set(msg.relationOid, relation(id, known));
      return [];
    }
    return this.lookup(id).then((schema) => {
      const byName = new Map(schema.columns.map((c) => [c.name, c]));
      const columns = msg.columns.map((c): ColumnSchema => byName.get(c.name) ?? {
        name: c.name, type: String(c.typeOid), typeOid: c.typeOid, kind: KIND_BY_OID[c.typeOid] ?? 'text', arrayDims: 0, nullable: true,
      });
      this.relations.set(msg.relationOid, relation(id, columns));
      const current: TableSchema = { ...schema, columns };
      this.known.set(tableKey(id), current);
      if (!known) return [];
      const before = known.map((c) => c.name);
      const added = columns.filter((c) => !before.includes(c.name));
      const dropped = before.filter((n) => !names.includes(n));
      return [{ type: 'change', change: { kind: 'schema', table: id, version: makeVersion(this.commitLsn, this.seq), tx: this.tx, schema: current, added, dropped } }];
    });
  }
}

/**
 * Opens the stream at `startLsn`. Events are decoded as the consumer pulls them; while
 * `highWaterMark` raw messages wait, the socket is paused.
 */
export async function openChangeStream(opts: ChangeStreamOptions & { known: Map<string, TableSchema>; lookup: SchemaLookup }): Promise<ChangeStream> {
  // A stream that just stopped (pause, continue-as-new, a killed worker) can hold the slot for a
  // moment while its walsender exits: wait for it rather than fail the attempt.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await startChangeStream(opts);
    } catch (e) {
      if ((e as { code?: string }).code !== '55006' || Date.now() > deadline) throw e;
      opts.onWait?.();
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function startChangeStream(opts: ChangeStreamOptions & { known: Map<string, TableSchema>; lookup: SchemaLookup }): Promise<ChangeStream> {
  const service = new LogicalReplicationService(withSession(opts.connection), {
    acknowledge: { auto: false, timeoutSeconds: 0 },
  });
  const plugin = new TextPgoutputPlugin({ protoVersion: 1, publicationNames: [opts.publication] });
  const decoder = new PgoutputDecoder(opts.known, opts.lookup);
  const highWaterMark = opts.highWaterMark ?? 5_000;

  const queue: ({ msg: Pgoutput.Message } | { keepalive: Lsn })[] = [];
  let failure: Error | undefined;
  let closed = false;
  let wake: (() => void) | undefined;
  let confirmed: Lsn | undefined = opts.startLsn;
  const notify = () => { const w = wake; wake = undefined; w?.(); };

  // Flow control: the socket is paused while `highWaterMark` messages wait. (The library's own flow
  // control awaits promises for every message, which inside a Temporal activity, where each promise pays
  // for the async context, cost more than decoding the message.)
  const socket = () => (service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } })._connection?.stream;
  let paused = false;
  service.on('data', (_lsn: string, msg: Pgoutput.Message) => {
    queue.push({ msg });
    notify();
    if (queue.length >= highWaterMark && !paused && !closed) {
      paused = true;
      socket()?.pause();
    }
  });
  service.on('heartbeat', async (lsn: string, _ts: number, shouldRespond: boolean) => {
    queue.push({ keepalive: parseLsn(lsn) });
    notify();
    // The server asks for a reply to keep the connection: report what is durably written, no more.
    if (shouldRespond && confirmed !== undefined) await sendAck(confirmed);
  });
  service.on('error', (e: Error) => { failure ??= e; notify(); });

  // The library reports "last byte + 1"; a logical slot's confirmed position is the commit's end LSN
  // itself, and reporting one more could skip a transaction whose commit record starts exactly there.
  const sendAck = (lsn: Lsn) => service.acknowledge(formatLsn(lsn > 0n ? lsn - 1n : 0n));

  const started = service.subscribe(plugin, opts.slot, formatLsn(opts.startLsn ?? 0n));
  started.catch((e: Error) => { failure ??= e; notify(); });
  try {
    await new Promise<void>((resolve, reject) => {
      service.once('start', () => resolve());
      started.then(() => resolve(), reject);
    });
    // Without the socket there is no backpressure and memory would grow with the stream: refuse loudly.
    if (!socket()) throw new Error('pg-logical-replication no longer exposes its socket (_connection.stream), which walflow pauses for flow control; install the version package-lock.json pins');
  } catch (e) {
    // A refused START_REPLICATION (e.g. the slot still held) leaves the connection open: each retry
    // would otherwise keep one walsender until max_wal_senders is exhausted.
    await service.destroy().catch(() => undefined);
    throw e;
  }

  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (failure) throw failure;
        if (!queue.length) {
          if (closed) return;
          await new Promise<void>((r) => { wake = r; });
          continue;
        }
        // Everything received so far is decoded in one go: one wake-up of the consumer per burst,
        // not per message, is what lets a busy stream run at the decoder's speed.
        const items = queue.splice(0, MAX_BURST);
        if (paused && queue.length < highWaterMark / 2) {
          paused = false;
          socket()?.resume();
        }
        const burst: StreamEvent[] = [];
        for (const item of items) {
          if ('keepalive' in item) {
            burst.push({ type: 'keepalive', walEnd: item.keepalive });
            continue;
          }
          const decoded = decoder.decode(item.msg);
          for (const ev of Array.isArray(decoded) ? decoded : await decoded) burst.push(ev);
        }
        yield burst;
      }
    },
    async acknowledge(lsn: Lsn) {
      confirmed = lsn;
      await sendAck(lsn);
    },
    async close() {
      closed = true;
      notify();
      await service.destroy();
    },
  };
}
