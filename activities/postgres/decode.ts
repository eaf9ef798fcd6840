/**
 * pgoutput messages decoded into walflow's Change model: the relation cache, each transaction's
 * change positions (row versions), and the per-table shape tracking that stops a table rather than
 * write it wrong (activities/postgres/shape.ts decides).
 */
import type { Pgoutput } from 'pg-logical-replication';
import { makeVersion, parseLsn, type Lsn } from '../../lib/lsn.ts';
import {
  tableKey,
  type Change,
  type ColumnSchema,
  type Row,
  type TableId,
  type TableSchema,
  type Transaction,
  type Value,
} from '../../lib/model.ts';
import { formatCommitTime } from '../../lib/envelope.ts';
import { columnParser, KIND_BY_OID } from '../../lib/pgvalues.ts';
import { SchemaError } from './schema.ts';
import {
  compareShape,
  type DestinationAbilities,
  type RelationColumn,
  type ShapeProblem,
  type ShapeVerdict,
} from './shape.ts';

export type StreamEvent =
  | { type: 'begin'; commitLsn: Lsn }
  | { type: 'change'; change: Change }
  | { type: 'commit'; commitLsn: Lsn; endLsn: Lsn }
  /** Server keepalive: everything before `walEnd` has been sent. */
  | { type: 'keepalive'; walEnd: Lsn }
  /** A shape change the destination cannot follow exactly: the table's changes from here on are not emitted. */
  | { type: 'stop'; table: TableId; problem: ShapeProblem; commitLsn: Lsn };

/** Looks a table's current schema up in the catalog (for relations whose columns changed). */
export type SchemaLookup = (table: TableId) => Promise<TableSchema>;

/** How the decoder follows the shapes of the tables it knows (see activities/postgres/shape.ts). */
export interface ShapeTracking {
  /** What the destination can change in place; without it, any type change or rename stops the table. */
  abilities?: DestinationAbilities;
  /**
   * Tables ("schema.table") whose changes are not emitted; the decoder adds each table it stops, its owner may add
   * others at any time.
   */
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
  /** Generated columns the destination has and the relation message lacks: read by key from the source. */
  fill?: string[];
  /** Stopped: changes are not emitted. */
  skip?: boolean;
  /**
   * Not compared yet: the table's changes before `from` are skipped, and the shape (and name, `pendingId`) is
   * compared at its first later change.
   */
  pending?: RelationColumn[];
  pendingId?: TableId;
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
  constructor(
    private readonly known: Map<string, TableSchema>,
    private readonly lookup: SchemaLookup,
    tracking: ShapeTracking = {},
  ) {
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
        return this.rowChange(msg.relation, (rel, version) => ({
          kind: 'insert',
          table: rel.id,
          version,
          tx: this.tx,
          row: this.row(rel, msg.new),
          ...(rel.fill ? { unchanged: [...rel.fill] } : {}),
        }));
      case 'update':
        return this.rowChange(msg.relation, (rel, version) => {
          const unchanged = [
            ...rel.names.filter((_, i) => msg.new[rel.sourceNames[i]!] === undefined),
            ...(rel.fill ?? []),
          ];
          const oldRaw = msg.old ?? msg.key;
          return {
            kind: 'update',
            table: rel.id,
            version,
            tx: this.tx,
            row: this.row(rel, msg.new, true),
            unchanged,
            ...(oldRaw ? { old: this.row(rel, oldRaw, true) } : {}),
          };
        });
      case 'delete':
        return this.rowChange(msg.relation, (rel, version) => ({
          kind: 'delete',
          table: rel.id,
          version,
          tx: this.tx,
          old: this.row(rel, (msg.old ?? msg.key)!, true),
        }));
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
    // `stopped` also grows from outside (the stream stops a table whose data the destination refused),
    // after the table's relation message: looked up here, not only when a relation message comes.
    if (rel.skip) return false;
    const key = tableKey(rel.id);
    return !this.stopped.has(key) && this.commitLsn >= (this.from.get(key) ?? 0n);
  }

