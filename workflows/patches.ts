/**
 * Every `patched()` id, in one registry with its reason and date (the Temporal SDK keeps its own
 * replay-affecting changes the same way, in packages/workflow/src/flags.ts).
 *
 * The rule: a change to workflow code that alters the commands a history would replay gets a new entry
 * here and an `if (patched(Patch.X))` around the new course; a history recorded on the old code goes into
 * test/histories (`npm run record-histories <name>`) and must keep replaying. A patch is retired in two
 * releases: first `deprecatePatch(Patch.X)` once no workflow started before it can still be running
 * (pipelines continue-as-new, so check that every open pipeline has continued since the release), then
 * the entry and its old course are removed together with the histories that needed them.
 */
export const Patch = {
  /**
   * 2026-11-23: a lost backfill snapshot restarts after a doubling backoff (1 s to 5 min) instead of at
   * once, at most five times. Old course: LEGACY_MAX_SNAPSHOT_ATTEMPTS immediate attempts.
   */
  SnapshotRetryBackoff: 'backfill-snapshot-retry-backoff',
  /**
   * 2026-12-02: a stream failing with SlotLost leads to a recreated slot and a resync of every table (at once
   * with onSlotLost: resync, else after `walflow resume`). Old course: stop for the operator and, on resume,
   * stream the lost slot again (and fail again).
   */
  SlotLostRecovery: 'slot-lost-recovery',
  /**
   * 2026-12-02: pipeline and resync workflows set their own WalflowPipeline (and the resync its WalflowPhase)
   * search attribute and keep their status in the memo (`walflow status` without a worker). Old course:
   * no such upserts (only `walflow start` set the search attributes).
   */
  PublishState: 'workflow-publishes-its-state',
  /**
   * 2026-12-02: an errored table is not backfilled until its retry (`tables retry` / `resyncTables`), so a
   * table whose backfill the destination refused is not copied again and again. Old course: every table
   * whose backfill was not done was copied, errored or not.
   */
  ErroredTablesWait: 'errored-tables-wait-for-retry',
  /**
   * 2026-12-02: a stream or backfill the workflow cancelled (restart, pause, continue-as-new) that ends some other
   * way — its worker died, so it timed out instead of acknowledging the cancellation — has ended, as asked; the
   * next run resumes from the confirmed LSN. Old course: that timeout stopped the pipeline for the operator.
   */
  CancelledRunEnds: 'cancelled-run-ends',
  /**
   * 2026-12-03: the status memo is republished every tenth status change (by count) instead of every 30 s (by the
   * workflow clock), since a query answered by a worker without the run cached can run buffered signals at an
   * older clock than their replay (test/fault/incidents/README.md). Old course: the 30 s clock throttle.
   */
  PublishWithoutClock: 'publish-without-the-clock',
  /**
   * 2026-12-04: a backfill whose plan has at most INLINE_RANGES ranges copies them from its own workflow, reporting
   * progress in place, instead of through a copyRangesWorkflow child (whose start and end cost ~0.3 s). Old course:
   * every plan copied by children.
   */
  SmallCopyInline: 'small-copy-inline',
} as const;
export type Patch = (typeof Patch)[keyof typeof Patch];
