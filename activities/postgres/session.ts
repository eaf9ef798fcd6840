/**
 * Every walflow connection to a source speaks the same dialect: fixed session
 * settings, so backfill (COPY) and CDC (pgoutput) produce identical text for
 * the same value. User data is only ever read as text (COPY, `::text`,
 * pgoutput) and parsed by values.ts, never by pg's lossy default parsers.
 */
import pg from 'pg';
import { SESSION_SETTINGS } from '../../lib/model.ts';

/** `-c name=value` options, spaces escaped as libpq expects. */
export const sessionOptions = Object.entries({ ...SESSION_SETTINGS, bytea_output: 'hex' })
  .map(([k, v]) => `-c ${k}=${v.replace(/ /g, '\\ ')}`)
  .join(' ');

export function withSession(config: pg.ClientConfig): pg.ClientConfig {
  if (config.options?.includes(sessionOptions)) return config;
  return { ...config, options: [config.options, sessionOptions].filter(Boolean).join(' ') };
}

export async function connect(config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client(withSession(config));
  client.on('error', () => {
    /* surfaced by the next query */
  });
  await client.connect();
  return client;
}
