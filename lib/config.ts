/**
 * The pipeline config (walflow.yaml), validated with zod at the edge and again by the workflows
 * themselves (their input is this config). Pure: no node:fs, no YAML (config-file.ts reads the file),
 * so the workflow bundle can import it.
 * Secrets are references ("env:NAME" or "file:/path"), never values: what
 * workflows receive is this config, and Temporal stores workflow inputs.
 */
import { z } from 'zod';
import { ErrorType } from './errors.ts';

/** A secret reference: `env:NAME` or `file:/path/to/secret`. */
export const SecretRef = z.string().regex(/^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$/, {
  message: 'must be a secret reference: "env:VAR_NAME" or "file:/path/to/file" (never the secret itself)',
});
export type SecretRef = z.infer<typeof SecretRef>;
export const isSecretRef = (value: string): boolean => SecretRef.safeParse(value).success;

const TableName = z.string().regex(/^[^.]+(\.[^.]+)?$/, { message: 'must be "table" or "schema.table"' });

export const SourceConfig = z.strictObject({
  /** Connection URL without a password; the password comes from `password`. */
  url: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { message: 'must be a postgres:// URL' })
    .refine((u) => !safeUrl(u)?.password, {
      message: 'must not contain a password: give it as source.password: "env:NAME"',
    }),
  password: SecretRef.optional(),
  publication: z.string().min(1),
  tables: z.array(TableName).min(1),
  /** Replication slot name; defaults to walflow_<pipeline id>. */
  slot: z
    .string()
    .regex(/^[a-z0-9_]{1,63}$/, { message: 'slot names are lower-case letters, digits and _ (at most 63)' })
    .optional(),
  /** Create the publication if missing (then walflow owns it and drops it with the pipeline). */
  createPublication: z.boolean().default(true),
});

/** What the ClickHouse destination does with a value it cannot hold (README, Troubleshooting: onUnrepresentable). */
export const Unrepresentable = z.enum(['fail', 'null', 'clamp', 'text']);
export type Unrepresentable = z.infer<typeof Unrepresentable>;

export const ClickHouseConfig = z.strictObject({
  type: z.literal('clickhouse'),
  url: z.string().url(),
  database: z.string().min(1).default('default'),
  username: z.string().optional(),
  password: SecretRef.optional(),
  /** Also create `<table>_live` views that read FINAL and hide deleted rows. */
  views: z.boolean().default(true),
  /** For every table, or per table ("table" or "schema.table", as the destination names it) with a default. */
  onUnrepresentable: z
    .union([
      Unrepresentable,
      z.strictObject({ default: Unrepresentable.default('fail'), tables: z.record(TableName, Unrepresentable) }),
    ])
    .default('fail'),
});
export type ClickHouseConfig = z.infer<typeof ClickHouseConfig>;

export const SnowflakeConfig = z
  .strictObject({
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
  })
  .refine((c) => c.password || c.privateKey, { message: 'needs password or privateKey (a secret reference)' });

export const PostgresDestinationConfig = z.strictObject({
  type: z.literal('postgres'),
  url: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { message: 'must be a postgres:// URL' })
    .refine((u) => !safeUrl(u)?.password, { message: 'must not contain a password: give it as password: "env:NAME"' }),
  password: SecretRef.optional(),
  /** Schema that holds the replicated tables (created if missing). */
  schema: z.string().min(1).default('walflow'),
});

export const DuckDBConfig = z
  .strictObject({
    type: z.literal('duckdb'),
    /** A database file (created if missing; relative to the worker's directory) or `md:<database>` for MotherDuck. */
    path: z
      .string()
      .min(1)
      .refine((p) => !/token=/i.test(p), { message: 'must not contain a token: give it as token: "env:NAME"' }),
    /**
     * MotherDuck access token (with an `md:` path; else MotherDuck reads the motherduck_token environment variable).
     */
    token: SecretRef.optional(),
    /** Schema that holds the replicated tables (created if missing). */
    schema: z.string().min(1).default('main'),
  })
  .refine((c) => !c.token || c.path.startsWith('md:'), {
    message: 'token is for MotherDuck: give path as "md:<database>"',
    path: ['token'],
  });

