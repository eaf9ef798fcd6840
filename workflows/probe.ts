import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';

const { probeSource } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 3 },
});

/** Round trip client -> workflow -> activity -> Postgres: the smallest proof that the stack works. */
export async function probeWorkflow(sourceUrl: string) {
  return probeSource(sourceUrl);
}
