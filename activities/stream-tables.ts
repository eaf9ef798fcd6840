/**
 * The tables one stream follows: the pipeline's name of each (progress and errors are reported by it),
 * what each destination table holds (as recorded at the slot's start or the table's add: the catalog may
 * already be past the WAL still to come; else, in pipelines from before those records, the catalog's), and the tables
 * stopped (errored), whose changes are not written. The decoder shares the stopped set, so a table
 * stopped here is skipped there from its next change on.
 */
import type pg from 'pg';
import { qualifyTable } from '../lib/config.ts';
import type { TableError, TableShapeReport } from '../lib/contract/status.ts';
import { recopyFix } from '../lib/errors.ts';
import { formatLsn, type Lsn } from '../lib/lsn.ts';
import { tableKey, type TableId, type TableSchema } from '../lib/model.ts';
import { partitionChange } from './postgres/partitions.ts';
import { loadPartitions, loadTableSchemas, tableNameByOid } from './postgres/schema.ts';
import type { ShapeProblem } from './postgres/shape.ts';

export class StreamTables {
  /** Qualified "schema.table" -> the pipeline's name. */
  private readonly names: Map<string, string>;
  /** Shapes the destination has applied, by the pipeline's name. */
  readonly applied: Record<string, TableSchema>;
  /** Stopped tables by the pipeline's name (carried in the heartbeat only once their error is reported). */
  readonly stopped: Set<string>;
  /** The same, qualified, as the decoder looks them up. */
  readonly stoppedKeys: Set<string>;

  constructor(
    private readonly pipeline: string,
    tables: string[],
    applied: Record<string, TableSchema>,
    stopped: string[],
  ) {
    this.names = new Map(tables.map((t) => [qualifyTable(t), t]));
    this.applied = applied;
    this.stopped = new Set(stopped);
    this.stoppedKeys = new Set(stopped.map(qualifyTable));
  }

  /** The pipeline's name of a table this stream follows and has not stopped. */
  live(t: TableId): string | undefined {
    const name = this.names.get(tableKey(t));
    return name && !this.stopped.has(name) ? name : undefined;
  }

  /** The pipeline's name of a table this stream follows, stopped or not. */
  followed(t: TableId): string | undefined {
    return this.names.get(tableKey(t));
  }

  /** The pipeline's name for progress and metrics (the qualified name of a table it does not follow). */
  nameOf(t: TableId): string {
    return this.followed(t) ?? tableKey(t);
  }

  /** Stops a table, once its error is reported: nothing of it is written from here on. */
  stop(name: string): void {
    this.stopped.add(name);
    this.stoppedKeys.add(qualifyTable(name));
  }

  shapeError(table: string, { renamedTo, ...problem }: ShapeProblem, lsn: Lsn): TableError {
    const id = this.pipeline;
    return {
      ...problem,
      lsn: formatLsn(lsn),
      since: new Date().toISOString(),
      fix: renamedTo
        ? `walflow tables remove ${id} ${table}, then walflow tables add ${id} ${renamedTo}`
        : problem.recopy
          ? recopyFix(id, table)
          : `walflow resync ${id} --tables ${table}`,
    };
  }

  /**
   * What each live table holds, by qualified name, and what to report before streaming: shapes seen
   * for the first time and tables that can no longer be followed (to stop once reported).
   */
  async load(
    source: pg.Client,
    at: Lsn,
    missingColumns: (schema: TableSchema) => Promise<string[]>,
  ): Promise<{ schemas: Map<string, TableSchema>; report: Required<TableShapeReport> }> {
    const schemas = new Map<string, TableSchema>();
    const report: Required<TableShapeReport> = { schemas: {}, errors: {} };
    for (const [key, name] of this.names) {
      if (this.stopped.has(name)) continue;
      const recorded = this.applied[name];
      const catalog = await loadTableSchemas(source, [key]).then(
        (s) => s[0],
        (e: Error) => e,
      );
      if (catalog instanceof Error && !recorded) {
        report.errors[name] = this.shapeError(name, { reason: catalog.message }, at);
        continue;
      }
      if (catalog instanceof Error && recorded!.oid !== undefined) {
        // Gone under this name: the decoder stops it by OID when its changes come; say where it went.
        if (!(await tableNameByOid(source, recorded!.oid!)))
          report.errors[name] = this.shapeError(name, { reason: `table ${key} no longer exists in the source` }, at);
      }
      const schema = recorded ?? (catalog as TableSchema);
      const lacking = recorded ? await missingColumns(recorded) : [];
      if (lacking.length) {
        const reason =
          `the destination table of ${key} has no column ${lacking.join(', ')} of the shape walflow recorded: a ` +
          `rename was applied there but not recorded (the stream ended in between), so rows by the recorded names ` +
          `would go astray`;
        report.errors[name] = this.shapeError(name, { reason, recopy: true }, at);
      }
      if (!recorded) report.schemas[name] = this.applied[name] = schema;
      else if (recorded.partitions === undefined && !(catalog instanceof Error) && catalog.partitions) {
        // Recorded before walflow followed partitions: from here on.
        report.schemas[name] = this.applied[name] = { ...recorded, partitions: catalog.partitions };
      }
      if (!report.errors[name]) schemas.set(key, schema);
    }
    return { schemas, report };
  }

  /** Live partitioned tables whose partitions differ from what their destination table reflects. */
  async partitionChanges(source: pg.Client, at: Lsn): Promise<Record<string, TableError>> {
    const errors: Record<string, TableError> = {};
    for (const [key, name] of this.names) {
      const reflected = this.applied[name];
      if (this.stopped.has(name) || !reflected?.partitions || reflected.oid === undefined) continue;
      if (!(await tableNameByOid(source, reflected.oid))) continue; // dropped: the decoder stops it
      const problem = partitionChange(key, reflected.partitions, await loadPartitions(source, reflected.oid));
      if (problem) errors[name] = this.shapeError(name, problem, at);
    }
    return errors;
  }
}
