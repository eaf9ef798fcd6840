/**
 * `walflow stack up | down | status`: everything a pipeline needs locally, on
 * loopback, under one state folder. Components given by URL (WALFLOW_PG_URL,
 * WALFLOW_TEMPORAL_ADDRESS, CLICKHOUSE_URL, SNOWFLAKE_ACCOUNT, WALFLOW_NATS_URL) are the user's own: used as-is, never
 * started or stopped.
 */
import {
  assertLogicalWal,
  postgres15,
  postgresHealthy,
  postgresRunning,
  postgresUrl,
  primaryPostgres,
  startPostgres,
  stopPostgres,
  type PostgresInstance,
} from './postgres.ts';
import { clickhouseHealthy, clickhouseUrl, startClickHouse, stopClickHouse } from './clickhouse.ts';
import { natsHealthy, natsUrl, startNats, stopNats } from './nats.ts';
import { snowflakeHealthy, snowflakeUrl, startSnowflake, stopSnowflake } from './snowflake.ts';
import {
  startTemporal,
  stopTemporal,
  temporalAddress,
  temporalHealthy,
  temporalUiHealthy,
  temporalUiUrl,
} from './temporal.ts';

export interface Endpoint {
  url: string;
  healthy: boolean;
}

export type StackStatus = Record<string, Endpoint>;

interface Component {
  name: string;
  /** Set when the user points walflow at their own server. */
  external?: string;
  start(): Promise<'started' | 'running'>;
  stop(): Promise<boolean>;
  status(): Promise<StackStatus>;
}

export interface StackOptions {
  /** Also run Debian's PostgreSQL 15 beside the default 18 (tests cover both majors). */
  postgres15?: boolean;
}

function postgresComponent(pgi: PostgresInstance, externalUrl?: string): Component {
  const url = externalUrl ?? postgresUrl(pgi);
  return {
    name: pgi.name,
    external: externalUrl,
    start: async () => {
      const result = await startPostgres(pgi);
      await assertLogicalWal(url);
      return result;
    },
    stop: () => stopPostgres(pgi),
    status: async () => ({ [pgi.name]: { url, healthy: await postgresHealthy(url) } }),
  };
}

function temporalComponent(externalAddress?: string): Component {
  const address = externalAddress ?? temporalAddress();
  return {
    name: 'temporal',
    external: externalAddress,
    start: startTemporal,
    stop: stopTemporal,
    status: async () => ({
      temporal: { url: address, healthy: await temporalHealthy(address) },
      ...(externalAddress ? {} : { temporalUi: { url: temporalUiUrl(), healthy: await temporalUiHealthy() } }),
    }),
  };
}

function clickhouseComponent(externalUrl?: string): Component {
  const url = externalUrl ?? clickhouseUrl();
  return {
    name: 'clickhouse',
    external: externalUrl,
    start: startClickHouse,
    stop: stopClickHouse,
    status: async () => ({ clickhouse: { url, healthy: await clickhouseHealthy(url) } }),
  };
}

/** SNOWFLAKE_ACCOUNT set: the user's Snowflake (reachability only: credentials stay with the pipeline). */
function snowflakeComponent(externalAccount?: string): Component {
  const url = externalAccount ? `https://${externalAccount}.snowflakecomputing.com` : snowflakeUrl();
  return {
    name: 'snowflake',
    external: externalAccount,
    start: startSnowflake,
    stop: stopSnowflake,
    status: async () => ({
      snowflake: { url, healthy: externalAccount ? await reachable(url) : await snowflakeHealthy(url) },
    }),
  };
}

function natsComponent(externalUrl?: string): Component {
  const url = externalUrl ?? natsUrl();
  return {
    name: 'nats',
    external: externalUrl,
    start: startNats,
    stop: stopNats,
    status: async () => ({ nats: { url, healthy: await natsHealthy(url) } }),
  };
}

async function reachable(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(5000) });
    return true;
  } catch {
    return false;
  }
}

async function components(opts: StackOptions): Promise<Component[]> {
  const list = [
    postgresComponent(await primaryPostgres(), process.env.WALFLOW_PG_URL || undefined),
    temporalComponent(process.env.WALFLOW_TEMPORAL_ADDRESS || undefined),
    clickhouseComponent(process.env.CLICKHOUSE_URL || undefined),
    snowflakeComponent(process.env.SNOWFLAKE_ACCOUNT || undefined),
    natsComponent(process.env.WALFLOW_NATS_URL || undefined),
  ];
  const pg15 = postgres15();
  if (pg15 && (opts.postgres15 ?? postgresRunning(pg15))) list.splice(1, 0, postgresComponent(pg15));
  return list;
}

export interface UpResult {
  /** Components this call started (the caller may stop exactly these). */
  started: string[];
  status: StackStatus;
}

/** Starts whatever is not running yet; harmless when everything already runs. */
export async function stackUp(opts: StackOptions = {}): Promise<UpResult> {
  const started: string[] = [];
  for (const c of await components(opts)) {
    if (c.external) {
      if (c.name.startsWith('postgres')) await assertLogicalWal(c.external);
      else if (!Object.values(await c.status()).every((e) => e.healthy))
        throw new Error(`${c.name} at ${c.external} is not reachable`);
      continue;
    }
    if ((await c.start()) === 'started') started.push(c.name);
  }
  return { started, status: await stackStatus(opts) };
}

/** Stops the named components (default: all of ours), each by its own PID. Returns those stopped. */
export async function stackDown(only?: string[]): Promise<string[]> {
  const stopped: string[] = [];
  for (const c of (await components({ postgres15: true })).reverse()) {
    if (c.external || (only && !only.includes(c.name))) continue;
    if (await c.stop()) stopped.push(c.name);
  }
  return stopped;
}

export async function stackStatus(opts: StackOptions = {}): Promise<StackStatus> {
  const entries = await Promise.all((await components(opts)).map((c) => c.status()));
  return Object.assign({}, ...entries);
}
