/**
 * `npm test`: brings up the stack through the same code as `walflow stack up`
 * (reusing whatever already runs), runs every test file with Node's test
 * runner against it, and stops only what it started.
 *   npm test                      all tests
 *   npm test -- test/foo.test.ts  chosen files
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { projectRoot } from '../stack/paths.ts';
import { stackDown, stackUp } from '../stack/index.ts';

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const path = join(dir, e.name);
      if (e.isDirectory()) return testFiles(path);
      return e.name.endsWith('.test.ts') ? [relative(projectRoot, path)] : [];
    })
    .sort();
}

const chosen = process.argv.slice(2);
const files = chosen.length ? chosen : testFiles(join(projectRoot, 'test'));

const { started, status } = await stackUp({ postgres15: true });
console.log(
  `stack: ${Object.entries(status)
    .map(([k, v]) => `${k}=${v.url}`)
    .join(' ')}${started.length ? ` (started ${started.join(', ')})` : ''}`,
);

let code = 1;
try {
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=900000', ...files],
    {
      cwd: projectRoot,
      stdio: 'inherit',
      env: {
        ...process.env,
        WALFLOW_PG_URL: status.postgres!.url,
        WALFLOW_PG_EXTRA_URLS: status.postgres15?.url ?? '',
        WALFLOW_TEMPORAL_ADDRESS: status.temporal!.url,
        CLICKHOUSE_URL: status.clickhouse!.url,
        WALFLOW_NATS_URL: status.nats!.url,
        // The emulator's URL; with SNOWFLAKE_ACCOUNT set the tests use that Snowflake instead.
        ...(process.env.SNOWFLAKE_ACCOUNT ? {} : { WALFLOW_SNOWFLAKE_URL: status.snowflake!.url }),
      },
    },
  );
  code = result.status ?? 1;
} finally {
  if (started.length) await stackDown(started);
}
process.exitCode = code;
