/**
 * A real pipeline for integration tests: source and destination databases on
 * the stack's Postgres, the pipeline config as a user writes it, a worker
 * (in-process, or a separate process that tests may kill -9), a Temporal client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import pg from 'pg';
import { stringify } from 'yaml';
import { parseConfig, type PipelineConfig } from '../../lib/config.ts';
import { parseLsn } from '../../lib/lsn.ts';
import { comparableValues, expectedTable, jsonColumns } from '../../lib/verify.ts';
import { compileRules } from '../../lib/rules.ts';
import { resolveSecret } from '../../lib/secrets.ts';
import { tableKey, type Row, type TableSchema } from '../../lib/model.ts';
import { pipelineDestination } from '../../activities/destinations/index.ts';
import { loadTableSchemas } from '../../activities/postgres/schema.ts';
import { readTable } from '../../activities/postgres/read.ts';
import { FaultPoints } from '../../lib/faults.ts';
import { startWorker, type RunningWorker } from '../../worker/worker.ts';
import type { PipelineStatus } from '../../lib/contract/status.ts';
import {
  pipelineHandle,
  pipelineStatus,
  startPipeline,
  type PipelineHandle,
  type PipelineWorkflow,
} from '../../lib/pipeline-client.ts';
import {
  createTestDatabase,
  pgAdminUrl,
  requireEnv,
  snowflakeTestDestination,
  temporalAddress,
  type TestDatabase,
} from './env.ts';

export type FixtureDestination = 'postgres' | 'clickhouse' | 'snowflake' | 'duckdb';

export interface PipelineFixtureOptions {
  name: string;
  /** SQL run in the source database before the pipeline starts. */
  setup: string;
  tables: string[];
  pipeline?: Partial<Pick<PipelineConfig, 'backfill' | 'cdc' | 'rules' | 'alerts' | 'onSlotLost'>> & {
    source?: Partial<PipelineConfig['source']>;
  };
  /** Keys replacing those of the destination's config (e.g. a url of a destination that is down). */
  destinationOverride?: Record<string, unknown>;
  /** The in-process worker serves Prometheus metrics on this port. */
  metricsPort?: number;
  /** Run the worker as a separate process (so a test can kill -9 it). */
  workerProcess?: boolean;
  /** Where rows go: a Postgres database (default), the stack's ClickHouse or Snowflake (emulator), a DuckDB file. */
  destination?: FixtureDestination;
  /**
   * A stream destination (file, webhook, NATS) instead: its config, and the tables its consumer rebuilt
   * from the envelopes (what compare() checks against the source).
   */
  consumer?: {
    destination: Record<string, unknown>;
    tables(schemas: TableSchema[]): Promise<Map<string, Map<string, Row>>>;
  };
  /** WALFLOW_FAULTS for the worker process. */
  faults?: string;
  maxHistoryEvents?: number;
  /** Superuser URL of the Postgres to create the source on (default: the stack's primary). */
  adminUrl?: string;
}

export class PipelineFixture {
  source!: TestDatabase;
  target!: TestDatabase;
  config!: PipelineConfig;
  configFile!: string;
  client!: Client;
  /** The pipeline workflow (whoever started it: the fixture or the CLI). */
  handle!: PipelineHandle;
  /** Fault points of the in-process worker (a worker process takes WALFLOW_FAULTS instead). */
  readonly faults = new FaultPoints();
  taskQueue: string;
  private connection!: Connection;
  private worker?: RunningWorker;
  workerChild?: ChildProcess;
  private sourceClient?: pg.Client;
  private duckdbDir?: string;

  /** A connection to the source, opened again after a fault (a Postgres restart) broke the last one. */
  private async src(): Promise<pg.Client> {
    if (this.sourceClient) return this.sourceClient;
    const c = new pg.Client({ connectionString: this.source.url });
    c.on('error', () => {
      if (this.sourceClient === c) this.sourceClient = undefined;
    });
    c.on('end', () => {
      if (this.sourceClient === c) this.sourceClient = undefined;
    });
    await c.connect();
    this.sourceClient = c;
    return c;
  }

  constructor(readonly opts: PipelineFixtureOptions) {
    this.taskQueue = `test-${opts.name}-${Date.now()}`;
  }

