/** Renders a pipeline's status for people: a progress bar per table during backfill, lag during CDC, the slot read live. */
import { readSlotHealth } from '../activities/postgres/slot.ts';
import { connect } from '../activities/postgres/session.ts';
import { slotName, snapshotApplicationName, sourceConnection } from '../activities/source.ts';
import { formatBytes as bytes, slotWarnings } from '../lib/alerts.ts';
import type { PipelineConfig } from '../lib/config.ts';
import type { PipelineStatus, SlotHealth } from '../workflows/definitions.ts';

function bar(done: number, total: number, width = 24): string {
  const ratio = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(ratio * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%`;
}

/**
 * The workflow's status plus the slot and snapshot as the source reports them now (the workflow's own
 * numbers are the stream's last report, which stops while the stream fails): `slot`, a live `lagBytes`,
 * and `warnings` against config `alerts`. A source that cannot be read leaves the workflow's numbers.
 */
export async function withLiveSlot(config: PipelineConfig, status: PipelineStatus): Promise<PipelineStatus> {
  let health: SlotHealth;
  try {
    const client = await connect({ ...sourceConnection(config.source), connectionTimeoutMillis: 5_000 });
    try {
      health = await readSlotHealth(client, slotName(config.id, config.source), snapshotApplicationName(config.id));
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch (e) {
    return { ...status, slot: null, warnings: [...(status.warnings ?? []), `cannot read the slot from the source: ${(e as Error).message}`] };
  }
  // Before the pipeline has created its slot, a missing one is no news.
  const warnings = !health.exists && status.phase === 'starting' ? [] : slotWarnings(config, health, status.errors?.stream?.message);
  return { ...status, lagBytes: health.lagBytes ?? status.lagBytes, slot: health, warnings };
}

function slotLine(h: SlotHealth): string {
  if (!h.exists) return `  slot ${h.name}: does not exist`;
  const limit = h.safeWalSize === null ? 'no WAL limit (max_slot_wal_keep_size = -1)' : `safe_wal_size ${bytes(Math.max(0, h.safeWalSize))}`;
  return `  slot ${h.name}: wal_status ${h.walStatus ?? '-'}, ${h.active ? 'active' : 'inactive'}, retaining ${h.retainedBytes === null ? '-' : bytes(h.retainedBytes)}, ${limit}`;
}

export function renderStatus(s: PipelineStatus): string {
  const lines = [
    `pipeline ${s.pipeline}: ${s.phase}${s.paused && s.phase !== 'paused' ? ' (paused)' : ''}`,
    `  confirmed LSN ${s.confirmedLsn ?? '-'}   lag ${s.lagBytes === null ? '-' : bytes(s.lagBytes)}${s.snapshotLsn ? `   backfill snapshot ${s.snapshotLsn}` : ''}`,
  ];
  if (s.slot) lines.push(slotLine(s.slot));
  const snap = s.slot?.snapshot;
  if (snap) lines.push(`  backfill snapshot ${Math.round(snap.ageSeconds / 60)} min old, holding back xmin ${snap.xmin ?? '-'}${snap.xminAge !== null ? ` (${snap.xminAge} transactions)` : ''}`);
  const width = Math.max(5, ...Object.keys(s.tables).map((t) => t.length));
  for (const [table, t] of Object.entries(s.tables)) {
    const c = t.changes;
    const changes = `+${c.inserts} ~${c.updates} -${c.deletes}${c.truncates ? ` truncates ${c.truncates}` : ''}`;
    const backfill = t.backfill === 'copying'
      ? `${bar(t.rangesDone, t.rangesTotal)} ranges ${t.rangesDone}/${t.rangesTotal} rows ${t.rowsCopied}/~${t.rowsEstimate}`
      : t.backfill === 'done' ? `backfilled ${t.rowsCopied} rows` : 'backfill pending';
    lines.push(`  ${table.padEnd(width)}  ${backfill}   changes ${changes}`);
  }
  for (const w of s.warnings ?? []) lines.push(`  warning: ${w}`);
  const errors = Object.entries(s.errors ?? {});
  for (const [component, e] of errors) lines.push(`  error in ${component} since ${e.since}${e.count > 1 ? ` (${e.count} failures)` : ''}: ${e.message}`);
  if (!errors.length && s.lastError) lines.push(`  last error: ${s.lastError}`);
  return lines.join('\n');
}
