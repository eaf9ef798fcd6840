/** `walflow stack up | down | status`. */
import type { Command } from 'commander';
import { stackDown, stackStatus, stackUp, type StackStatus } from '../stack/index.ts';

function printStatus(status: StackStatus): void {
  const width = Math.max(...Object.keys(status).map((k) => k.length));
  for (const [name, { url, healthy }] of Object.entries(status)) {
    console.log(`${name.padEnd(width)}  ${healthy ? 'healthy  ' : 'UNHEALTHY'}  ${url}`);
  }
}

export function registerStackCommands(program: Command): void {
  const stack = program
    .command('stack')
    .description('run the local stack (Postgres, Temporal dev server, destinations) on loopback');

  stack
    .command('up')
    .description('start every stack component that is not running yet (idempotent)')
    .option('--pg15', "also run Debian's PostgreSQL 15 beside the default PostgreSQL 18")
    .option('--json', 'print the status as JSON')
    .action(async (opts: { pg15?: boolean; json?: boolean }) => {
      const { started, status } = await stackUp({ postgres15: opts.pg15 });
      if (opts.json) {
        console.log(JSON.stringify(status));
        return;
      }
      console.log(started.length ? `started: ${started.join(', ')}` : 'already running');
      printStatus(status);
    });

  stack
    .command('down [components...]')
    .description(
      'stop the stack components walflow started (all, or those named: postgres, temporal, clickhouse, snowflake, ' +
        'nats...), each by its own PID',
    )
    .action(async (components: string[]) => {
      const stopped = await stackDown(components.length ? components : undefined);
      console.log(stopped.length ? `stopped: ${stopped.join(', ')}` : 'nothing was running');
    });

  stack
    .command('status')
    .description("print each component's URL and health")
    .option('--json', 'print one JSON object keyed by component: { "url": ..., "healthy": true|false }')
    .action(async (opts: { json?: boolean }) => {
      const status = await stackStatus();
      if (opts.json) console.log(JSON.stringify(status));
      else printStatus(status);
      if (!Object.values(status).every((s) => s.healthy)) process.exitCode = 1;
    });
}
