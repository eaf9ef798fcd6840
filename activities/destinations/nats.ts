/**
 * Publishes every change envelope to NATS JetStream, on a subject from a template, with `Nats-Msg-Id` =
 * the envelope id: JetStream drops a message whose id it stored within the stream's duplicate window, so a
 * batch re-sent after a crash lands once (past the window, consumers de-duplicate by id). apply() resolves
 * when JetStream has acknowledged every message of the batch (the publish acknowledgement means stored;
 * the stack's server fsyncs before acknowledging). The stream is created if missing.
 */
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type PubAck,
} from '@nats-io/jetstream';
import { ConfigError, type NatsConfig } from '../../lib/config.ts';
import { tableKey, type Change, type TableId, type TableSchema } from '../../lib/model.ts';
import type { Destination } from './destination.ts';
import type { Envelopes } from './envelopes.ts';
import type { z } from 'zod';

export type NatsDestinationOptions = Omit<z.infer<typeof NatsConfig>, 'type' | 'token' | 'password'> & {
  token?: string;
  password?: string;
};

/** A subject token cannot hold whitespace, ".", "*" or ">". */
const SUBJECT_TOKEN = /^[^\s.*>]+$/;

export class NatsDestination implements Destination {
  private connection?: Promise<{ nc: NatsConnection; js: JetStreamClient }>;
  private streamReady = false;
  private readonly subjects = new Map<string, string>();
  readonly streamName: string;

  constructor(
    private readonly opts: NatsDestinationOptions,
    private readonly envelopes: Envelopes,
  ) {
    this.streamName = opts.stream.name ?? `walflow-${envelopes.pipeline}`;
  }

  /** The subject of a table's changes; a ConfigError when the table's name cannot be a subject token. */
  subjectOf(table: TableId): string {
    const key = tableKey(table);
    let subject = this.subjects.get(key);
    if (subject === undefined) {
      for (const [what, name] of [
        ['schema', table.schema],
        ['table', table.name],
      ] as const) {
        if (this.opts.subject.includes(`{${what}}`) && !SUBJECT_TOKEN.test(name)) {
          throw new ConfigError(
            `table ${key}: the ${what} name ${JSON.stringify(name)} cannot be part of a NATS subject (no spaces, ` +
              `".", "*" or ">"); set destination.subject without {${what}}`,
          );
        }
      }
      subject = this.opts.subject
        .replaceAll('{pipeline}', this.envelopes.pipeline)
        .replaceAll('{schema}', table.schema)
        .replaceAll('{table}', table.name);
      this.subjects.set(key, subject);
    }
    return subject;
  }

  /** What the created stream captures: the template with each token holding {schema} or {table} as "*". */
  subjectFilter(): string {
    return this.opts.subject
      .split('.')
      .map((token) =>
        /\{(schema|table)\}/.test(token) ? '*' : token.replaceAll('{pipeline}', this.envelopes.pipeline),
      )
      .join('.');
  }

  private connect() {
    this.connection ??= (async () => {
      const nc = await connect({
        servers: this.opts.servers,
        token: this.opts.token,
        user: this.opts.user,
        pass: this.opts.password,
        name: `walflow ${this.envelopes.pipeline}`,
        maxReconnectAttempts: -1,
      });
      return { nc, js: jetstream(nc, { timeout: this.opts.timeoutMs }) };
    })().catch((e: unknown) => {
      this.connection = undefined;
      throw e;
    });
    return this.connection;
  }

  /** A change stream passes every widening and rename on as a schema envelope: there is no table to alter. */
  canRetype(): boolean {
    return true;
  }
  canRename(): boolean {
    return true;
  }

  async prepare(tables: TableSchema[]): Promise<void> {
    this.envelopes.learn(tables);
    for (const t of tables) this.subjectOf(t);
    if (this.streamReady) return;
    const { nc } = await this.connect();
    const jsm = await jetstreamManager(nc, { timeout: this.opts.timeoutMs });
    try {
      await jsm.streams.info(this.streamName);
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound)) throw e;
      const s = this.opts.stream;
      await jsm.streams.add({
        name: this.streamName,
        subjects: [this.subjectFilter()],
        retention: s.retention,
        storage: s.storage,
        num_replicas: s.replicas,
        max_age: nanos(s.maxAgeSeconds * 1000),
        duplicate_window: nanos(s.duplicateWindowSeconds * 1000),
      });
    }
    this.streamReady = true;
  }

  async apply(changes: Change[]): Promise<void> {
    if (changes.length === 0) return;
    const { js } = await this.connect();
    const encoder = new TextEncoder();
    for (let i = 0; i < changes.length; i += this.opts.maxInFlight) {
      const acks: Promise<PubAck>[] = [];
      for (const c of changes.slice(i, i + this.opts.maxInFlight)) {
        const envelope = this.envelopes.of(c);
        acks.push(
          js.publish(this.subjectOf(c.table), encoder.encode(JSON.stringify(envelope)), {
            msgID: envelope.id,
            timeout: this.opts.timeoutMs,
          }),
        );
      }
      // Every publish awaited (none left unhandled), the first failure reported.
      const results = await Promise.allSettled(acks);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed)
        throw new Error(
          `JetStream did not acknowledge a change of ` +
            `pipeline ${this.envelopes.pipeline}: ${(failed.reason as Error).message}`,
        );
    }
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    if (connection) await (await connection.catch(() => undefined))?.nc.close();
  }
}
