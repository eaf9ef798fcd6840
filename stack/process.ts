/**
 * Detached background processes tracked by PID files: started once, found
 * again by later CLI calls, stopped by their own PID.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';

export class StackError extends Error {
  override name = 'StackError';
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (exited, not yet reaped by a parent that is busy, e.g. in spawnSync) is not alive.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The command line of a live process, to tell our process from one that reused its PID. */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

export function readPid(file: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]?.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export type PidState = { state: 'running'; pid: number } | { state: 'stale'; pid: number } | { state: 'none' };

/** Reads a PID file; a PID that is dead, or alive but not running `expect`, is stale. */
export function pidState(file: string, expect: string): PidState {
  const pid = readPid(file);
  if (pid === undefined) return { state: 'none' };
  if (isAlive(pid) && commandLine(pid).includes(expect)) return { state: 'running', pid };
  return { state: 'stale', pid };
}

export function portInUse(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function assertPortFree(port: number, what: string, envVar: string): Promise<void> {
  if (await portInUse(port)) {
    throw new StackError(
      `${what}: port ${port} on 127.0.0.1 is already in use by another process. ` +
        `Stop that process, or choose another port with ${envVar}=<port>.`,
    );
  }
}

export interface Launch {
  command: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
}

/** Starts a process in its own session, output to `logFile`, and records its PID. */
export function startDetached(launch: Launch, pidFile: string, logFile: string): number {
  mkdirSync(dirname(pidFile), { recursive: true });
  mkdirSync(dirname(logFile), { recursive: true });
  const out = openSync(logFile, 'a');
  try {
    const child = spawn(launch.command, launch.args, {
      cwd: launch.cwd,
      env: { ...process.env, ...launch.env },
      detached: true,
      stdio: ['ignore', out, out],
    });
    if (child.pid === undefined) throw new StackError(`could not start ${launch.command}`);
    child.unref();
    writeFileSync(pidFile, `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(out);
  }
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  hint: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(250);
  }
  throw new StackError(`${what} did not become healthy within ${Math.round(timeoutMs / 1000)} s. ${hint}`);
}

/** Waits up to `ms` for `pid` to exit; true if it has. */
export async function exited(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  return !isAlive(pid);
}

/** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves when the PID is gone. */
export async function stopPid(pid: number, signal: NodeJS.Signals = 'SIGTERM', graceMs = 20_000): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  if (!(await exited(pid, graceMs))) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    while (isAlive(pid)) await sleep(50);
  }
}

export function removeFile(file: string): void {
  rmSync(file, { force: true });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A stack process tracked by its PID file: its name, the text its command line shows, and its health check. */
export interface TrackedService {
  name: string;
  pidFile: string;
  logFile: string;
  /** Text the process's command line contains, so a recycled PID is not mistaken for it. */
  match: string;
  /** Ports it will listen on, with the setting that changes each. */
  ports: { port: number; envVar: string; what: string }[];
  healthy(): Promise<boolean>;
  startTimeoutMs: number;
}

/** Starts the service unless its PID file names it running; clears a stale PID file with a message. */
export async function startTracked(s: TrackedService, launch: () => Launch): Promise<'started' | 'running'> {
  const state = pidState(s.pidFile, s.match);
  if (state.state === 'running') return 'running';
  if (state.state === 'stale') {
    console.error(`${s.name}: removing stale PID file ${s.pidFile} (PID ${state.pid} is not a running ${s.match})`);
    removeFile(s.pidFile);
  }
  for (const p of s.ports) await assertPortFree(p.port, p.what, p.envVar);
  startDetached(launch(), s.pidFile, s.logFile);
  await waitFor(s.name, s.healthy, s.startTimeoutMs, `See ${s.logFile}.`);
  return 'started';
}

/** Stops the service by its own PID; false when it was not running. */
export async function stopTracked(s: Pick<TrackedService, 'pidFile' | 'match'>): Promise<boolean> {
  const state = pidState(s.pidFile, s.match);
  if (state.state !== 'running') return false;
  await stopPid(state.pid);
  removeFile(s.pidFile);
  return true;
}
