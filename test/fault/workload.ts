/**
 * A seeded, reproducible workload: random transactions applied to Postgres and,
 * in step, to an in-memory model of what the tables must hold afterwards.
 * Inserts, updates (of keys too, and leaving a TOASTed column untouched),
 * deletes, truncates, multi-row and multi-table transactions, large
 * transactions and rollbacks. With `refused`, also a table `dates` that now and then gets a value
 * ClickHouse refuses ('infinity'), so the oracle sees that table stopped alone and nothing else lost.
 */
import type pg from 'pg';
import type { ShapeWorkload } from './shapes.ts';

export const WORKLOAD_SETUP = `
  CREATE TABLE accounts (id int8 PRIMARY KEY, owner text NOT NULL, balance numeric(20,2) NOT NULL, note text, big text);
  CREATE TABLE events (id int8 PRIMARY KEY, account int8, kind text NOT NULL, payload jsonb);`;

export const WORKLOAD_TABLES = ['accounts', 'events'];

/** The refused-values table: a date column, 'infinity' in a few rows (ClickHouse's Date32 cannot hold it). */
export const REFUSED_SETUP = 'CREATE TABLE dates (id int8 PRIMARY KEY, d date NOT NULL);';
export const REFUSED_TABLE = 'dates';
const FIXED_DATE = '2000-01-01';

