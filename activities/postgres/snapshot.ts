/**
 * Exported snapshots for backfill. A temporary logical slot created over a
 * replication connection exports a snapshot at its consistent point; the
 * snapshot lives while that connection stays open and idle, and range copies
 * import it with SET TRANSACTION SNAPSHOT in REPEATABLE READ transactions.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withSession } from './session.ts';

export interface ExportedSnapshot {
  name: string;
  /** The consistent point: everything committed before it is in the snapshot. */
  lsn: string;
  /** Resolves (with the reason) if the exporting session dies. */
  lost: Promise<Error>;
  close(): Promise<void>;
}

/**
 * With `permanentSlot`, the exporting slot is that permanent slot instead of a temporary one: its
 * stream then starts exactly at the snapshot (what a `walflow serve` session reads).
 */
export async function exportSnapshot(
  connection: pg.ClientConfig,
  permanentSlot?: string,
  applicationName?: string,
): Promise<ExportedSnapshot> {
  // applicationName names the session, so `walflow status` can find the snapshot and report its age and xmin.
  const client = new pg.Client({
    ...withSession(connection),
    replication: 'database',
    application_name: applicationName,
  } as pg.ClientConfig);
  let markLost!: (e: Error) => void;
  const lost = new Promise<Error>((resolve) => {
    markLost = resolve;
  });
  client.on('error', (e) => markLost(e));
  client.on('end', () => markLost(new Error('connection closed')));
  await client.connect();
  const slot = permanentSlot ?? `walflow_snapshot_${randomBytes(6).toString('hex')}`;
  const version = Number(
    (await client.query<{ server_version_num: string }>('SHOW server_version_num')).rows[0]!.server_version_num,
  );
  // Postgres 15 changed the option syntax; 14 and older only know EXPORT_SNAPSHOT.
  const options = version >= 150000 ? "(SNAPSHOT 'export')" : 'EXPORT_SNAPSHOT';
  const { rows } = await client.query<{ consistent_point: string; snapshot_name: string }>(
    `CREATE_REPLICATION_SLOT ${pg.escapeIdentifier(slot)} ${permanentSlot ? '' : 'TEMPORARY '}LOGICAL ` +
      `pgoutput ${options}`,
  );
  return {
    name: rows[0]!.snapshot_name,
    lsn: rows[0]!.consistent_point,
    lost,
    close: async () => {
      await client.end().catch(() => undefined);
    },
  };
}

/** Opens a REPEATABLE READ, READ ONLY transaction on `client` that sees exactly the exported snapshot. */
export async function importSnapshot(client: pg.Client, snapshotName: string): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
  await client.query(`SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(snapshotName)}`);
}

/** True when importing failed because the exporting session is gone. */
export function isSnapshotGone(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return ['22023', '42704'].includes(err.code ?? '') && /snapshot/i.test(err.message ?? '');
}
