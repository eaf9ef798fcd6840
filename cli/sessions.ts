/** `walflow status --sessions`: the running `walflow serve` sessions, from their workflows. */
import type { Client } from '@temporalio/client';
import { sessionStatusQuery, type SessionStatus } from '../workflows/session-definitions.ts';

export async function listSessions(client: Client): Promise<SessionStatus[]> {
  const sessions: SessionStatus[] = [];
  for await (const w of client.workflow.list({ query: `WorkflowType = 'sessionWorkflow' AND ExecutionStatus = 'Running'` })) {
    // A session that ended between the listing and the query is simply not shown.
    const status = await client.workflow.getHandle(w.workflowId).query(sessionStatusQuery).catch(() => undefined);
    if (status) sessions.push(status);
  }
  return sessions.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

export function renderSessions(sessions: SessionStatus[]): string {
  if (sessions.length === 0) return 'serve sessions: none';
  return ['serve sessions:', ...sessions.map((s) => `  ${s.slot}  ${s.connected ? 'streaming' : 'idle'}  confirmed ${s.confirmedLsn ?? `- (snapshot ${s.snapshotLsn})`}`
    + `  last seen ${s.lastSeenAt}  idle timeout ${s.idleTimeoutSeconds} s  tables ${s.tables.join(', ')}${s.ending ? `  ending: ${s.ending}` : ''}`)].join('\n');
}
