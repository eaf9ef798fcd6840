/**
 * Shape changes for the soak (`--shapes`): while the workload runs, a table `shaped` has columns added,
 * widened, renamed and dropped, a column added with a default and a generated one (both re-copied by
 * walflow itself), and a partitioned table `parted` gets partitions attached pre-filled, detached and
 * truncated, and a table `moved` is renamed now and then (walflow stops it; the harness does the
 * operator's way out: remove it, add it under its new name). Its rows are written alongside the workload's, by whatever columns the catalog has then;
 * the oracle is the destination against Postgres (these tables are not in the workload's model). Each
 * operation is tried once: one lost to a fault is skipped, and the next starts from the catalog.
 */
import type pg from 'pg';

export const SHAPED_TABLES = ['shaped', 'parted', 'moved'];

const REGIONS = ['r0', 'r1', 'r2'];
export const SHAPES_SETUP = `
  CREATE TABLE shaped (id int8 PRIMARY KEY, n int2, label varchar(8), amount numeric(8,2), qty int4,
    twice int8 GENERATED ALWAYS AS (qty::int8 * 2) STORED);
  INSERT INTO shaped (id, n, label, amount, qty) SELECT g, g % 100, 'l' || g % 1000, g % 1000 + 0.25, g
    FROM generate_series(1, 500) g;
  CREATE TABLE parted (id int8, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
  ${REGIONS.map((r) => `CREATE TABLE parted_${r} PARTITION OF parted FOR VALUES IN ('${r}');`).join('\n  ')}
  INSERT INTO parted SELECT g, 'r' || g % 3, 'v' || g FROM generate_series(1, 300) g;
  CREATE TABLE moved (id int8 PRIMARY KEY, v text);
  INSERT INTO moved SELECT g, 'v' || g FROM generate_series(1, 200) g;`;

/** A partition to attach: created and filled in one transaction, attached in the next (its rows are in no WAL). */
const attach = (k: number): string[] => [
  `CREATE TABLE parted_a${k} (id int8, region text, v text, PRIMARY KEY (id, region));
   INSERT INTO parted_a${k} SELECT g, 'a${k}', 'filled before the attach' FROM generate_series(1, 25) g`,
  `ALTER TABLE parted ATTACH PARTITION parted_a${k} FOR VALUES IN ('a${k}')`,
];

/** The operations, in order; after the last, partitions and columns keep coming with fresh names. */
function operation(i: number): string[] {
  const fixed = [
    ['ALTER TABLE shaped ADD COLUMN c0 text'],
    ['ALTER TABLE shaped ALTER n TYPE int4'],
    ...attach(0).map((s) => [s]),
    ['ALTER TABLE shaped ALTER label TYPE varchar(32)'],
    ['ALTER TABLE shaped RENAME COLUMN c0 TO c0r'],
    ['ALTER TABLE parted DETACH PARTITION parted_r1'],
    ['ALTER TABLE shaped ALTER amount TYPE numeric(12,2)'],
    ['ALTER TABLE shaped ALTER n TYPE int8'],
    ['TRUNCATE parted_r2'],
    ['ALTER TABLE shaped DROP COLUMN c0r'],
    ['ALTER TABLE shaped ADD COLUMN d0 int NOT NULL DEFAULT 5'],
    ['ALTER TABLE moved RENAME TO moved_r0'],
    ['ALTER TABLE shaped ADD COLUMN g0 int8 GENERATED ALWAYS AS (id * 3) STORED'],
  ];
  if (i < fixed.length) return fixed[i]!;
  const k = Math.floor((i - fixed.length) / 5) + 1;
  return [
    [`ALTER TABLE shaped ADD COLUMN c${k} text`],
    attach(k),
    [`ALTER TABLE shaped RENAME COLUMN c${k} TO c${k}r`],
    [`TRUNCATE parted_a${k}`],
    [`ALTER TABLE moved_r${k - 1} RENAME TO moved_r${k}`],
  ][(i - fixed.length) % 5]!;
}

interface Column {
  name: string;
  type: string;
}

export class ShapeWorkload {
  /** Shape changes are made once this is set (the harness sets it when the backfill is done). */
  active = false;
  private nextChangeAt = 0;
  operations = 0;
  /** Tables the harness resynced after a shape change stopped them. */
  resyncs = 0;
  private next = 0;
  private nextId = 100_000;
  private columns: Column[] = [];
  private regions: string[] = [];
  /** The renamed table's name now. */
  private moved = 'moved';

  /**
   * One change to the renamed table under its current name: walflow notices a rename with the table's next
   * change, so a rename just before the end gets one.
   */
  async touchMoved(client: pg.Client): Promise<void> {
    await this.refresh(client);
    await client.query(`UPDATE "${this.moved}" SET v = v || '.' WHERE id = (SELECT min(id) FROM "${this.moved}")`);
  }

