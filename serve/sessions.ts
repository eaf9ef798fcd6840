/**
 * The serve process's view of sessions. A session is its Temporal workflow (the durable part: slot,
 * tables, owner, in the workflow's memo) plus, in the process that created it, the connection that
 * holds its exported snapshot until /v1/snapshot/done or the hold time ends.
 */
import { qualifyTable } from '../lib/config.ts';
import { randomBytes } from 'node:crypto';
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import type pg from 'pg';
import type { SecretRef, ServeConfig } from '../lib/config.ts';
import { normalizeLsn } from '../lib/lsn.ts';
import type { TableSchema } from '../lib/model.ts';
import { dropPublicationIfOwned, ensurePublication, publicationTables } from '../activities/postgres/publication.ts';
import { loadTableSchemas, SchemaError } from '../activities/postgres/schema.ts';
import { connect } from '../activities/postgres/session.ts';
import { dropSlot } from '../activities/postgres/slot.ts';
import { exportSnapshot, type ExportedSnapshot } from '../activities/postgres/snapshot.ts';
import {
  endSessionSignal,
  sessionWorkflowId,
  touchSessionSignal,
  type SessionInput,
  type SessionTouch,
} from '../lib/contract/session.ts';
import { sessionWorkflow } from '../workflows/session.ts';
import { badRequest, RequestError } from './errors.ts';

/** What the serve process needs of a session; the workflow's memo. */
export interface SessionInfo {
  slot: string;
  tables: string[];
  publication: string;
  owner: SecretRef;
  snapshotLsn: string;
  idleTimeoutSeconds: number;
}

export interface InitAnswer {
  slotName: string;
  snapshotLsn: string;
  tables: string[];
  /** Each table's key columns (what snapshot rows and change envelopes are keyed by). */
  keys: Record<string, string[]>;
  snapshotExpiresAt: string;
  idleTimeoutSeconds: number;
}

interface HeldSnapshot {
  snapshot: ExportedSnapshot;
  expiresAt: Date;
  timer: NodeJS.Timeout;
}

export interface SessionsDeps {
  config: ServeConfig;
  /** Source connection settings, password resolved. */
  connection: pg.ClientConfig;
  client: Client;
  taskQueue: string;
}

export class Sessions {
  private readonly held = new Map<string, HeldSnapshot>();
  private readonly lastTouch = new Map<string, { at: number; connected: boolean }>();

  constructor(private readonly deps: SessionsDeps) {}

  /** Creates a session: publication (for `tables`), a slot exporting its snapshot, the session workflow. */
  async init(
    owner: SecretRef,
    body: { tables?: unknown; publication?: unknown; idleTimeoutSeconds?: unknown },
  ): Promise<InitAnswer> {
    const { config } = this.deps;
    const maxIdle = config.sessionIdleTimeoutSeconds;
    const idle = body.idleTimeoutSeconds ?? maxIdle;
    if (typeof idle !== 'number' || !Number.isInteger(idle) || idle < 1 || idle > maxIdle) {
      throw badRequest(
        'idleTimeoutSeconds',
        `must be a whole number of seconds from 1 to ${maxIdle} (serve.sessionIdleTimeoutSeconds)`,
      );
    }
    if ((body.tables === undefined) === (body.publication === undefined))
      throw badRequest('tables', 'give either tables (a list) or publication');
    const slot = `walflow_session_${randomBytes(5).toString('hex')}`;
    const client = await connect(this.deps.connection);
    let tables: string[];
    let publication: string;
    const ownsPublication = body.tables !== undefined;
    let snapshot: ExportedSnapshot | undefined;
    try {
      if (ownsPublication) {
        if (
          !Array.isArray(body.tables) ||
          body.tables.length === 0 ||
          !body.tables.every((t) => typeof t === 'string' && /^[^.]+(\.[^.]+)?$/.test(t))
        ) {
          throw badRequest('tables', 'must be a non-empty list of "table" or "schema.table"');
        }
        tables = [...new Set((body.tables as string[]).map(qualifyTable))];
        publication = slot;
      } else {
        if (typeof body.publication !== 'string') throw badRequest('publication', 'must be a publication name');
        publication = body.publication;
        const published = await publicationTables(client, publication);
        if (!published) throw badRequest('publication', `no publication ${JSON.stringify(publication)} in the source`);
        if (!published.length)
          throw badRequest('publication', `publication ${JSON.stringify(publication)} publishes no tables`);
        tables = published;
      }
      const schemas = await this.keyedSchemas(client, tables, ownsPublication ? 'tables' : 'publication');
      const keys = Object.fromEntries(schemas.map((s) => [`${s.schema}.${s.name}`, s.key]));
      // The publication exists before the slot, so the slot's stream can read it from its first change.
      if (ownsPublication) await ensurePublication(client, publication, tables);
      snapshot = await exportSnapshot(this.deps.connection, slot);
      const snapshotLsn = normalizeLsn(snapshot.lsn);
      const info: SessionInfo = { slot, tables, publication, owner, snapshotLsn, idleTimeoutSeconds: idle };
      const input: SessionInput = {
        source: config.source,
        slot,
        publication,
        ownsPublication,
        tables,
        owner,
        snapshotLsn,
        idleTimeoutSeconds: idle,
        createdAt: new Date().toISOString(),
      };
      await this.deps.client.workflow.start(sessionWorkflow, {
        workflowId: sessionWorkflowId(slot),
        taskQueue: this.deps.taskQueue,
        args: [input],
        memo: { ...info },
        staticSummary: `walflow serve session ${slot}: ${tables.join(', ')}`,
      });
      const expiresAt = new Date(Date.now() + config.snapshotHoldSeconds * 1000);
      const held: HeldSnapshot = {
        snapshot,
        expiresAt,
        timer: setTimeout(() => void this.releaseSnapshot(slot), config.snapshotHoldSeconds * 1000),
      };
      this.held.set(slot, held);
      snapshot.lost.then(() => {
        if (this.held.get(slot) === held) this.releaseSnapshot(slot);
      });
      return {
        slotName: slot,
        snapshotLsn,
        tables,
        keys,
        snapshotExpiresAt: expiresAt.toISOString(),
        idleTimeoutSeconds: idle,
      };
    } catch (e) {
      // Nothing half-made stays behind: no slot or publication without its workflow.
      if (snapshot) {
        await snapshot.close();
        await dropSlot(this.deps.connection, slot).catch(() => undefined);
      }
      if (ownsPublication) await dropPublicationIfOwned(client, slot).catch(() => undefined);
      throw e;
    } finally {
      await client.end();
    }
  }

