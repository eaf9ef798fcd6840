/**
 * A pipeline's status as the CLI shows it: the workflow's answer to the `status` query, or, when no
 * worker answers, what the workflow last published in its memo; plus a running resync and whether the
 * running tables differ from the file; and the slot read live from the source. Rendered for people with a
 * progress bar per table.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { readSlotHealth } from '../activities/postgres/slot.ts';
import { connect } from '../activities/postgres/session.ts';
import { slotName, snapshotApplicationName, sourceConnection } from '../activities/source.ts';
import { formatBytes as bytes, slotWarnings } from '../lib/alerts.ts';
import type { PipelineConfig } from '../lib/config.ts';
import { pipelineWorkflowId, statusQuery } from '../lib/contract/pipeline.ts';
import type { PipelineStatus, PublishedStatus, SlotHealth, TableProgress } from '../lib/contract/status.ts';
import { causes, rootMessage } from '../lib/errors.ts';
import { NoWorkerError, queryWithWorker, type CommandContext } from './context.ts';

/** `status --json`: PipelineStatus plus what the CLI adds. */
export interface CliStatus extends PipelineStatus {
  /** Set when no worker answered: the status is the one the workflow published at `publishedAt`. */
  noWorker?: string;
  publishedAt?: string | null;
  /**
   * The file's tables, when the running pipeline's differ (after `tables add/remove`): `walflow apply` or edit the
   * file.
   */
  fileTables?: string[];
  /** A resync under way. */
  resync?: { workflowId: string; tables: Record<string, TableProgress> | null };
}

const published = (memo: Record<string, unknown> | undefined) => memo?.status as PublishedStatus | undefined;

/** The status of a pipeline or resync workflow: from a worker, else from its memo (null if it published none). */
async function workflowStatus(
  ctx: CommandContext,
  workflowId: string,
): Promise<{ status: PipelineStatus | null; noWorker?: string; publishedAt?: string | null }> {
  const handle = ctx.client.workflow.getHandle(workflowId);
  const notFound = (e: unknown): never => {
    if (e instanceof WorkflowNotFoundError)
      throw new Error(
        `no workflow ${workflowId} in namespace ${ctx.settings.namespace}: start the pipeline with \`walflow start\``,
      );
    throw e;
  };
  const described = handle.describe().catch(notFound); // at once: no time is lost when the query finds no worker
  described.catch(() => undefined);
  try {
    return { status: await queryWithWorker(ctx, () => handle.query(statusQuery)) };
  } catch (e) {
    if (isTaskFailing(e)) throw await stuckWorkflow(ctx, workflowId, rootMessage(e));
    if (!(e instanceof NoWorkerError)) return notFound(e);
    const memo = published((await described).memo);
    if (!memo) return { status: null, noWorker: e.message, publishedAt: null };
    const { publishedAt, ...status } = memo;
    return { status, noWorker: e.message, publishedAt };
  }
}

/** A query refused because the workflow's tasks fail (the server's words), or failed replaying the history (core's). */
const isTaskFailing = (e: unknown): boolean =>
  [...causes(e)].some((c) => /\[TMPRL1100\]|Workflow Task in failed state/.test((c as Error)?.message ?? ''));

/**
 * A workflow whose tasks keep failing is stuck (nothing moves, nothing is acknowledged, the slot keeps the WAL): say
 * why, from its last failed task, and for a history that no longer replays where to reset it: the workflow task
 * before the event that does not replay.
 */
