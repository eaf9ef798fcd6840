/**
 * The stack's Snowflake emulator: fakesnow's server behind walflow's small JSON-results layer
 * (stack/snowflake-emulator.py), installed pinned into a project-local venv, data on disk under the
 * state folder. With SNOWFLAKE_ACCOUNT set, the user's real Snowflake is used instead.
 */
import { join } from 'node:path';
import { ports, projectRoot, stateDir, toolsDir } from './paths.ts';
import { ensurePythonTool } from './python.ts';
import { StackError, startTracked, stopTracked, type TrackedService } from './process.ts';

/** Pinned to the versions verified together (fakesnow imports connector modules that 5.x removed). */
const EMULATOR_REQUIREMENTS = [
  'fakesnow[server]==0.12.1',
  'snowflake-connector-python==4.8.1',
  'duckdb==2.0.0',
  'sqlglot==30.22.0',
  'pyarrow==26.0.1',
  'starlette==1.10.0',
  'uvicorn==0.54.0',
];
const venv = join(toolsDir, 'fakesnow');
const dir = join(stateDir, 'snowflake');

/** The emulator has one warehouse, under this name. */
export const EMULATOR_WAREHOUSE = 'FAKESNOW_WAREHOUSE';

export const snowflakeUrl = (): string => `http://127.0.0.1:${ports.snowflake}`;

/** Healthy = answers the driver's session endpoint (401 without a session token, as Snowflake does). */
export async function snowflakeHealthy(url = snowflakeUrl()): Promise<boolean> {
  try {
    const res = await fetch(new URL('/session', url), { method: 'POST', signal: AbortSignal.timeout(2000) });
    return res.status === 401;
  } catch {
    return false;
  }
}

const service: TrackedService = {
  name: 'snowflake',
  pidFile: join(dir, 'snowflake.pid'),
  logFile: join(dir, 'snowflake.log'),
  match: 'snowflake-emulator',
  startTimeoutMs: 60_000,
  ports: [{ port: ports.snowflake, envVar: 'WALFLOW_SNOWFLAKE_PORT', what: 'snowflake emulator' }],
  healthy: () => snowflakeHealthy(),
};

export function startSnowflake(): Promise<'started' | 'running'> {
  return startTracked(service, () => {
    try {
      ensurePythonTool(venv, EMULATOR_REQUIREMENTS, 'the Snowflake emulator');
    } catch (e) {
      throw new StackError(
        `cannot install the Snowflake emulator: ${(e as Error).message}. Set SNOWFLAKE_ACCOUNT (and credentials) to ` +
          `use a real Snowflake instead.`,
      );
    }
    return {
      command: join(venv, 'bin', 'python'),
      args: [
        join(projectRoot, 'stack', 'snowflake-emulator.py'),
        '--port',
        String(ports.snowflake),
        '--data',
        join(dir, 'data'),
      ],
    };
  });
}

export const stopSnowflake = (): Promise<boolean> => stopTracked(service);
