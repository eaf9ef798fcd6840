/** Every activity the walflow worker registers, built from injected dependencies. */
import { createBackfillActivities } from './backfill.ts';
import type { PipelineConfig } from '../lib/config.ts';
import type { ActivityDeps } from './context.ts';
import {
  alterPublication,
  dropPipeline,
  ensureSlot,
  preflightPipeline,
  rebuildTables,
  recreateSlot,
  removeStaleRows,
} from './pipeline.ts';
import { probeSource } from './probe.ts';
import { dropServeSession } from './session.ts';
import { createStreamActivities } from './stream.ts';

export function createActivities(deps: ActivityDeps) {
  return {
    probeSource,
    preflightPipeline,
    ensureSlot,
    recreateSlot,
    alterPublication,
    dropPipeline: (config: PipelineConfig) => dropPipeline(deps, config),
    removeStaleRows,
    rebuildTables,
    dropServeSession,
    ...createBackfillActivities(deps),
    ...createStreamActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
