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
import { compareShape, type DestinationAbilities, type RelationColumn, type ShapeProblem, type ShapeVerdict } from './shape.ts';

export type StreamEvent =
  | { type: 'begin'; commitLsn: Lsn }
  | { type: 'change'; change: Change }
  | { type: 'commit'; commitLsn: Lsn; endLsn: Lsn }
  /** Server keepalive: everything before `walEnd` has been sent. */
  | { type: 'keepalive'; walEnd: Lsn }
  /** A shape change the destination cannot follow exactly: the table's changes from here on are not emitted. */
  | { type: 'stop'; table: TableId; problem: ShapeProblem; commitLsn: Lsn };

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

/** How the decoder follows the shapes of the tables it knows (see activities/postgres/shape.ts). */
export interface ShapeTracking {
  /** What the destination can change in place; without it, any type change or rename stops the table. */
  abilities?: DestinationAbilities;
  /** Tables ("schema.table") whose changes are not emitted; the decoder adds each table it stops. */
  stopped?: Set<string>;
  /** Per table: changes committed before this LSN are not emitted (a fresh copy covers them). */
  from?: Map<string, Lsn>;
}

interface Relation {
  id: TableId;
  /** Column names as the relation message has them, in column order ... */
  sourceNames: string[];
  /** ... the destination column each one is written to, and its text parser. */
  names: string[];
  parsers: ((text: string) => Value)[];
  /** Stopped: changes are not emitted. */
  skip?: boolean;
  /** Not compared yet: the table's changes before `from` are skipped, and the shape is compared at its first later change. */
  pending?: RelationColumn[];
}

const NO_ABILITIES: DestinationAbilities = { canRetype: () => false, canRename: () => false };

