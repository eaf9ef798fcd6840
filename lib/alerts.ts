/**
 * Warnings about a pipeline's slot and backfill snapshot past the thresholds of config `alerts`: the same
 * text in `walflow status`, the workflow's current details and the worker log.
 */
import type { PipelineConfig } from './config.ts';
import type { SlotHealth } from './contract/status.ts';

/** Defaults of config `alerts`, for configs recorded before it existed. */
const DEFAULT_ALERTS = { lagBytes: 1024 ** 3, snapshotAgeMinutes: 60 };

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** `streamError`: the stream's current failure, which says why the slot is behind (e.g. the destination is down). */
export function slotWarnings(config: PipelineConfig, h: SlotHealth, streamError?: string): string[] {
  const alerts = config.alerts ?? DEFAULT_ALERTS;
  const warnings: string[] = [];
  const failing = streamError ? `; the stream is failing: ${streamError}` : '';
  if (!h.exists) return [`replication slot ${h.name} does not exist${failing}`];
  if (h.walStatus === 'lost') {
    warnings.push(
      `replication slot ${h.name} was invalidated by Postgres (wal_status lost): the WAL it needed is gone; the ` +
        `slot must be recreated and every table resynced`,
    );
  } else if (h.walStatus === 'unreserved') {
    warnings.push(
      `replication slot ${h.name} is past max_slot_wal_keep_size (wal_status unreserved): Postgres invalidates it ` +
        `at the next checkpoint unless it catches up${failing}`,
    );
  }
  if (h.lagBytes !== null && h.lagBytes > alerts.lagBytes) {
    const limit =
      h.safeWalSize === null
        ? 'nothing limits the WAL it keeps (max_slot_wal_keep_size = -1): the source disk can fill'
        : `${formatBytes(Math.max(0, h.safeWalSize))} more before Postgres invalidates it`;
    warnings.push(
      `replication slot ${h.name} is ${formatBytes(h.lagBytes)} behind the server's WAL ` +
        `(alerts.lagBytes ${formatBytes(alerts.lagBytes)}), ` +
        `retaining ${formatBytes(h.retainedBytes ?? h.lagBytes)}, wal_status ${h.walStatus}, ${limit}${failing}`,
    );
  }
  const s = h.snapshot;
  if (s && s.ageSeconds > alerts.snapshotAgeMinutes * 60) {
    warnings.push(
      `backfill snapshot (temporary slot ${s.slot}) is ${Math.round(s.ageSeconds / 60)} minutes old ` +
        `(alerts.snapshotAgeMinutes ${alerts.snapshotAgeMinutes}) ` +
        `and holds back xmin ${s.xmin ?? '?'}${s.xminAge !== null ? ` (${s.xminAge} transactions)` : ''}: vacuum ` +
        `cannot remove rows that died since it was taken`,
    );
  }
  return warnings;
}