export const StdoutConfig = z.strictObject({
  type: z.literal('stdout'),
  /** `legacy`: walflow's original line ({op, table: "s.t", version, row, ...}); `envelope`: lib/envelope.ts. */
  format: z.enum(['legacy', 'envelope']).default('legacy'),
});

/** JSON Lines files of change envelopes (activities/destinations/file.ts). */
export const FileConfig = z.strictObject({
  type: z.literal('file'),
  /** Directory; files go to <path>/<pipeline>/ (or <path>/<pipeline>/<schema>.<table>/ with split: table). */
  path: z.string().min(1),
  split: z.enum(['pipeline', 'table']).default('pipeline'),
  /**
   * A file is closed and the next started once it holds this many bytes of JSON text, or when a write finds it this
   * old.
   */
  maxBytes: z
    .number()
    .int()
    .min(1)
    .default(64 * 1024 * 1024),
  maxAgeSeconds: z.number().int().min(1).default(3600),
  gzip: z.boolean().default(false),
});

const HeaderValue = z.union([SecretRef, z.string().regex(/^(?!env:|file:)/)]);

/** POST batches of change envelopes (activities/destinations/webhook.ts). */
export const WebhookConfig = z.strictObject({
  type: z.literal('webhook'),
  url: z.string().url(),
  /** `json`: a JSON array per request; `ndjson`: one envelope per line. */
  format: z.enum(['json', 'ndjson']).default('json'),
  /** HMAC-SHA256 key for the X-Walflow-Signature header. */
  secret: SecretRef.optional(),
  /** Extra request headers; a value may be a secret reference (e.g. Authorization: env:HOOK_TOKEN). */
  headers: z
    .record(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, { message: 'must be an HTTP header name' }), HeaderValue)
    .default({}),
  timeoutMs: z.number().int().min(1).default(10_000),
  /** Envelopes per request at most (a table's batch is split into requests of this size). */
  maxBatchChanges: z.number().int().min(1).default(1000),
  /** Attempts per request on 5xx, 408, 429, timeouts and connection errors before the write fails (and is retried). */
  retries: z.number().int().min(0).default(5),
});

/** JetStream publish per change (activities/destinations/nats.ts). */
export const NatsConfig = z.strictObject({
  type: z.literal('nats'),
  servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  token: SecretRef.optional(),
  user: z.string().optional(),
  password: SecretRef.optional(),
  /** Subject per change; {pipeline}, {schema} and {table} are replaced. */
  subject: z
    .string()
    .regex(/^[^\s*>]+$/, {
      message: 'must be a NATS subject without wildcards (placeholders: {pipeline}, {schema}, {table})',
    })
    .default('walflow.{pipeline}.{schema}.{table}'),
  /** The JetStream stream that captures the subjects; created if missing (an existing one is used as it is). */
  stream: z
    .strictObject({
      name: z
        .string()
        .regex(/^[^\s.*>/\\]+$/, { message: 'stream names have no spaces, ".", "*", ">" or slashes' })
        .optional(),
      retention: z.enum(['limits', 'interest', 'workqueue']).default('limits'),
      maxAgeSeconds: z.number().int().min(0).default(0),
      /** JetStream drops a message whose Nats-Msg-Id it stored within this window: re-sent changes land once. */
      duplicateWindowSeconds: z.number().int().min(1).default(120),
      storage: z.enum(['file', 'memory']).default('file'),
      replicas: z.number().int().min(1).max(5).default(1),
    })
    .prefault({}),
  /** Publishes awaiting their acknowledgement at once. */
  maxInFlight: z.number().int().min(1).default(1000),
  timeoutMs: z.number().int().min(1).default(10_000),
});
export const NullConfig = z.strictObject({ type: z.literal('null') });

export const DestinationConfig = z.discriminatedUnion('type', [
  ClickHouseConfig,
  SnowflakeConfig,
  PostgresDestinationConfig,
  DuckDBConfig,
  StdoutConfig,
  NullConfig,
  FileConfig,
  WebhookConfig,
  NatsConfig,
]);

