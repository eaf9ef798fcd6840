/**
 * The stack's NATS: a real nats-server with JetStream, on loopback, as a PID-tracked process. Installed
 * pinned with `go install` (the Go module proxy serves it) under the tools folder on first use.
 * `sync_interval: always`: the server fsyncs before it acknowledges a publish, so an acknowledged change
 * survives a crash of this single server too (with replicas, JetStream's quorum gives that instead).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { ports, stateDir, toolsDir } from './paths.ts';
import { StackError, startTracked, stopTracked, type TrackedService } from './process.ts';

const NATS_SERVER_VERSION = 'v2.15.3';
const NATS_SERVER_MODULE = `github.com/nats-io/nats-server/v2@${NATS_SERVER_VERSION}`;
const binDir = join(toolsDir, `nats-server-${NATS_SERVER_VERSION}`);

const dir = join(stateDir, 'nats');
const pidFile = join(dir, 'nats.pid');
const logFile = join(dir, 'nats.log');
const configFile = join(dir, 'nats.conf');

export const natsUrl = (): string => `nats://127.0.0.1:${ports.nats}`;

/** The pinned nats-server binary, installed if missing (needs Go and the module proxy). */
export function ensureNatsServer(): string {
  const bin = join(binDir, 'nats-server');
  if (existsSync(bin)) return bin;
  mkdirSync(binDir, { recursive: true });
  console.error(`installing nats-server (go install ${NATS_SERVER_MODULE}) into ${binDir} ...`);
  try {
    execFileSync('go', ['install', NATS_SERVER_MODULE], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, GOBIN: binDir, CGO_ENABLED: '0' },
    });
  } catch (e) {
    throw new StackError(
      `cannot install nats-server: ${(e as Error).message}. Install Go (https://go.dev/dl), or run your own ` +
        'nats-server with JetStream and set WALFLOW_NATS_URL.',
    );
  }
  return bin;
}

/** Healthy: the server greets a connection with its INFO, and JetStream is on. */
export function natsHealthy(url = natsUrl()): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || 4222) });
    let greeting = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('data', (chunk) => {
      greeting += chunk.toString('utf8');
      if (greeting.includes('\n')) done(/^INFO .*"jetstream":true/.test(greeting));
    });
  });
}

const service: TrackedService = {
  name: 'nats',
  pidFile,
  logFile,
  match: 'nats-server',
  startTimeoutMs: 30_000,
  ports: [{ port: ports.nats, envVar: 'WALFLOW_NATS_PORT', what: 'nats' }],
  healthy: () => natsHealthy(),
};

export function startNats(): Promise<'started' | 'running'> {
  return startTracked(service, () => {
    const bin = ensureNatsServer();
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      configFile,
      [
        `listen: "127.0.0.1:${ports.nats}"`,
        `jetstream { store_dir: ${JSON.stringify(join(dir, 'data'))}, sync_interval: always }`,
        '',
      ].join('\n'),
    );
    return { command: bin, args: ['-c', configFile] };
  });
}

export const stopNats = (): Promise<boolean> => stopTracked(service);
