/**
 * One JSON line per change on standard output (the worker logs to stderr), for debugging and piping.
 * `format: envelope`: the change envelope (lib/envelope.ts). `format: legacy` (the default, the line
 * walflow always printed): {"op","table":"s.t","version","row"?,"old"?,"unchanged"?,...}; bytea as
 * Postgres's "\x…" hex text, the version as a decimal string (it exceeds JSON's safe integers).
 */
import type { Change, TableSchema, Value } from '../../lib/model.ts';
import { tableKey } from '../../lib/model.ts';
import type { Destination } from './destination.ts';
import { type Envelopes, jsonLines } from './envelopes.ts';

function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (
    value &&
    typeof value === 'object' &&
    (value as { type?: string }).type === 'Buffer' &&
    Array.isArray((value as { data?: unknown }).data)
  ) {
    return `\\x${Buffer.from((value as { data: number[] }).data).toString('hex')}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value as Value;
}

export function changeToJson(change: Change): string {
  const { kind, table, ...rest } = change;
  return JSON.stringify({ op: kind, table: tableKey(table), ...rest }, jsonValue);
}

export class StdoutDestination implements Destination {
  /** `envelopes` set: print envelopes; unset: the legacy line. */
  constructor(
    private readonly envelopes?: Envelopes,
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {}

  /** A change stream passes every widening and rename on as a schema envelope: there is no table to alter. */
  canRetype(): boolean {
    return true;
  }
  canRename(): boolean {
    return true;
  }

  async prepare(tables: TableSchema[]): Promise<void> {
    this.envelopes?.learn(tables);
  }

  async apply(changes: Change[]): Promise<void> {
    if (changes.length === 0) return;
    const envelopes = this.envelopes;
    const text = envelopes
      ? jsonLines(changes.map((c) => envelopes.of(c)))
      : `${changes.map(changeToJson).join('\n')}\n`;
    // Durable for a pipe means handed to the OS: wait for the write to drain.
    await new Promise<void>((resolve, reject) => this.out.write(text, (e) => (e ? reject(e) : resolve())));
  }

  async close(): Promise<void> {}
}
