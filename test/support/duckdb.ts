/** Another process holding a DuckDB file (as the DuckDB CLI or a second worker would): DuckDB's lock is per process. */
import { spawn } from 'node:child_process';

export interface FileHolder {
  pid: number;
  release(): Promise<void>;
}

/**
 * A child process that opens `path` as soon as it can (within `waitMs`) and keeps it open until released;
 * undefined if the file stayed taken that long.
 */
export async function holdDuckDBFile(path: string, waitMs = 10_000): Promise<FileHolder | undefined> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `
    const { DuckDBInstance } = require('@duckdb/node-api');
    const take = () => DuckDBInstance.create(${JSON.stringify(path)})
      .then(() => { console.log('held'); setInterval(() => {}, 1000); }, () => setTimeout(take, 50));
    take();`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const release = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  };
  const held = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), waitMs);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('held')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (held) return { pid: child.pid!, release };
  await release();
  return undefined;
}
