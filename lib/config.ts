/**
 * The pipeline config (walflow.yaml), validated once at the edge with zod.
 * Secrets are references ("env:NAME" or "file:/path"), never values: what
 * workflows receive is this config, and Temporal stores workflow inputs.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ErrorType } from './errors.ts';

/** A secret reference: `env:NAME` or `file:/path/to/secret`. */
export const SecretRef = z.string().regex(/^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$/, {
  message: 'must be a secret reference: "env:VAR_NAME" or "file:/path/to/file" (never the secret itself)',
});
export type SecretRef = z.infer<typeof SecretRef>;

const TableName = z.string().regex(/^[^.]+(\.[^.]+)?$/, { message: 'must be "table" or "schema.table"' });

export const SourceConfig = z.strictObject({
  /** Connection URL without a password; the password comes from `password`. */
  url: z.string().regex(/^postgres(ql)?:\/\//, { message: 'must be a postgres:// URL' })
    .refine((u) => !safeUrl(u)?.password, { message: 'must not contain a password: give it as source.password: "env:NAME"' }),
  password: SecretRef.optional(),
  publication: z.string().min(1),
  tables: z.array(TableName).min(1),
  /** Replication slot name; defaults to walflow_<pipeline id>. */
  slot: z.string().regex(/^[a-z0-9_]{1,63}$/, { message: 'slot names are lower-case letters, digits and _ (at most 63)' }).optional(),
  /** Create the publication if missing (then walflow owns it and drops it with the pipeline). */
  createPublication: z.boolean().default(true),
});

export const ClickHouseConfig = z.strictObject({
  type: z.literal('clickhouse'),
  url: z.string().url(),
  database: z.string().min(1).default('default'),
  username: z.string().optional(),
  password: SecretRef.optional(),
  /** Also create `<table>_live` views that read FINAL and hide deleted rows. */
  views: z.boolean().default(true),
});

export const SnowflakeConfig = z.strictObject({
  type: z.literal('snowflake'),
  account: z.string().min(1),
  username: z.string().min(1),
  password: SecretRef.optional(),
  privateKey: SecretRef.optional(),
  warehouse: z.string().min(1),
  database: z.string().min(1),
  schema: z.string().min(1).default('PUBLIC'),
  role: z.string().optional(),
  host: z.string().optional(),
  port: z.number().int().optional(),
  protocol: z.enum(['http', 'https']).optional(),
}).refine((c) => c.password || c.privateKey, { message: 'needs password or privateKey (a secret reference)' });

export const PostgresDestinationConfig = z.strictObject({
  type: z.literal('postgres'),
  url: z.string().regex(/^postgres(ql)?:\/\//, { message: 'must be a postgres:// URL' })
    .refine((u) => !safeUrl(u)?.password, { message: 'must not contain a password: give it as password: "env:NAME"' }),
  password: SecretRef.optional(),
  /** Schema that holds the replicated tables (created if missing). */
  schema: z.string().min(1).default('walflow'),
});

export const StdoutConfig = z.strictObject({ type: z.literal('stdout') });
export const NullConfig = z.strictObject({ type: z.literal('null') });

export const DestinationConfig = z.discriminatedUnion('type', [
  ClickHouseConfig, SnowflakeConfig, PostgresDestinationConfig, StdoutConfig, NullConfig,
]);

export const PipelineConfig = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,47}$/, { message: 'pipeline ids are lower-case letters, digits, - and _ (at most 48)' }),
  source: SourceConfig,
  destination: DestinationConfig,
  backfill: z.strictObject({
    parallelism: z.number().int().min(1).max(64).default(4),
    rowsPerRange: z.number().int().min(1000).default(250_000),
    batchRows: z.number().int().min(1).default(10_000),
  }).prefault({}),
  cdc: z.strictObject({
    flushIntervalMs: z.number().int().min(1).default(1000),
    maxBatchRows: z.number().int().min(1).default(10_000),
  }).prefault({}),
});

export const WalflowConfig = z.strictObject({
  temporal: z.strictObject({
    address: z.string().default('127.0.0.1:7233'),
    namespace: z.string().default('default'),
    taskQueue: z.string().default('walflow'),
  }).prefault({}),
  pipelines: z.array(PipelineConfig),
});

export type SourceConfig = z.infer<typeof SourceConfig>;
export type DestinationConfig = z.infer<typeof DestinationConfig>;
export type PipelineConfig = z.infer<typeof PipelineConfig>;
export type WalflowConfig = z.infer<typeof WalflowConfig>;

function safeUrl(u: string): URL | undefined {
  try { return new URL(u); } catch { return undefined; }
}

export class ConfigError extends Error {
  override name = ErrorType.Config;
}

/** Validates parsed config; errors name the bad key, e.g. `pipelines[0].source.publication`. */
export function parseConfig(input: unknown, origin = 'config'): WalflowConfig {
  const result = WalflowConfig.safeParse(input);
  if (result.success) {
    const ids = result.data.pipelines.map((p) => p.id);
    const dup = ids.find((id, i) => ids.indexOf(id) !== i);
    if (dup) throw new ConfigError(`${origin}: pipeline id "${dup}" is used twice`);
    return result.data;
  }
  const lines = result.error.issues.map((i) => `  ${formatPath(i.path)}: ${i.message}`);
  throw new ConfigError(`${origin} is invalid:\n${lines.join('\n')}`);
}

function formatPath(path: PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

export function loadConfig(file: string): WalflowConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as Error).message} (use --config to choose another file)`);
  }
  return parseConfig(parseYaml(text), file);
}

export function findPipeline(config: WalflowConfig, id: string): PipelineConfig {
  const p = config.pipelines.find((x) => x.id === id);
  if (!p) throw new ConfigError(`no pipeline "${id}" in config (known: ${config.pipelines.map((x) => x.id).join(', ') || 'none'})`);
  return p;
}
