/**
 * The stack's ClickHouse: the chDB-backed HTTP endpoint (stack/clickhouse-server.ts) as a PID-tracked
 * process. chDB is a local tool like the Temporal CLI, not a dependency of walflow: it is installed,
 * pinned, under the state folder on first use (its engine package is half a gigabyte).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ports, projectRoot, stateDir, toolsDir } from './paths.ts';
import { StackError, startTracked, stopTracked, type TrackedService } from './process.ts';

const CHDB_PACKAGE = 'chdb@3.4.0';
const chdbDir = join(toolsDir, 'chdb');
export const chdbModule = join(chdbDir, 'node_modules', 'chdb');

export function ensureChdb(): string {
  if (existsSync(join(chdbModule, 'package.json'))) return chdbModule;
  mkdirSync(chdbDir, { recursive: true });
  console.error(`installing the ClickHouse engine (${CHDB_PACKAGE}) into ${chdbDir} ...`);
  try {
    execFileSync(
      'npm',
      ['install', '--prefix', chdbDir, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', CHDB_PACKAGE],
      { stdio: 'inherit' },
    );
  } catch (e) {
    throw new StackError(
      `cannot install ${CHDB_PACKAGE}: ${(e as Error).message}. Point CLICKHOUSE_URL at a ClickHouse server instead.`,
    );
  }
  return chdbModule;
}

const dir = join(stateDir, 'clickhouse');
const pidFile = join(dir, 'clickhouse.pid');
const logFile = join(dir, 'clickhouse.log');

export const clickhouseUrl = (): string => `http://127.0.0.1:${ports.clickhouse}`;

export async function clickhouseHealthy(url = clickhouseUrl()): Promise<boolean> {
  try {
    const res = await fetch(new URL('/ping', url), { signal: AbortSignal.timeout(2000) });
    return res.ok && (await res.text()).startsWith('Ok.');
  } catch {
    return false;
  }
}

const service: TrackedService = {
  name: 'clickhouse',
  pidFile,
  logFile,
  match: 'clickhouse-server',
  startTimeoutMs: 60_000,
  ports: [{ port: ports.clickhouse, envVar: 'WALFLOW_CLICKHOUSE_PORT', what: 'clickhouse' }],
  healthy: () => clickhouseHealthy(),
};

export function startClickHouse(): Promise<'started' | 'running'> {
  return startTracked(service, () => ({
    command: process.execPath,
    args: [
      '--import',
      'tsx',
      join(projectRoot, 'stack', 'clickhouse-server.ts'),
      '--port',
      String(ports.clickhouse),
      '--path',
      join(dir, 'data'),
      '--chdb',
      ensureChdb(),
    ],
    cwd: projectRoot,
  }));
}

export const stopClickHouse = (): Promise<boolean> => stopTracked(service);
