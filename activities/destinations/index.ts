/** Builds the configured destination inside the worker, resolving its secret references here and only here. */
import { join } from 'node:path';
import { isSecretRef, type DestinationConfig, type PipelineConfig } from '../../lib/config.ts';
import { compileRules } from '../../lib/rules.ts';
import type { Destination } from './destination.ts';
import { resolveSecret } from '../../lib/secrets.ts';
import { ClickHouseDestination } from './clickhouse.ts';
import { NullDestination } from './null.ts';
import { StdoutDestination } from './stdout.ts';
import { PostgresDestination } from './postgres.ts';
import { parseIntoClientConfig } from 'pg-connection-string';
import { postgresConnection } from '../source.ts';
import { labelError } from '../../lib/errors.ts';
import { Envelopes } from './envelopes.ts';
import { FileDestination } from './file.ts';
import { WebhookDestination } from './webhook.ts';
import { RuledDestination } from './ruled.ts';

/** The pipeline's destination behind its rules (filters, transforms, renames), resolving hash salts here. */
export async function pipelineDestination(pipeline: PipelineConfig): Promise<Destination> {
  const destination = await createDestination(pipeline.destination, { pipeline: pipeline.id });
  return pipeline.rules
    ? new RuledDestination(
        destination,
        compileRules(pipeline, (ref) => resolveSecret(ref)!),
      )
    : destination;
}

/** What a destination knows of the pipeline it serves (stream destinations put its id in every envelope). */
export interface DestinationContext {
  pipeline: string;
}

/**
 * The destination, its failures prefixed with which destination it is (`destination clickhouse http://…: …`):
 * every method that returns a promise is labelled, whatever the destination adds (the object stays itself).
 */
export async function createDestination(config: DestinationConfig, context: DestinationContext): Promise<Destination> {
  const destination = await openDestination(config, context);
  const where = describeDestination(config);
  return new Proxy(destination, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result = value.apply(target, args);
        return result instanceof Promise
          ? result.catch((e: unknown) => {
              throw labelError(e, where);
            })
          : result;
      };
    },
  });
}

/** Which destination, for error messages: never a secret (URLs carry none; passwords are references). */
export function describeDestination(config: DestinationConfig): string {
  switch (config.type) {
    case 'clickhouse':
      return `destination clickhouse ${config.url}`;
    case 'snowflake':
      return (
        `destination ` +
        `snowflake ${config.host ? `${config.host}${config.port ? `:${config.port}` : ''}` : config.account}`
      );
    case 'postgres': {
      const c = parseIntoClientConfig(config.url);
      return `destination postgres ${c.host ?? 'localhost'}:${c.port ?? 5432}/${c.database ?? ''}`;
    }
    default:
      return `destination ${config.type}`;
  }
}

async function openDestination(config: DestinationConfig, context: DestinationContext): Promise<Destination> {
  switch (config.type) {
    case 'null':
      return new NullDestination();
    case 'stdout':
      return new StdoutDestination(config.format === 'envelope' ? new Envelopes(context.pipeline) : undefined);
    case 'file':
      return new FileDestination(
        {
          dir: join(config.path, context.pipeline),
          split: config.split,
          maxBytes: config.maxBytes,
          maxAgeMs: config.maxAgeSeconds * 1000,
          gzip: config.gzip,
        },
        new Envelopes(context.pipeline),
      );
    case 'webhook':
      return new WebhookDestination(
        {
          url: config.url,
          format: config.format,
          secret: resolveSecret(config.secret),
          timeoutMs: config.timeoutMs,
          maxBatchChanges: config.maxBatchChanges,
          retries: config.retries,
          headers: Object.fromEntries(
            Object.entries(config.headers).map(([k, v]) => [k, isSecretRef(v) ? resolveSecret(v)! : v]),
          ),
        },
        new Envelopes(context.pipeline),
      );
    case 'nats': {
      const { NatsDestination } = await import('./nats.ts');
      const { type: _, token, password, ...opts } = config;
      return new NatsDestination(
        { ...opts, token: resolveSecret(token), password: resolveSecret(password) },
        new Envelopes(context.pipeline),
      );
    }
    case 'clickhouse':
      return new ClickHouseDestination({
        url: config.url,
        database: config.database,
        username: config.username,
        password: resolveSecret(config.password),
        views: config.views,
        onUnrepresentable: config.onUnrepresentable,
      });
    case 'snowflake': {
      // Loaded on demand: the Snowflake driver is heavy and only its users should pay for it.
      const { SnowflakeDestination } = await import('./snowflake.ts');
      return new SnowflakeDestination({
        account: config.account,
        username: config.username,
        warehouse: config.warehouse,
        database: config.database,
        schema: config.schema,
        role: config.role,
        host: config.host,
        port: config.port,
        protocol: config.protocol,
        password: config.password && resolveSecret(config.password),
        privateKey: config.privateKey && resolveSecret(config.privateKey),
      });
    }
    case 'postgres':
      return new PostgresDestination({
        connection: postgresConnection(config.url, config.password),
        schema: config.schema,
      });
    case 'duckdb': {
      // Loaded on demand: the DuckDB engine is a large native library.
      const { DuckDBDestination } = await import('./duckdb.ts');
      return new DuckDBDestination({ path: config.path, token: resolveSecret(config.token), schema: config.schema });
    }
    default:
      throw new Error(`destination type "${(config as { type: string }).type}" is not available in this build`);
  }
}
