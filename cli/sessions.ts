/** `walflow status --sessions`: the running `walflow serve` sessions of this task queue, from their workflows. */
import type { Client } from '@temporalio/client';
import { sessionStatusQuery, type SessionStatus } from '../lib/contract/session.ts';

const QUERY_DEADLINE_MS = 5_000;

export const runningSessionsQuery = (taskQueue: string): string =>
  `WorkflowType = 'sessionWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '${taskQueue.replace(/'/g, "''")}'`;

export async function listSessions(client: Client, taskQueue: string): Promise<SessionStatus[]> {
  const ids: string[] = [];
  for await (const w of client.workflow.list({ query: runningSessionsQuery(taskQueue) })) ids.push(w.workflowId);
  const answers = await Promise.all(
    ids.map((id) =>
      client.connection
        .withDeadline(Date.now() + QUERY_DEADLINE_MS, () => client.workflow.getHandle(id).query(sessionStatusQuery))
        .catch((e: Error) => {
          // Ended since the listing, or no worker polls the task queue: say so, list the others.
          console.error(`walflow: session ${id} did not answer its status query: ${e.message}`);
          return undefined;
        }),
    ),
  );
  return answers
    .filter((s): s is SessionStatus => s !== undefined)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

export function renderSessions(sessions: SessionStatus[]): string {
  if (sessions.length === 0) return 'serve sessions: none';
  return [
    'serve sessions:',
    ...sessions.map(
      (s) =>
        `  ${s.slot}  ${s.connected ? 'streaming' : 'idle'}  ` +
        `confirmed ${s.confirmedLsn ?? `- (snapshot ${s.snapshotLsn})`}` +
        `  last seen ${s.lastSeenAt}  idle timeout ${s.idleTimeoutSeconds} s  ` +
        `tables ${s.tables.join(', ')}${s.ending ? `  ending: ${s.ending}` : ''}`,
    ),
  ].join('\n');
}
