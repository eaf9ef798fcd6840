/**
 * Preflight: everything that would stop a pipeline, checked up front and
 * reported together, each problem with the fix.
 */
import type pg from 'pg';
import { publicationTables } from './publication.ts';
import { splitTableName } from './schema.ts';
import { TABLE_DESTINATIONS, tableNameCollisions } from '../destinations/names.ts';

export interface PreflightOptions {
  publication: string;
  /** "schema.table" names. */
  tables: string[];
  /** walflow creates (and then manages) the publication when it is missing. */
  createPublication: boolean;
  slot: string;
  /** The pipeline's slot already exists (adding tables to a running pipeline): no free slot needed. */
  slotExists?: boolean;
  /** The destination's type and every table it will hold ("schema.table"): names must not collide, keyless tables need a destination that takes them. */
  destination?: { type: string; tables: string[] };
}

export interface PreflightReport {
  serverVersion: string;
  majorVersion: number;
  failures: string[];
}

export async function preflight(client: pg.Client, opts: PreflightOptions): Promise<PreflightReport> {
  const failures: string[] = [];
  const settings = (await client.query<Record<string, string>>(`
    SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num,
           current_setting('wal_level') AS wal_level,
           current_setting('max_replication_slots') AS max_slots, current_setting('max_wal_senders') AS max_senders,
           (SELECT count(*) FROM pg_replication_slots)::text AS slots,
           (SELECT count(*) FROM pg_stat_replication)::text AS senders,
           current_user AS role,
           (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)::text AS can_replicate,
           (SELECT count(*) FROM pg_roles r JOIN pg_auth_members m ON m.roleid = r.oid JOIN pg_roles u ON u.oid = m.member
              WHERE u.rolname = current_user AND r.rolname = 'rds_replication')::text AS rds_replication,
           EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)::text AS slot_exists`, [opts.slot])).rows[0]!;
  const major = Math.floor(Number(settings.num) / 10000);

  if (settings.wal_level !== 'logical') {
    failures.push(`wal_level is ${settings.wal_level}; walflow needs logical decoding: run ALTER SYSTEM SET wal_level = logical; (or set it in postgresql.conf) and restart Postgres`);
  }
  if (major < 14) failures.push(`Postgres ${settings.version} is too old: walflow needs 14 or newer (TID range scans, pgoutput with publish_via_partition_root)`);
  if (settings.can_replicate !== 'true' && settings.rds_replication === '0') {
    failures.push(`role ${settings.role} lacks the REPLICATION privilege: run ALTER ROLE ${settings.role} REPLICATION; (on RDS: GRANT rds_replication TO ${settings.role};)`);
  }
  const slotExists = opts.slotExists || settings.slot_exists === 'true';
  // A pipeline needs its own slot plus one temporary slot (and a walsender each) while a backfill snapshot is held.
  const slotsNeeded = slotExists ? 1 : 2;
  if (Number(settings.max_slots) - Number(settings.slots) < slotsNeeded) {
    failures.push(`max_replication_slots = ${settings.max_slots} and ${settings.slots} are in use; walflow needs ${slotsNeeded} free: raise max_replication_slots (restart needed) or drop unused slots (SELECT slot_name FROM pg_replication_slots)`);
  }
  if (Number(settings.max_senders) - Number(settings.senders) < 2) {
    failures.push(`max_wal_senders = ${settings.max_senders} and ${settings.senders} are in use; walflow needs 2 free: raise max_wal_senders (restart needed)`);
  }

  const existing: string[] = [];
  for (const table of opts.tables) {
    const { schema, name } = splitTableName(table);
    const { rows } = await client.query<{ relreplident: string; has_key: boolean; relkind: string }>(`
      SELECT c.relreplident, c.relkind,
             EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)) AS has_key
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, [schema, name]);
    const t = rows[0];
    if (!t) {
      failures.push(`table ${table} does not exist (check source.tables and the search path: name it as schema.table)`);
      continue;
    }
    if (!['r', 'p'].includes(t.relkind)) {
      failures.push(`${table} is not a table (relkind ${t.relkind}); only tables and partitioned tables can be replicated`);
      continue;
    }
    existing.push(table);
    if (!t.has_key && t.relreplident !== 'f') {
      failures.push(`table ${table} has no primary key and no REPLICA IDENTITY FULL, so its updates and deletes cannot be keyed: `
        + `add a primary key (ALTER TABLE ${table} ADD PRIMARY KEY (...)) or run ALTER TABLE ${table} REPLICA IDENTITY FULL`);
    } else if (!t.has_key && opts.destination && TABLE_DESTINATIONS.has(opts.destination.type)) {
      failures.push(`table ${table} has no primary key (REPLICA IDENTITY FULL): the ${opts.destination.type} destination keeps one row per key, `
        + `so identical rows would collapse into one and deleting one would delete all: add a primary key (ALTER TABLE ${table} ADD PRIMARY KEY (...), `
        + `or an identity column: ALTER TABLE ${table} ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)`);
    }
    const select = await client.query<{ ok: boolean }>(`SELECT has_table_privilege(format('%I.%I', $1::text, $2::text), 'SELECT') AS ok`, [schema, name]);
    if (!select.rows[0]!.ok) failures.push(`role ${settings.role} cannot read ${table}: GRANT SELECT ON ${table} TO ${settings.role}`);
  }

  const published = await publicationTables(client, opts.publication);
  if (published === undefined) {
    if (!opts.createPublication) {
      failures.push(`publication ${opts.publication} does not exist: CREATE PUBLICATION ${opts.publication} FOR TABLE ${opts.tables.join(', ')}; or set source.createPublication: true`);
    }
  } else if (!opts.createPublication) {
    const missing = existing.filter((t) => !published.includes(t));
    if (missing.length) failures.push(`publication ${opts.publication} does not publish ${missing.join(', ')}: ALTER PUBLICATION ${opts.publication} ADD TABLE ${missing.join(', ')};`);
  }
  if (opts.destination && TABLE_DESTINATIONS.has(opts.destination.type)) failures.push(...tableNameCollisions(opts.destination.type, opts.destination.tables.map(splitTableName)));
  return { serverVersion: settings.version!, majorVersion: major, failures };
}
