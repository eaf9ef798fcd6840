/**
 * Change envelopes for the destinations that keep the change stream (file, webhook, NATS, stdout): the
 * pipeline's id and each table's key columns, learned from prepare() and from schema changes.
 */
import { toEnvelope, type ChangeEnvelope } from '../../lib/envelope.ts';
import { tableKey, type Change, type TableSchema } from '../../lib/model.ts';

export class Envelopes {
  private readonly keys = new Map<string, string[]>();

  constructor(readonly pipeline: string) {}

  learn(tables: TableSchema[]): void {
    for (const t of tables) this.keys.set(tableKey(t), t.key);
  }

  of(change: Change): ChangeEnvelope {
    if (change.kind === 'schema') this.learn([change.schema]);
    return toEnvelope(this.pipeline, change, { key: this.keys.get(tableKey(change.table)) ?? [] });
  }
}

/** One envelope per line, each line ending in "\n" (JSON Lines / NDJSON). */
export function jsonLines(envelopes: ChangeEnvelope[]): string {
  let text = '';
  for (const e of envelopes) text += `${JSON.stringify(e)}\n`;
  return text;
}
