/** Table schemas from the catalog: columns with their exact types and kinds, and the key walflow versions rows by. */
import type pg from 'pg';
import { qualifyTable } from '../../lib/config.ts';
import { ErrorType } from '../../lib/errors.ts';
import type { ColumnSchema, TableSchema } from '../../lib/model.ts';
import { KIND_BY_OID, TEXT_TYPES } from '../../lib/pgvalues.ts';

export class SchemaError extends Error {
  override name = ErrorType.Schema;
}

const warned = new Set<string>();

/** "schema.table" or "table" (public) into its parts. */
export function splitTableName(name: string): { schema: string; name: string } {
  const dot = name.indexOf('.');
  return dot < 0 ? { schema: 'public', name } : { schema: name.slice(0, dot), name: name.slice(dot + 1) };
}

interface ColumnRow {
  attname: string;
  type: string;
  atttypid: number;
  attnotnull: boolean;
  scalar_oid: number;
  scalar_name: string;
  scalar_typtype: string;
  is_array: boolean;
  attndims: number;
  enum_labels: string[] | null;
  numeric_precision: number | null;
  numeric_scale: number | null;
  attnum: number;
  atttypmod: number;
  has_default: boolean;
  generated: boolean;
}

/**
 * Loads the schemas of `tables` ("schema.table"). Arrays are described by their
 * element type, domains by their base type, so a value's kind is always known.
 */
export async function loadTableSchemas(client: pg.Client, tables: string[]): Promise<TableSchema[]> {
  const result: TableSchema[] = [];
  for (const table of tables) {
    const { schema, name } = splitTableName(table);
    const rel = await client.query<{ oid: number; relreplident: string; relkind: string }>(
      `SELECT c.oid, c.relreplident, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [schema, name],
    );
    const r = rel.rows[0];
    if (!r) throw new SchemaError(`table ${schema}.${name} does not exist in the source`);
    const cols = await client.query<ColumnRow>(
      `
      WITH RECURSIVE base(attnum, oid, depth) AS (
        SELECT a.attnum, a.atttypid, 0 FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT b.attnum, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END, b.depth + 1
        FROM base b JOIN pg_type t ON t.oid = b.oid
        WHERE t.typtype = 'd' OR (t.typelem <> 0 AND t.typlen = -1 AND t.typcategory = 'A')
      ),
      arrays AS (
        SELECT b.attnum, bool_or(t.typcategory = 'A' AND t.typelem <> 0) AS is_array
        FROM base b JOIN pg_type t ON t.oid = b.oid GROUP BY b.attnum
      ),
      scalar AS (SELECT DISTINCT ON (attnum) attnum, oid FROM base ORDER BY attnum, depth DESC)
      SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::int, a.attnotnull, a.attndims,
             st.oid::int AS scalar_oid, st.typname AS scalar_name, st.typtype::text AS scalar_typtype, ar.is_array,
             (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = st.oid) AS
               enum_labels,
             CASE WHEN st.oid = 1700 AND a.atttypmod > 0 THEN ((a.atttypmod - 4) >> 16) & 65535 END AS
               numeric_precision,
             CASE WHEN st.oid = 1700 AND a.atttypmod > 0 THEN (a.atttypmod - 4) & 65535 END AS numeric_scale,
             a.attnum::int, a.atttypmod::int, a.atthasdef OR a.atthasmissing AS has_default, a.attgenerated = 's' AS
               generated
      FROM pg_attribute a
      JOIN scalar s ON s.attnum = a.attnum JOIN pg_type st ON st.oid = s.oid JOIN arrays ar ON ar.attnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [r.oid],
    );
    const keyOrder = await client.query<{ attname: string }>(
      `
      SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indexrelid = (
        SELECT indexrelid FROM pg_index WHERE indrelid = $1 AND (indisprimary OR indisreplident)
        ORDER BY indisreplident DESC LIMIT 1)
      ORDER BY k.ord`,
      [r.oid],
    );
    const columns: ColumnSchema[] = cols.rows.map((c) => {
      const known = KIND_BY_OID[c.scalar_oid];
      if (
        !known &&
        !TEXT_TYPES.has(c.scalar_name) &&
        !['e', 'c', 'r', 'm'].includes(c.scalar_typtype) &&
        !warned.has(c.scalar_name)
      ) {
        warned.add(c.scalar_name);
        console.warn(
          `walflow: column ${schema}.${name}.${c.attname} has type ${c.type}, which walflow does not know; it is ` +
            `carried as its Postgres text`,
        );
      }
      return {
        name: c.attname,
        type: c.type,
        typeOid: c.atttypid,
        kind: known ?? 'text',
        arrayDims: c.is_array ? Math.max(1, c.attndims) : 0,
        ...(c.enum_labels ? { enumLabels: c.enum_labels } : {}),
        ...(c.numeric_precision !== null ? { precision: c.numeric_precision, scale: c.numeric_scale ?? 0 } : {}),
        nullable: !c.attnotnull,
        typeMod: c.atttypmod,
        attnum: c.attnum,
        ...(c.has_default ? { hasDefault: true } : {}),
        ...(c.generated ? { generated: true } : {}),
      };
    });
    const identities: Record<string, TableSchema['replicaIdentity']> = {
      d: 'default',
      n: 'nothing',
      f: 'full',
      i: 'index',
    };
    const replicaIdentity = identities[r.relreplident] ?? 'default';
    let key = keyOrder.rows.map((k) => k.attname);
    if (key.length === 0 && replicaIdentity === 'full') key = columns.map((c) => c.name);
    const partitions = r.relkind === 'p' ? { partitions: await loadPartitions(client, r.oid) } : {};
    result.push({ schema, name, oid: Number(r.oid), columns, key, replicaIdentity, ...partitions });
  }
  return result;
}

/** The schemas of the pipeline's `tables` the source has by those names, and the tables it has no more by theirs. */
export async function loadPipelineSchemas(
  client: pg.Client,
  tables: string[],
): Promise<{ found: Record<string, TableSchema>; missing: { table: string; reason: string }[] }> {
  const found: Record<string, TableSchema> = {};
  const missing: { table: string; reason: string }[] = [];
  for (const table of tables) {
    try {
      found[table] = (await loadTableSchemas(client, [qualifyTable(table)]))[0]!;
    } catch (e) {
      if (!(e instanceof SchemaError)) throw e; // renamed or dropped since it was added
      missing.push({ table, reason: e.message });
    }
  }
  return { found, missing };
}

/** The leaf partitions of partitioned table `oid`, at any depth, each with its relfilenode (new after a TRUNCATE). */
export async function loadPartitions(client: pg.Client, oid: number): Promise<Record<string, number>> {
  const { rows } = await client.query<{ name: string; file: string }>(
    `SELECT n.nspname || '.' || c.relname AS name, c.relfilenode::text AS file
     FROM pg_partition_tree($1::oid::regclass) t JOIN pg_class c ON c.oid = t.relid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE t.isleaf ORDER BY 1`,
    [oid],
  );
  return Object.fromEntries(rows.map((r) => [r.name, Number(r.file)]));
}

/** The current "schema.name" of the table with this OID, or null once it is dropped. */
export async function tableNameByOid(client: pg.Client, oid: number): Promise<string | null> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace ` +
      `WHERE c.oid = $1`,
    [oid],
  );
  return rows[0]?.name ?? null;
}
