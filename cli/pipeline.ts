/** Pipeline commands: start, status, pause, resume, tables, resync, schedule, drop. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { canResync, findPipeline, type PipelineConfig } from '../lib/config.ts';
import {
  addTablesUpdate,
  dropUpdate,
  pauseSignal,
  phaseKey,
  pipelineKey,
  pipelineWorkflowId,
  removeTablesUpdate,
  resumeSignal,
  resyncScheduleId,
  resyncTablesUpdate,
} from '../lib/contract/pipeline.ts';
import { pipelineHandle, pipelineStatus, startPipeline } from '../lib/pipeline-client.ts';
import { resyncWorkflow } from '../workflows/index.ts';
import { applyFileConfig } from './apply.ts';
import {
  DEFAULT_CONFIG,
  noWorkerMessage,
  NoWorkerError,
  openContext,
  queryWithWorker,
  updateWithWorker,
  withPipeline,
  workerPolls,
  type CommandContext,
} from './context.ts';
import { listSessions, renderSessions } from './sessions.ts';
import { gatherStatus, renderStatus, withLiveSlot } from './status.ts';

const configOption = ['-c, --config <file>', 'pipeline config file', DEFAULT_CONFIG] as const;

/** For what Temporal records without a worker (signals, starts): done, but it waits for a worker, so say so. */
async function warnWithoutWorker(ctx: CommandContext, workflowId: string, what: string): Promise<void> {
  await queryWithWorker(ctx, () => pipelineStatus(ctx.client.workflow.getHandle(workflowId))).catch((e) => {
    if (!(e instanceof NoWorkerError)) throw e;
    console.error(`walflow: ${e.message}; ${what} takes effect when one runs`);
  });
}

function refuseResync(config: PipelineConfig): void {
  if (!canResync(config.destination))
    throw new Error(
      `pipeline ${config.id}: a ${config.destination.type} destination cannot be resynced (its rows cannot be read ` +
        `back)`,
    );
}

