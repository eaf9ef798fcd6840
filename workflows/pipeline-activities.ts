/** The activities the pipeline workflow runs, each with the timeouts and retries its job needs. */
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { ErrorType, NEEDS_OPERATOR } from '../lib/errors.ts';

export const { preflightPipeline, ensureSlot, alterPublication, dropPipeline } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds', // a worker that dies mid-way is noticed in seconds
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: [ErrorType.Config, ErrorType.PreflightFailed] },
});

/** Rebuilding a destination table for `resyncTables`: a failure goes back to the operator who asked. */
export const { rebuildTables } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NEEDS_OPERATOR },
});

/** Streams until cancelled; transient failures (network, destination down) are retried without end. */
export const { streamChanges } = proxyActivities<Activities>({
  startToCloseTimeout: '30 days',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  // Short backoff: a stream is worth retrying soon (a destination or Postgres back after a restart).
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds', nonRetryableErrorTypes: NEEDS_OPERATOR },
});
