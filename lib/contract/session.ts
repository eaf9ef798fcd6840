/**
 * The `walflow serve` session workflow's input, signals and query: imported by the workflow, the
 * serve process and `walflow status --sessions`. No secrets: the source password and the owner token
 * are references.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { SecretRef } from '../config.ts';

export interface SessionInput {
  source: { url: string; password?: SecretRef };
  slot: string;
  publication: string;
  /** The session created the publication (for `tables`), so dropping the session drops it too. */
  ownsPublication: boolean;
  tables: string[];
  /** Reference of the token that created the session: the only one that may use it. */
  owner: SecretRef;
  snapshotLsn: string;
  idleTimeoutSeconds: number;
  createdAt: string;
  /** Carried across continue-as-new. */
  state?: { confirmedLsn: string | null; lastSeenAt: string; connected: boolean };
}

export interface SessionStatus {
  slot: string;
  tables: string[];
  publication: string;
  owner: SecretRef;
  snapshotLsn: string;
  createdAt: string;
  /** Last position a client ACKed, as the serve process reported it. */
  confirmedLsn: string | null;
  /** A client is streaming (as of the last report). */
  connected: boolean;
  lastSeenAt: string;
  idleTimeoutSeconds: number;
  /** Why the session is ending, once it is. */
  ending: string | null;
}

/** The serve process reports a session in use: a streaming client (repeated while it stays), a request or an ACK. */
export interface SessionTouch {
  connected: boolean;
  confirmedLsn?: string;
}

export interface SessionEnd {
  reason: string;
}

export const touchSessionSignal = defineSignal<[SessionTouch]>('touchSession');
export const endSessionSignal = defineSignal<[SessionEnd]>('endSession');
export const sessionStatusQuery = defineQuery<SessionStatus>('sessionStatus');

export const sessionWorkflowId = (slot: string): string => `walflow-session-${slot}`;
