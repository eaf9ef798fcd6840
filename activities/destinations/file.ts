/**
 * Change envelopes as JSON Lines files: <path>/<pipeline>/ (or one folder per table under it), each file
 * named after its first change's version, `<commit LSN, 16 hex>-<position, 8 hex>-<writer>-<n>.jsonl[.gz]`, so
 * names sort by LSN (`n` counts a writer's files: a backfill's rows all have its snapshot's version). Every
 * writer (the stream, each range copy) has files of its own; a file is closed and the next started once it
 * holds `maxBytes` of JSON text (a batch may span files), or when a write finds it older than `maxAgeMs`.
 * A batch is appended, each file it went to fsynced (and its folder, when the file is new) before apply()
 * resolves. With gzip each write is one gzip member (concatenated members are one valid gzip stream).
 *
 * A writer killed mid-write can leave a torn last line (or gzip member) at the end of its file: that batch
 * was never acknowledged, so its changes are written again, whole, to a later file. Readers skip a last
 * line that does not parse and de-duplicate by envelope id.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { SEQ_BITS } from '../../lib/lsn.ts';
import { tableKey, type Change, type TableSchema } from '../../lib/model.ts';
import type { Destination } from './destination.ts';
import { type Envelopes, jsonLines } from './envelopes.ts';

export interface FileDestinationOptions {
  /** The pipeline's folder (<path>/<pipeline>). */
  dir: string;
  split: 'pipeline' | 'table';
  maxBytes: number;
  maxAgeMs: number;
  gzip: boolean;
}

interface OpenFile {
  handle: FileHandle;
  /** JSON text written (before gzip). */
  bytes: number;
  openedAt: number;
}

/** `<LSN>-<position>` of a version, fixed width so names sort as versions do. */
export function versionName(version: bigint): string {
  const lsn = (version >> SEQ_BITS).toString(16).toUpperCase().padStart(16, '0');
  const position = (version & ((1n << SEQ_BITS) - 1n)).toString(16).toUpperCase().padStart(8, '0');
  return `${lsn}-${position}`;
}

export class FileDestination implements Destination {
  private readonly files = new Map<string, OpenFile>();
  /** Tells this writer's files from those of writers running beside it. */
  private readonly writer = randomBytes(4).toString('hex');
  private opened = 0;

  constructor(
    private readonly opts: FileDestinationOptions,
    private readonly envelopes: Envelopes,
  ) {}

  /** A change stream passes every widening and rename on as a schema envelope: there is no table to alter. */
  canRetype(): boolean {
    return true;
  }
  canRename(): boolean {
    return true;
  }

  async prepare(tables: TableSchema[]): Promise<void> {
    this.envelopes.learn(tables);
    await mkdir(this.opts.dir, { recursive: true });
  }

  async apply(changes: Change[]): Promise<void> {
    const groups = new Map<string, Change[]>();
    for (const c of changes) {
      const folder = this.opts.split === 'table' ? encodeURIComponent(tableKey(c.table)) : '';
      const group = groups.get(folder);
      if (group) group.push(c);
      else groups.set(folder, [c]);
    }
    for (const [folder, group] of groups) {
      for (let start = 0; start < group.length; ) {
        const file = await this.fileFor(folder, group[start]!.version);
        // Lines up to the file's size limit (at least one); the rest go to the next file.
        let text = '';
        let end = start;
        while (end < group.length && (end === start || file.bytes < this.opts.maxBytes)) {
          const line = jsonLines([this.envelopes.of(group[end++]!)]);
          text += line;
          file.bytes += Buffer.byteLength(line);
        }
        await file.handle.write(this.opts.gzip ? gzipSync(text) : Buffer.from(text));
        await file.handle.sync();
        start = end;
      }
    }
  }

  /** The folder's open file, or a new one (durably created) when there is none or it is due for rotation. */
  private async fileFor(folder: string, firstVersion: bigint): Promise<OpenFile> {
    const current = this.files.get(folder);
    if (current && current.bytes < this.opts.maxBytes && Date.now() - current.openedAt < this.opts.maxAgeMs)
      return current;
    if (current) {
      this.files.delete(folder);
      await current.handle.close();
    }
    const dir = join(this.opts.dir, folder);
    if (await mkdir(dir, { recursive: true })) await syncFolder(this.opts.dir); // a new table folder
    const sequence = String(++this.opened).padStart(6, '0');
    const name = `${versionName(firstVersion)}-${this.writer}-${sequence}.jsonl${this.opts.gzip ? '.gz' : ''}`;
    const handle = await open(join(dir, name), 'wx');
    await syncFolder(dir);
    const file = { handle, bytes: 0, openedAt: Date.now() };
    this.files.set(folder, file);
    return file;
  }

  async close(): Promise<void> {
    const files = [...this.files.values()];
    this.files.clear();
    await Promise.all(files.map((f) => f.handle.close()));
  }
}

/** fsync of a folder: makes a file created in it survive a crash. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
