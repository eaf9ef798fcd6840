/**
 * Which operator requests a pipeline accepts: the validators of its updates. A refused request throws
 * with what to do instead, and never reaches the workflow's history.
 */
import { liveChangeRefusals, parsePipelineConfig, type PipelineConfig } from '../lib/config.ts';
import type { PipelineState } from '../lib/contract/pipeline.ts';

export function refuseAdd(state: PipelineState, config: PipelineConfig, tables: string[]): void {
  if (tables.length === 0) throw new Error('name at least one table');
  const known = tables.filter((t) => state.tables.includes(t));
  if (known.length) throw new Error(`already in pipeline ${config.id}: ${known.join(', ')}`);
}

export function refuseRemove(state: PipelineState, config: PipelineConfig, tables: string[]): void {
  const unknown = tables.filter((t) => !state.tables.includes(t));
  if (unknown.length) throw new Error(`not in pipeline ${config.id}: ${unknown.join(', ')}`);
  if (tables.length >= state.tables.length)
    throw new Error('a pipeline keeps at least one table; use `walflow drop` to end it');
}

export function refuseConfig(config: PipelineConfig, raw: PipelineConfig): void {
  const refusals = liveChangeRefusals(config, parsePipelineConfig(raw, 'applyConfig input'));
  if (refusals.length) throw new Error(`cannot change pipeline ${config.id} in place:\n- ${refusals.join('\n- ')}`);
}

/** Only errored tables are resynced in place; any table can be re-copied by `walflow resync` (a resync workflow). */
export function refuseResync(state: PipelineState, config: PipelineConfig, tables: string[]): void {
  const notErrored = tables.filter((t) => !state.tableErrors?.[t]);
  if (!tables.length || notErrored.length)
    throw new Error(`not errored in pipeline ${config.id}: ${notErrored.join(', ') || '(no tables named)'}`);
}