/** Operations a filter or transform applies to; `read` is a backfill (snapshot) row. */
export const Operation = z.enum(['read', 'insert', 'update', 'delete']);
export type Operation = z.infer<typeof Operation>;

const Literal = z.union([z.string(), z.number(), z.boolean()]);
export const COMPARISONS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'contains', 'is_null'] as const;
const CONNECTIVES = ['all', 'any', 'not'] as const;

/** A row condition: `{column, <one comparison>}`, or `{all: [...]}`, `{any: [...]}`, `{not: ...}`. */
export interface Condition {
  column?: string;
  eq?: z.infer<typeof Literal>;
  ne?: z.infer<typeof Literal>;
  gt?: z.infer<typeof Literal>;
  gte?: z.infer<typeof Literal>;
  lt?: z.infer<typeof Literal>;
  lte?: z.infer<typeof Literal>;
  in?: z.infer<typeof Literal>[];
  contains?: string;
  is_null?: boolean;
  all?: Condition[];
  any?: Condition[];
  not?: Condition;
}
export const Condition: z.ZodType<Condition> = z
  .strictObject({
    column: z.string().min(1).optional(),
    eq: Literal.optional(),
    ne: Literal.optional(),
    gt: Literal.optional(),
    gte: Literal.optional(),
    lt: Literal.optional(),
    lte: Literal.optional(),
    in: z.array(Literal).min(1).optional(),
    contains: z.string().optional(),
    is_null: z.boolean().optional(),
    get all() {
      return z.array(Condition).min(1).optional();
    },
    get any() {
      return z.array(Condition).min(1).optional();
    },
    get not() {
      return Condition.optional();
    },
  })
  .refine(
    (c) => {
      const ops = COMPARISONS.filter((k) => c[k] !== undefined).length;
      const connectives = CONNECTIVES.filter((k) => c[k] !== undefined).length;
      return c.column !== undefined ? ops === 1 && connectives === 0 : ops === 0 && connectives === 1;
    },
    { message: `needs a column with exactly one of ${COMPARISONS.join(', ')}, or exactly one of all, any, not` },
  );

const TRANSFORMS = ['regex', 'mask', 'hash', 'set', 'drop'] as const;
export const Transform = z
  .strictObject({
    column: z.string().min(1),
    /** Default: every operation. */
    operations: z.array(Operation).min(1).optional(),
    regex: z
      .strictObject({
        pattern: z.string().min(1),
        replace: z.string(),
        flags: z
          .string()
          .regex(/^[imsu]*$/, { message: 'flags are any of i, m, s, u (replacement is always global)' })
          .optional(),
      })
      .refine(
        (r) => {
          try {
            new RegExp(r.pattern, r.flags);
            return true;
          } catch {
            return false;
          }
        },
        { message: 'is not a valid regular expression', path: ['pattern'] },
      )
      .optional(),
    mask: z
      .strictObject({
        keepFirst: z.number().int().min(0).default(0),
        keepLast: z.number().int().min(0).default(0),
        char: z.string().length(1).default('*'),
      })
      .optional(),
    /** HMAC-SHA256 (hex) of the value's text with the secret salt. */
    hash: z.strictObject({ salt: SecretRef }).optional(),
    set: z.union([Literal, z.null()]).optional(),
    drop: z.literal(true).optional(),
  })
  .refine((t) => TRANSFORMS.filter((k) => t[k] !== undefined).length === 1, {
    message: `needs exactly one of ${TRANSFORMS.join(', ')}`,
  })
  .refine((t) => !(t.drop && t.operations), {
    message: 'drop removes the column from the destination table: it cannot be limited to some operations',
  });
export type Transform = z.infer<typeof Transform>;

export const TableRules = z.strictObject({
  /** Rows kept (in `operations`, default all); an update leaving it deletes the row downstream. */
  filter: z.strictObject({ where: Condition, operations: z.array(Operation).min(1).optional() }).optional(),
  /** Applied in order. */
  transform: z.array(Transform).optional(),
  rename: z
    .strictObject({ table: TableName.optional(), columns: z.record(z.string(), z.string().min(1)).optional() })
    .optional(),
  columns: z
    .strictObject({ include: z.array(z.string()).min(1).optional(), exclude: z.array(z.string()).min(1).optional() })
    .refine((c) => (c.include === undefined) !== (c.exclude === undefined), {
      message: 'needs exactly one of include, exclude',
    })
    .optional(),
});
export type TableRules = z.infer<typeof TableRules>;

