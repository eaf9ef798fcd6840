/** The benchmark tables and change workloads (SQL run in the bench database). */

export interface BenchTable {
  name: string;
  columns: number;
  create: string;
  /** Fills the table with `rows` rows. */
  fill: (rows: number) => string;
}

/** Columns of the wide table: the id, then int8, text, numeric, timestamptz, float8, jsonb in turn (29 more). */
const WIDE_KINDS = [
  ['int8', 'g * 31'],
  ['text', `'text ' || g`],
  ['numeric(18,4)', 'g / 13.0'],
  ['timestamptz', `now() - g * interval '1 second'`],
  ['float8', 'g / 3.0'],
  ['jsonb', `jsonb_build_object('g', g)`],
] as const;
const wide = Array.from({ length: 29 }, (_, i) => ({
  name: `c${i + 1}`,
  type: WIDE_KINDS[i % WIDE_KINDS.length]![0],
  expr: WIDE_KINDS[i % WIDE_KINDS.length]![1],
}));

export const TABLES: Record<string, BenchTable> = {
  // The issue's table: int8 key, text, numeric, timestamptz, jsonb.
  bf: {
    name: 'bf',
    columns: 5,
    create: 'CREATE TABLE bf (id int8 PRIMARY KEY, name text, amount numeric(14,4), at timestamptz, doc jsonb)',
    fill: (n) => `INSERT INTO bf SELECT g, 'name ' || g, g / 7.0, now() - g * interval '1 second',
      jsonb_build_object('g', g, 'tag', 'x' || (g % 100)) FROM generate_series(1, ${n}) g`,
  },
  // 16 columns of mixed types in the spirit of the "firenibble" table of the public initial-load
  // benchmarks (its exact DDL is not published with them; this is walflow's rendition).
  firenibble: {
    name: 'firenibble',
    columns: 16,
    create: `CREATE TABLE firenibble (id int8 PRIMARY KEY, f1 int4, f2 int8, f3 numeric(18,6), f4 float8, f5 bool,
      f6 text, f7 varchar(64), f8 date, f9 timestamp, f10 timestamptz, f11 uuid, f12 jsonb, f13 bytea, f14 text,
      f15 int2)`,
    fill: (n) => `INSERT INTO firenibble SELECT g, g % 100000, g * 1000, g / 11.0, g / 7.0, g % 2 = 0, md5(g::text),
      'v' || g, '2020-01-01'::date + g % 2000, '2020-01-01'::timestamp + g * interval '1 second', now() - g *
        interval '1 second',
      md5(g::text)::uuid, jsonb_build_object('a', g, 'b', 'x' || g % 10), decode(md5(g::text), 'hex'), repeat('z', g
        % 40), (g % 1000)::int2
      FROM generate_series(1, ${n}) g`,
  },
  wide: {
    name: 'wide',
    columns: 30,
    create: `CREATE TABLE wide (id int8 PRIMARY KEY, ${wide.map((c) => `${c.name} ${c.type}`).join(', ')})`,
    fill: (n) => `INSERT INTO wide SELECT g, ${wide.map((c) => c.expr).join(', ')} FROM generate_series(1, ${n}) g`,
  },
};

/** The CDC table: rows inserted, updated and deleted by the workloads below. */
export const CDC_TABLE = 'CREATE TABLE cdc (id int8 PRIMARY KEY, name text, amount numeric(14,4), at timestamptz)';

/**
 * A steady insert/update/delete mix: `transactions` transactions of 500 inserts, 300 updates and 200
 * deletes each (1,000 changes), on ids that grow, run as one DO block. Returns its change count.
 */
export function mixWorkload(transactions: number): { sql: string; changes: number } {
  return {
    changes: transactions * 1000,
    sql: `DO $$ BEGIN FOR t IN 0..${transactions - 1} LOOP
        INSERT INTO cdc SELECT g, 'name ' || g, g / 7.0, now() FROM generate_series(t * 500 + 1, t * 500 + 500) g;
        UPDATE cdc SET amount = amount + 1 WHERE id > t * 500 AND id <= t * 500 + 300;
        DELETE FROM cdc WHERE id > t * 500 + 300 AND id <= t * 500 + 500;
        COMMIT;
      END LOOP; END $$`,
  };
}

/** One transaction of `rows` inserts. */
export const bigTransaction = (rows: number): string =>
  `INSERT INTO cdc SELECT g, 'big ' || g, g / 7.0, now() FROM generate_series(1000000001, ${1_000_000_000 + rows}) g`;
