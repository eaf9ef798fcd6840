/**
 * One client's websocket change stream of one session: the session's slot from its confirmed position
 * (the client's last ACK), as change envelopes, one message per change, each with `nextlsn`: the
 * position the client may ACK once it has applied that message and everything before it. Inside a
 * transaction that is the end of the previous one; the transaction's `commit` message carries its end,
 * and `keepalive` messages let the slot move on past WAL with no changes for the session. A client
 * ACK (`{"lsn":"X/Y"}`) confirms the slot to exactly that position, never further, and is answered
 * `{"op":"acked","lsn":…}`. While the socket's send buffer is full the replication stream is not read
 * (its own socket pauses at its high-water mark), so a slow client holds back WAL, not memory.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { WebSocket } from 'ws';
import { toEnvelope, type ChangeEnvelope } from '../lib/envelope.ts';
import { formatLsn, parseLsn, type Lsn } from '../lib/lsn.ts';
import { tableKey, type Change, type TableSchema } from '../lib/model.ts';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { withSession } from '../activities/postgres/session.ts';
import { openChangeStream, type ChangeStream } from '../activities/postgres/stream.ts';
import { fillUnchangedColumns } from '../activities/postgres/unchanged.ts';
import type { SessionInfo, Sessions } from './sessions.ts';

/** Websocket close codes: 4000 + the HTTP status they mean. */
export const CLOSE_SLOT_BUSY = 4409;
export const CLOSE_SESSION_GONE = 4404;

const SEND_BUFFER_HIGH = 4 * 1024 * 1024;
const SEND_BUFFER_LOW = 1024 * 1024;
const PING_EVERY_MS = 20_000;
/** A client that answered none of this many pings is gone (a slow one still answers within a minute). */
const PINGS_UNANSWERED = 3;

/** What the server sends; `nextlsn` is what to ACK once the message (and all before it) is applied. */
export type StreamMessage =
  | (ChangeEnvelope & { nextlsn: string })
  | { op: 'commit'; lsn: string; nextlsn: string }
  | { op: 'keepalive'; nextlsn: string }
  /** The answer to an ACK: the slot's confirmed position now. */
  | { op: 'acked'; lsn: string }
  | { op?: undefined; error: { status: number; field: string; message: string } };

