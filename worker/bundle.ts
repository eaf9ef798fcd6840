/**
 * The workflow bundle, built once per workflow source and SDK version and cached on disk.
 *
 * Bundling (webpack) inside the worker process would leave ~100 MB of peak RSS behind for the
 * worker's whole life, so a cache miss is built by a short-lived child process instead.
 *
 *   node --import tsx worker/bundle.ts              builds the cached bundle ahead of time (the image does)
 *   node --import tsx worker/bundle.ts <out-file>   what the child process runs
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const workflowsDir = resolve(here, '..', 'workflows');
const workflowsPath = join(workflowsDir, 'index.ts');
const libDir = resolve(here, '..', 'lib');

/** Workflow code imports only `workflows/`, `lib/` (the config schema) and the SDK at run time. */
function sourceKey(): string {
  const hash = createHash('sha256');
  const sdk = createRequire(import.meta.url)('@temporalio/workflow/package.json') as { version: string };
  hash.update(`sdk ${sdk.version}\n`);
  for (const dir of [workflowsDir, libDir]) {
    for (const file of readdirSync(dir)
      .filter((f) => f.endsWith('.ts'))
      .sort()) {
      hash.update(`${dir} ${file}\n`).update(readFileSync(join(dir, file)));
    }
  }
  return hash.digest('hex').slice(0, 16);
}

function cacheDir(): string {
  return resolve(process.env.WALFLOW_CACHE_DIR ?? join(here, '..', 'node_modules', '.cache', 'walflow'));
}

/** The path of the bundled workflow code for the current sources, building it first if needed. */
export function workflowBundlePath(): string {
  const path = join(cacheDir(), `workflows-${sourceKey()}.js`);
  if (existsSync(path)) return path;
  mkdirSync(dirname(path), { recursive: true });
  const built = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), path], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  if (built.status !== 0)
    throw new Error(`building the workflow bundle failed (exit ${built.status}):\n${built.stderr}`);
  return path;
}

async function buildInto(out: string): Promise<void> {
  const { bundleWorkflowCode } = await import('@temporalio/worker');
  const { code } = await bundleWorkflowCode({ workflowsPath });
  // Written aside and renamed: concurrent workers never read a half-written bundle.
  const partial = `${out}.${process.pid}.partial`;
  writeFileSync(partial, code);
  renameSync(partial, out);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2]) await buildInto(process.argv[2]);
  else console.log(workflowBundlePath());
}
