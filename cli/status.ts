/** Renders a pipeline's status for people: a progress bar per table during backfill, lag during CDC. */
import type { PipelineStatus } from '../workflows/definitions.ts';

function bar(done: number, total: number, width = 24): string {
  const ratio = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(ratio * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function renderStatus(s: PipelineStatus): string {
  const lines = [
    `pipeline ${s.pipeline}: ${s.phase}${s.paused && s.phase !== 'paused' ? ' (paused)' : ''}`,
    `  confirmed LSN ${s.confirmedLsn ?? '-'}   lag ${s.lagBytes === null ? '-' : bytes(s.lagBytes)}${s.snapshotLsn ? `   backfill snapshot ${s.snapshotLsn}` : ''}`,
  ];
  const width = Math.max(5, ...Object.keys(s.tables).map((t) => t.length));
  for (const [table, t] of Object.entries(s.tables)) {
    const c = t.changes;
    const changes = `+${c.inserts} ~${c.updates} -${c.deletes}${c.truncates ? ` truncates ${c.truncates}` : ''}`;
    const backfill = t.backfill === 'copying'
      ? `${bar(t.rangesDone, t.rangesTotal)} ranges ${t.rangesDone}/${t.rangesTotal} rows ${t.rowsCopied}/~${t.rowsEstimate}`
      : t.backfill === 'done' ? `backfilled ${t.rowsCopied} rows` : 'backfill pending';
    const state = t.state && t.state !== 'streaming' && t.state !== 'backfilling' ? `${t.state.toUpperCase()}   ` : '';
    lines.push(`  ${table.padEnd(width)}  ${state}${backfill}   changes ${changes}`);
    if (t.error) lines.push(`  ${' '.repeat(width)}  ${t.error.reason}; fix: ${t.error.fix}`);
    if (t.droppedColumns?.length) lines.push(`  ${' '.repeat(width)}  dropped in the source, kept in the destination: ${t.droppedColumns.join(', ')}`);
  }
  if (s.lastError) lines.push(`  last error: ${s.lastError}`);
  return lines.join('\n');
}
