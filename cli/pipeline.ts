/** Pipeline commands: start, status, pause, resume, tables, resync, schedule, drop. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import {
  addTablesUpdate, dropUpdate, pauseSignal, pipelineWorkflowId, removeTablesUpdate, resumeSignal, resyncTablesUpdate, statusQuery,
  SEARCH_ATTRIBUTE_PHASE, SEARCH_ATTRIBUTE_PIPELINE,
} from '../workflows/definitions.ts';
import { pipelineWorkflow, resyncWorkflow } from '../workflows/index.ts';
import { DEFAULT_CONFIG, withPipeline } from './context.ts';
import { renderStatus } from './status.ts';

const pipelineKey = defineSearchAttributeKey(SEARCH_ATTRIBUTE_PIPELINE, SearchAttributeType.KEYWORD);
const phaseKey = defineSearchAttributeKey(SEARCH_ATTRIBUTE_PHASE, SearchAttributeType.KEYWORD);

const configOption = ['-c, --config <file>', 'pipeline config file', DEFAULT_CONFIG] as const;

export const resyncScheduleId = (id: string): string => `walflow-${id}-resync`;

export function registerPipelineCommands(program: Command): void {
  program.command('start <pipeline>')
    .description('start a pipeline: preflight, slot, backfill, then continuous CDC')
    .option(...configOption)
    .action((id: string, opts: { config: string }) => withPipeline(opts.config, id, async ({ client, taskQueue }, config) => {
      const workflowId = pipelineWorkflowId(id);
      try {
        await client.workflow.start(pipelineWorkflow, {
          workflowId, taskQueue, args: [{ config }],
          typedSearchAttributes: [{ key: pipelineKey, value: id }, { key: phaseKey, value: 'starting' }],
          staticSummary: `walflow pipeline ${id}: ${config.source.tables.length} table(s) → ${config.destination.type}`,
        });
        console.log(`started pipeline ${id} (workflow ${workflowId})`);
      } catch (e) {
        if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
        console.log(`pipeline ${id} is already running (workflow ${workflowId})`);
      }
    }));

  program.command('status <pipeline>')
    .description("show a pipeline's phase, confirmed LSN, lag and per-table progress")
    .option(...configOption)
    .option('--json', 'print the status as JSON')
    .option('--watch', 'refresh every second until interrupted')
    .action((id: string, opts: { config: string; json?: boolean; watch?: boolean }) => withPipeline(opts.config, id, async ({ client }) => {
      const handle = client.workflow.getHandle(pipelineWorkflowId(id));
      for (;;) {
        const status = await handle.query(statusQuery);
        if (opts.json) console.log(JSON.stringify(status));
        else console.log(`${opts.watch ? '\x1b[2J\x1b[H' : ''}${renderStatus(status)}`);
        if (!opts.watch) return;
        await sleep(1000);
      }
    }));

  program.command('pause <pipeline>')
    .description('pause: the stream flushes, acknowledges and stops; the slot is kept')
    .option(...configOption)
    .action((id: string, opts: { config: string }) => withPipeline(opts.config, id, async ({ client }) => {
      await client.workflow.getHandle(pipelineWorkflowId(id)).signal(pauseSignal);
      console.log(`pause requested for ${id}`);
    }));

  program.command('resume <pipeline>')
    .description('resume a paused pipeline from its confirmed LSN')
    .option(...configOption)
    .action((id: string, opts: { config: string }) => withPipeline(opts.config, id, async ({ client }) => {
      await client.workflow.getHandle(pipelineWorkflowId(id)).signal(resumeSignal);
      console.log(`resume requested for ${id}`);
    }));

  const tables = program.command('tables').description("change a running pipeline's tables");
  for (const [verb, update] of [['add', addTablesUpdate], ['remove', removeTablesUpdate]] as const) {
    tables.command(`${verb} <pipeline> <tables...>`)
      .description(verb === 'add' ? 'add tables (validated first, then backfilled from a fresh snapshot)' : 'stop replicating tables (destination data is kept)')
      .option(...configOption)
      .action((id: string, names: string[], opts: { config: string }) => withPipeline(opts.config, id, async ({ client }) => {
        const now = await client.workflow.getHandle(pipelineWorkflowId(id)).executeUpdate(update, { args: [names] });
        console.log(`pipeline ${id} tables: ${now.join(', ')}`);
      }));
  }

  program.command('resync <pipeline>')
    .description('re-copy tables from a fresh snapshot while CDC runs, removing rows gone from the source')
    .option(...configOption)
    .option('--tables <list>', 'comma-separated tables (default: all of the pipeline\'s)')
    .option('--wait', 'wait for the resync to finish')
    .action((id: string, opts: { config: string; tables?: string; wait?: boolean }) => withPipeline(opts.config, id, async ({ client, taskQueue }, config) => {
      const named = opts.tables?.split(',').map((t) => t.trim()).filter(Boolean);
      // Errored tables are rebuilt and re-copied by the pipeline itself (it stops skipping them); the rest by a resync workflow.
      const pipeline = client.workflow.getHandle(pipelineWorkflowId(id));
      const states = (await pipeline.query(statusQuery)).tables;
      const errored = (named ?? config.source.tables).filter((t) => states[t]?.state === 'errored');
      if (errored.length) {
        await pipeline.executeUpdate(resyncTablesUpdate, { args: [errored] });
        console.log(`rebuilding and re-copying errored table(s) ${errored.join(', ')} (see walflow status ${id})`);
      }
      const rest = (named ?? config.source.tables).filter((t) => !errored.includes(t));
      if (!rest.length) return;
      const workflowId = `${resyncScheduleId(id)}-${Date.now()}`;
      const handle = await client.workflow.start(resyncWorkflow, {
        workflowId, taskQueue, args: [{ config, tables: named ? rest : errored.length ? rest : undefined }],
        typedSearchAttributes: [{ key: pipelineKey, value: id }, { key: phaseKey, value: 'resync' }],
      });
      console.log(`resync started (workflow ${workflowId})`);
      if (opts.wait) {
        const result = await handle.result();
        console.log(`resync done: ${result.rowsCopied} rows copied at snapshot ${result.snapshotLsn}`);
      }
    }));

  program.command('schedule').description('Temporal Schedules for a pipeline')
    .command('resync <pipeline>')
    .description('create (or replace) a Temporal Schedule that resyncs the pipeline')
    .requiredOption('--cron <expr>', 'cron expression, e.g. "0 3 * * *"')
    .option('--tables <list>', 'comma-separated tables (default: all)')
    .option(...configOption)
    .action((id: string, opts: { config: string; cron: string; tables?: string }) => withPipeline(opts.config, id, async ({ client, taskQueue }, config) => {
      const scheduleId = resyncScheduleId(id);
      await client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
      await client.schedule.create({
        scheduleId,
        spec: { cronExpressions: [opts.cron] },
        policies: { overlap: ScheduleOverlapPolicy.SKIP },
        action: {
          type: 'startWorkflow', workflowType: resyncWorkflow, taskQueue, workflowId: scheduleId,
          args: [{ config, tables: opts.tables?.split(',').map((t) => t.trim()).filter(Boolean) }],
          typedSearchAttributes: [{ key: pipelineKey, value: id }, { key: phaseKey, value: 'resync' }],
        },
      });
      console.log(`schedule ${scheduleId} created: resync ${id} on "${opts.cron}"`);
    }));

  program.command('drop <pipeline>')
    .description('stop the pipeline, drop its replication slot and the publication walflow created')
    .option(...configOption)
    .action((id: string, opts: { config: string }) => withPipeline(opts.config, id, async ({ client }) => {
      const handle = client.workflow.getHandle(pipelineWorkflowId(id));
      await handle.executeUpdate(dropUpdate);
      await handle.result();
      await client.schedule.getHandle(resyncScheduleId(id)).delete().catch(() => undefined);
      console.log(`pipeline ${id} dropped`);
    }));
}
