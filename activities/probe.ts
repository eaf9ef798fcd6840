/**
 * A read-only look at a source Postgres: proves a worker can reach it, and reports what preflight cares about first.
 */
import { connect } from './postgres/session.ts';

export interface SourceProbe {
  serverVersion: string;
  walLevel: string;
  database: string;
}

export async function probeSource(url: string): Promise<SourceProbe> {
  const client = await connect({ connectionString: url });
  try {
    const { rows } = await client.query<{ server_version: string; wal_level: string; db: string }>(
      "SELECT current_setting('server_version') AS server_version, current_setting('wal_level') AS wal_level, " +
        'current_database() AS db',
    );
    const r = rows[0]!;
    return { serverVersion: r.server_version, walLevel: r.wal_level, database: r.db };
  } finally {
    await client.end();
  }
}
