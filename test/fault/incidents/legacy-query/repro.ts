/**
 * Reproduces, against a Temporal server (the stack's by default), a workflow task whose commands do not replay:
 * `npx tsx test/fault/incidents/legacy-query/repro.ts [address]`. Exits 1 when the history fails to replay
 * (the SDK divergence is present), 0 when it replays. What happens is in README.md beside this file.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { temporalAddress } from '../../../../stack/temporal.ts';
import { count, legacyQueryWorkflow, tick } from './workflow.ts';

const address = process.argv[2] ?? temporalAddress();
const taskQueue = `legacy-query-${Date.now()}`;
const startWorker = (name: string) =>
  spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./worker.ts', import.meta.url).pathname, address, taskQueue, name],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );

const client = new Client({ connection: await Connection.connect({ address }) });
const first = startWorker('A');
await sleep(4000);
const handle = await client.workflow.start(legacyQueryWorkflow, { taskQueue, workflowId: taskQueue });
let signal = 0;
// A history longer than one page, each signal in its own workflow task on A.
for (; signal < 150; signal++) {
  await handle.signal(tick, signal);
  await sleep(40);
}
first.kill('SIGKILL'); // A's sticky queue keeps the run; nobody polls it
await sleep(1000);
const second = startWorker('B'); // B has no cache of the run
await sleep(3000);
// A query now waits on A's sticky queue, then goes to B as a legacy query with the whole history. The signals
// sent meanwhile are buffered in a workflow task scheduled on A's sticky queue (it times out after 10 s).
const query = handle.query(count);
await sleep(3000);
for (let i = 0; i < 40; i++, signal++) {
  await handle.signal(tick, signal);
  await sleep(170);
}
console.log(`query answered ${await query} signals (sent: ${signal})`);
await sleep(15_000); // the buffered task times out on A's queue and B completes it
const history = await handle.fetchHistory();
second.kill('SIGKILL');
await handle.terminate();
try {
  await Worker.runReplayHistory({ workflowsPath: new URL('./workflow.ts', import.meta.url).pathname }, history);
  console.log('the history replays');
} catch (e) {
  console.log(`the history does not replay: ${(e as Error).message.slice(0, 300)}`);
  process.exitCode = 1;
}
