/**
 * Determinism guard: histories recorded from real runs (test/histories, made by
 * `npm run record-histories`) replay against today's workflow code. A change
 * that would break running pipelines fails here instead of in production.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { projectRoot } from '../stack/paths.ts';
import { workflowBundlePath } from '../worker/bundle.ts';

const dir = join(projectRoot, 'test', 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

test('recorded histories exist for every kind of run', () => {
  for (const kind of [
    'pipeline-backfill-paused-resumed',
    'pipeline-continued-as-new',
    'pipeline-snapshot-lost',
    'copy-ranges',
    'resync',
    'pipeline-config-applied-dropped',
    'resync-published',
    'session-ended',
    'session-idle',
  ]) {
    assert.ok(files.includes(`${kind}.json`), `test/histories/${kind}.json`);
  }
});

for (const file of files) {
  test(`replays ${file}`, async () => {
    const { workflowId, history } = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    // The bundle the workers run, so the replayed code is exactly what production executes.
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: workflowBundlePath() }, replayName: file },
      history,
      workflowId,
    );
  });
}
