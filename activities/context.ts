/** What activities are built from: injected once by the worker, faked nowhere in the integration suite. */
import type { Client } from '@temporalio/client';

export interface ActivityDeps {
  /** Used to report progress back to the workflow that runs the activity (signals). */
  client: Client;
}