/** mulberry32: small, fast, seedable. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type ModelRow = Record<string, string | null>;

export class Workload {
  readonly model: Map<string, Map<string, ModelRow>>;
  private nextId = 1;
  transactions = 0;
  changes = 0;
  rollbacks = 0;
  private readonly random: () => number;

  constructor(
    seed: number,
    private readonly refused = false,
    /** Also writes to the tables whose shape changes (their rows are checked against Postgres, not the model). */
    private readonly shapes?: ShapeWorkload,
  ) {
    this.random = rng(seed);
    this.model = new Map([...WORKLOAD_TABLES, ...(refused ? [REFUSED_TABLE] : [])].map((t) => [t, new Map()]));
  }

  /** Rows the model holds with a refused value (committed). */
  get refusedRows(): number {
    return [...(this.model.get(REFUSED_TABLE)?.values() ?? [])].filter((r) => r.d === 'infinity').length;
  }

  /** The operator's fix: the refused values replaced in the source (and the model). */
  async fixRefused(client: pg.Client): Promise<void> {
    await client.query(`UPDATE dates SET d = '${FIXED_DATE}' WHERE d = 'infinity'`);
    for (const r of this.model.get(REFUSED_TABLE)?.values() ?? []) if (r.d === 'infinity') r.d = FIXED_DATE;
  }

  private pick<T>(items: T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  /** The initial rows (backfilled), inserted in one statement per table. */
  async seed(client: pg.Client, rows: number): Promise<void> {
    await client.query(
      `INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.25, NULL,
        CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 400) END
      FROM generate_series(1, $1::int) g`,
      [rows],
    );
    await client.query(
      `INSERT INTO events SELECT g, g, 'open', jsonb_build_object('n', g) FROM generate_series(1, $1::int) g`,
      [rows],
    );
    const accounts = await client.query<ModelRow>(
      `SELECT id::text, owner, balance::text, note, md5(big) AS big FROM accounts`,
    );
    for (const r of accounts.rows) this.model.get('accounts')!.set(r.id!, r);
    const events = await client.query<ModelRow>(`SELECT id::text, account::text, kind, payload::text FROM events`);
    for (const r of events.rows) this.model.get('events')!.set(r.id!, r);
    this.nextId = rows + 1;
  }

  /** One random transaction, committed (or rolled back) in Postgres and applied to the model. */
  async step(client: pg.Client): Promise<void> {
    const staged = new Map<string, Map<string, ModelRow>>([...this.model].map(([t, m]) => [t, new Map(m)]));
    const statements: [string, unknown[]][] = [];
    const ops = this.random() < 0.05 ? 500 : 1 + Math.floor(this.random() * 5);
    for (let i = 0; i < ops; i++) this.operation(staged, statements);
    if (this.shapes && this.random() < 0.5) statements.push(...this.shapes.statements());
    const rollback = this.random() < 0.05;
    await client.query('BEGIN');
    try {
      for (const [sql, params] of statements) await client.query(sql, params);
      await client.query(rollback ? 'ROLLBACK' : 'COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
    this.transactions++;
    if (rollback) {
      this.rollbacks++;
      return;
    }
    this.changes += statements.length;
    for (const [t, m] of staged) this.model.set(t, m);
  }

  private operation(staged: Map<string, Map<string, ModelRow>>, out: [string, unknown[]][]): void {
    const accounts = staged.get('accounts')!;
    const events = staged.get('events')!;
    const some = (m: Map<string, ModelRow>) => {
      const ids = [...m.keys()];
      return ids.length ? this.pick(ids) : undefined;
    };
    if (this.refused && this.random() < 0.1) {
      const id = String(this.nextId++);
      // Rarely a value the destination refuses; else one it holds (its changes must keep arriving until then).
      const d =
        this.random() < 0.02 ? 'infinity' : `2024-01-${String(1 + Math.floor(this.random() * 28)).padStart(2, '0')}`;
      out.push(['INSERT INTO dates (id, d) VALUES ($1, $2)', [id, d]]);
      staged.get(REFUSED_TABLE)!.set(id, { id, d });
      return;
    }
    const r = this.random();
    if (r < 0.35) {
      const id = String(this.nextId++);
      const balance = (Math.floor(this.random() * 1e6) / 100).toFixed(2);
      out.push([
        'INSERT INTO accounts (id, owner, balance, note) VALUES ($1, $2, $3, $4)',
        [id, `owner ${id}`, balance, 'new'],
      ]);
      accounts.set(id, { id, owner: `owner ${id}`, balance, note: 'new', big: null });
      out.push([
        'INSERT INTO events (id, account, kind, payload) VALUES ($1, $1, $2, $3)',
        [id, 'open', JSON.stringify({ n: Number(id) })],
      ]);
      events.set(id, { id, account: id, kind: 'open', payload: `{"n": ${id}}` });
    } else if (r < 0.65) {
      const id = some(accounts);
      if (!id) return;
      // Leaves `big` (TOASTed on some rows) untouched: Postgres sends it as unchanged.
      const note = `note ${Math.floor(this.random() * 1000)}`;
      const balance = (Math.floor(this.random() * 1e6) / 100).toFixed(2);
      out.push(['UPDATE accounts SET note = $2, balance = $3 WHERE id = $1', [id, note, balance]]);
      accounts.set(id, { ...accounts.get(id)!, note, balance });
    } else if (r < 0.72) {
      const id = some(accounts);
      if (!id) return;
      const moved = String(this.nextId++);
      out.push(['UPDATE accounts SET id = $2 WHERE id = $1', [id, moved]]); // a primary-key change
      accounts.set(moved, { ...accounts.get(id)!, id: moved });
      accounts.delete(id);
    } else if (r < 0.9) {
      const id = some(events);
      if (!id) return;
      out.push(['DELETE FROM events WHERE id = $1', [id]]);
      events.delete(id);
    } else if (r < 0.999) {
      const id = some(accounts);
      if (!id) return;
      out.push(['DELETE FROM accounts WHERE id = $1', [id]]);
      accounts.delete(id);
    } else {
      out.push(['TRUNCATE events', []]);
      events.clear();
    }
  }

  /** Differences between the model and what Postgres holds (the workload's own check). */
  async diffSource(client: pg.Client): Promise<string[]> {
    const actual = new Map<string, Map<string, ModelRow>>([
      [
        'accounts',
        new Map(
          (
            await client.query<ModelRow>(`SELECT id::text, owner, balance::text, note, md5(big) AS big FROM accounts`)
          ).rows.map((r) => [r.id!, r]),
        ),
      ],
      [
        'events',
        new Map(
          (await client.query<ModelRow>(`SELECT id::text, account::text, kind, payload::text FROM events`)).rows.map(
            (r) => [r.id!, r],
          ),
        ),
      ],
    ]);
    if (this.refused)
      actual.set(
        REFUSED_TABLE,
        new Map((await client.query<ModelRow>('SELECT id::text, d::text FROM dates')).rows.map((r) => [r.id!, r])),
      );
    const diffs: string[] = [];
    for (const [t, m] of this.model) {
      const a = actual.get(t)!;
      for (const [id, row] of m)
        if (JSON.stringify(a.get(id)) !== JSON.stringify(row))
          diffs.push(`${t} ${id}: model ${JSON.stringify(row)} postgres ${JSON.stringify(a.get(id))}`);
      for (const id of a.keys()) if (!m.has(id)) diffs.push(`${t} ${id}: only in postgres`);
    }
    return diffs;
  }
}
