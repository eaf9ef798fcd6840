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
  /**
   * The destination's type and every table it will hold ("schema.table"): names must not collide, keyless tables need a
   * destination that takes them.
   */
  destination?: { type: string; tables: string[] };
}

export interface PreflightReport {
  serverVersion: string;
  majorVersion: number;
  failures: string[];
  /** What does not stop a pipeline but risks the source (e.g. no limit on the WAL a slot may keep). */
  warnings: string[];
}

export async function preflight(client: pg.Client, opts: PreflightOptions): Promise<PreflightReport> {
  const failures: string[] = [];
  const warnings: string[] = [];
  const settings = (
    await client.query<Record<string, string>>(
      `
    SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num,
           current_setting('wal_level') AS wal_level,
           current_setting('max_replication_slots') AS max_slots, current_setting('max_wal_senders') AS max_senders,
           (SELECT count(*) FROM pg_replication_slots)::text AS slots,
           (SELECT count(*) FROM pg_stat_replication)::text AS senders,
           current_user AS role, current_setting('max_slot_wal_keep_size') AS keep_size,
           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)::text AS superuser,
           has_database_privilege(current_database(), 'CREATE')::text AS can_create, current_database() AS db,
           (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)::text AS can_replicate,
           (SELECT count(*) FROM pg_roles r JOIN pg_auth_members m ON m.roleid = r.oid JOIN pg_roles u ON u.oid =
             m.member
              WHERE u.rolname = current_user AND r.rolname = 'rds_replication')::text AS rds_replication,
           EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)::text AS slot_exists`,
      [opts.slot],
    )
  ).rows[0]!;
  const major = Math.floor(Number(settings.num) / 10000);

  if (settings.wal_level !== 'logical') {
    failures.push(
      `wal_level is ${settings.wal_level}; walflow needs logical decoding: run ALTER SYSTEM SET wal_level = ` +
        `logical; (or set it in postgresql.conf) and restart Postgres`,
    );
  }
  if (major < 14)
    failures.push(
      `Postgres ${settings.version} is too old: walflow needs 14 or newer (TID range scans, pgoutput with ` +
        `publish_via_partition_root)`,
    );
  if (settings.can_replicate !== 'true' && settings.rds_replication === '0') {
    failures.push(
      `role ${settings.role} lacks the REPLICATION privilege: run ALTER ROLE ${settings.role} REPLICATION; (on RDS: ` +
        `GRANT rds_replication TO ${settings.role};)`,
    );
  }
  const slotExists = opts.slotExists || settings.slot_exists === 'true';
  // A pipeline needs its own slot plus one temporary slot (and a walsender each) while a backfill snapshot is held.
  const slotsNeeded = slotExists ? 1 : 2;
  if (Number(settings.max_slots) - Number(settings.slots) < slotsNeeded) {
    failures.push(
      `max_replication_slots = ${settings.max_slots} and ${settings.slots} are in use; walflow needs ${slotsNeeded} ` +
        `free: raise max_replication_slots (restart needed) or drop unused slots (SELECT slot_name FROM ` +
        `pg_replication_slots)`,
    );
  }
  if (Number(settings.max_senders) - Number(settings.senders) < 2) {
    failures.push(
      `max_wal_senders = ${settings.max_senders} and ${settings.senders} are in use; walflow needs 2 free: raise ` +
        `max_wal_senders (restart needed)`,
    );
  }

  if (settings.keep_size === '-1') {
    warnings.push(
      'max_slot_wal_keep_size is -1: a slot that falls behind (a destination down for days) keeps WAL without limit ' +
        'until the source disk fills; ' +
        "set a limit the disk can hold, e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT " +
        'pg_reload_conf(); (a slot past it is invalidated: see onSlotLost)',
    );
  }

  const existing: string[] = [];
  const notOwned: { table: string; owner: string }[] = [];
  for (const table of opts.tables) {
    const { schema, name } = splitTableName(table);
    const { rows } = await client.query<{ relreplident: string; has_key: boolean; relkind: string }>(
      `
      SELECT c.relreplident, c.relkind,
             EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)) AS
               has_key
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
      [schema, name],
    );
    const t = rows[0];
    if (!t) {
      failures.push(`table ${table} does not exist (check source.tables and the search path: name it as schema.table)`);
      continue;
    }
    if (!['r', 'p'].includes(t.relkind)) {
      failures.push(
        `${table} is not a table (relkind ${t.relkind}); only tables and partitioned tables can be replicated`,
      );
      continue;
    }
    existing.push(table);
    if (!t.has_key && t.relreplident !== 'f') {
      failures.push(
        `table ${table} has no primary key and no REPLICA IDENTITY FULL, so its updates and deletes cannot be keyed: ` +
          `add a primary key (ALTER TABLE ${table} ADD PRIMARY KEY (...)) or run ALTER TABLE ${table} REPLICA ` +
          `IDENTITY FULL`,
      );
    } else if (!t.has_key && opts.destination && TABLE_DESTINATIONS.has(opts.destination.type)) {
      failures.push(
        `table ${table} has no primary key (REPLICA IDENTITY FULL): the ${opts.destination.type} destination keeps ` +
          `one row per key, ` +
          `so identical rows would collapse into one and deleting one would delete all: add a primary key (ALTER ` +
          `TABLE ${table} ADD PRIMARY KEY (...), ` +
          `or an identity column: ALTER TABLE ${table} ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)`,
      );
    }
    const access = await client.query<{ ok: boolean; owns: boolean; owner: string }>(
      `
      SELECT has_table_privilege(c.oid, 'SELECT') AS ok, pg_has_role(c.relowner, 'USAGE') AS owns,
        pg_get_userbyid(c.relowner) AS owner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
      [schema, name],
    );
    if (!access.rows[0]!.ok)
      failures.push(`role ${settings.role} cannot read ${table}: GRANT SELECT ON ${table} TO ${settings.role}`);
    if (!access.rows[0]!.owns) notOwned.push({ table, owner: access.rows[0]!.owner });
  }

  const published = await publicationTables(client, opts.publication);
  // walflow creating or altering the publication needs what Postgres asks of CREATE/ALTER PUBLICATION:
  // owning each table it adds, and the publication itself.
  if (opts.createPublication && settings.superuser !== 'true') {
    const manage =
      `or create the publication yourself (CREATE PUBLICATION ${opts.publication} FOR ` +
      `TABLE ${opts.tables.join(', ')};) and set source.createPublication: false`;
    const toAdd = notOwned.filter((t) => !published?.includes(t.table));
    if (toAdd.length) {
      failures.push(
        `role ${settings.role} does not own ${toAdd.map((t) => `${t.table} (owner ${t.owner})`).join(', ')}, and ` +
          `adding a table to publication ${opts.publication} requires owning it: ` +
          `ALTER TABLE ${toAdd[0]!.table} OWNER TO ${settings.role}; (or GRANT ${toAdd[0]!.owner} ` +
          `TO ${settings.role};) ${manage}`,
      );
    }
    const pub = await client.query<{ owns: boolean; owner: string }>(
      "SELECT pg_has_role(pubowner, 'USAGE') AS owns, pg_get_userbyid(pubowner) AS owner FROM pg_publication WHERE " +
        'pubname = $1',
      [opts.publication],
    );
    if (pub.rows[0] && !pub.rows[0].owns) {
      const problem =
        `publication ${opts.publication} belongs to ${pub.rows[0].owner}, so role ${settings.role} cannot ALTER it ` +
        `(add or remove tables): ` +
        `ALTER PUBLICATION ${opts.publication} OWNER TO ${settings.role}; or set source.createPublication: false ` +
        `and manage its tables yourself`;
      (existing.some((t) => !published!.includes(t)) ? failures : warnings).push(problem);
    }
    if (!pub.rows[0] && settings.can_create !== 'true') {
      failures.push(
        `role ${settings.role} cannot create publication ${opts.publication}: GRANT CREATE ON ` +
          `DATABASE ${settings.db} TO ${settings.role}; ${manage}`,
      );
    }
  }
  if (published === undefined) {
    if (!opts.createPublication) {
      failures.push(
        `publication ${opts.publication} does not exist: CREATE PUBLICATION ${opts.publication} FOR ` +
          `TABLE ${opts.tables.join(', ')}; or set source.createPublication: true`,
      );
    }
  } else if (!opts.createPublication) {
    const missing = existing.filter((t) => !published.includes(t));
    if (missing.length)
      failures.push(
        `publication ${opts.publication} does not publish ${missing.join(', ')}: ALTER ` +
          `PUBLICATION ${opts.publication} ADD TABLE ${missing.join(', ')};`,
      );
  }
  if (opts.destination && TABLE_DESTINATIONS.has(opts.destination.type))
    failures.push(...tableNameCollisions(opts.destination.type, opts.destination.tables.map(splitTableName)));
  return { serverVersion: settings.version!, majorVersion: major, failures, warnings };
}
