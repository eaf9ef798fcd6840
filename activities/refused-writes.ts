/**
 * The stream's write of a batch when the destination refuses one table's data: the write is tried again
 * a few times (a refusal can pass: a constraint lifted, a column altered), then that table is stopped —
 * through `stop`, which reports it and is awaited before anything past its unwritten changes can be
 * confirmed — and the other tables' changes are written.
 */
import { formatLsn, versionLsn } from '../lib/lsn.ts';
import { refusedDataFix } from '../lib/errors.ts';
import { tableKey, type Change } from '../lib/model.ts';
import type { TableError } from '../lib/contract/status.ts';
import { DataRefused } from './destinations/refused.ts';

/** Tries per write before the refused table is stopped; the waits between them double from the first. */
export const REFUSED_ATTEMPTS = 3;
const REFUSED_FIRST_WAIT_MS = 1_000;

export interface RefusalHandling {
  pipeline: string;
  write(changes: Change[]): Promise<void>;
  /**
   * The pipeline's name of a table this stream follows (stopped or not: changes from before a stop are still written).
   */
  followed(table: Change['table']): string | undefined;
  /** Reports the table errored (awaited) and stops it. */
  stop(name: string, error: TableError): Promise<void>;
  /** Waits before the next try (heartbeating). */
  wait(ms: number, refusal: DataRefused, attempt: number): Promise<void>;
}

/** Writes `changes`; a table the destination keeps refusing is stopped and left out. Returns what was written. */
export async function writeStoppingRefused(changes: Change[], h: RefusalHandling): Promise<Change[]> {
  let pending = changes;
  while (pending.length) {
    const refused = await writeRetryingRefusals(pending, h);
    if (!refused) return pending;
    const key = tableKey(refused.error.table);
    const name = h.followed(refused.error.table);
    const firstUnwritten = pending.find((c) => tableKey(c.table) === key);
    // Only a table of this batch can be stopped for it; a refusal naming another stays a failure.
    if (!name || !firstUnwritten) throw refused.error;
    await h.stop(name, {
      reason: refused.error.message,
      ...refused.error.refusal,
      lsn: formatLsn(versionLsn(firstUnwritten.version)),
      since: refused.since,
      attempts: refused.attempts,
      fix: refusedDataFix(h.pipeline, name, refused.error.refusal.column),
    });
    pending = pending.filter((c) => tableKey(c.table) !== key);
  }
  return pending;
}

/** A write, tried again while the destination refuses its data; the last refusal if it never stops refusing. */
async function writeRetryingRefusals(
  changes: Change[],
  h: RefusalHandling,
): Promise<{ error: DataRefused; attempts: number; since: string } | undefined> {
  let since: string | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      await h.write(changes);
      return undefined;
    } catch (e) {
      if (!(e instanceof DataRefused)) throw e; // the destination down, slow, ...: the activity is retried
      since ??= new Date().toISOString();
      if (attempt >= REFUSED_ATTEMPTS) return { error: e, attempts: attempt, since };
      await h.wait(REFUSED_FIRST_WAIT_MS * 2 ** (attempt - 1), e, attempt);
    }
  }
}
