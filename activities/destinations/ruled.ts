/**
 * A destination behind the pipeline's rules (lib/rules.ts): tables are prepared as the rules shape
 * them and every change is filtered and transformed before the destination sees it, so stream,
 * backfill, resync and verify all go through the same rules in one place.
 */
import { tableKey, type Change, type TableId, type TableSchema } from '../../lib/model.ts';
import type { BoundRules, PipelineRules } from '../../lib/rules.ts';
import type { Destination } from './destination.ts';
import { DataRefused } from './refused.ts';

export class RuledDestination implements Destination {
  /** Per source table ("schema.name"), its rules bound to the schema it was prepared with. */
  private readonly bound = new Map<string, BoundRules | undefined>();
  /** Per destination table ("schema.name"), the source table it is made from (a refusal names the source's). */
  private readonly sources = new Map<string, TableId>();
  readonly removeStale?: Destination['removeStale'];
  readonly readLive?: Destination['readLive'];
  readonly acceptsCopyText?: Destination['acceptsCopyText'];
  readonly applyCopyText?: Destination['applyCopyText'];
  /** (canRetype/canRename are not passed on: a shape change under rules stops the table, loudly.) */
  readonly dropTable?: Destination['dropTable'];

  constructor(
    private readonly inner: Destination,
    private readonly rules: PipelineRules,
  ) {
    if (inner.removeStale) this.removeStale = (table, before) => inner.removeStale!(this.target(table), before);
    if (inner.readLive) this.readLive = (table) => inner.readLive!(this.target(table));
    if (inner.dropTable) this.dropTable = (table) => inner.dropTable!(this.target(table));
    // The backfill's COPY-text fast path skips row objects, so only tables without rules may take it.
    if (inner.acceptsCopyText && inner.applyCopyText) {
      this.acceptsCopyText = (table) => !rules.covers(table) && inner.acceptsCopyText!(table);
      this.applyCopyText = (table, version, text, rows) => inner.applyCopyText!(table, version, text, rows);
    }
  }

  /** Checks the rules against each table's columns (a ConfigError naming rule and column otherwise). */
  async prepare(tables: TableSchema[]): Promise<void> {
    for (const t of tables) {
      this.bound.set(tableKey(t), this.rules.bind(t));
      this.sources.set(tableKey(this.bound.get(tableKey(t))?.schema ?? t), { schema: t.schema, name: t.name });
    }
    await this.inner.prepare(tables.map((t) => this.bound.get(tableKey(t))?.schema ?? t));
  }

  async apply(changes: Change[]): Promise<void> {
    const out: Change[] = [];
    for (const c of changes) {
      const key = tableKey(c.table);
      const rules = this.bound.get(key);
      if (!rules) {
        if (this.rules.covers(c.table)) throw new Error(`rules: table ${key} was not prepared before its changes`);
        out.push(c);
        continue;
      }
      out.push(...rules.apply(c));
      if (c.kind === 'schema') this.bound.set(key, this.rules.bind(c.schema));
    }
    try {
      await this.inner.apply(out);
    } catch (e) {
      // The stream stops the source table whose data was refused, not the renamed one it writes to.
      if (e instanceof DataRefused) e.table = this.sources.get(tableKey(e.table)) ?? e.table;
      throw e;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private target(table: TableSchema): TableSchema {
    return this.rules.bind(table)?.schema ?? table;
  }
}
