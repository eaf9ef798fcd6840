/**
 * POSTs change envelopes to a URL, one request per table per batch (split at `maxBatchChanges`), as a
 * JSON array or NDJSON. A 2xx answer means the endpoint has them durably; a 5xx, 408, 429, a timeout or a
 * connection error is retried with doubling backoff, then the write fails and is retried by the stream.
 * Any other answer (a 4xx) is permanent: a ConfigError naming the table, the status and the start of the
 * body, which stops the pipeline for the operator instead of retrying a request that cannot succeed.
 *
 * Headers: `Idempotency-Key: <first id>..<last id>` (the same on every retry of a request; consumers
 * de-duplicate by envelope id, which also holds across crashes), `X-Walflow-Signature: sha256=<hex>`,
 * HMAC-SHA256 of the raw body with the configured secret.
 */
import { createHmac } from 'node:crypto';
import { ConfigError } from '../../lib/config.ts';
import type { ChangeEnvelope } from '../../lib/envelope.ts';
import { tableKey, type Change, type TableSchema } from '../../lib/model.ts';
import type { Destination } from './destination.ts';
import { type Envelopes, jsonLines } from './envelopes.ts';

export interface WebhookDestinationOptions {
  url: string;
  format: 'json' | 'ndjson';
  /** HMAC key (resolved); no signature header without one. */
  secret?: string;
  /** Extra headers, secret values resolved. */
  headers: Record<string, string>;
  timeoutMs: number;
  maxBatchChanges: number;
  retries: number;
  /** First retry delay; doubles up to 30 s. */
  backoffMs?: number;
}

export const SIGNATURE_HEADER = 'X-Walflow-Signature';

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const retryable = (status: number) => status >= 500 || status === 408 || status === 429;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class WebhookDestination implements Destination {
  /** The URL without query or credentials, for messages. */
  private readonly where: string;

  constructor(
    private readonly opts: WebhookDestinationOptions,
    private readonly envelopes: Envelopes,
  ) {
    const u = new URL(opts.url);
    this.where = `${u.origin}${u.pathname}`;
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
  }

  async apply(changes: Change[]): Promise<void> {
    const byTable = new Map<string, ChangeEnvelope[]>();
    for (const c of changes) {
      const key = tableKey(c.table);
      const list = byTable.get(key) ?? [];
      if (list.length === 0) byTable.set(key, list);
      list.push(this.envelopes.of(c));
    }
    for (const [table, envelopes] of byTable) {
      for (let i = 0; i < envelopes.length; i += this.opts.maxBatchChanges) {
        await this.post(table, envelopes.slice(i, i + this.opts.maxBatchChanges));
      }
    }
  }

  private async post(table: string, envelopes: ChangeEnvelope[]): Promise<void> {
    const body = this.opts.format === 'json' ? JSON.stringify(envelopes) : jsonLines(envelopes);
    const headers: Record<string, string> = {
      ...this.opts.headers,
      'Content-Type': this.opts.format === 'json' ? 'application/json' : 'application/x-ndjson',
      'Idempotency-Key': `${envelopes[0]!.id}..${envelopes.at(-1)!.id}`,
    };
    if (this.opts.secret !== undefined) headers[SIGNATURE_HEADER] = signature(this.opts.secret, body);
    let lastError = '';
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      if (attempt > 0) await sleep(Math.min((this.opts.backoffMs ?? 250) * 2 ** (attempt - 1), 30_000));
      let res: Response;
      try {
        res = await fetch(this.opts.url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.timeout(this.opts.timeoutMs),
        });
      } catch (e) {
        const err = e as Error & { cause?: Error };
        lastError =
          err.name === 'TimeoutError'
            ? `no answer within ${this.opts.timeoutMs} ms`
            : `${err.message}${err.cause ? ` (${err.cause.message})` : ''}`;
        continue;
      }
      const text = await res.text().catch(() => '');
      if (res.ok) return;
      const answer = `HTTP ${res.status} ${res.statusText}${text ? `: ${text.slice(0, 300)}` : ''}`;
      if (!retryable(res.status)) {
        throw new ConfigError(
          `webhook ${this.where} refused ${envelopes.length} change(s) of table ${table} ` +
            `(ids ${headers['Idempotency-Key']}) with ${answer}. ` +
            'Fix the endpoint or the destination config (url, headers, secret), then `walflow resume` the pipeline.',
        );
      }
      lastError = answer;
    }
    throw new Error(
      `webhook ${this.where}: ${this.opts.retries + 1} attempts to deliver ${envelopes.length} change(s) of ` +
        `table ${table} failed; last: ${lastError}`,
    );
  }

  async close(): Promise<void> {}
}