  /** The tables' schemas; each needs a key (primary key or REPLICA IDENTITY FULL) to page by and to key changes by. */
  async keyedSchemas(client: pg.Client, tables: string[], field: string): Promise<TableSchema[]> {
    let schemas: TableSchema[];
    try {
      schemas = await loadTableSchemas(client, tables);
    } catch (e) {
      if (e instanceof SchemaError) throw badRequest(field, e.message);
      throw e;
    }
    const keyless = schemas.filter((s) => s.key.length === 0).map((s) => `${s.schema}.${s.name}`);
    if (keyless.length)
      throw badRequest(
        field,
        `${keyless.join(', ')} ha${keyless.length > 1 ? 've' : 's'} no primary key or REPLICA IDENTITY FULL`,
      );
    return schemas;
  }

  /** A running session that `owner` may use: 404 when unknown or ended, 403 when another token's. */
  async get(slot: unknown, owner: SecretRef): Promise<SessionInfo> {
    if (typeof slot !== 'string' || !/^[a-z0-9_]{1,63}$/.test(slot))
      throw badRequest('slotName', 'must be the slotName /v1/init returned');
    let description: WorkflowExecutionDescription;
    try {
      description = await this.deps.client.workflow.getHandle(sessionWorkflowId(slot)).describe();
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) throw new RequestError(404, 'slotName', `no session ${slot}`);
      throw e;
    }
    if (description.status.name !== 'RUNNING')
      throw new RequestError(404, 'slotName', `session ${slot} has ended (its slot is dropped)`);
    const info = description.memo as unknown as SessionInfo;
    if (info.owner !== owner) throw new RequestError(403, 'slotName', `session ${slot} belongs to another token`);
    return info;
  }

  /** The snapshot to read `slot`'s pages under, or 410 once it was released. */
  snapshot(slot: string): { name: string; expiresAt: Date } {
    const h = this.held.get(slot);
    if (!h)
      throw new RequestError(
        410,
        'slotName',
        `the snapshot of session ${slot} was released (snapshot/done, its hold time ended or the server restarted); ` +
          `the stream still has every change after it`,
      );
    return { name: h.snapshot.name, expiresAt: h.expiresAt };
  }

  releaseSnapshot(slot: string): boolean {
    const h = this.held.get(slot);
    if (!h) return false;
    this.held.delete(slot);
    clearTimeout(h.timer);
    void h.snapshot.close();
    return true;
  }

  /**
   * Tells the session's workflow it is in use: at once when `connected` changes, otherwise at most a
   * few times per idle timeout (every touch is a history event).
   */
  touch(info: SessionInfo, touch: SessionTouch): void {
    const last = this.lastTouch.get(info.slot);
    const every = Math.min(30_000, (info.idleTimeoutSeconds * 1000) / 3);
    if (last && last.connected === touch.connected && Date.now() - last.at < every) return;
    this.lastTouch.set(info.slot, { at: Date.now(), connected: touch.connected });
    this.deps.client.workflow
      .getHandle(sessionWorkflowId(info.slot))
      .signal(touchSessionSignal, touch)
      .catch((e: Error) => console.warn(`walflow serve: cannot report session ${info.slot} in use: ${e.message}`));
  }

  /** Ends a session: its workflow drops the slot (and its publication); resolves when that is done. */
  async end(info: SessionInfo, reason: string): Promise<void> {
    this.releaseSnapshot(info.slot);
    this.lastTouch.delete(info.slot);
    const handle = this.deps.client.workflow.getHandle(sessionWorkflowId(info.slot));
    await handle.signal(endSessionSignal, { reason });
    await handle.result();
  }

  async close(): Promise<void> {
    for (const slot of [...this.held.keys()]) this.releaseSnapshot(slot);
  }
}
