/**
 * The change envelope: what destinations that keep the change stream (file, webhook, NATS, stdout,
 * websocket clients) hand their consumers, one JSON object per change. Defined once here; its JSON
 * Schema is `lib/envelope.schema.json` (keep the two in step; a test checks them against each other).
 *
 * `id` is the consumer's de-duplication key: `<pipeline>:<version>` for a change from the stream. A change
 * re-sent after a retry or a crash carries the same id, and a newer image of a row always has a higher
 * version (Debezium's convention for backfill rows too: `op: "read"`, versioned with the snapshot LSN at
 * position 0). Every row of a backfill shares that version, and a schema change shares its position with
 * the change before it, so their ids add `:<32 hex digits>`, a digest of the table and key (of the table
 * for `schema`): still the same on every delivery, and distinct per row.
 * Values are exact and JSON-safe, as in walflow's type mapping: int8/numeric as strings, bytea as
 * Postgres's `\x…` hex text, NaN/±Infinity floats as strings, arrays nested.
 */
import { createHash } from 'node:crypto';
import { formatLsn, SEQ_BITS, versionLsn, type Version } from './lsn.ts';
import type { Change, ColumnSchema, Row, TableSchema, Value } from './model.ts';

export const ENVELOPE_VERSION = 1;

export type EnvelopeOp = 'read' | 'insert' | 'update' | 'delete' | 'truncate' | 'schema';
export type JsonValue = null | boolean | number | string | JsonValue[];
export type JsonRow = Record<string, JsonValue>;

export interface ChangeEnvelope {
  /** Envelope format version (this file's ENVELOPE_VERSION). */
  v: typeof ENVELOPE_VERSION;
  /** De-duplication id, `<pipeline>:<version>[:<digest>]`: the same for every delivery of this change. */
  id: string;
  pipeline: string;
  op: EnvelopeOp;
  table: { schema: string; name: string };
  /** Key columns of the row (primary key or replica identity); null for truncate/schema. */
  key: JsonRow | null;
  /** New row image, unchanged TOAST columns already filled; null for delete/truncate/schema. */
  row: JsonRow | null;
  /** Old key, or the old row under REPLICA IDENTITY FULL, when Postgres sent it. */
  old: JsonRow | null;
  /** Commit LSN of the transaction (the snapshot LSN for `read`). */
  lsn: string;
  /** Row version as a decimal string: commit LSN << 32 | position (exceeds JSON's safe integers). */
  version: string;
  /** Position in the transaction (1-based; 0 for `read`). */
  position: number;
  /** Source transaction id and commit time (ISO 8601, µs, UTC); null for `read`. */
  xid: number | null;
  commitTime: string | null;
  /** For `op: "schema"`: the table's columns after the change. */
  columns?: { name: string; type: string; nullable: boolean }[];
}

/** A value as JSON (see the file comment). */
export function jsonValue(v: Value): JsonValue {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? (Object.is(v, -0) ? '-0' : v) : String(v);
  if (Buffer.isBuffer(v)) return `\\x${v.toString('hex')}`;
  return v.map(jsonValue);
}

export function jsonRow(row: Row): JsonRow {
  const out: JsonRow = {};
  for (const [k, v] of Object.entries(row)) out[k] = jsonValue(v);
  return out;
}

const pick = (row: Row, columns: string[]): JsonRow | null => {
  if (columns.length === 0 || !columns.every((c) => c in row)) return null;
  const out: JsonRow = {};
  for (const c of columns) out[c] = jsonValue(row[c]!);
  return out;
};

/** The envelope of one change of pipeline `pipeline`; `schema` gives the table's key columns. */
export function toEnvelope(pipeline: string, change: Change, schema?: Pick<TableSchema, 'key'>): ChangeEnvelope {
  const keyColumns = schema?.key ?? [];
  const position = Number(change.version & ((1n << SEQ_BITS) - 1n));
  const table = `${change.table.schema}.${change.table.name}`;
  const distinct =
    change.kind === 'insert' && change.snapshot
      ? `${table}\0${JSON.stringify(pick(change.row, keyColumns) ?? jsonRow(change.row))}`
      : change.kind === 'schema'
        ? `schema\0${table}`
        : undefined;
  const base = {
    v: ENVELOPE_VERSION,
    id: envelopeId(pipeline, change.version, distinct),
    pipeline,
    table: { schema: change.table.schema, name: change.table.name },
    lsn: formatLsn(versionLsn(change.version)),
    version: change.version.toString(),
    position,
    xid: change.tx?.xid ?? null,
    commitTime: change.tx?.commitTime ?? null,
  } as const;
  switch (change.kind) {
    case 'insert':
      return {
        ...base,
        op: change.snapshot ? 'read' : 'insert',
        key: pick(change.row, keyColumns),
        row: jsonRow(change.row),
        old: null,
      };
    case 'update':
      return {
        ...base,
        op: 'update',
        key: pick(change.row, keyColumns),
        row: jsonRow(change.row),
        old: change.old ? jsonRow(change.old) : null,
      };
    case 'delete':
      return {
        ...base,
        op: 'delete',
        key: pick(change.old, keyColumns) ?? jsonRow(change.old),
        row: null,
        old: jsonRow(change.old),
      };
    case 'truncate':
      return { ...base, op: 'truncate', key: null, row: null, old: null };
    case 'schema':
      return { ...base, op: 'schema', key: null, row: null, old: null, columns: change.schema.columns.map(columnInfo) };
  }
}

export function envelopeId(pipeline: string, version: Version, distinct?: string): string {
  const base = `${pipeline}:${version.toString()}`;
  return distinct === undefined ? base : `${base}:${createHash('sha256').update(distinct).digest('hex').slice(0, 32)}`;
}

const columnInfo = (c: ColumnSchema) => ({ name: c.name, type: c.type, nullable: c.nullable });

/** Microseconds since the Unix epoch (pgoutput's commit time) as ISO 8601 with µs, UTC. */
export function formatCommitTime(micros: bigint): string {
  const ms = micros / 1000n;
  const iso = new Date(Number(ms)).toISOString(); // 2024-06-30T21:59:59.123Z
  const us = (((micros % 1_000_000n) + 1_000_000n) % 1_000_000n).toString().padStart(6, '0');
  return `${iso.slice(0, 19)}.${us}Z`;
}
