/** What every pipeline command needs: the validated config and a Temporal client. */
import { Client, Connection } from '@temporalio/client';
import { findPipeline, loadConfig, type PipelineConfig, type WalflowConfig } from '../lib/config.ts';

export const DEFAULT_CONFIG = 'walflow.yaml';

export interface CommandContext {
  config: WalflowConfig;
  client: Client;
  taskQueue: string;
  close(): Promise<void>;
}

export function temporalSettings(config: WalflowConfig) {
  return {
    address: process.env.WALFLOW_TEMPORAL_ADDRESS || config.temporal.address,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
  };
}

export async function openContext(configFile: string): Promise<CommandContext> {
  const config = loadConfig(configFile);
  const { address, namespace, taskQueue } = temporalSettings(config);
  const connection = await Connection.connect({ address, connectTimeout: 5000 }).catch((e: Error) => {
    throw new Error(`cannot reach Temporal at ${address}: ${e.message} (is the server up? \`walflow stack up\` starts one)`);
  });
  return { config, client: new Client({ connection, namespace }), taskQueue, close: () => connection.close() };
}

/** Runs `fn` with a context for pipeline `id`, closing the connection afterwards. */
export async function withPipeline<T>(configFile: string, id: string, fn: (ctx: CommandContext, pipeline: PipelineConfig) => Promise<T>): Promise<T> {
  const ctx = await openContext(configFile);
  try {
    return await fn(ctx, findPipeline(ctx.config, id));
  } finally {
    await ctx.close();
  }
}