  /** The renamed table's name in the catalog now, as the pipeline names it. */
  async movedTable(client: pg.Client): Promise<string> {
    await this.refresh(client);
    return `public.${this.moved}`;
  }
  /** The pipeline's names of the shaped tables (the harness renames `moved` there as the operator would). */
  readonly tables = [...SHAPED_TABLES];

  constructor(private readonly random: () => number) {}

  /** What the catalog has now: after a shape change, and after any failed transaction. */
  async refresh(client: pg.Client): Promise<void> {
    const cols = await client.query<Column>(
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
       WHERE attrelid = 'shaped'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    );
    this.columns = cols.rows;
    const parts = await client.query<{ region: string }>(
      `SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM '''(.*)''') AS region
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'parted'::regclass`,
    );
    this.regions = parts.rows.map((r) => r.region);
    const moved = await client.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class WHERE relname ~ '^moved(_r[0-9]+)?$' AND relkind = 'r'`,
    );
    this.moved = moved.rows[0]?.name ?? this.moved;
  }

  /** The next shape change, every 2–8 s (its own transactions); true if one was tried. */
  async maybeChange(client: pg.Client, log: (line: string) => void): Promise<boolean> {
    if (!this.active || Date.now() < this.nextChangeAt) return false;
    this.nextChangeAt = Date.now() + 2000 + this.random() * 6000;
    const statements = operation(this.next++);
    for (const sql of statements) {
      try {
        await client.query(sql);
        this.operations++;
        log(`shape change: ${sql.split('\n')[0]}`);
      } catch (e) {
        log(`shape change skipped (${(e as Error).message}): ${sql.split('\n')[0]}`);
        break;
      }
    }
    await this.refresh(client);
    return true;
  }

  /** A few writes to the shaped tables, for the workload's transaction to carry. */
  statements(): [string, unknown[]][] {
    const out: [string, unknown[]][] = [];
    if (!this.columns.length) return out;
    const r = this.random();
    const id = r < 0.4 ? this.nextId++ : 1 + Math.floor(this.random() * 500);
    const values = this.columns.filter((c) => c.name !== 'id').map((c) => [c.name, this.value(c)] as const);
    const names = values.map(([n]) => `"${n}"`);
    if (r < 0.4)
      out.push([
        `INSERT INTO shaped (id, ${names.join(', ')}) VALUES ($1, ${values.map((_, i) => `$${i + 2}`).join(', ')})`,
        [id, ...values.map(([, v]) => v)],
      ]);
    else if (r < 0.9)
      out.push([
        `UPDATE shaped SET ${names.map((n, i) => `${n} = $${i + 2}`).join(', ')} WHERE id = $1`,
        [id, ...values.map(([, v]) => v)],
      ]);
    else out.push(['DELETE FROM shaped WHERE id = $1', [id]]);
    if (this.regions.length) {
      const region = this.regions[Math.floor(this.random() * this.regions.length)]!;
      const key = 1 + Math.floor(this.random() * 400);
      out.push([
        'INSERT INTO parted (id, region, v) VALUES ($1, $2, $3) ON CONFLICT (id, region) DO UPDATE SET v = $3',
        [key, region, `v ${Math.floor(this.random() * 1e6)}`],
      ]);
      if (this.random() < 0.2) out.push(['DELETE FROM parted WHERE id = $1', [key]]);
    }
    const key = 1 + Math.floor(this.random() * 300);
    out.push(
      this.random() < 0.8
        ? [
            `INSERT INTO "${this.moved}" (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = $2`,
            [key, `v ${Math.floor(this.random() * 1e6)}`],
          ]
        : [`DELETE FROM "${this.moved}" WHERE id = $1`, [key]],
    );
    return out;
  }

  /** A value that fits the column's type as it is now (wider once widened). */
  private value(c: Column): string | number | null {
    const x = this.random();
    if (x < 0.1) return c.name === 'd0' ? 5 : null;
    if (c.type === 'smallint') return Math.floor(x * 30_000);
    if (c.type === 'integer') return Math.floor(x * 2_000_000_000);
    if (c.type === 'bigint') return (BigInt(Math.floor(x * 1e9)) * 9_000_000_000n).toString();
    if (c.type.startsWith('numeric')) {
      const digits = c.type === 'numeric(8,2)' ? 1e5 : 1e9;
      return (Math.floor(x * digits * 100) / 100).toFixed(2);
    }
    if (c.type.startsWith('character varying'))
      return `v${Math.floor(x * 1e6)}`.slice(0, c.type.includes('32') ? 20 : 8);
    return `t ${Math.floor(x * 1e6)}`;
  }
}