async function stuckWorkflow(ctx: CommandContext, workflowId: string, queryError: string): Promise<Error> {
  // newest first
  const events = [...((await ctx.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [])].reverse();
  const failure = events.find((h) => h.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes?.failure
    ?.message;
  const why = (failure ?? queryError).split('\n')[0];
  const stuck =
    `pipeline workflow ${workflowId} is stuck: its workflow tasks fail (${why}). ` +
    'Nothing past it is acknowledged and the slot keeps the WAL.';
  const event = Number(/\[TMPRL1100\].*HistoryEvent\(id: (\d+)/.exec(why)?.[1] ?? Number.NaN);
  const at = events.find((h) => h.workflowTaskCompletedEventAttributes && Number(h.eventId) < event)?.eventId;
  if (!at) return new Error(stuck);
  return new Error(
    `${stuck} Its history no longer replays; reset it to the workflow task before that event ` +
      '(README, Troubleshooting): ' +
      `temporal workflow reset --workflow-id ${workflowId} --event-id ${at} --reason "walflow: nondeterminism"`,
  );
}

export async function gatherStatus(ctx: CommandContext, pipeline: PipelineConfig): Promise<CliStatus> {
  const resyncs = ctx.client.workflow
    .list({
      query: `WalflowPipeline = "${pipeline.id}" AND WorkflowType = "resyncWorkflow" AND ExecutionStatus = "Running"`,
      pageSize: 1,
    })
    [Symbol.asyncIterator]()
    .next();
  resyncs.catch(() => undefined);
  const own = await workflowStatus(ctx, pipelineWorkflowId(pipeline.id));
  const status: CliStatus = own.status ?? {
    pipeline: pipeline.id,
    phase: 'starting',
    paused: false,
    confirmedLsn: null,
    lagBytes: null,
    snapshotLsn: null,
    tables: {},
    lastError:
      'this run has not published its state yet (it started before walflow published state, or no worker has run it)',
    continuedAsNew: 0,
  };
  if (own.noWorker) Object.assign(status, { noWorker: own.noWorker, publishedAt: own.publishedAt });
  const running = Object.keys(status.tables);
  if (running.length && [...running].sort().join() !== [...pipeline.source.tables].sort().join())
    status.fileTables = pipeline.source.tables;
  const { value: run } = await resyncs;
  if (run) {
    const resync = own.noWorker ? { status: published(run.memo) ?? null } : await workflowStatus(ctx, run.workflowId);
    status.resync = { workflowId: run.workflowId, tables: resync.status?.tables ?? null };
  }
  return status;
}

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
export async function withLiveSlot<S extends PipelineStatus>(config: PipelineConfig, status: S): Promise<S> {
  let health: SlotHealth;
  try {
    const client = await connect({ ...sourceConnection(config.source), connectionTimeoutMillis: 5_000 });
    try {
      health = await readSlotHealth(client, slotName(config.id, config.source), snapshotApplicationName(config.id));
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch (e) {
    return {
      ...status,
      slot: null,
      warnings: [...(status.warnings ?? []), `cannot read the slot from the source: ${(e as Error).message}`],
    };
  }
  // Before the pipeline has created its slot, a missing one is no news.
  const warnings =
    !health.exists && status.phase === 'starting' ? [] : slotWarnings(config, health, status.errors?.stream?.message);
  return { ...status, lagBytes: health.lagBytes ?? status.lagBytes, slot: health, warnings };
}

function slotLine(h: SlotHealth): string {
  if (!h.exists) return `  slot ${h.name}: does not exist`;
  const limit =
    h.safeWalSize === null
      ? 'no WAL limit (max_slot_wal_keep_size = -1)'
      : `safe_wal_size ${bytes(Math.max(0, h.safeWalSize))}`;
  return (
    `  slot ${h.name}: wal_status ${h.walStatus ?? '-'}, ${h.active ? 'active' : 'inactive'}, ` +
    `retaining ${h.retainedBytes === null ? '-' : bytes(h.retainedBytes)}, ${limit}`
  );
}

export function renderStatus(s: CliStatus): string {
  const lines = [
    ...(s.noWorker
      ? [
          `${s.noWorker}\nshowing the state the pipeline last ` +
            `published${s.publishedAt ? ` (at ${s.publishedAt})` : ''}:`,
        ]
      : []),
    `pipeline ${s.pipeline}: ${s.phase}${s.paused && s.phase !== 'paused' ? ' (paused)' : ''}`,
    `  confirmed LSN ${s.confirmedLsn ?? '-'}   ` +
      `lag ${s.lagBytes === null ? '-' : bytes(s.lagBytes)}` +
      (s.snapshotLsn ? `   backfill snapshot ${s.snapshotLsn}` : ''),
  ];
  if (s.slot) lines.push(slotLine(s.slot));
  const snap = s.slot?.snapshot;
  if (snap)
    lines.push(
      `  backfill snapshot ${Math.round(snap.ageSeconds / 60)} min old, holding back ` +
        `xmin ${snap.xmin ?? '-'}${snap.xminAge !== null ? ` (${snap.xminAge} transactions)` : ''}`,
    );
  const width = Math.max(5, ...Object.keys(s.tables).map((t) => t.length));
  for (const [table, t] of Object.entries(s.tables)) {
    const c = t.changes;
    const changes = `+${c.inserts} ~${c.updates} -${c.deletes}${c.truncates ? ` truncates ${c.truncates}` : ''}`;
    const backfill =
      t.backfill === 'copying'
        ? `${bar(t.rangesDone, t.rangesTotal)} ranges ${t.rangesDone}/${t.rangesTotal} ` +
          `rows ${t.rowsCopied}/~${t.rowsEstimate}`
        : t.backfill === 'done'
          ? `backfilled ${t.rowsCopied} rows`
          : 'backfill pending';
    const state = t.state && t.state !== 'streaming' && t.state !== 'backfilling' ? `${t.state.toUpperCase()}   ` : '';
    lines.push(`  ${table.padEnd(width)}  ${state}${backfill}   changes ${changes}`);
    if (t.error) lines.push(`  ${' '.repeat(width)}  ${t.error.reason}; fix: ${t.error.fix}`);
    if (t.droppedColumns?.length)
      lines.push(
        `  ${' '.repeat(width)}  dropped in the source, kept in the destination: ${t.droppedColumns.join(', ')}`,
      );
  }
  if (s.resync) {
    const copied = Object.entries(s.resync.tables ?? {}).map(
      ([t, p]) => `${t} ${p.backfill === 'done' ? 'done' : `${p.rangesDone}/${p.rangesTotal} ranges`}`,
    );
    lines.push(`  resync running (workflow ${s.resync.workflowId})${copied.length ? `: ${copied.join(', ')}` : ''}`);
  }
  if (s.fileTables)
    lines.push(
      `  the config file lists other tables (${s.fileTables.join(', ')}): \`walflow apply\` to use the file's, or ` +
        `edit the file`,
    );
  for (const w of s.warnings ?? []) lines.push(`  warning: ${w}`);
  const errors = Object.entries(s.errors ?? {});
  for (const [component, e] of errors)
    lines.push(`  error in ${component} since ${e.since}${e.count > 1 ? ` (${e.count} failures)` : ''}: ${e.message}`);
  if (!errors.length && s.lastError) lines.push(`  last error: ${s.lastError}`);
  return lines.join('\n');
}
