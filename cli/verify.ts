/** `walflow verify <pipeline>`: compares every table of the source with the destination. */
import type { Command } from 'commander';
import { findPipeline, qualifyTable } from '../lib/config.ts';
import { loadConfig } from '../lib/config-file.ts';
import { expectedTable, jsonColumns, verifyTable, type TableVerification } from '../lib/verify.ts';
import { compileRules } from '../lib/rules.ts';
import { resolveSecret } from '../lib/secrets.ts';
import { tableKey } from '../lib/model.ts';
import { pipelineDestination } from '../activities/destinations/index.ts';
import { readTable } from '../activities/postgres/read.ts';
import { loadTableSchemas } from '../activities/postgres/schema.ts';
import { connect } from '../activities/postgres/session.ts';
import { sourceConnection } from '../activities/source.ts';
import { DEFAULT_CONFIG } from './context.ts';

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify <pipeline>')
    .description('compare source and destination per table (row count and every row); exits 1 on a difference')
    .option('-c, --config <file>', 'pipeline config file', DEFAULT_CONFIG)
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { config: string; json?: boolean }) => {
      const pipeline = findPipeline(loadConfig(opts.config), id);
      const destination = await pipelineDestination(pipeline);
      if (!destination.readLive) {
        // Stream destinations keep changes, not tables: there is no copy to compare (exit 0: nothing differs).
        await destination.close();
        const reason =
          `the ${pipeline.destination.type} destination keeps the change stream, not a copy of the ` +
          `tables; consumers rebuild rows from the envelopes (the newest version per key)`;
        if (opts.json) console.log(JSON.stringify({ pipeline: id, applies: false, reason }));
        else console.log(`verify does not apply to pipeline ${id}: ${reason}`);
        return;
      }
      const readLive = destination.readLive.bind(destination);
      // The source side goes through the pipeline's rules too, so a filtered, masked or renamed copy verifies.
      const rules = compileRules(pipeline, (ref) => resolveSecret(ref)!);
      const client = await connect(sourceConnection(pipeline.source));
      const results: TableVerification[] = [];
      try {
        for (const table of pipeline.source.tables.map(qualifyTable)) {
          // A table renamed or dropped in the source, or missing in the destination, is reported, not fatal.
          const schema = await loadTableSchemas(client, [table]).then(
            (s) => s[0]!,
            (e: Error) => e,
          );
          if (schema instanceof Error) {
            results.push(unverifiable(table, `${schema.message} (renamed or dropped?)`));
            continue;
          }
          // One snapshot for the source side, so a busy table is compared at one point in time.
          await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
          try {
            const expected = expectedTable(rules, schema, readTable(client, schema));
            const target = tableKey(expected.schema);
            results.push({
              ...(await verifyTable({
                table: tableKey(schema),
                key: expected.schema.key,
                columns: expected.schema.columns.map((c) => c.name),
                json: jsonColumns(expected.schema),
                source: expected.rows,
                destination: readLive(schema),
              })),
              ...(target === tableKey(schema) ? {} : { destinationTable: target }),
            });
          } catch (e) {
            results.push(unverifiable(table, `cannot read it back from the destination: ${(e as Error).message}`));
          } finally {
            await client.query('COMMIT');
          }
        }
      } finally {
        await destination.close();
        await client.end();
      }
      if (opts.json)
        console.log(JSON.stringify({ pipeline: id, equal: results.every((r) => r.equal), tables: results }));
      else {
        for (const r of results) {
          const target = r.destinationTable ? ` -> ${r.destinationTable}` : '';
          const counts = `source ${r.sourceRows} rows, destination ${r.destinationRows} rows`;
          console.log(`${r.equal ? 'ok  ' : 'DIFF'} ${r.table}${target}: ${r.problem ?? counts}`);
          for (const d of r.firstDifferences) console.log(`       ${d.problem}: key ${d.key}`);
        }
      }
      if (!results.every((r) => r.equal)) process.exitCode = 1;
    });
}

const unverifiable = (table: string, problem: string): TableVerification => ({
  table,
  sourceRows: 0,
  destinationRows: 0,
  equal: false,
  problem,
  firstDifferences: [],
});
