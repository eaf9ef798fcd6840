/** Source connection settings, with the password resolved from its reference inside the worker. */
import type pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import type { SourceConfig } from '../lib/config.ts';
import { resolveSecret } from '../lib/secrets.ts';
import { withSession } from './postgres/session.ts';

/**
 * Connection settings for a Postgres URL plus a password reference. The URL is parsed into fields
 * (pg would let an absent URL password override the one given beside it).
 */
export function postgresConnection(url: string, password: string | undefined): pg.ClientConfig {
  const config = parseIntoClientConfig(url);
  const secret = resolveSecret(password);
  return secret === undefined ? config : { ...config, password: secret };
}

/** Settings for every source connection, with walflow's session dialect (see postgres/session.ts). */
export function sourceConnection(source: SourceConfig): pg.ClientConfig {
  return withSession(postgresConnection(source.url, source.password));
}

export { slotName } from '../lib/config.ts';