  /** The database file of a DuckDB destination, in a folder of the test's own. */
  get duckdbFile(): string {
    this.duckdbDir ??= mkdtempSync(join(tmpdir(), 'walflow-duckdb-'));
    return join(this.duckdbDir, `${this.target.name}.duckdb`);
  }

  /** `sourceRole`: the pipeline connects as this role, its password given as `env:<passwordEnv>`. */
  async setup(as: { sourceRole?: string; passwordEnv?: string } = {}): Promise<this> {
    this.source = await createTestDatabase(`src_${this.opts.name}`, this.opts.adminUrl);
    this.target = await createTestDatabase(`dst_${this.opts.name}`);
    await (await this.src()).query(this.opts.setup);
    const id = `${this.opts.name}-${Date.now().toString(36)}`.toLowerCase();
    const raw = {
      temporal: { address: temporalAddress(), taskQueue: this.taskQueue },
      pipelines: [
        {
          id,
          source: {
            url: as.sourceRole ? withUser(this.source.url, as.sourceRole) : this.source.url,
            ...(as.passwordEnv ? { password: `env:${as.passwordEnv}` } : {}),
            publication: `pub_${this.opts.name}`,
            tables: this.opts.tables,
            ...this.opts.pipeline?.source,
          },
          destination:
            this.opts.consumer?.destination ??
            {
              clickhouse: () => ({ type: 'clickhouse', url: requireEnv('CLICKHOUSE_URL'), database: this.target.name }),
              snowflake: () => snowflakeTestDestination(this.target.name),
              postgres: () => ({ type: 'postgres', url: this.target.url, schema: 'replica' }),
              duckdb: () => ({ type: 'duckdb', path: this.duckdbFile }),
            }[this.opts.destination ?? 'postgres'](),
          backfill: { parallelism: 2, rowsPerRange: 1000, ...this.opts.pipeline?.backfill },
          cdc: { flushIntervalMs: 200, ...this.opts.pipeline?.cdc },
          ...(this.opts.pipeline?.rules ? { rules: this.opts.pipeline.rules } : {}),
          ...(this.opts.pipeline?.alerts ? { alerts: this.opts.pipeline.alerts } : {}),
          ...(this.opts.pipeline?.onSlotLost ? { onSlotLost: this.opts.pipeline.onSlotLost } : {}),
        },
      ],
    };
    Object.assign(raw.pipelines[0]!.destination, this.opts.destinationOverride);
    this.config = parseConfig(raw).pipelines[0]!;
    const dir = mkdtempSync(join(tmpdir(), 'walflow-test-'));
    this.configFile = join(dir, 'walflow.yaml');
    writeFileSync(this.configFile, stringify(raw));
    this.connection = await Connection.connect({ address: temporalAddress() });
    this.client = new Client({ connection: this.connection });
    this.handle = pipelineHandle(this.client, this.config.id);
    await this.startWorker();
    return this;
  }