  /** A row change, after the deferred shape comparison of its table if one is due. */
  private rowChange(
    r: Pgoutput.MessageRelation,
    build: (rel: Relation, version: ReturnType<typeof makeVersion>) => Change,
  ): StreamEvent[] | Promise<StreamEvent[]> {
    const version = this.version(); // skipped changes keep their place, so versions never depend on what is skipped
    const rel = this.relations.get(r.relationOid)!;
    if (!this.emits(rel)) return [];
    if (!rel.pending) return [{ type: 'change', change: build(rel, version) }];
    if (rel.pendingId && tableKey(rel.pendingId) !== tableKey(rel.id))
      return this.renamed(r.relationOid, rel.id, rel.pendingId);
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
    const fill = schema.columns.filter((c) => c.generated && !c.dropped && !names.includes(c.name)).map((c) => c.name);
    this.relations.set(oid, {
      id,
      sourceNames,
      names,
      parsers: names.map((n) => columnParser(byName.get(n)!)),
      ...(fill.length ? { fill } : {}),
    });
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
    // Before the table's copy (a table added or resynced since): its changes are skipped, so what it was called
    // or which table it was then does not matter; a table renamed before it was added is known by its new name.
    if (this.commitLsn < (this.from.get(key) ?? 0n)) {
      const pending = { id: table, sourceNames: [], names: [], parsers: [], pending: rel, pendingId: id };
      this.relations.set(msg.relationOid, pending);
      return [];
    }
    if (entry.oid !== undefined && entry.oid !== msg.relationOid) {
      return this.stop(msg.relationOid, table, {
        reason:
          `table ${key} was dropped and created again (it has a new OID); the destination holds the old ` +
          `table's rows`,
      });
    }
    if (key !== tableKey(id)) return this.renamed(msg.relationOid, table, id);
    return this.compare(msg.relationOid, table, rel);
  }

  private renamed(oid: number, table: TableId, to: TableId): StreamEvent[] {
    const key = tableKey(table);
    return this.stop(oid, table, {
      reason: `table ${key} was renamed to ${tableKey(to)}; walflow does not follow renamed tables`,
      statement: `ALTER TABLE ${key} RENAME TO ${to.name}`,
      renamedTo: tableKey(to),
    });
  }

  private compare(oid: number, table: TableId, rel: RelationColumn[]): StreamEvent[] | Promise<StreamEvent[]> {
    const key = tableKey(table);
    const dest = this.known.get(key)!;
    const apply = (verdict: ShapeVerdict): StreamEvent[] | Promise<StreamEvent[]> => {
      if (verdict.kind === 'stop') return this.stop(oid, table, verdict.problem);
      this.setRelation(
        oid,
        table,
        rel.map((c) => c.name),
        verdict.names,
        verdict.schema,
      );
      this.known.set(key, verdict.schema);
      if (!verdict.change) return [];
      const { added, dropped, retyped, renamed } = verdict.change;
      return [
        {
          type: 'change',
          change: {
            kind: 'schema',
            table,
            version: makeVersion(this.commitLsn, this.seq),
            tx: this.tx,
            schema: verdict.schema,
            added,
            dropped,
            retyped,
            renamed,
          },
        },
      ];
    };
    // Most relation messages repeat the known shape: answered without the catalog.
    const quick = compareShape(dest, rel, undefined, this.abilities);
    if (quick.kind === 'ok' && !quick.change) return apply(quick);
    // A table gone from the catalog (renamed, dropped) is compared without it; any other failure (the source
    // unreachable for a moment) fails the attempt, to be retried, rather than stop the table for good.
    const catalog = this.lookup(table).catch((e: unknown) => {
      if (e instanceof SchemaError) return undefined;
      throw e;
    });
    return catalog.then((c) => apply(compareShape(dest, rel, c, this.abilities)));
  }

  private stop(oid: number, table: TableId, problem: ShapeProblem): StreamEvent[] {
    this.stopped.add(tableKey(table));
    this.relations.set(oid, { id: table, sourceNames: [], names: [], parsers: [], skip: true });
    return [{ type: 'stop', table, problem, commitLsn: this.commitLsn }];
  }

  /**
   * A table of the publication the consumer does not know: decoded by the catalog, as it is, or by the message
   * alone when the catalog no longer has it by that name (renamed or dropped since): it is not followed, so that
   * must not stop the stream.
   */
  private unknownRelation(msg: Pgoutput.MessageRelation, id: TableId): Promise<StreamEvent[]> {
    const described = this.lookup(id).catch((e: unknown): TableSchema => {
      if (!(e instanceof SchemaError)) throw e;
      return { ...id, oid: msg.relationOid, columns: [], key: msg.keyColumns, replicaIdentity: 'default' };
    });
    return described.then((schema) => {
      const byName = new Map(schema.columns.map((c) => [c.name, c]));
      const columns = msg.columns.map(
        (c): ColumnSchema =>
          byName.get(c.name) ?? {
            name: c.name,
            type: String(c.typeOid),
            typeOid: c.typeOid,
            kind: KIND_BY_OID[c.typeOid] ?? 'text',
            arrayDims: 0,
            nullable: true,
          },
      );
      const names = columns.map((c) => c.name);
      this.setRelation(msg.relationOid, id, names, names, { ...schema, columns });
      return [];
    });
  }
}