/** Rules per pipeline table (as named in source.tables). */
export const RulesConfig = z.record(TableName, TableRules);
export type RulesConfig = z.infer<typeof RulesConfig>;

export const PipelineConfig = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,47}$/, {
      message: 'pipeline ids are lower-case letters, digits, - and _ (at most 48)',
    }),
    source: SourceConfig,
    destination: DestinationConfig,
    backfill: z
      .strictObject({
        parallelism: z.number().int().min(1).max(64).default(4),
        rowsPerRange: z.number().int().min(1000).default(250_000),
        batchRows: z.number().int().min(1).default(10_000),
      })
      .prefault({}),
    cdc: z
      .strictObject({
        flushIntervalMs: z.number().int().min(1).default(1000),
        maxBatchRows: z.number().int().min(1).default(10_000),
      })
      .prefault({}),
    /** Thresholds past which status, the workflow's details and the worker log warn. */
    alerts: z
      .strictObject({
        /** WAL between the slot's confirmed position and the server's current one (default 1 GiB). */
        lagBytes: z
          .number()
          .int()
          .min(0)
          .default(1024 ** 3),
        /** How long a backfill snapshot may hold back vacuum (its xmin) before a warning (default 60). */
        snapshotAgeMinutes: z.number().min(0).default(60),
      })
      .prefault({}),
    /**
     * When Postgres invalidates the slot (wal_status lost): stop for the operator, or recreate it and resync every
     * table.
     */
    onSlotLost: z.enum(['fail', 'resync']).default('fail'),
    /** Filters and transforms applied in the worker before any destination (lib/rules.ts). */
    rules: RulesConfig.optional(),
  })
  .superRefine(checkRuleTables);

/** `walflow serve`: snapshot over HTTP and a websocket change stream (see serve/). */
export const ServeConfig = z.strictObject({
  /** host:port; loopback unless you mean to expose it. */
  listen: z
    .string()
    .regex(/^.+:\d+$/, { message: 'must be host:port, e.g. 127.0.0.1:8719' })
    .default('127.0.0.1:8719'),
  source: SourceConfig.pick({ url: true, password: true }),
  /** Bearer tokens clients present; a session is readable only with the token that created it. */
  tokens: z.array(SecretRef).min(1, { message: 'needs at least one token reference: every endpoint requires one' }),
  /** A session with no client connected and no request for this long is ended and its slot dropped. */
  sessionIdleTimeoutSeconds: z.number().int().min(1).default(600),
  /** How long an init's exported snapshot is held unless released earlier with /v1/snapshot/done. */
  snapshotHoldSeconds: z.number().int().min(1).default(600),
  maxPageSize: z.number().int().min(1).default(10_000),
});

export const WalflowConfig = z.strictObject({
  temporal: z
    .strictObject({
      address: z.string().default('127.0.0.1:7233'),
      namespace: z.string().default('default'),
      taskQueue: z.string().default('walflow'),
      /** An API key (Temporal Cloud); TLS is then on even without `tls`. */
      apiKey: SecretRef.optional(),
      /** TLS to the server; `{}` trusts the system's CAs. Each value is a secret reference to PEM text. */
      tls: z
        .strictObject({
          serverCa: SecretRef.optional(),
          clientCert: SecretRef.optional(),
          clientKey: SecretRef.optional(),
          /** The name the server's certificate carries, when it is not the address's host. */
          serverName: z.string().min(1).optional(),
        })
        .refine((t) => !t.clientCert === !t.clientKey, { message: 'mTLS needs both clientCert and clientKey' })
        .optional(),
    })
    .prefault({}),
  pipelines: z.array(PipelineConfig),
  serve: ServeConfig.optional(),
});

export type SourceConfig = z.infer<typeof SourceConfig>;
export type DestinationConfig = z.infer<typeof DestinationConfig>;
export type PipelineConfig = z.infer<typeof PipelineConfig>;
export type WalflowConfig = z.infer<typeof WalflowConfig>;
export type ServeConfig = z.infer<typeof ServeConfig>;

