/** Builds the configured destination inside the worker, resolving its secret references here and only here. */
import type { DestinationConfig } from '../../lib/config.ts';
import type { Destination } from './destination.ts';
import { resolveSecret } from '../../lib/secrets.ts';
import { ClickHouseDestination } from './clickhouse.ts';
import { NullDestination } from './null.ts';
import { StdoutDestination } from './stdout.ts';
import { PostgresDestination } from './postgres.ts';
import { postgresConnection } from '../source.ts';

export async function createDestination(config: DestinationConfig): Promise<Destination> {
  switch (config.type) {
    case 'null':
      return new NullDestination();
    case 'stdout':
      return new StdoutDestination();
    case 'clickhouse':
      return new ClickHouseDestination({
        url: config.url, database: config.database, username: config.username, password: resolveSecret(config.password), views: config.views,
      });
    case 'postgres':
      return new PostgresDestination({ connection: postgresConnection(config.url, config.password), schema: config.schema });
    default:
      throw new Error(`destination type "${config.type}" is not available in this build`);
  }
}
