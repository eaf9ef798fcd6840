/** Discards every change, counting them: for benchmarks and for debugging a source. */
import type { Version } from '../../lib/lsn.ts';
import type { Change, TableSchema } from '../../lib/model.ts';
import type { Destination } from './destination.ts';

export class NullDestination implements Destination {
  changes = 0;

  /** Nothing is kept, so any shape change is fine. */
  canRetype(): boolean {
    return true;
  }
  canRename(): boolean {
    return true;
  }

  async prepare(): Promise<void> {}

  async apply(changes: Change[]): Promise<void> {
    this.changes += changes.length;
  }

  /** Takes backfill rows as COPY text too: the null figure is then walflow's copy path without a destination. */
  acceptsCopyText(): boolean {
    return true;
  }

  async applyCopyText(_table: TableSchema, _version: Version, _text: Buffer, rows: number): Promise<void> {
    this.changes += rows;
  }

  async close(): Promise<void> {}
}
