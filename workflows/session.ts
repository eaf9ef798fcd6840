/**
 * A `walflow serve` session (id `walflow-session-<slot>`): owns the session's replication slot (and
 * the publication it created). The serve process signals `touchSession` while a client streams and on
 * every request or ACK; a session untouched for its idle timeout is abandoned, and ending it drops the
 * slot, so an abandoned session never holds WAL back. `endSession` (DELETE /v1/session/<slot>) ends it
 * at once. Touches come from the serve process, not its clients: a serve process that dies stops
 * touching, and its sessions time out like abandoned ones.
 */
import {
  allHandlersFinished,
  condition,
  makeContinueAsNewFunc,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import {
  endSessionSignal,
  sessionStatusQuery,
  touchSessionSignal,
  type SessionInput,
} from '../lib/contract/session.ts';

const { dropServeSession } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  // A source that is down is waited for: the slot must go eventually.
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

const MAX_HISTORY_EVENTS = 5_000;

export async function sessionWorkflow(input: SessionInput): Promise<{ reason: string }> {
  const state = input.state ?? { confirmedLsn: null, lastSeenAt: input.createdAt, connected: false };
  let touched = false;
  let ending: string | null = null;

  setHandler(touchSessionSignal, (t) => {
    touched = true;
    state.connected = t.connected;
    state.lastSeenAt = new Date().toISOString();
    if (t.confirmedLsn) state.confirmedLsn = t.confirmedLsn;
  });
  setHandler(endSessionSignal, (e) => {
    ending ??= e.reason;
  });
  setHandler(sessionStatusQuery, () => ({
    slot: input.slot,
    tables: input.tables,
    publication: input.publication,
    owner: input.owner,
    snapshotLsn: input.snapshotLsn,
    createdAt: input.createdAt,
    confirmedLsn: state.confirmedLsn,
    connected: state.connected,
    lastSeenAt: state.lastSeenAt,
    idleTimeoutSeconds: input.idleTimeoutSeconds,
    ending,
  }));

  while (ending === null) {
    touched = false;
    const woken = await condition(() => touched || ending !== null, `${input.idleTimeoutSeconds} seconds`);
    if (!woken) ending = `idle for ${input.idleTimeoutSeconds} s: no client streamed, requested or ACKed`;
    else if (
      ending === null &&
      (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS)
    ) {
      await condition(allHandlersFinished);
      // The memo (what the serve process reads a session by) is passed on explicitly.
      return makeContinueAsNewFunc<typeof sessionWorkflow>({ memo: workflowInfo().memo })({ ...input, state });
    }
  }
  await dropServeSession({
    source: input.source,
    slot: input.slot,
    publication: input.ownsPublication ? input.publication : null,
  });
  return { reason: ending };
}
