/** The walflow operator CLI. Each command lives in its own module; this file only wires them. */
import { Command } from 'commander';
import { causes } from '../lib/errors.ts';
import { registerPipelineCommands } from './pipeline.ts';
import { registerServeCommand } from './serve.ts';
import { registerStackCommands } from './stack.ts';
import { registerVerifyCommand } from './verify.ts';
import { registerWorkerCommands } from './worker.ts';

const program = new Command('walflow')
  .description('Postgres change-data-capture pipelines as durable Temporal workflows')
  .showHelpAfterError();

registerPipelineCommands(program);
registerWorkerCommands(program);
registerVerifyCommand(program);
registerStackCommands(program);
registerServeCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  console.error(`walflow: ${describeError(e)}`);
  process.exitCode = 1;
}

/** The error and its causes: a failed update or workflow says why (e.g. the preflight message). */
function describeError(e: unknown): string {
  const messages: string[] = [];
  for (const c of causes(e) as Iterable<{ message?: string }>) {
    if (c.message && !messages.includes(c.message)) messages.push(c.message);
  }
  return messages.join(': ');
}
