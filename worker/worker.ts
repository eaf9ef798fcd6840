/** Builds a walflow worker: the workflows bundle plus activities bound to their dependencies. */
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import { createActivities } from '../activities/index.ts';
import { FaultPoints } from '../lib/faults.ts';
import { workflowBundlePath } from './bundle.ts';
import { serveMetrics, WalflowMetrics } from './metrics.ts';

export const DEFAULT_TASK_QUEUE = 'walflow';

export interface WorkerOptions {
  address: string;
  namespace?: string;
  /** TLS / mTLS and an API key, already resolved from their secret references (lib/temporal-connection.ts). */
  tls?: TLSConfig;
  apiKey?: string;
  taskQueue?: string;
  /** Activities in flight on one worker (range copies, streams, ...). */
  maxConcurrentActivities?: number;
  /** Serve Prometheus metrics on this port (GET /metrics); off when absent. */
  metricsPort?: number;
  /** Fault points for tests; by default those WALFLOW_FAULTS arms (none). */
  faults?: FaultPoints;
}

export interface RunningWorker {
  worker: Worker;
  /** Resolves when the worker has shut down and its connections are closed. */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

let runtimeInstalled = false;

/** The SDK's own log level (once per process): workers are quiet unless WALFLOW_LOG_LEVEL says otherwise. */
function installRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger((process.env.WALFLOW_LOG_LEVEL ?? 'WARN') as LogLevel) });
}

/**
 * Creates and starts a worker. On shutdown (SIGINT/SIGTERM or `shutdown()`), running activities are
 * cancelled and given time to flush and acknowledge what they wrote; nothing is half-acknowledged.
 */
export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  installRuntime();
  const namespace = opts.namespace ?? 'default';
  const metrics = opts.metricsPort === undefined ? undefined : new WalflowMetrics();
  const metricsServer = metrics && (await serveMetrics(metrics, opts.metricsPort!));
  const { address, tls, apiKey } = opts;
  const clientConnection = await Connection.connect({ address, tls, apiKey });
  const connection = await NativeConnection.connect({ address, tls, apiKey });
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
    workflowBundle: { codePath: workflowBundlePath() },
    activities: createActivities({
      client: new Client({ connection: clientConnection, namespace }),
      metrics,
      faults: opts.faults ?? FaultPoints.fromEnv(),
    }),
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities ?? 32,
    shutdownGraceTime: '30 seconds',
    // Cancellation reaches an activity only in a heartbeat's answer, and heartbeats are sent at most once
    // per throttle interval (by default 80 % of the 30 s heartbeat timeout): without this a pause or a
    // continue-as-new left the stream running for up to 24 s.
    maxHeartbeatThrottleInterval: '2 seconds',
    // How long a workflow task waits on a dead worker's sticky queue before any worker may take it (default 10 s).
    // Short, because a status query reaching another worker meanwhile makes it run the events buffered behind that
    // task apart from the task, at an older clock, and the run then fails to replay, for good (a Temporal SDK bug:
    // test/fault/incidents). A slow but live worker only costs a replay elsewhere.
    stickyQueueScheduleToStartTimeout: '1 second',
  });
  const done = worker.run().finally(async () => {
    await connection.close();
    await clientConnection.close();
    await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)));
  });
  return {
    worker,
    done,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}
