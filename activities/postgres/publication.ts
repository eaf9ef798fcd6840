/**
 * The publication the stream reads. walflow creates it when asked
 * (source.createPublication) and then manages its tables; a publication the
 * user manages is only checked, never altered.
 */
import pg from 'pg';
import { splitTableName } from './schema.ts';

const qualified = (table: string) => {
  const { schema, name } = splitTableName(table);
  return `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
};

/** Marks publications walflow created, so drop never removes one the user made. */
const OWNED_COMMENT = 'created by walflow';

export async function publicationTables(client: pg.Client, publication: string): Promise<string[] | undefined> {
  const exists = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  if (exists.rowCount === 0) return undefined;
  const { rows } = await client.query<{ t: string }>(
    `SELECT format('%s.%s', schemaname, tablename) AS t FROM pg_publication_tables WHERE pubname = $1`,
    [publication],
  );
  return rows.map((r) => r.t);
}

export async function ensurePublication(client: pg.Client, publication: string, tables: string[]): Promise<void> {
  const current = await publicationTables(client, publication);
  if (current === undefined) {
    // publish_via_partition_root: changes of partitions arrive as changes of the table the pipeline names.
    // publish_generated_columns (Postgres 18): generated STORED columns carry their values, not nothing.
    const major = Math.floor(
      Number((await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v) /
        10000,
    );
    await client.query(`CREATE PUBLICATION ${pg.escapeIdentifier(publication)}
      FOR TABLE ${tables.map(qualified).join(', ')}
      WITH (publish_via_partition_root = true${major >= 18 ? ', publish_generated_columns = stored' : ''})`);
    await client.query(
      `COMMENT ON PUBLICATION ${pg.escapeIdentifier(publication)} IS ${pg.escapeLiteral(OWNED_COMMENT)}`,
    );
    return;
  }
  const missing = tables.filter((t) => !current.includes(t));
  if (missing.length) await alterPublicationTables(client, publication, { add: missing, remove: [], managed: true });
}

export async function alterPublicationTables(
  client: pg.Client,
  publication: string,
  change: { add: string[]; remove: string[]; managed: boolean },
): Promise<void> {
  const current = (await publicationTables(client, publication)) ?? [];
  const add = change.add.filter((t) => !current.includes(t));
  const remove = change.remove.filter((t) => current.includes(t));
  if (!change.managed) {
    if (add.length)
      throw new Error(
        `publication "${publication}" is managed by you and does not publish ${add.join(', ')}: ` +
          `run ALTER PUBLICATION ${pg.escapeIdentifier(publication)} ADD TABLE ${add.map(qualified).join(', ')}, ` +
          `then try again`,
      );
    return; // removed tables are filtered out by the stream
  }
  if (add.length)
    await client.query(
      `ALTER PUBLICATION ${pg.escapeIdentifier(publication)} ADD TABLE ${add.map(qualified).join(', ')}`,
    );
  if (remove.length)
    await client.query(
      `ALTER PUBLICATION ${pg.escapeIdentifier(publication)} DROP TABLE ${remove.map(qualified).join(', ')}`,
    );
}

export async function dropPublicationIfOwned(client: pg.Client, publication: string): Promise<void> {
  const { rows } = await client.query<{ comment: string | null }>(
    `SELECT obj_description(oid, 'pg_publication') AS comment FROM pg_publication WHERE pubname = $1`,
    [publication],
  );
  if (rows[0]?.comment === OWNED_COMMENT) await client.query(`DROP PUBLICATION ${pg.escapeIdentifier(publication)}`);
}
