import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { startWorker, type RunningWorker } from '../worker/worker.ts';
import { probeWorkflow } from '../workflows/index.ts';
import { pgAdminUrl, temporalAddress } from './support/env.ts';

let worker: RunningWorker;

before(async () => {
  worker = await startWorker({ address: temporalAddress(), taskQueue: 'test-plumbing' });
});

after(() => worker.shutdown());

test('a workflow on the stack runs an activity that reads the stack Postgres', async () => {
  const connection = await Connection.connect({ address: temporalAddress() });
  try {
    const client = new Client({ connection });
    const result = await client.workflow.execute(probeWorkflow, {
      taskQueue: 'test-plumbing',
      workflowId: `probe-${Date.now()}`,
      args: [pgAdminUrl()],
    });
    assert.equal(result.walLevel, 'logical');
    assert.equal(result.database, 'postgres');
    assert.match(result.serverVersion, /^\d+/);
  } finally {
    await connection.close();
  }
});
