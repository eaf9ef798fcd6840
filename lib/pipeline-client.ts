/**
 * How every client reaches a pipeline workflow (the CLI, the demo, the bench and the tests): start it
 * with its search attributes and summary, get its handle by pipeline id, read its status. By workflow
 * type name, so a client needs no workflow code.
 */
import type { Client, WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { phaseKey, pipelineKey, pipelineWorkflowId, statusQuery, type PipelineInput } from './contract/pipeline.ts';
import type { PipelineStatus } from './contract/status.ts';

/** The pipeline workflow's signature (workflows/pipeline.ts registers it under this name). */
export type PipelineWorkflow = (input: PipelineInput) => Promise<void>;
export type PipelineHandle = WorkflowHandle<PipelineWorkflow>;

/** Starts pipeline `input.config.id` (fails with WorkflowExecutionAlreadyStartedError if it runs). */
export function startPipeline(
  client: Client,
  taskQueue: string,
  input: PipelineInput,
): Promise<WorkflowHandleWithFirstExecutionRunId<PipelineWorkflow>> {
  const { id, destination } = input.config;
  return client.workflow.start<PipelineWorkflow>('pipelineWorkflow', {
    workflowId: pipelineWorkflowId(id),
    taskQueue,
    args: [input],
    typedSearchAttributes: [
      { key: pipelineKey, value: id },
      { key: phaseKey, value: 'starting' },
    ],
    // Static: the tables and phase, which change, are in the current details and search attributes.
    staticSummary: `walflow pipeline ${id} → ${destination.type}`,
  });
}

export const pipelineHandle = (client: Client, pipeline: string): PipelineHandle =>
  client.workflow.getHandle<PipelineWorkflow>(pipelineWorkflowId(pipeline));

/** The status query: answered by a worker (see cli/status.ts for the memo read when none runs). */
export const pipelineStatus = (handle: WorkflowHandle): Promise<PipelineStatus> => handle.query(statusQuery);
