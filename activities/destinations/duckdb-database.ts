/**
 * One DuckDB database per path in a worker process, with one writer. DuckDB lets one process at a time
 * open a database file, and in that process one instance: range copies, the change stream and readers of
 * the same file share one instance here and take turns through one queue. The file is opened when work
 * arrives and closed after a second without any, so other processes (`walflow verify`, the DuckDB CLI,
 * another worker) can open it in between; while another process holds it, work here waits for it and
 * then fails with an error naming the file and the holder, which Temporal retries. A MotherDuck database
 * (`md:`) has no file lock: its connection stays open while anything here uses it.
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

export class DuckDBFileBusyError extends Error {
  override name = 'DuckDBFileBusyError';
}

/** How long a file stays open after its last piece of work. */
const IDLE_CLOSE_MS = 1000;
const LOCK_RETRY_MS = 200;

export const isMotherDuck = (path: string): boolean => path.startsWith('md:');

export interface Lease {
  connection: DuckDBConnection;
  /** Gives the database to the next piece of work; idempotent. */
  release(): void;
}

export class DuckDBDatabase {
  private static readonly byPath = new Map<string, DuckDBDatabase>();

  /** The process's database at `path`; each user calls `detach` when done with it. */
  static attach(path: string, token?: string): DuckDBDatabase {
    const key = isMotherDuck(path) ? path : resolve(path);
    let db = DuckDBDatabase.byPath.get(key);
    if (!db) {
      db = new DuckDBDatabase(key, token);
      DuckDBDatabase.byPath.set(key, db);
    }
    db.users++;
    return db;
  }

  private users = 0;
  /** Pieces of work queued or running. */
  private pending = 0;
  private tail: Promise<void> = Promise.resolve();
  private open?: { instance: DuckDBInstance; connection: DuckDBConnection };
  private idle?: NodeJS.Timeout;

  private constructor(
    readonly path: string,
    private readonly token?: string,
  ) {}

  /** Waits for the database (at most `lockWaitMs` for another process to let go of the file), exclusively. */
  acquire(lockWaitMs: number): Promise<Lease> {
    this.pending++;
    clearTimeout(this.idle);
    const previous = this.tail;
    let next!: () => void;
    this.tail = new Promise<void>((r) => {
      next = r;
    });
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.pending--;
      next();
      this.closeWhenIdle();
    };
    return previous.then(async () => {
      try {
        return { connection: await this.connect(lockWaitMs), release };
      } catch (e) {
        release();
        throw e;
      }
    });
  }

  async run<T>(lockWaitMs: number, work: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
    const lease = await this.acquire(lockWaitMs);
    try {
      return await work(lease.connection);
    } catch (e) {
      this.close(); // whatever state the failure left the session in, the next piece of work starts afresh
      throw e;
    } finally {
      lease.release();
    }
  }

  detach(): void {
    this.users--;
    this.closeWhenIdle();
  }

  private async connect(lockWaitMs: number): Promise<DuckDBConnection> {
    if (this.open) return this.open.connection;
    const deadline = Date.now() + lockWaitMs;
    const md = isMotherDuck(this.path);
    if (!md) mkdirSync(dirname(this.path), { recursive: true });
    for (;;) {
      try {
        const instance = await DuckDBInstance.create(
          this.path,
          md && this.token ? { motherduck_token: this.token } : {},
        );
        const connection = await instance.connect();
        this.open = { instance, connection };
        await connection.run(`SET TimeZone = 'UTC'`);
        return connection;
      } catch (e) {
        const held = /Could not set lock on file/.test((e as Error).message);
        if (!held) throw e;
        if (Date.now() >= deadline) {
          const holder = /Conflicting lock is held in ([^.]*)/.exec((e as Error).message)?.[1];
          throw new DuckDBFileBusyError(
            `DuckDB file ${this.path} is held by another process${holder ? ` (${holder})` : ''}: ` +
              'DuckDB lets one process at a time open a file; walflow retries until it is free (close the other ' +
              'program)',
            { cause: e },
          );
        }
        await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
      }
    }
  }

  private closeWhenIdle(): void {
    if (this.pending > 0) return;
    clearTimeout(this.idle);
    if (this.users <= 0) {
      this.close();
      DuckDBDatabase.byPath.delete(this.path);
    } else if (!isMotherDuck(this.path)) {
      this.idle = setTimeout(() => {
        if (this.pending === 0) this.close();
      }, IDLE_CLOSE_MS);
      this.idle.unref();
    }
  }

  private close(): void {
    const open = this.open;
    this.open = undefined;
    open?.connection.closeSync();
    open?.instance.closeSync();
  }
}
