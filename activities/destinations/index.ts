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
    case 'snowflake': {
      // Loaded on demand: the Snowflake driver is heavy and only its users should pay for it.
      const { SnowflakeDestination } = await import('./snowflake.ts');
      return new SnowflakeDestination({
        account: config.account, username: config.username, warehouse: config.warehouse, database: config.database, schema: config.schema,
        role: config.role, host: config.host, port: config.port, protocol: config.protocol,
        password: config.password && resolveSecret(config.password), privateKey: config.privateKey && resolveSecret(config.privateKey),
      });
    }
    case 'postgres':
      return new PostgresDestination({ connection: postgresConnection(config.url, config.password), schema: config.schema });
    case 'duckdb': {
      // Loaded on demand: the DuckDB engine is a large native library.
      const { DuckDBDestination } = await import('./duckdb.ts');
      return new DuckDBDestination({ path: config.path, token: config.token && resolveSecret(config.token), schema: config.schema });
    }
    default:
      throw new Error(`destination type "${(config as { type: string }).type}" is not available in this build`);
  }
}
