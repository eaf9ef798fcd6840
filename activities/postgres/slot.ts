/** The pipeline's replication slot: created once (pgoutput), dropped with the pipeline. */
import type pg from 'pg';
import type { SlotHealth, SnapshotHealth } from '../../lib/contract/status.ts';
import { connect } from './session.ts';
import { exportSnapshot } from './snapshot.ts';

export interface SlotInfo {
  slot: string;
  /** Where the stream resumes: the slot's confirmed_flush_lsn (its consistent point when new). */
  confirmedLsn: string;
  created: boolean;
}

async function slotRow(client: pg.Client, slot: string) {
  const { rows } = await client.query<{
    plugin: string;
    database: string;
    confirmed: string | null;
    active_pid: number | null;
  }>(
    `SELECT plugin, database, confirmed_flush_lsn::text AS confirmed, active_pid FROM pg_replication_slots WHERE ` +
      `slot_name = $1`,
    [slot],
  );
  return rows[0];
}

/**
 * Creates the slot unless it exists (then checks it is a pgoutput slot of this database). `atStart` runs
 * while the new slot's snapshot is exported (its name given): it reads the source exactly as of the
 * slot's consistent point.
 */
export async function createSlot(
  connection: pg.ClientConfig,
  slot: string,
  atStart?: (snapshotName: string) => Promise<void>,
): Promise<SlotInfo> {
  const client = await connect(connection);
  try {
    const existing = await slotRow(client, slot);
    if (existing) {
      const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
      if (existing.plugin !== 'pgoutput' || existing.database !== db) {
        throw new Error(
          `replication slot "${slot}" exists but belongs to ${existing.database ?? 'no database'} with ` +
            `plugin ${existing.plugin}; ` +
            `choose another source.slot or drop it with SELECT pg_drop_replication_slot('${slot}')`,
        );
      }
      return { slot, confirmedLsn: existing.confirmed!, created: false };
    }
  } finally {
    await client.end();
  }
  const snapshot = await exportSnapshot(connection, slot);
  try {
    await atStart?.(snapshot.name);
    return { slot, confirmedLsn: snapshot.lsn, created: true };
  } finally {
    await snapshot.close();
  }
}

/**
 * Drops the slot. A stream that was just stopped can leave it active for a
 * moment ("slot is active"): wait for that, and end a walsender that lingers.
 */
export async function dropSlot(connection: pg.ClientConfig, slot: string, timeoutMs = 30_000): Promise<boolean> {
  const client = await connect(connection);
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = await slotRow(client, slot);
      if (!row) return false;
      if (row.active_pid === null) {
        await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
        return true;
      }
      if (Date.now() > deadline) await client.query('SELECT pg_terminate_backend($1)', [row.active_pid]);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await client.end();
  }
}

const num = (v: string | null | undefined): number | null => (v === null || v === undefined ? null : Number(v));

/**
 * The slot as Postgres sees it now, and the backfill snapshot held by the session named
 * `snapshotApplication` (its temporary slot's walsender), if one is held.
 */
export async function readSlotHealth(
  client: pg.Client,
  slot: string,
  snapshotApplication: string,
): Promise<SlotHealth> {
  const { rows } = await client.query<{
    active: boolean;
    confirmed: string | null;
    wal_status: string | null;
    safe: string | null;
    lag: string | null;
    retained: string | null;
  }>(
    `
    SELECT active, confirmed_flush_lsn::text AS confirmed, wal_status, safe_wal_size::text AS safe,
           (pg_current_wal_lsn() - confirmed_flush_lsn)::text AS lag, (pg_current_wal_lsn() - restart_lsn)::text AS
             retained
    FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const snap = await client.query<{ slot: string; age: number; xmin: string | null; xmin_age: number | null }>(
    `
    SELECT s.slot_name AS slot, extract(epoch FROM now() - a.backend_start)::float8 AS age,
           coalesce(a.backend_xmin, s.xmin)::text AS xmin, age(coalesce(a.backend_xmin, s.xmin)) AS xmin_age
    FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
    WHERE s.temporary AND a.application_name = $1 ORDER BY a.backend_start LIMIT 1`,
    [snapshotApplication],
  );
  const r = rows[0];
  const s = snap.rows[0];
  const snapshot: SnapshotHealth | null = s
    ? { slot: s.slot, ageSeconds: Math.round(s.age), xmin: s.xmin, xminAge: s.xmin_age }
    : null;
  if (!r)
    return {
      name: slot,
      exists: false,
      active: false,
      confirmedLsn: null,
      lagBytes: null,
      retainedBytes: null,
      walStatus: null,
      safeWalSize: null,
      snapshot,
    };
  return {
    name: slot,
    exists: true,
    active: r.active,
    confirmedLsn: r.confirmed,
    lagBytes: r.lag === null ? null : Math.max(0, Number(r.lag)),
    retainedBytes: num(r.retained),
    walStatus: r.wal_status,
    safeWalSize: num(r.safe),
    snapshot,
  };
}