/** Decodes pgoutput messages; keeps the relation cache and the transaction's change counter. */
export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();
  private commitLsn: Lsn = 0n;
  private seq = 0;
  private tx: Transaction | undefined;
  private readonly abilities: DestinationAbilities;
  private readonly stopped: Set<string>;
  private readonly from: Map<string, Lsn>;

  /**
   * @param known what each destination table holds, by "schema.table" (updated as the stream evolves them)
   * @param lookup catalog lookup, to tell renames and describe added columns
   */
  constructor(private readonly known: Map<string, TableSchema>, private readonly lookup: SchemaLookup, tracking: ShapeTracking = {}) {
    this.abilities = tracking.abilities ?? NO_ABILITIES;
    this.stopped = tracking.stopped ?? new Set();
    this.from = tracking.from ?? new Map();
  }

  /** Synchronous for every message but one whose shape must be looked up in the catalog. */
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
        return this.rowChange(msg.relation, (rel, version) => ({ kind: 'insert', table: rel.id, version, tx: this.tx, row: this.row(rel, msg.new) }));
      case 'update':
        return this.rowChange(msg.relation, (rel, version) => {
          const unchanged = rel.names.filter((_, i) => msg.new[rel.sourceNames[i]!] === undefined);
          const oldRaw = msg.old ?? msg.key;
          return {
            kind: 'update', table: rel.id, version, tx: this.tx, row: this.row(rel, msg.new, true), unchanged,
            ...(oldRaw ? { old: this.row(rel, oldRaw, true) } : {}),
          };
        });
      case 'delete':
        return this.rowChange(msg.relation, (rel, version) => ({ kind: 'delete', table: rel.id, version, tx: this.tx, old: this.row(rel, (msg.old ?? msg.key)!, true) }));
      case 'truncate': {
        const events: StreamEvent[] = [];
        for (const r of msg.relations) {
          const version = this.version();
          const rel = this.relations.get(r.relationOid)!;
          if (!this.emits(rel)) continue;
          events.push({ type: 'change', change: { kind: 'truncate', table: rel.id, version, tx: this.tx } });
        }
        return events;
      }
      default:
        return [];
    }
  }

  private version() {
    return makeVersion(this.commitLsn, ++this.seq);
  }

  private emits(rel: Relation): boolean {
    return !rel.skip && this.commitLsn >= (this.from.get(tableKey(rel.id)) ?? 0n);
  }

  /** A row change, after the deferred shape comparison of its table if one is due. */
  private rowChange(r: Pgoutput.MessageRelation, build: (rel: Relation, version: ReturnType<typeof makeVersion>) => Change): StreamEvent[] | Promise<StreamEvent[]> {
    const version = this.version(); // skipped changes keep their place, so versions never depend on what is skipped
    const rel = this.relations.get(r.relationOid)!;
    if (!this.emits(rel)) return [];
    if (!rel.pending) return [{ type: 'change', change: build(rel, version) }];
    return Promise.resolve(this.compare(r.relationOid, rel.id, rel.pending)).then((events) => {
      const now = this.relations.get(r.relationOid)!;
      return now.skip ? events : [...events, { type: 'change', change: build(now, version) }];
    });
  }

  /** `partial`: a key-only or unchanged-TOAST tuple, whose missing columns stay absent (never null). */
  private row(rel: Relation, tuple: Record<string, unknown>, partial = false): Row {
    const row: Row = {};
    const { sourceNames, names, parsers } = rel;
    for (let i = 0; i < names.length; i++) {
      const raw = tuple[sourceNames[i]!] as string | null | undefined;
      if (raw === undefined) {
        if (!partial) row[names[i]!] = null;
        continue;
      }
      row[names[i]!] = raw === null ? null : parsers[i]!(raw);
    }
    return row;
  }

  private setRelation(oid: number, id: TableId, sourceNames: string[], names: string[], schema: TableSchema): void {
    const byName = new Map(schema.columns.map((c) => [c.name, c]));
    // Values are parsed as the destination column's type: every widening keeps the older type's text valid.
    this.relations.set(oid, { id, sourceNames, names, parsers: names.map((n) => columnParser(byName.get(n)!)) });
  }

  /**
   * A relation message precedes a table's first change in each session and follows every schema
   * change. For a table the consumer knows, its shape is compared with the destination's.
   */
  private relation(msg: Pgoutput.MessageRelation): StreamEvent[] | Promise<StreamEvent[]> {
    const id = { schema: msg.schema, name: msg.name };
    const rel: RelationColumn[] = msg.columns.map((c) => ({ name: c.name, typeOid: c.typeOid, typeMod: c.typeMod }));
    const entry = [...this.known.values()].find((t) => t.oid === msg.relationOid) ?? this.known.get(tableKey(id));
    if (!entry) return this.unknownRelation(msg, id);
    const key = tableKey(entry);
    const table = { schema: entry.schema, name: entry.name };
    if (this.stopped.has(key)) {
      this.relations.set(msg.relationOid, { id: table, sourceNames: [], names: [], parsers: [], skip: true });
      return [];
    }
    if (entry.oid !== undefined && entry.oid !== msg.relationOid) {
      return this.stop(msg.relationOid, table, { reason: `table ${key} was dropped and created again (it has a new OID); the destination holds the old table's rows` });
    }
    if (key !== tableKey(id)) {
      return this.stop(msg.relationOid, table, {
        reason: `table ${key} was renamed to ${tableKey(id)}; walflow does not follow renamed tables`, statement: `ALTER TABLE ${key} RENAME TO ${msg.name}`,
        renamedTo: tableKey(id),
      });
    }
    if (this.commitLsn < (this.from.get(key) ?? 0n)) {
      this.relations.set(msg.relationOid, { id: table, sourceNames: [], names: [], parsers: [], pending: rel });
      return [];
    }
    return this.compare(msg.relationOid, table, rel);
  }

  private compare(oid: number, table: TableId, rel: RelationColumn[]): StreamEvent[] | Promise<StreamEvent[]> {
    const key = tableKey(table);
    const dest = this.known.get(key)!;
    const apply = (verdict: ShapeVerdict): StreamEvent[] | Promise<StreamEvent[]> => {
      if (verdict.kind === 'stop') return this.stop(oid, table, verdict.problem);
      this.setRelation(oid, table, rel.map((c) => c.name), verdict.names, verdict.schema);
      this.known.set(key, verdict.schema);
      if (!verdict.change) return [];
      const { added, dropped, retyped, renamed } = verdict.change;
      return [{ type: 'change', change: {
        kind: 'schema', table, version: makeVersion(this.commitLsn, this.seq), tx: this.tx, schema: verdict.schema, added, dropped, retyped, renamed,
      } }];
    };
    // Most relation messages repeat the known shape: answered without the catalog.
    const quick = compareShape(dest, rel, undefined, this.abilities);
    if (quick.kind === 'ok' && !quick.change) return apply(quick);
    return this.lookup(table).catch(() => undefined).then((catalog) => apply(compareShape(dest, rel, catalog, this.abilities)));
  }

  private stop(oid: number, table: TableId, problem: ShapeProblem): StreamEvent[] {
    this.stopped.add(tableKey(table));
    this.relations.set(oid, { id: table, sourceNames: [], names: [], parsers: [], skip: true });
    return [{ type: 'stop', table, problem, commitLsn: this.commitLsn }];
  }

  /** A table of the publication the consumer does not know: decoded by the catalog, as it is. */
  private unknownRelation(msg: Pgoutput.MessageRelation, id: TableId): Promise<StreamEvent[]> {
    return this.lookup(id).then((schema) => {
      const byName = new Map(schema.columns.map((c) => [c.name, c]));
      const columns = msg.columns.map((c): ColumnSchema => byName.get(c.name) ?? {
        name: c.name, type: String(c.typeOid), typeOid: c.typeOid, kind: KIND_BY_OID[c.typeOid] ?? 'text', arrayDims: 0, nullable: true,
      });
      const names = columns.map((c) => c.name);
      this.setRelation(msg.relationOid, id, names, names, { ...schema, columns });
      return [];
    });
  }
}

/**
 * Opens the stream at `startLsn`. Events are decoded as the consumer pulls them; while
 * `highWaterMark` raw messages wait, the socket is paused.
 */
export async function openChangeStream(opts: ChangeStreamOptions & { known: Map<string, TableSchema>; lookup: SchemaLookup; tracking?: ShapeTracking }): Promise<ChangeStream> {
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

async function startChangeStream(opts: ChangeStreamOptions & { known: Map<string, TableSchema>; lookup: SchemaLookup; tracking?: ShapeTracking }): Promise<ChangeStream> {
  const service = new LogicalReplicationService(withSession(opts.connection), {
    acknowledge: { auto: false, timeoutSeconds: 0 },
  });
  const plugin = new TextPgoutputPlugin({ protoVersion: 1, publicationNames: [opts.publication] });
  const decoder = new PgoutputDecoder(opts.known, opts.lookup, opts.tracking);
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
