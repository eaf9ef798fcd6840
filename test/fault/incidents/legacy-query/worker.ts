/** One worker process of the reproduction (killed with SIGKILL by repro.ts, as a crash). */
import { NativeConnection, Worker } from '@temporalio/worker';

const [address, taskQueue, name] = process.argv.slice(2);
const worker = await Worker.create({
  connection: await NativeConnection.connect({ address }),
  taskQueue,
  ...(process.env.STICKY_TIMEOUT ? { stickyQueueScheduleToStartTimeout: process.env.STICKY_TIMEOUT } : {}),
  workflowsPath: new URL('./workflow.ts', import.meta.url).pathname,
  sinks: {
    clock: {
      seen: {
        fn: (info, signal: number, at: number) =>
          console.log(`${name} ${info.unsafe.isReplaying ? 'replay' : 'live'} signal ${signal} at ${at}`),
        callDuringReplay: true,
      },
    },
  },
});
console.log(`${name} polling`);
await worker.run();
