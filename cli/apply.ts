/** `walflow apply` (and `start` on a running pipeline): the file's config, applied to the running pipeline in place. */
import type { PipelineConfig } from '../lib/config.ts';
import { applyConfigUpdate, pipelineWorkflowId } from '../lib/contract/pipeline.ts';
import { updateWithWorker, type CommandContext } from './context.ts';

/** The workflow diffs and validates (a refusal says which key cannot change live and why). */
export async function applyFileConfig(ctx: CommandContext, file: PipelineConfig): Promise<void> {
  const handle = ctx.client.workflow.getHandle(pipelineWorkflowId(file.id));
  const { changed, tables } = await updateWithWorker(ctx, handle, applyConfigUpdate, [file]);
  if (changed.length === 0) console.log(`pipeline ${file.id}: runs with the file's config already; nothing to apply`);
  else console.log(`pipeline ${file.id}: applied ${changed.join(', ')} in place; tables: ${tables.join(', ')}`);
}
