/** Where the local stack keeps its state, and which loopback ports it uses (each overridable by env). */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The one git-ignored state folder: data dirs, logs, PID files, installed tools. */
export const stateDir = resolve(process.env.WALFLOW_HOME ?? join(projectRoot, '.walflow'));
export const toolsDir = join(stateDir, 'tools');

function port(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${name}=${raw} is not a TCP port`);
  return n;
}

export const ports = {
  postgres: port('WALFLOW_PG_PORT', 55432),
  postgres15: port('WALFLOW_PG15_PORT', 55415),
  temporal: port('WALFLOW_TEMPORAL_PORT', 7233),
  temporalUi: port('WALFLOW_TEMPORAL_UI_PORT', 8233),
  clickhouse: port('WALFLOW_CLICKHOUSE_PORT', 18123),
  snowflake: port('WALFLOW_SNOWFLAKE_PORT', 18765),
  nats: port('WALFLOW_NATS_PORT', 14222),
};