  /** `env`: extra environment for a worker process (e.g. WALFLOW_FAULTS for this one). */
  async startWorker(env: Record<string, string> = {}): Promise<void> {
    if (this.opts.workerProcess) {
      this.workerChild = spawn(process.execPath, ['bin/walflow.js', 'worker', '--config', this.configFile], {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, WALFLOW_FAULTS: this.opts.faults ?? '', ...env },
      });
    } else {
      this.worker = await startWorker({
        address: temporalAddress(),
        taskQueue: this.taskQueue,
        metricsPort: this.opts.metricsPort,
        faults: this.faults,
      });
    }
  }

  /** kill -9 of the worker process: no flush, no goodbye. */
  killWorker(): void {
    this.workerChild?.kill('SIGKILL');
    this.workerChild = undefined;
  }

  start(): Promise<WorkflowHandleWithFirstExecutionRunId<PipelineWorkflow>> {
    return startPipeline(this.client, this.taskQueue, {
      config: this.config,
      maxHistoryEvents: this.opts.maxHistoryEvents,
    });
  }

  status(): Promise<PipelineStatus> {
    return pipelineStatus(this.handle);
  }

  async sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<T>> {
    return (await this.src()).query<T>(text, params);
  }

  async waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        const v = await check();
        if (v) return v;
      } catch (e) {
        last = e;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
  }

  async destinationSql(text: string): Promise<void> {
    await runSql(this.target.url, text);
  }

  async adminSql(text: string): Promise<void> {
    await runSql(pgAdminUrl(), text);
  }

  async schemas(tables = this.opts.tables): Promise<TableSchema[]> {
    return loadTableSchemas(
      await this.src(),
      tables.map((t) => (t.includes('.') ? t : `public.${t}`)),
    );
  }

  /**
   * Live rows per table on both sides (of `tables`, default all; the source's through the pipeline's rules), keyed by
   * primary key, as canonical values.
   */
  async compare(
    tables?: string[],
  ): Promise<{ equal: boolean; diffs: string[]; counts: Record<string, [number, number]> }> {
    const dest = this.opts.consumer ? undefined : await pipelineDestination(this.config);
    const rules = compileRules(this.config, (ref) => resolveSecret(ref)!);
    const diffs: string[] = [];
    const counts: Record<string, [number, number]> = {};
    try {
      const schemas = await this.schemas(tables);
      const consumed = await this.opts.consumer?.tables(schemas);
      for (const schema of schemas) {
        const expected = expectedTable(rules, schema, readTable(await this.src(), schema));
        const keyOf = (r: Row) => JSON.stringify(expected.schema.key.map((k) => r[k]));
        const columns = expected.schema.columns.map((c) => c.name);
        const json = new Set(jsonColumns(expected.schema));
        const values = (r: Row) => JSON.stringify(comparableValues(r, columns, json));
        const src = new Map<string, string>();
        for await (const r of expected.rows) src.set(keyOf(r), values(r));
        const dst = new Map<string, string>();
        await dest?.prepare([schema]);
        for await (const r of consumed?.get(tableKey(expected.schema))?.values() ?? dest!.readLive!(schema))
          dst.set(keyOf(r), values(r));
        counts[tableKey(schema)] = [src.size, dst.size];
        for (const [k, v] of src)
          if (dst.get(k) !== v)
            diffs.push(`${tableKey(schema)} ${k}: source ${v} destination ${dst.get(k) ?? '(missing)'}`);
        for (const k of dst.keys()) if (!src.has(k)) diffs.push(`${tableKey(schema)} ${k}: only in destination`);
      }
    } finally {
      await dest?.close();
    }
    return { equal: diffs.length === 0, diffs: diffs.slice(0, 10), counts };
  }

  async waitForConvergence(timeoutMs = 180_000, tables?: string[]): Promise<void> {
    let last: Awaited<ReturnType<PipelineFixture['compare']>> | undefined;
    try {
      // Comparing reads both sides whole: first wait (cheaply) until the stream has confirmed
      // everything the source has written, then compare, and again after a pause if they differ.
      await this.waitFor(
        'destination to equal source',
        async () => {
          const target = (await this.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
          await this.waitFor(
            "the stream to confirm the source's last change",
            async () => {
              const s = await this.status();
              return s.confirmedLsn !== null && parseLsn(s.confirmedLsn) >= parseLsn(target) && !needsBackfill(s);
            },
            15_000,
          ).catch(() => undefined);
          if ((last = await this.compare(tables)).equal) return true;
          await new Promise((r) => setTimeout(r, 1000));
          return false;
        },
        timeoutMs,
      );
    } catch (e) {
      const status = await this.status().catch(() => undefined);
      throw new Error(
        `${(e as Error).message}\ncounts ${JSON.stringify(last?.counts)}\nfirst ` +
          `differences:\n${last?.diffs.join('\n').slice(0, 3000)}\nlast error: ${status?.lastError}`,
      );
    }
  }

  async slotConfirmedLsn(): Promise<string | null> {
    const { rows } = await this.sql<{ lsn: string | null }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE database = current_database() AND ' +
        'NOT temporary',
    );
    return rows[0]?.lsn ?? null;
  }

  async teardown(): Promise<void> {
    await this.handle?.terminate('test over').catch(() => undefined);
    this.killWorker();
    await this.worker?.shutdown().catch(() => undefined);
    await this.connection?.close();
    await this.sourceClient?.end().catch(() => undefined);
    await this.source?.drop();
    await this.target?.drop();
    if (this.duckdbDir) rmSync(this.duckdbDir, { recursive: true, force: true });
  }
}

async function runSql(url: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

function needsBackfill(s: PipelineStatus): boolean {
  return Object.values(s.tables).some((t) => t.backfill !== 'done');
}

function withUser(url: string, user: string): string {
  const u = new URL(url);
  u.username = user;
  return u.toString();
}
