/**
 * `npm run soak -- --seed N --minutes M --destination clickhouse|snowflake|postgres|duckdb|nats|webhook|file
 * [--refused] [--shapes]`: the long fault run on the local
 * stack. Prints one summary line (transactions, changes, faults by kind, mismatches) and exits 1 unless it passed.
 */
import { parseArgs } from 'node:util';
import { stackUp } from '../../stack/index.ts';
import { SOAK_DESTINATIONS } from './destinations.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: String(Date.now() % 100000) },
    minutes: { type: 'string', default: '5' },
    destination: { type: 'string', default: 'clickhouse' },
    refused: { type: 'boolean', default: false },
    shapes: { type: 'boolean', default: false },
  },
});
const destination = SOAK_DESTINATIONS.find((d) => d === values.destination);
if (!destination) {
  console.error(`soak: --destination must be one of ${SOAK_DESTINATIONS.join(', ')}, not ${values.destination}`);
  process.exit(2);
}

if (values.refused && destination !== 'clickhouse') {
  console.error('soak: --refused writes values ClickHouse refuses; run it with --destination clickhouse');
  process.exit(2);
}

if (values.shapes && !['clickhouse', 'snowflake', 'postgres'].includes(destination)) {
  console.error('soak: --shapes changes table shapes; run it with --destination clickhouse, snowflake or postgres');
  process.exit(2);
}

const { status } = await stackUp();
process.env.WALFLOW_PG_URL = status.postgres!.url;
process.env.WALFLOW_TEMPORAL_ADDRESS = status.temporal!.url;
process.env.CLICKHOUSE_URL = status.clickhouse!.url;
if (!process.env.SNOWFLAKE_ACCOUNT) process.env.WALFLOW_SNOWFLAKE_URL = status.snowflake!.url;
process.env.WALFLOW_NATS_URL = status.nats!.url;
const { runSoak, soakPassed, summaryLine } = await import('./harness.ts');
const result = await runSoak({
  seed: Number(values.seed),
  durationMs: Number(values.minutes) * 60_000,
  destination,
  refused: values.refused,
  shapes: values.shapes,
  log: (line) => console.error(`[${new Date().toISOString()}] ${line}`),
});
console.log(summaryLine(result));
process.exit(soakPassed(result) ? 0 : 1);
