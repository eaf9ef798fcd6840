/**
 * The table each source table becomes in a destination: "table" for public, else "schema_table"
 * (Snowflake then upper-cases plain names). The mapping is not injective (x.y_z and x_y.z meet at
 * x_y_z), so a pipeline naming two tables that meet is refused at preflight (and by `walflow check`).
 */
import type { TableId } from '../../lib/model.ts';
import { targetName } from './versioned.ts';

/**
 * Plain lower-case Postgres names become Snowflake's upper case, so analysts query them unquoted; others keep their
 * spelling.
 */
export const snowflakeName = (name: string): string => (/^[a-z_][a-z0-9_$]*$/.test(name) ? name.toUpperCase() : name);

/** The destination table of `t` for a destination type. */
export function destinationTableName(type: string, t: TableId): string {
  return type === 'snowflake' ? snowflakeName(targetName(t)) : targetName(t);
}

/**
 * Destinations writing one table per source table, one row per key: their table names must not collide, and a
 * keyless table's identical rows would collapse. (Stream destinations such as stdout pass changes on as they are.)
 */
export const TABLE_DESTINATIONS = new Set(['clickhouse', 'snowflake', 'postgres', 'duckdb']);

/** One failure per destination table two or more source tables would share. */
export function tableNameCollisions(type: string, tables: TableId[]): string[] {
  const byName = new Map<string, string[]>();
  for (const t of tables) {
    const name = destinationTableName(type, t);
    byName.set(name, [...(byName.get(name) ?? []), `${t.schema}.${t.name}`]);
  }
  return [...byName]
    .filter(([, sources]) => sources.length > 1)
    .map(
      ([name, sources]) =>
        `tables ${sources.join(' and ')} would both be written to ${type} table ${name}: keep one of them in this ` +
        `pipeline and give the other a pipeline with its own destination database/schema`,
    );
}