/**
 * Rules name tables of the pipeline (once each), and no two tables land on one destination table; a
 * per-table onUnrepresentable names destination tables.
 */
function checkRuleTables(
  p: { source: { tables: string[] }; rules?: RulesConfig; destination: { type: string } },
  ctx: z.RefinementCtx,
): void {
  const byTable = new Map<string, string>();
  for (const name of Object.keys(p.rules ?? {})) {
    if (!p.source.tables.some((t) => qualifyTable(t) === qualifyTable(name)))
      ctx.addIssue({
        code: 'custom',
        path: ['rules', name],
        message: `is not one of source.tables (${p.source.tables.join(', ')})`,
      });
    if (byTable.has(qualifyTable(name)))
      ctx.addIssue({
        code: 'custom',
        path: ['rules', name],
        message: `has rules twice (also as "${byTable.get(qualifyTable(name))}")`,
      });
    byTable.set(qualifyTable(name), name);
  }
  const targets = new Map<string, { table: string; name?: string }>();
  for (const table of p.source.tables.map(qualifyTable)) {
    const name = byTable.get(table);
    const target = renamedTable(table, name === undefined ? undefined : p.rules![name]!.rename?.table);
    const other = targets.get(target);
    const renaming = name !== undefined && p.rules![name]!.rename?.table ? name : other?.name;
    if (other)
      ctx.addIssue({
        code: 'custom',
        path: ['rules', renaming ?? table, 'rename', 'table'],
        message: `two tables would land on ${target} (${other.table} and ${table})`,
      });
    targets.set(target, { table, name });
  }
  const setting = p.destination.type === 'clickhouse' ? (p.destination as ClickHouseConfig).onUnrepresentable : 'fail';
  for (const t of typeof setting === 'string' ? [] : Object.keys(setting.tables))
    if (!targets.has(qualifyTable(t)))
      ctx.addIssue({
        code: 'custom',
        path: ['destination', 'onUnrepresentable', 'tables', t],
        message: `is not a table of the pipeline (${[...targets.keys()].join(', ')})`,
      });
}

/** "table" means "public.table". */
export const qualifyTable = (t: string): string => (t.includes('.') ? t : `public.${t}`);

/** The `onUnrepresentable` of `table` ("schema.table"). */
export function unrepresentableFor(setting: ClickHouseConfig['onUnrepresentable'], table: string): Unrepresentable {
  if (typeof setting === 'string') return setting;
  const named = Object.entries(setting.tables).find(([t]) => qualifyTable(t) === table);
  return named?.[1] ?? setting.default;
}

/**
 * The destination table of source table `qualified` ("schema.name") under a `rename.table` ("name" keeps the schema).
 */
export const renamedTable = (qualified: string, rename: string | undefined): string =>
  rename === undefined
    ? qualified
    : rename.includes('.')
      ? rename
      : `${qualified.slice(0, qualified.indexOf('.'))}.${rename}`;

function safeUrl(u: string): URL | undefined {
  try {
    return new URL(u);
  } catch {
    return undefined;
  }
}

export class ConfigError extends Error {
  override name = ErrorType.Config;
}

/** Validates parsed config; errors name the bad key, e.g. `pipelines[0].source.publication`. */
export function parseConfig(input: unknown, origin = 'config'): WalflowConfig {
  const result = WalflowConfig.safeParse(input);
  if (!result.success) throw new ConfigError(`${origin} is invalid:\n${formatIssues(result.error.issues)}`);
  rejectDuplicateIds(
    result.data.pipelines.map((p) => p.id),
    origin,
  );
  return result.data;
}

/** A config whose invalid pipelines were set aside, each with its error, so the others stay usable. */
export type LoadedConfig = WalflowConfig & { invalid: Record<string, string> };

