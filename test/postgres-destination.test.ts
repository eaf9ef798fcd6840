/** The Postgres destination against the conformance suite every destination passes, into a database of its own. */
import { after } from 'node:test';
import { PostgresDestination } from '../activities/destinations/postgres.ts';
import { createTestDatabase } from './support/env.ts';
import { describeDestination } from './support/conformance.ts';

const db = await createTestDatabase('dest_pg');
after(() => db.drop());

describeDestination(
  'PostgresDestination',
  new PostgresDestination({ connection: { connectionString: db.url }, schema: 'dest_test' }),
  async () => {},
);
