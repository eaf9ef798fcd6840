/** `walflow worker` and `walflow check`. */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { findPipeline, parseConfig } from '../lib/config.ts';
import { loadConfig } from '../lib/config-file.ts';
import { preflight } from '../activities/postgres/preflight.ts';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { compileRules } from '../lib/rules.ts';
import { sourceConnection, slotName } from '../activities/source.ts';
import { qualify } from '../activities/stream.ts';
import { startWorker } from '../worker/worker.ts';
import { temporalConnectionSettings } from '../lib/temporal-connection.ts';
import { DEFAULT_CONFIG } from './context.ts';
import { connect } from '../activities/postgres/session.ts';

export function registerWorkerCommands(program: Command): void {
  program.command('worker')
    .description('run a worker (several may run at once); SIGINT/SIGTERM shut it down gracefully')
    .option('-c, --config <file>', 'config file for the Temporal settings (optional)', DEFAULT_CONFIG)
    .option('--task-queue <name>', 'task queue to poll')
    .action(async (opts: { config: string; taskQueue?: string }) => {
      const config = existsSync(opts.config) ? loadConfig(opts.config) : parseConfig({ pipelines: [] });
      const t = temporalConnectionSettings(config.temporal);
      const worker = await startWorker({ ...t, taskQueue: opts.taskQueue ?? t.taskQueue });
      console.error(`walflow worker polling ${opts.taskQueue ?? t.taskQueue} on ${t.address}`);
      await worker.done;
    });

  program.command('check <pipeline>')
    .description("preflight a pipeline's source: every problem at once, each with its fix")
    .option('-c, --config <file>', 'pipeline config file', DEFAULT_CONFIG)
    .option('--json', 'print the report as JSON')
    .action(async (id: string, opts: { config: string; json?: boolean }) => {
      const pipeline = findPipeline(loadConfig(opts.config), id);
      const client = await connect(sourceConnection(pipeline.source));
      try {
        const report = await preflight(client, {
          publication: pipeline.source.publication, tables: pipeline.source.tables.map(qualify),
          createPublication: pipeline.source.createPublication, slot: slotName(id, pipeline.source),
          destination: { type: pipeline.destination.type, tables: pipeline.source.tables.map(qualify) },
        });
        // Rules against each existing table's columns (a missing table is preflight's to report); salts are not needed.
        const rules = compileRules(pipeline, () => '');
        for (const table of Object.keys(pipeline.rules ?? {})) {
          const schema = await loadTableSchemas(client, [qualify(table)]).then(([s]) => s, () => undefined);
          try {
            if (schema) rules.bind(schema);
          } catch (e) {
            report.failures.push((e as Error).message);
          }
        }
        if (opts.json) console.log(JSON.stringify(report));
        else if (report.failures.length === 0) console.log(`pipeline ${id}: preflight passed`);
        else console.log(`pipeline ${id}: ${report.failures.length} problem(s):\n${report.failures.map((f) => `- ${f}`).join('\n')}`);
        if (report.failures.length) process.exitCode = 1;
      } finally {
        await client.end();
      }
    });
}
