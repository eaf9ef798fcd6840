/**
 * What the stream tells its workflow: changes applied per table, the confirmed LSN and the slot's lag,
 * as a `streamProgress` signal at most every 2 s while there is news and every 30 s otherwise (each
 * signal is a history event). Progress is for status only: a report that cannot get through never
 * stalls the stream; its counts go with the next one.
 */
import type { StreamProgress } from '../lib/contract/pipeline.ts';
import { addChangeCounters, newChangeCounters, type ChangeCounters } from '../lib/contract/status.ts';
import { formatLsn, type Lsn } from '../lib/lsn.ts';
import type { Change } from '../lib/model.ts';

const REPORT_EVERY_MS = 2_000;
const IDLE_REPORT_EVERY_MS = 30_000;

const FIELD = { insert: 'inserts', update: 'updates', delete: 'deletes', truncate: 'truncates' } as const;

export interface ReportSink {
  /** The slot's lag and the alert warnings, read when a report is due. */
  slot(): Promise<{ lagBytes: number | null; warnings: string[] }>;
  send(progress: StreamProgress): Promise<void>;
  warn(message: string): void;
}

export class StreamReporter {
  private unreported: Record<string, ChangeCounters> = {};
  private lastReport = 0;
  private reportedLsn: Lsn | undefined;

  /** `counters`: the totals of this stream's attempts so far (carried in the heartbeat). */
  constructor(
    readonly counters: Record<string, ChangeCounters>,
    private readonly sink: ReportSink,
  ) {}

  count(table: string, c: Change): void {
    const field = c.kind in FIELD ? FIELD[c.kind as keyof typeof FIELD] : undefined;
    if (!field) return;
    (this.counters[table] ??= newChangeCounters())[field]++;
    (this.unreported[table] ??= newChangeCounters())[field]++;
  }

  async report(confirmed: Lsn | undefined, force: boolean): Promise<void> {
    if (!confirmed) return;
    const since = Date.now() - this.lastReport;
    const news = confirmed !== this.reportedLsn || Object.keys(this.unreported).length > 0;
    if (!force && (since < REPORT_EVERY_MS || (!news && since < IDLE_REPORT_EVERY_MS))) return;
    this.lastReport = Date.now();
    this.reportedLsn = confirmed;
    const { lagBytes, warnings } = await this.sink.slot();
    const progress: StreamProgress = {
      confirmedLsn: formatLsn(confirmed),
      lagBytes,
      changes: this.unreported,
      warnings,
    };
    this.unreported = {};
    await this.sink.send(progress).catch((e: Error) => {
      for (const [t, c] of Object.entries(progress.changes))
        addChangeCounters((this.unreported[t] ??= newChangeCounters()), c);
      this.sink.warn(`progress report failed: ${e.message}`);
    });
  }
}
