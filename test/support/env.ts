/**
 * What integration tests get from the harness (test/run.ts sets these from the
 * running stack): a superuser URL of a Postgres with wal_level=logical, and the
 * Temporal address. Each test creates its own database so files never collide.
 */
import pg from 'pg';
import { randomBytes } from 'node:crypto';

export function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with "npm test", which starts the stack and sets it`);
  return v;
}

/** Superuser URL of the stack's Postgres (the primary version). */
export const pgAdminUrl = (): string => requireEnv('WALFLOW_PG_URL');

/** URLs of every Postgres major the suite runs CDC tests against (primary first). */
export function pgAdminUrls(): string[] {
  const extra = (process.env.WALFLOW_PG_EXTRA_URLS ?? '').split(',').filter(Boolean);
  return [pgAdminUrl(), ...extra];
}

export const temporalAddress = (): string => requireEnv('WALFLOW_TEMPORAL_ADDRESS');

export interface TestDatabase {
  name: string;
  url: string;
  /** Drops the database after dropping its replication slots. */
  drop(): Promise<void>;
}

export async function createTestDatabase(prefix: string, adminUrl = pgAdminUrl()): Promise<TestDatabase> {
  const name = `${prefix.replace(/[^a-z0-9_]/g, '_')}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        const deadline = Date.now() + 10_000;
        for (;;) {
          const { rows } = await c.query('SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = $1', [
            name,
          ]);
          for (const r of rows) if (r.active_pid) await c.query('SELECT pg_terminate_backend($1)', [r.active_pid]);
          const left = [];
          for (const r of rows) {
            try {
              await c.query('SELECT pg_drop_replication_slot($1)', [r.slot_name]);
            } catch {
              left.push(r.slot_name);
            }
          }
          if (left.length === 0 || Date.now() > deadline) break;
          await new Promise((res) => setTimeout(res, 200));
        }
        await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * A Snowflake destination config (as a user writes it) for tests, in its own schema: the stack's
 * emulator, or the real Snowflake named by SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER, SNOWFLAKE_PASSWORD,
 * SNOWFLAKE_WAREHOUSE, SNOWFLAKE_DATABASE (and SNOWFLAKE_ROLE).
 */
export function snowflakeTestDestination(schema: string): Record<string, unknown> {
  if (process.env.SNOWFLAKE_ACCOUNT) {
    return {
      type: 'snowflake',
      account: process.env.SNOWFLAKE_ACCOUNT,
      username: requireEnv('SNOWFLAKE_USER'),
      password: 'env:SNOWFLAKE_PASSWORD',
      warehouse: requireEnv('SNOWFLAKE_WAREHOUSE'),
      database: requireEnv('SNOWFLAKE_DATABASE'),
      schema,
      ...(process.env.SNOWFLAKE_ROLE ? { role: process.env.SNOWFLAKE_ROLE } : {}),
    };
  }
  const url = new URL(requireEnv('WALFLOW_SNOWFLAKE_URL'));
  process.env.WALFLOW_TEST_SNOWFLAKE_PASSWORD ??= 'emulator-accepts-any';
  return {
    type: 'snowflake',
    account: 'walflow',
    username: 'walflow',
    password: 'env:WALFLOW_TEST_SNOWFLAKE_PASSWORD',
    warehouse: 'FAKESNOW_WAREHOUSE',
    database: 'WALFLOW_TEST',
    schema,
    host: url.hostname,
    port: Number(url.port),
    protocol: url.protocol.replace(':', ''),
  };
}
