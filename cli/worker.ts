/** `walflow worker` and `walflow check`. */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { findPipeline, parseConfig, qualifyTable } from '../lib/config.ts';
import { loadConfig } from '../lib/config-file.ts';
import { checkPipeline } from '../activities/pipeline.ts';
import { connect } from '../activities/postgres/session.ts';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { compileRules } from '../lib/rules.ts';
import { sourceConnection } from '../activities/source.ts';
import { startWorker } from '../worker/worker.ts';
import { temporalConnectionSettings } from '../lib/temporal-connection.ts';
import { DEFAULT_CONFIG } from './context.ts';

export function registerWorkerCommands(program: Command): void {
  program
    .command('worker')
    .description('run a worker (several may run at once); SIGINT/SIGTERM shut it down gracefully')
    .option('-c, --config <file>', 'config file for the Temporal settings (optional)', DEFAULT_CONFIG)
    .option('--task-queue <name>', 'task queue to poll')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port (GET /metrics); off by default', parsePort)
    .action(async (opts: { config: string; taskQueue?: string; metricsPort?: number }) => {
      const config = existsSync(opts.config) ? loadConfig(opts.config) : parseConfig({ pipelines: [] });
      const t = temporalConnectionSettings(config.temporal);
      const worker = await startWorker({
        ...t,
        taskQueue: opts.taskQueue ?? t.taskQueue,
        metricsPort: opts.metricsPort,
      });
      console.error(
        `walflow worker polling ${opts.taskQueue ?? t.taskQueue} ` +
          `on ${t.address}${opts.metricsPort !== undefined ? `; metrics on :${opts.metricsPort}/metrics` : ''}`,
      );
      await worker.done;
    });

  program
    .command('check <pipeline>')
    .description(
      "preflight a pipeline's source and destination: every problem at once, each with its fix; warnings too",
    )
    .option('-c, --config <file>', 'pipeline config file', DEFAULT_CONFIG)
    .option('--json', 'print the report as JSON')
    .action(async (id: string, opts: { config: string; json?: boolean }) => {
      const pipeline = findPipeline(loadConfig(opts.config), id);
      const report = await checkPipeline(pipeline);
      const client = await connect(sourceConnection(pipeline.source));
      try {
        // Rules against each existing table's columns (a missing table is preflight's to report); salts are not needed.
        const rules = compileRules(pipeline, () => '');
        for (const table of Object.keys(pipeline.rules ?? {})) {
          const schema = await loadTableSchemas(client, [qualifyTable(table)]).then(
            ([s]) => s,
            () => undefined,
          );
          try {
            if (schema) rules.bind(schema);
          } catch (e) {
            report.failures.push((e as Error).message);
          }
        }
      } finally {
        await client.end();
      }
      if (opts.json) console.log(JSON.stringify(report));
      else {
        if (report.failures.length === 0) console.log(`pipeline ${id}: preflight passed`);
        else
          console.log(
            `pipeline ${id}: ${report.failures.length} problem(s):\n${report.failures.map((f) => `- ${f}`).join('\n')}`,
          );
        for (const w of report.warnings) console.log(`warning: ${w}`);
      }
      if (report.failures.length) process.exitCode = 1;
    });
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--metrics-port must be a port number (0..65535), not "${text}"`);
  return port;
}
