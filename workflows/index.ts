/** Every workflow the walflow worker registers. */
export { probeWorkflow } from './probe.ts';
export { pipelineWorkflow } from './pipeline.ts';
export { copyRangesWorkflow } from './copy.ts';
export { resyncWorkflow } from './resync.ts';
export { sessionWorkflow } from './session.ts';
