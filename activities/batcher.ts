/**
 * The stream's batching rules, pure (no I/O, no clock of its own): changes accumulate until the batch
 * is full, its oldest change is a flush interval old, or the stream goes quiet; what may be confirmed
 * to Postgres is only the end of the last commit received (or a keepalive position between
 * transactions), so a transaction is never split across a confirmation, and nothing is confirmed
 * that the write before it did not cover. streamChanges feeds it and does what it decides.
 */
import { advancesConfirmed, type Lsn } from '../lib/lsn.ts';
import type { Change, TableSchema } from '../lib/model.ts';

export interface BatchRules {
  maxRows: number;
  flushIntervalMs: number;
}

/** What one flush writes, and the position that may be confirmed once it is written. */
export interface Flush {
  changes: Change[];
  /** Shapes the batch's schema changes leave, by the pipeline's table name: reported before `confirm`. */
  schemas: Record<string, TableSchema>;
  confirm: Lsn | undefined;
}

export class Batcher {
  private changes: Change[] = [];
  private schemas: Record<string, TableSchema> = {};
  private startedAt = 0;
  private inTransaction = false;
  /** End of the last commit received (or a keepalive position between transactions). */
  private safe: Lsn | undefined;

  constructor(
    private readonly rules: BatchRules,
    private confirmed: Lsn | undefined,
  ) {}

  begin(): void {
    this.inTransaction = true;
  }

  /**
   * True when `change` must start a batch of its own, the one buffered written first: a schema change. So a batch
   * written again (a refusal of another table's data retried) never rewrites rows by names it has since renamed.
   */
  startsBatch(change: Change): boolean {
    return change.kind === 'schema' && this.changes.length > 0;
  }

  /** Adds a change of table `name`; true when the batch is full and must be written now. */
  add(change: Change, name: string, now: number): boolean {
    if (change.kind === 'schema') this.schemas[name] = change.schema;
    if (this.changes.length === 0) this.startedAt = now;
    this.changes.push(change);
    return this.changes.length >= this.rules.maxRows;
  }

  commit(endLsn: Lsn): void {
    this.inTransaction = false;
    this.safe = endLsn;
  }

  /**
   * Between transactions everything before the server's position has been received: confirming it
   * lets the slot release WAL that holds no changes for us.
   */
  keepalive(walEnd: Lsn): void {
    if (!this.inTransaction && advancesConfirmed(this.safe, walEnd)) this.safe = walEnd;
  }

  /** Milliseconds until the batch is due by time (the flush interval when it is empty). */
  dueIn(now: number): number {
    return this.changes.length ? this.startedAt + this.rules.flushIntervalMs - now : this.rules.flushIntervalMs;
  }

  /**
   * After a burst: write when the stream went quiet (`quiet`: nothing arrived, the timer woke us), when
   * the oldest change is a flush interval old, or, with nothing buffered, when there is a new position
   * to confirm — a Postgres shutting down sends keepalives back to back (no pass is quiet) and waits
   * for exactly that confirmation before it can stop.
   */
  shouldFlush(now: number, quiet: boolean): boolean {
    if (quiet) return true;
    if (this.changes.length) return now - this.startedAt >= this.rules.flushIntervalMs;
    return this.advances();
  }

  /**
   * Takes the batch; the caller writes it, reports `schemas`, then confirms `confirm` (the batcher counts it
   * confirmed).
   */
  take(): Flush {
    const flush: Flush = {
      changes: this.changes,
      schemas: this.schemas,
      confirm: this.advances() ? this.safe : undefined,
    };
    this.changes = [];
    this.schemas = {};
    if (flush.confirm !== undefined) this.confirmed = flush.confirm;
    return flush;
  }

  private advances(): boolean {
    return advancesConfirmed(this.confirmed, this.safe);
  }
}
