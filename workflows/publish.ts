/**
 * What walflow's workflows tell the world without a worker's help: their own input check (a workflow
 * started from the Temporal CLI or UI gets the YAML's schema and defaults), search attributes
 * (`WalflowPipeline`, `WalflowPhase`), the UI's current details, and the last status in the memo,
 * which `walflow status` reads when no worker can answer a query.
 */
import {
  ApplicationFailure,
  patched,
  setCurrentDetails,
  upsertMemo,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { parsePipelineConfig, type PipelineConfig } from '../lib/config.ts';
import { ErrorType } from '../lib/errors.ts';
import { phaseKey, pipelineKey } from '../lib/contract/pipeline.ts';
import type { PipelineStatus, PublishedStatus } from '../lib/contract/status.ts';
import { Patch } from './patches.ts';

/**
 * The memo is rewritten at once when the phase, tables, a backfill or the error change, else every this many
 * calls (about 20 s of a busy stream's progress reports). Counted, not timed: a worker answering a query for a
 * run it has not cached can run buffered signals' handlers at an older workflow clock than a replay does
 * (test/fault/incidents), so a decision taken from the clock is not replay-safe there.
 */
const REPUBLISH_EVERY_CALLS = 10;
/** Runs from before Patch.PublishWithoutClock republish at most this often (by the workflow clock). */
const LEGACY_REPUBLISH_MS = 30_000;

/** The workflow's config, validated and defaulted; a bad one fails the run at once, naming the key. */
export function validInput(config: unknown): PipelineConfig {
  try {
    return parsePipelineConfig(config);
  } catch (e) {
    throw ApplicationFailure.nonRetryable((e as Error).message, ErrorType.Config);
  }
}

/**
 * Returns `publish()`, to call whenever the status may have changed. `fixedPhase`: a WalflowPhase set once
 * (resync); the pipeline sets its own as it goes. Decided once per run, before any command: a run
 * replaying history from before the patch keeps its old commands.
 */
export function statusPublisher(status: () => PipelineStatus, fixedPhase?: string): () => void {
  const enabled = patched(Patch.PublishState);
  const counted = enabled && patched(Patch.PublishWithoutClock);
  let published = '';
  let publishedAt = -Infinity;
  let calls = 0;
  if (enabled) {
    upsertSearchAttributes([
      { key: pipelineKey, value: status().pipeline },
      ...(fixedPhase ? [{ key: phaseKey, value: fixedPhase }] : []),
    ]);
  }
  return () => {
    const s = status();
    setCurrentDetails(currentDetails(s));
    if (!enabled) return;
    const key = counted ? changeKey(s) : legacyChangeKey(s);
    calls++;
    const fresh = counted ? calls < REPUBLISH_EVERY_CALLS : Date.now() - publishedAt < LEGACY_REPUBLISH_MS;
    if (key === published && fresh) return;
    published = key;
    publishedAt = Date.now();
    calls = 0;
    upsertMemo({ status: { ...s, publishedAt: new Date(publishedAt).toISOString() } satisfies PublishedStatus });
  };
}

/** A change in this is published at once. Nothing from the clock: `lastError` holds a time and is chosen by time. */
const changeKey = (s: PipelineStatus): string =>
  JSON.stringify([
    s.phase,
    s.paused,
    Object.entries(s.errors ?? {})
      .map(([component, e]) => [component, e.message])
      .sort(),
    Object.entries(s.tables).map(([t, p]) => [t, p.backfill, p.state, p.error?.reason]),
  ]);

const legacyChangeKey = (s: PipelineStatus): string =>
  JSON.stringify([s.phase, s.paused, s.lastError, Object.entries(s.tables).map(([t, p]) => [t, p.backfill])]);

/** The Temporal UI's "current details" (Markdown): what an operator looks for first. */
function currentDetails(s: PipelineStatus): string {
  const tables = Object.entries(s.tables).map(([t, p]) =>
    p.backfill === 'copying'
      ? `${t} (backfill ${p.rangesDone}/${p.rangesTotal} ranges)`
      : p.backfill === 'pending'
        ? `${t} (backfill pending)`
        : t,
  );
  const paused = s.paused && s.phase !== 'paused' ? ' (paused)' : '';
  const snapshot = s.snapshotLsn ? ` · snapshot ${s.snapshotLsn}` : '';
  return [
    `**${s.phase}**${paused} · ${tables.length} table(s): ${tables.join(', ')}`,
    `confirmed LSN ${s.confirmedLsn ?? '-'} · lag ${s.lagBytes ?? '-'} bytes${snapshot}`,
    ...(s.warnings ?? []).map((w) => `warning: ${w}`),
    ...(Object.keys(s.errors ?? {}).length
      ? Object.entries(s.errors!).map(
          ([c, e]) => `error in ${c} since ${e.since} (${e.count} failure(s)): ${e.message}`,
        )
      : s.lastError
        ? [`last error: ${s.lastError}`]
        : []),
  ].join('\n\n');
}
