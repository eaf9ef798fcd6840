/** What every pipeline command needs: the validated config, a Temporal client, and whether a worker listens. */
import { Client, Connection, WorkflowUpdateStage, type WorkflowHandle } from '@temporalio/client';
import type { UpdateDefinition } from '@temporalio/common';
import proto from '@temporalio/proto';
import { findPipeline, type LoadedConfig, type PipelineConfig } from '../lib/config.ts';
import { loadConfig } from '../lib/config-file.ts';
import { causes } from '../lib/errors.ts';
import { temporalConnectionSettings, type TemporalConnectionSettings } from '../lib/temporal-connection.ts';

export const DEFAULT_CONFIG = 'walflow.yaml';

/**
 * How long a command waits for a worker to answer before saying none does. The server lists a
 * stopped worker's pollers for minutes (a live one's last poll may be a minute old too), so only an
 * answer proves a worker runs. A query is quick; an update is validated by the worker first.
 */
export const QUERY_ANSWER_MS = 2_000;
export const UPDATE_ACCEPT_MS = 10_000;

export interface CommandContext {
  config: LoadedConfig;
  client: Client;
  settings: TemporalConnectionSettings;
  taskQueue: string;
  close(): Promise<void>;
}

export async function openContext(configFile: string): Promise<CommandContext> {
  const config = loadConfig(configFile);
  const settings = temporalConnectionSettings(config.temporal);
  const { address, namespace, taskQueue, tls, apiKey } = settings;
  const connection = await Connection.connect({ address, tls, apiKey, connectTimeout: 5000 }).catch((e: Error) => {
    throw new Error(
      `cannot reach Temporal at ${address}: ${e.message} (is the server up? \`walflow stack up\` starts one)`,
    );
  });
  return {
    config,
    client: new Client({ connection, namespace }),
    settings,
    taskQueue,
    close: () => connection.close(),
  };
}

/** Runs `fn` with a context for pipeline `id`, closing the connection afterwards. */
export async function withPipeline<T>(
  configFile: string,
  id: string,
  fn: (ctx: CommandContext, pipeline: PipelineConfig) => Promise<T>,
): Promise<T> {
  const ctx = await openContext(configFile);
  try {
    return await fn(ctx, findPipeline(ctx.config, id));
  } finally {
    await ctx.close();
  }
}

/** The task queue's workflow pollers, as the server saw them (DescribeTaskQueue). */
async function workflowPollers(ctx: CommandContext): Promise<number> {
  const res = await ctx.client.workflowService.describeTaskQueue({
    namespace: ctx.settings.namespace,
    taskQueue: { name: ctx.taskQueue, kind: proto.temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return res.pollers?.length ?? 0;
}

export const noWorkerMessage = (ctx: CommandContext): string =>
  `no worker polls task queue ${ctx.taskQueue} (namespace ${ctx.settings.namespace} at ${ctx.settings.address}): ` +
  `start one with \`walflow worker\``;

export class NoWorkerError extends Error {
  override name = 'NoWorkerError';
}

/**
 * A call that ran out of its deadline, however the SDK wrapped it: gRPC DEADLINE_EXCEEDED (code 4), or
 * CANCELLED (code 1), which the client reports instead when its deadline fires first (seen under load).
 */
function isDeadline(e: unknown, deadline: number): boolean {
  for (const c of causes(e) as Iterable<{ code?: number }>) {
    if (c.code === 4 || (c.code === 1 && Date.now() >= deadline)) return true;
  }
  return false;
}

/**
 * Runs a query only when a worker can answer it: fails at once when no worker polls the task queue,
 * and after QUERY_ANSWER_MS when pollers are listed but none answers.
 */
export async function queryWithWorker<T>(ctx: CommandContext, query: () => Promise<T>): Promise<T> {
  // Both at once: with no pollers at all the answer is known without waiting for the deadline.
  const deadline = Date.now() + QUERY_ANSWER_MS;
  const answer = ctx.client.connection.withDeadline(deadline, query).catch((e) => {
    throw isDeadline(e, deadline)
      ? new NoWorkerError(`no worker answered within ${QUERY_ANSWER_MS / 1000} s: ${noWorkerMessage(ctx)}`)
      : e;
  });
  answer.catch(() => undefined); // settled below or abandoned when no worker polls
  if (!(await workerPolls(ctx))) throw new NoWorkerError(noWorkerMessage(ctx));
  return answer;
}

/**
 * Sends an update only when a worker can take it: fails at once without pollers, and when no worker
 * accepts it within UPDATE_ACCEPT_MS (validated and accepted means a worker runs it); then waits for
 * its result however long it takes (a drop waits for the stream to stop).
 */
export async function updateWithWorker<Ret, Args extends unknown[]>(
  ctx: CommandContext,
  handle: WorkflowHandle,
  update: UpdateDefinition<Ret, Args>,
  args: Args,
): Promise<Ret> {
  if (!(await workerPolls(ctx))) throw new NoWorkerError(noWorkerMessage(ctx));
  const deadline = Date.now() + UPDATE_ACCEPT_MS;
  const accepted = await ctx.client.connection
    .withDeadline(deadline, () =>
      handle.startUpdate(update.name, {
        args: args as unknown as [unknown],
        waitForStage: WorkflowUpdateStage.ACCEPTED,
      }),
    )
    .catch((e) => {
      throw isDeadline(e, deadline)
        ? new NoWorkerError(
            `no worker took the update within ${UPDATE_ACCEPT_MS / 1000} s (it may still run when one ` +
              `does): ${noWorkerMessage(ctx)}`,
          )
        : e;
    });
  return accepted.result() as Promise<Ret>;
}

/** Whether a worker polls the task queue (for commands that work without one but should say so). */
export async function workerPolls(ctx: CommandContext): Promise<boolean> {
  return (await workflowPollers(ctx)) > 0;
}
