/**
 * The change stream's transport: pgoutput through pg-logical-replication, decoded (decode.ts) as
 * the consumer pulls it through a bounded queue (the socket is paused while the queue is full, so a
 * large transaction never piles up in memory). It is the one owner of what is confirmed to Postgres:
 * `confirm` (what the consumer says is durably written, never going back) and the replies to the
 * server's keepalives both go through `sendStatus`.
 */
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import type { Pgoutput } from 'pg-logical-replication';
import type pg from 'pg';
import { advancesConfirmed, formatLsn, parseLsn, type Lsn } from '../../lib/lsn.ts';
import type { TableSchema } from '../../lib/model.ts';
import { withSession } from './session.ts';
import { PgoutputDecoder, type SchemaLookup, type ShapeTracking, type StreamEvent } from './decode.ts';

/** Yields the events in bursts: all that had arrived when the consumer asked (at most MAX_BURST messages). */
export interface ChangeStream extends AsyncIterable<StreamEvent[]> {
  /**
   * Tells Postgres everything up to `lsn` (a commit end or keepalive position) is durably written.
   * Monotonic: a position at or before the confirmed one is not sent again.
   */
  confirm(lsn: Lsn): Promise<void>;
  /** The last position confirmed (the start position until the first confirm). */
  readonly confirmed: Lsn | undefined;
  close(): Promise<void>;
}

export interface ChangeStreamOptions {
  connection: pg.ClientConfig;
  slot: string;
  publication: string;
  /** Resume position; the server never goes back before the slot's confirmed_flush_lsn. */
  startLsn?: Lsn;
  /** Decoded events buffered before the socket is paused. */
  highWaterMark?: number;
  /** Called while waiting for a slot another stream still holds (the caller heartbeats). */
  onWait?: () => void;
}

const MAX_BURST = 2_000;

/** Text values only: walflow parses them itself (exactly), never with pg's lossy default parsers. */
class TextPgoutputPlugin extends PgoutputPlugin {
  override parse(buffer: Buffer): Pgoutput.Message {
    const msg = super.parse(buffer) as Pgoutput.Message;
    if (msg.tag === 'relation') for (const c of msg.columns) c.parser = (raw: unknown) => raw;
    return msg;
  }
}

/**
 * Opens the stream at `startLsn`. Events are decoded as the consumer pulls them; while
 * `highWaterMark` raw messages wait, the socket is paused.
 */
export async function openChangeStream(
  opts: ChangeStreamOptions & { known: Map<string, TableSchema>; lookup: SchemaLookup; tracking?: ShapeTracking },
): Promise<ChangeStream> {
  // A stream that just stopped (pause, continue-as-new, a killed worker) can hold the slot for a
  // moment while its walsender exits: wait for it rather than fail the attempt.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await startChangeStream(opts);
    } catch (e) {
      if ((e as { code?: string }).code !== '55006' || Date.now() > deadline) throw e;
      opts.onWait?.();
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function startChangeStream(
  opts: ChangeStreamOptions & { known: Map<string, TableSchema>; lookup: SchemaLookup; tracking?: ShapeTracking },
): Promise<ChangeStream> {
  const service = new LogicalReplicationService(withSession(opts.connection), {
    acknowledge: { auto: false, timeoutSeconds: 0 },
  });
  const plugin = new TextPgoutputPlugin({ protoVersion: 1, publicationNames: [opts.publication] });
  const decoder = new PgoutputDecoder(opts.known, opts.lookup, opts.tracking);
  const highWaterMark = opts.highWaterMark ?? 5_000;

  const queue: ({ msg: Pgoutput.Message } | { keepalive: Lsn })[] = [];
  let failure: Error | undefined;
  let closed = false;
  let wake: (() => void) | undefined;
  let confirmed: Lsn | undefined = opts.startLsn;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  // Flow control: the socket is paused while `highWaterMark` messages wait. (The library's own flow
  // control awaits promises for every message, which inside a Temporal activity, where each promise pays
  // for the async context, cost more than decoding the message.)
  const socket = () =>
    (service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } })._connection?.stream;
  let paused = false;
  service.on('data', (_lsn: string, msg: Pgoutput.Message) => {
    queue.push({ msg });
    notify();
    if (queue.length >= highWaterMark && !paused && !closed) {
      paused = true;
      socket()?.pause();
    }
  });
  service.on('heartbeat', async (lsn: string, _ts: number, shouldRespond: boolean) => {
    queue.push({ keepalive: parseLsn(lsn) });
    notify();
    // The server asks for a reply to keep the connection: report what is durably written, no more.
    if (shouldRespond && confirmed !== undefined) await sendStatus(confirmed);
  });
  service.on('error', (e: Error) => {
    failure ??= e;
    notify();
  });

  // The library reports "last byte + 1"; a logical slot's confirmed position is the commit's end LSN
  // itself, and reporting one more could skip a transaction whose commit record starts exactly there.
  const sendStatus = (lsn: Lsn) => service.acknowledge(formatLsn(lsn > 0n ? lsn - 1n : 0n));

  const started = service.subscribe(plugin, opts.slot, formatLsn(opts.startLsn ?? 0n));
  started.catch((e: Error) => {
    failure ??= e;
    notify();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      service.once('start', () => resolve());
      started.then(() => resolve(), reject);
    });
    // Without the socket there is no backpressure and memory would grow with the stream: refuse loudly.
    if (!socket())
      throw new Error(
        'pg-logical-replication no longer exposes its socket (_connection.stream), which walflow pauses for flow ' +
          'control; install the version package-lock.json pins',
      );
  } catch (e) {
    // A refused START_REPLICATION (e.g. the slot still held) leaves the connection open: each retry
    // would otherwise keep one walsender until max_wal_senders is exhausted.
    await service.destroy().catch(() => undefined);
    throw e;
  }

  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (failure) throw failure;
        if (!queue.length) {
          if (closed) return;
          await new Promise<void>((r) => {
            wake = r;
          });
          continue;
        }
        // Everything received so far is decoded in one go: one wake-up of the consumer per burst,
        // not per message, is what lets a busy stream run at the decoder's speed.
        const items = queue.splice(0, MAX_BURST);
        if (paused && queue.length < highWaterMark / 2) {
          paused = false;
          socket()?.resume();
        }
        const burst: StreamEvent[] = [];
        for (const item of items) {
          if ('keepalive' in item) {
            burst.push({ type: 'keepalive', walEnd: item.keepalive });
            continue;
          }
          const decoded = decoder.decode(item.msg);
          for (const ev of Array.isArray(decoded) ? decoded : await decoded) burst.push(ev);
        }
        yield burst;
      }
    },
    async confirm(lsn: Lsn) {
      if (!advancesConfirmed(confirmed, lsn)) return;
      confirmed = lsn;
      await sendStatus(lsn);
    },
    get confirmed() {
      return confirmed;
    },
    async close() {
      closed = true;
      notify();
      await service.destroy();
    },
  };
}
