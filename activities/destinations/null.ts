/** Discards every change, counting them: for benchmarks and for debugging a source. */
import type { Change } from '../../lib/model.ts';
import type { Destination } from './destination.ts';

export class NullDestination implements Destination {
  changes = 0;

  async prepare(): Promise<void> {}

  async apply(changes: Change[]): Promise<void> {
    this.changes += changes.length;
  }

  async close(): Promise<void> {}
}