export async function streamSession(
  ws: WebSocket,
  info: SessionInfo,
  deps: { connection: pg.ClientConfig; sessions: Sessions },
): Promise<void> {
  const source = new pg.Client(withSession(deps.connection));
  source.on('error', () => {
    /* surfaced by its next query */
  });
  let stream: ChangeStream | undefined;
  let open = true;
  const touch = (confirmedLsn?: string) =>
    deps.sessions.touch(info, { connected: open, ...(confirmedLsn ? { confirmedLsn } : {}) });
  const touching = setInterval(() => touch(), 1000);
  let unanswered = 0;
  const pinging = setInterval(() => {
    if (++unanswered > PINGS_UNANSWERED) ws.terminate();
    else ws.ping();
  }, PING_EVERY_MS);
  ws.on('pong', () => {
    unanswered = 0;
  });
  ws.on('close', () => {
    open = false;
    clearInterval(touching);
    clearInterval(pinging);
    touch();
    void stream?.close().catch(() => undefined);
  });

  // Positions: `confirmed` is the slot's (the client's last ACK); `sent` the highest nextlsn sent.
  let confirmed: Lsn = 0n;
  let sent: Lsn = 0n;
  const send = async (msg: StreamMessage) => {
    ws.send(JSON.stringify(msg));
    if (ws.bufferedAmount > SEND_BUFFER_HIGH) while (open && ws.bufferedAmount > SEND_BUFFER_LOW) await sleep(20);
  };
  const refuse = (message: string) => {
    if (open)
      ws.send(
        JSON.stringify({ error: { status: 400, field: 'lsn', message: `lsn: ${message}` } } satisfies StreamMessage),
      );
  };
  // Client messages are answered in order (an ACK with `acked`, a bad one with an error).
  let acking = Promise.resolve();
  ws.on('message', (data) => {
    acking = acking
      .then(async () => {
        let lsn: Lsn;
        try {
          const msg = JSON.parse(data.toString()) as { lsn?: unknown };
          if (typeof msg?.lsn !== 'string')
            return refuse('send {"lsn":"X/Y"}, the nextlsn of the last message applied');
          lsn = parseLsn(msg.lsn);
        } catch (e) {
          return refuse(e instanceof SyntaxError ? 'messages must be JSON: {"lsn":"X/Y"}' : (e as Error).message);
        }
        const known = sent > confirmed ? sent : confirmed;
        if (lsn > known) return refuse(`${formatLsn(lsn)} is beyond the last nextlsn sent (${formatLsn(known)})`);
        if (lsn > confirmed && stream) {
          await stream.confirm(lsn);
          confirmed = lsn;
          touch(formatLsn(lsn));
        }
        if (open) ws.send(JSON.stringify({ op: 'acked', lsn: formatLsn(confirmed) } satisfies StreamMessage));
      })
      .catch((e: Error) => ws.close(1011, `acknowledge failed: ${e.message}`.slice(0, 120)));
  });

  try {
    await source.connect();
    const slot = await source.query<{ confirmed: string | null }>(
      'SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
      [info.slot],
    );
    if (!slot.rows[0]?.confirmed) return ws.close(CLOSE_SESSION_GONE, `slot ${info.slot} no longer exists`);
    confirmed = parseLsn(slot.rows[0].confirmed);
    const known = new Map<string, TableSchema>();
    for (const s of await loadTableSchemas(source, info.tables)) known.set(tableKey(s), s);
    try {
      stream = await openChangeStream({
        connection: deps.connection,
        slot: info.slot,
        publication: info.publication,
        startLsn: confirmed,
        known,
        lookup: async (t) => (await loadTableSchemas(source, [tableKey(t)]))[0]!,
      });
    } catch (e) {
      if ((e as { code?: string }).code === '55006')
        return ws.close(CLOSE_SLOT_BUSY, `slot ${info.slot} is being read by another connection`);
      throw e;
    }
    if (!open) return;
    let safe = confirmed; // everything before it has been sent
    let changesInTx = 0;
    let inTx = false;
    const advertise = async () => {
      if (safe <= sent) return;
      sent = safe;
      await send({ op: 'keepalive', nextlsn: formatLsn(safe) });
    };
    for await (const burst of stream) {
      const changes = burst.flatMap((ev) => (ev.type === 'change' ? [ev.change] : []));
      if (changes.length) await fillUnchangedColumns(source, known, changes);
      for (const ev of burst) {
        if (!open) break;
        if (ev.type === 'begin') {
          inTx = true;
          changesInTx = 0;
        } else if (ev.type === 'change') {
          changesInTx++;
          await send(changeMessage(info.slot, ev.change, known, safe));
        } else if (ev.type === 'commit') {
          inTx = false;
          safe = ev.endLsn;
          if (changesInTx === 0) await advertise();
          else {
            sent = safe;
            await send({ op: 'commit', lsn: formatLsn(ev.commitLsn), nextlsn: formatLsn(ev.endLsn) });
          }
        } else if (ev.type === 'keepalive' && !inTx && ev.walEnd > safe) {
          safe = ev.walEnd;
          await advertise();
        }
      }
      if (!open) break;
    }
  } catch (e) {
    if (open) ws.close(1011, `stream failed: ${(e as Error).message}`.slice(0, 120));
  } finally {
    await acking;
    await stream?.close().catch(() => undefined);
    await source.end().catch(() => undefined);
  }
}

function changeMessage(slot: string, change: Change, known: Map<string, TableSchema>, safe: Lsn): StreamMessage {
  return { ...toEnvelope(slot, change, known.get(tableKey(change.table))), nextlsn: formatLsn(safe) };
}
