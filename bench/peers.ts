/**
 * Peers measured beside walflow in the same run: supabase/etl's `table_copy` (the Rust successor of
 * pg_replicate), built once from the archive in ../shared/peers and cached under .walflow/tools.
 * Nothing of the peer is part of walflow; it only gives the bench a same-machine, same-table figure.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { projectRoot, toolsDir } from '../stack/paths.ts';

export const PEERS = ['supabase-etl'] as const;
export type Peer = (typeof PEERS)[number];

const peersDir = () => resolve(process.env.WALFLOW_PEERS_DIR ?? join(projectRoot, '..', 'shared', 'peers'));
const etlDir = join(toolsDir, 'supabase-etl');

/** Builds `table_copy` (about 10 minutes on 2 cores the first time) unless it is cached; returns its path. */
export function ensureSupabaseEtl(log: (line: string) => void): string {
  const binary = join(etlDir, 'table_copy');
  if (existsSync(binary)) return binary;
  const script = join(peersDir(), 'build-supabase-etl.sh');
  if (!existsSync(script))
    throw new Error(
      `bench: --peers supabase-etl needs ${script} (set WALFLOW_PEERS_DIR to the folder holding build-supabase-etl.sh)`,
    );
  log(`building supabase/etl's table_copy into ${etlDir} (once; about 10 minutes on 2 cores)`);
  execFileSync('bash', [script, etlDir], { stdio: ['ignore', 'inherit', 'inherit'] });
  return binary;
}

export interface PeerCopy {
  /** From the peer's pipeline start to all rows copied (its own start + copy wait), like walflow's figure. */
  seconds: number;
  rows: number;
}

/**
 * Copies one table with supabase/etl into its null destination: one table-sync worker with `parallelism`
 * copy connections, the same parallelism walflow gets. It makes its own slots (dropped by itself) and an
 * `etl` schema in the source database.
 */
export function supabaseEtlTableCopy(
  binary: string,
  opts: { sourceUrl: string; table: string; tableOid: number; publication: string; parallelism: number; rows: number },
): PeerCopy {
  const u = new URL(opts.sourceUrl);
  const report = join(mkdtempSync(join(tmpdir(), 'walflow-bench-etl-')), 'report.json');
  execFileSync(
    binary,
    [
      '--log-target',
      'terminal',
      'run',
      '--host',
      u.hostname,
      '--port',
      u.port || '5432',
      '--database',
      u.pathname.slice(1),
      '--username',
      decodeURIComponent(u.username),
      ...(u.password ? ['--password', decodeURIComponent(u.password)] : []),
      '--publication-name',
      opts.publication,
      '--table-ids',
      String(opts.tableOid),
      '--max-table-sync-workers',
      '1',
      '--max-copy-connections-per-table',
      String(opts.parallelism),
      '--expected-row-count',
      String(opts.rows),
      '--destination',
      'null',
      '--report-path',
      report,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } },
  );
  const r = JSON.parse(readFileSync(report, 'utf8')) as {
    copied_rows: number;
    pipeline_start_ms: number;
    copy_wait_ms: number;
  };
  return { seconds: (r.pipeline_start_ms + r.copy_wait_ms) / 1000, rows: r.copied_rows };
}