export function registerPipelineCommands(program: Command): void {
  program
    .command('start <pipeline>')
    .description(
      'start a pipeline: preflight, slot, backfill, then continuous CDC; on a running one, apply the file (see apply)',
    )
    .option(...configOption)
    .action((id: string, opts: { config: string }) =>
      withPipeline(opts.config, id, async (ctx, config) => {
        const workflowId = pipelineWorkflowId(id);
        try {
          await startPipeline(ctx.client, ctx.taskQueue, { config });
          console.log(`started pipeline ${id} (workflow ${workflowId})`);
          if (!(await workerPolls(ctx)))
            console.error(`walflow: ${noWorkerMessage(ctx)}; the pipeline starts when one runs`);
        } catch (e) {
          if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
          console.log(`pipeline ${id} is already running (workflow ${workflowId})`);
          await applyFileConfig(ctx, config);
        }
      }),
    );

  program
    .command('apply <pipeline>')
    .description(
      'apply walflow.yaml to a running pipeline in place (connections, secrets, batch/flush/parallelism, tables): ' +
        'no new slot, no backfill of its tables',
    )
    .option(...configOption)
    .action((id: string, opts: { config: string }) =>
      withPipeline(opts.config, id, (ctx, config) => applyFileConfig(ctx, config)),
    );

  program
    .command('status [pipeline]')
    .description(
      "show a pipeline's phase, confirmed LSN, lag, slot and WAL (read live from the source), warnings, errors and " +
        "per-table progress; --sessions: walflow serve's sessions",
    )
    .option(...configOption)
    .option('--json', 'print the status as JSON (on failure {"pipeline", "error"}, exit 1)')
    .option('--watch', 'refresh every second until interrupted')
    .option('--sessions', 'also (or, without a pipeline, only) list the running walflow serve sessions')
    .action((id: string | undefined, opts: { config: string; json?: boolean; watch?: boolean; sessions?: boolean }) =>
      (async () => {
        if (!id && !opts.sessions) throw new Error('status needs a pipeline id (or --sessions)');
        const ctx = await openContext(opts.config);
        try {
          const config = id ? findPipeline(ctx.config, id) : undefined;
          for (;;) {
            const out: string[] = [];
            if (config) {
              const status = await withLiveSlot(config, await gatherStatus(ctx, config));
              out.push(opts.json ? JSON.stringify(status) : renderStatus(status));
            }
            if (opts.sessions) {
              const sessions = await listSessions(ctx.client, ctx.taskQueue);
              out.push(opts.json ? JSON.stringify({ sessions }) : renderSessions(sessions));
            }
            console.log(`${opts.watch && !opts.json ? '\x1b[2J\x1b[H' : ''}${out.join('\n')}`);
            if (!opts.watch) return;
            await sleep(1000);
          }
        } finally {
          await ctx.close();
        }
      })().catch((e: Error) => {
        if (!opts.json) throw e;
        console.log(JSON.stringify({ pipeline: id ?? null, error: e.message }));
        process.exitCode = 1;
      }),
    );

  program
    .command('pause <pipeline>')
    .description('pause: the stream flushes, acknowledges and stops; the slot is kept')
    .option(...configOption)
    .action((id: string, opts: { config: string }) =>
      withPipeline(opts.config, id, async (ctx) => {
        await pipelineHandle(ctx.client, id).signal(pauseSignal);
        console.log(`pause requested for ${id}`);
        await warnWithoutWorker(ctx, pipelineWorkflowId(id), 'the pause');
      }),
    );

  program
    .command('resume <pipeline>')
    .description('resume a paused pipeline from its confirmed LSN')
    .option(...configOption)
    .action((id: string, opts: { config: string }) =>
      withPipeline(opts.config, id, async (ctx) => {
        await pipelineHandle(ctx.client, id).signal(resumeSignal);
        console.log(`resume requested for ${id}`);
        await warnWithoutWorker(ctx, pipelineWorkflowId(id), 'the resume');
      }),
    );

  const tables = program.command('tables').description("change a running pipeline's tables");
  for (const [verb, update] of [
    ['add', addTablesUpdate],
    ['remove', removeTablesUpdate],
  ] as const) {
    tables
      .command(`${verb} <pipeline> <tables...>`)
      .description(
        verb === 'add'
          ? 'add tables (validated first, then backfilled from a fresh snapshot)'
          : 'stop replicating tables (destination data is kept)',
      )
      .option(...configOption)
      .action((id: string, names: string[], opts: { config: string }) =>
        withPipeline(opts.config, id, async (ctx) => {
          const now = await updateWithWorker(ctx, pipelineHandle(ctx.client, id), update, [names]);
          console.log(`pipeline ${id} tables: ${now.join(', ')}`);
        }),
      );
  }
  tables
    .command('retry <pipeline> <tables...>')
    .description(
      "get errored tables going again once their cause is fixed: each is rebuilt with the source's shape and " +
        're-copied from a fresh snapshot (which covers the changes skipped while it was errored); the others keep ' +
        'streaming',
    )
    .option(...configOption)
    .action((id: string, names: string[], opts: { config: string }) =>
      withPipeline(opts.config, id, async (ctx) => {
        await updateWithWorker(ctx, pipelineHandle(ctx.client, id), resyncTablesUpdate, [names]);
        console.log(`retrying table(s) ${names.join(', ')} of ${id}: rebuilt, re-copying (see walflow status ${id})`);
      }),
    );

  program
    .command('resync <pipeline>')
    .description('re-copy tables from a fresh snapshot while CDC runs, removing rows gone from the source')
    .option(...configOption)
    .option('--tables <list>', "comma-separated tables (default: all of the pipeline's)")
    .option('--wait', 'wait for the resync to finish')
    .action((id: string, opts: { config: string; tables?: string; wait?: boolean }) =>
      withPipeline(opts.config, id, async (ctx, config) => {
        refuseResync(config);
        // By default the tables the pipeline runs with now (after `tables add/remove`), not the file's.
        const status = await gatherStatus(ctx, config);
        const running = Object.keys(status.tables);
        const named = opts.tables
          ?.split(',')
          .map((t) => t.trim())
          .filter(Boolean);
        // Errored tables are rebuilt and re-copied by the pipeline itself (it stops skipping them); the rest by a
        // resync workflow.
        const errored = (named ?? running).filter((t) => status.tables[t]?.state === 'errored');
        if (errored.length) {
          await updateWithWorker(ctx, pipelineHandle(ctx.client, id), resyncTablesUpdate, [errored]);
          console.log(`rebuilding and re-copying errored table(s) ${errored.join(', ')} (see walflow status ${id})`);
        }
        const rest = (named ?? running).filter((t) => !errored.includes(t));
        if (errored.length && !rest.length) return;
        const tables = named || errored.length ? rest : running.length ? running : undefined;
        const workflowId = `${resyncScheduleId(id)}-${Date.now()}`;
        const handle = await ctx.client.workflow.start(resyncWorkflow, {
          workflowId,
          taskQueue: ctx.taskQueue,
          args: [{ config, tables }],
          typedSearchAttributes: [
            { key: pipelineKey, value: id },
            { key: phaseKey, value: 'resync' },
          ],
          staticSummary: `walflow resync of ${id}`,
        });
        console.log(`resync started (workflow ${workflowId})`);
        if (!(await workerPolls(ctx)))
          console.error(`walflow: ${noWorkerMessage(ctx)}; the resync starts when one runs`);
        if (opts.wait) {
          const result = await handle.result();
          console.log(`resync done: ${result.rowsCopied} rows copied at snapshot ${result.snapshotLsn}`);
        }
      }),
    );

  program
    .command('schedule')
    .description('Temporal Schedules for a pipeline')
    .command('resync <pipeline>')
    .description('create (or replace) a Temporal Schedule that resyncs the pipeline')
    .requiredOption('--cron <expr>', 'cron expression, e.g. "0 3 * * *"')
    .option('--tables <list>', 'comma-separated tables (default: all)')
    .option(...configOption)
    .action((id: string, opts: { config: string; cron: string; tables?: string }) =>
      withPipeline(opts.config, id, async ({ client, taskQueue }, config) => {
        refuseResync(config);
        const scheduleId = resyncScheduleId(id);
        await client.schedule
          .getHandle(scheduleId)
          .delete()
          .catch(() => undefined);
        await client.schedule.create({
          scheduleId,
          spec: { cronExpressions: [opts.cron] },
          policies: { overlap: ScheduleOverlapPolicy.SKIP },
          action: {
            type: 'startWorkflow',
            workflowType: resyncWorkflow,
            taskQueue,
            workflowId: scheduleId,
            args: [
              {
                config,
                tables: opts.tables
                  ?.split(',')
                  .map((t) => t.trim())
                  .filter(Boolean),
              },
            ],
            typedSearchAttributes: [
              { key: pipelineKey, value: id },
              { key: phaseKey, value: 'resync' },
            ],
          },
        });
        console.log(`schedule ${scheduleId} created: resync ${id} on "${opts.cron}"`);
      }),
    );

  program
    .command('drop <pipeline>')
    .description('stop the pipeline, drop its replication slot and the publication walflow created')
    .option(...configOption)
    .action((id: string, opts: { config: string }) =>
      withPipeline(opts.config, id, async (ctx) => {
        const handle = pipelineHandle(ctx.client, id);
        await updateWithWorker(ctx, handle, dropUpdate, []);
        await handle.result(); // the drop update removed the resync schedule too
        console.log(`pipeline ${id} dropped`);
      }),
    );
}
