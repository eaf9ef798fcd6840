/** `walflow serve`: the snapshot and change-stream server (serve/server.ts) for application clients. */
import type { Command } from 'commander';
import { ConfigError } from '../lib/config.ts';
import { startServer } from '../serve/server.ts';
import { DEFAULT_CONFIG, openContext } from './context.ts';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'serve snapshots over HTTP and change streams over websockets (config section serve:); sessions run as ' +
        'workflows on the walflow worker',
    )
    .option('-c, --config <file>', 'config file with a serve: section', DEFAULT_CONFIG)
    .action(async (opts: { config: string }) => {
      const ctx = await openContext(opts.config);
      const config = ctx.config.serve;
      if (!config) {
        await ctx.close();
        throw new ConfigError(`${opts.config}: no serve: section (needs at least serve.source.url and serve.tokens)`);
      }
      const server = await startServer({ config, client: ctx.client, taskQueue: ctx.taskQueue });
      console.log(`walflow serve listening on http://${server.address}`);
      await new Promise<void>((resolve) => {
        for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
      });
      await server.close();
      await ctx.close();
    });
}