/** Like parseConfig, but one bad pipeline fails only the commands for that pipeline. */
export function parseConfigPerPipeline(input: unknown, origin = 'config'): LoadedConfig {
  const top = WalflowConfig.extend({ pipelines: z.array(z.unknown()) }).safeParse(input);
  if (!top.success) throw new ConfigError(`${origin} is invalid:\n${formatIssues(top.error.issues)}`);
  const pipelines: PipelineConfig[] = [];
  const invalid: Record<string, string> = {};
  top.data.pipelines.forEach((raw, i) => {
    const result = PipelineConfig.safeParse(raw);
    if (result.success) pipelines.push(result.data);
    else {
      const id = (raw as { id?: unknown } | null)?.id;
      invalid[typeof id === 'string' ? id : `pipelines[${i}]`] =
        `${origin} is invalid:\n${formatIssues(result.error.issues, [`pipelines`, i])}`;
    }
  });
  rejectDuplicateIds([...pipelines.map((p) => p.id), ...Object.keys(invalid)], origin);
  return { ...top.data, pipelines, invalid };
}

/** A workflow's own check of its input: the same schema and defaults as walflow.yaml. */
export function parsePipelineConfig(input: unknown, origin = 'workflow input'): PipelineConfig {
  const result = PipelineConfig.safeParse(input);
  if (!result.success) throw new ConfigError(`${origin} is invalid:\n${formatIssues(result.error.issues, ['config'])}`);
  return result.data;
}

/** Destinations that keep tables walflow can read back and remove stale rows from (resync); change streams cannot. */
const RESYNCABLE: DestinationConfig['type'][] = ['clickhouse', 'snowflake', 'postgres', 'duckdb'];
export const canResync = (destination: DestinationConfig): boolean => RESYNCABLE.includes(destination.type);

/** The replication slot a pipeline streams from. */
export const slotName = (pipelineId: string, source: SourceConfig): string =>
  source.slot ?? `walflow_${pipelineId.replace(/-/g, '_')}`;

/**
 * Why `next` cannot replace `running` in place (empty: it can). The slot and publication are the
 * stream's position and contents, the destination type is where every row already is: changing
 * one is a new pipeline (drop, then start: a new slot and a full backfill).
 */
export function liveChangeRefusals(running: PipelineConfig, next: PipelineConfig): string[] {
  const refusals: string[] = [];
  if (next.id !== running.id) refusals.push(`id: "${next.id}" is not pipeline "${running.id}"`);
  if (slotName(next.id, next.source) !== slotName(running.id, running.source)) {
    refusals.push(
      `source.slot: the slot holds the stream's position; a new slot name means a new pipeline (drop, then start)`,
    );
  }
  if (
    next.source.publication !== running.source.publication ||
    next.source.createPublication !== running.source.createPublication
  ) {
    refusals.push(
      'source.publication / createPublication: the stream decodes this publication; a different one means a new ' +
        'pipeline (drop, then start)',
    );
  }
  if (next.destination.type !== running.destination.type) {
    refusals.push(
      `destination.type: ${running.destination.type} holds the replicated rows; moving to ${next.destination.type} ` +
        `means a new pipeline (drop, then start)`,
    );
  }
  return refusals;
}

/** Dotted keys whose values differ between two configs, e.g. `destination.url`, `source.tables`. */
export function configDifferences(a: unknown, b: unknown, path = ''): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .sort()
      .flatMap((k) => configDifferences(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path || '(all)'];
}

function rejectDuplicateIds(ids: string[], origin: string): void {
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new ConfigError(`${origin}: pipeline id "${dup}" is used twice`);
}

function formatIssues(issues: { path: PropertyKey[]; message: string }[], prefix: PropertyKey[] = []): string {
  return issues.map((i) => `  ${formatPath([...prefix, ...i.path])}: ${i.message}`).join('\n');
}

function formatPath(path: PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

export function findPipeline(config: WalflowConfig & { invalid?: Record<string, string> }, id: string): PipelineConfig {
  const p = config.pipelines.find((x) => x.id === id);
  if (p) return p;
  if (config.invalid?.[id]) throw new ConfigError(config.invalid[id]);
  const known = [...config.pipelines.map((x) => x.id), ...Object.keys(config.invalid ?? {})];
  throw new ConfigError(`no pipeline "${id}" in config (known: ${known.join(', ') || 'none'})`);
}
