/**
 * Prometheus metrics of a worker (prom-client): what its activities copied, applied and failed, and the
 * slot each stream watches. Served on `walflow worker --metrics-port N` (off by default).
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Change } from '../lib/model.ts';
import type { SlotHealth } from '../lib/contract/status.ts';

export class WalflowMetrics {
  readonly registry = new Registry();
  private readonly rowsCopied = new Counter({
    name: 'walflow_rows_copied_total',
    help: 'Rows written to the destination by backfill range copies',
    labelNames: ['pipeline', 'table'],
    registers: [this.registry],
  });
  private readonly changesApplied = new Counter({
    name: 'walflow_changes_applied_total',
    help: 'Changes (inserts, updates, deletes, truncates) durably written by the change stream',
    labelNames: ['pipeline', 'table'],
    registers: [this.registry],
  });
  private readonly applyLatency = new Histogram({
    name: 'walflow_apply_latency_seconds',
    help: 'Source commit to durable destination write, per table and flushed batch (its oldest change)',
    labelNames: ['pipeline', 'table'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  private readonly errors = new Counter({
    name: 'walflow_errors_total',
    help: 'Failed activity attempts (each is retried): component stream or backfill; table empty for the stream',
    labelNames: ['pipeline', 'component', 'table'],
    registers: [this.registry],
  });
  private readonly lagBytes = new Gauge({
    name: 'walflow_lag_bytes',
    help: "WAL between the slot's confirmed position and the server's current one",
    labelNames: ['pipeline'],
    registers: [this.registry],
  });
  private readonly lagSeconds = new Gauge({
    name: 'walflow_lag_seconds',
    help:
      'Seconds since the commit of the newest change written, while the slot is behind the server (0 when ' +
      'caught up)',
    labelNames: ['pipeline'],
    registers: [this.registry],
  });
  private readonly walRetained = new Gauge({
    name: 'walflow_wal_retained_bytes',
    help: "WAL the slot keeps on the source's disk (from its restart_lsn)",
    labelNames: ['pipeline'],
    registers: [this.registry],
  });
  /** Per pipeline: commit time (ms) of the newest change written, for lag in seconds. */
  private readonly newestWritten = new Map<string, number>();

  copied(pipeline: string, table: string, rows: number): void {
    this.rowsCopied.inc({ pipeline, table }, rows);
  }

  /** A batch the stream wrote; `tableOf` names a change's table as the pipeline config does. */
  applied(pipeline: string, changes: Change[], tableOf: (c: Change) => string): void {
    const now = Date.now();
    const perTable = new Map<string, { n: number; oldest: number }>();
    for (const c of changes) {
      if (c.kind === 'schema') continue;
      const table = tableOf(c);
      const at = c.tx ? Date.parse(c.tx.commitTime) : now;
      const t = perTable.get(table);
      if (t) {
        t.n++;
        t.oldest = Math.min(t.oldest, at);
      } else perTable.set(table, { n: 1, oldest: at });
      if (at > (this.newestWritten.get(pipeline) ?? 0)) this.newestWritten.set(pipeline, at);
    }
    for (const [table, t] of perTable) {
      this.changesApplied.inc({ pipeline, table }, t.n);
      this.applyLatency.observe({ pipeline, table }, Math.max(0, now - t.oldest) / 1000);
    }
  }

  failed(pipeline: string, component: 'stream' | 'backfill', table = ''): void {
    this.errors.inc({ pipeline, component, table });
  }

  slot(pipeline: string, health: SlotHealth): void {
    if (health.lagBytes !== null) this.lagBytes.set({ pipeline }, health.lagBytes);
    if (health.retainedBytes !== null) this.walRetained.set({ pipeline }, health.retainedBytes);
    const newest = this.newestWritten.get(pipeline);
    if (!health.lagBytes) this.lagSeconds.set({ pipeline }, 0);
    else if (newest !== undefined) this.lagSeconds.set({ pipeline }, Math.max(0, Date.now() - newest) / 1000);
  }
}

/** Serves `GET /metrics` on `port` (all interfaces, as Prometheus scrapes from elsewhere). */
export async function serveMetrics(metrics: WalflowMetrics, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404).end('walflow serves /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
      },
      (e: Error) => res.writeHead(500).end(e.message),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(new Error(`cannot serve metrics on port ${port}: ${e.message} (choose another --metrics-port)`)),
    );
    server.listen(port, resolve);
  });
  return server;
}
