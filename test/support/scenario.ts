/**
 * One end-to-end scenario every analytics destination must pass: backfill and CDC of many types,
 * deletes, NaN, ADD COLUMN and TRUNCATE mid-stream, then `walflow verify` (equal, and a drift caught).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { PipelineFixture, type FixtureDestination } from './pipeline.ts';

/**
 * `walflow <args>` in a child process, waited for without blocking this one: an in-process worker keeps
 * running meanwhile (an embedded destination's worker must let go of its file for the CLI to read it).
 */
function walflow(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/walflow.js', ...args], { encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve({ status: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

export function describePipelineInto(destination: Exclude<FixtureDestination, 'postgres'>, rows: number): void {
  // grid: a NOT NULL two-dimensional array (ClickHouse: Array(Array(Nullable(Int32)))), through backfill and CDC.
  describe(`a pipeline into ${destination}`, () => {
    const f = new PipelineFixture({
      name: destination,
      destination,
      setup: `CREATE TYPE level AS ENUM ('low', 'high');
        CREATE TABLE metrics (id int8 PRIMARY KEY, name text NOT NULL, small int2, value float8, exact numeric(20,6),
          loose numeric,
          ok bool, at timestamptz, day date, t time, span interval, tags text[], grid int[][] NOT NULL DEFAULT '{}',
            doc jsonb, raw bytea, uid uuid, lvl level, note text);
        INSERT INTO metrics SELECT g, 'm' || g, (g % 100)::int2, g / 3.0, g * 1.000001, (g::numeric ^ 3) / 7, g % 2 = 0,
          '2024-01-01'::timestamptz + g * interval '1.5 seconds', '2024-01-01'::date + g % 365, '12:34:56.789', g *
            interval '1 minute',
          ARRAY['x' || g, NULL], ARRAY[ARRAY[g, NULL], ARRAY[-g, 0]], jsonb_build_object('g', g, 'big',
            12345678901234567890), decode(md5(g::text), 'hex'), gen_random_uuid(),
          (ARRAY['low','high'])[1 + g % 2]::level, repeat('n', g % 10) FROM generate_series(1, ${rows}) g;`,
      tables: ['metrics'],
    });
    after(() => f.teardown());

    test('backfill and CDC of many types converge; deletes, truncate and ADD COLUMN mid-stream', async () => {
      await f.setup();
      await f.start();
      await f.waitForConvergence(Number(process.env.CONVERGE_MS ?? 180_000));
      await f.sql(`UPDATE metrics SET value = 'NaN', note = NULL, grid = '{{7,8,9}}' WHERE id <= 100;
        DELETE FROM metrics WHERE id BETWEEN 101 AND 200;
        INSERT INTO metrics (id, name, loose) VALUES (30000, 'late', 'NaN');`);
      await f.waitForConvergence();
      await f.sql(
        `ALTER TABLE metrics ADD COLUMN extra numeric(8,3); INSERT INTO metrics (id, name, extra) VALUES (30001, ` +
          `'extra', 1.25)`,
      );
      await f.waitForConvergence();
      await f.sql(`TRUNCATE metrics; INSERT INTO metrics (id, name) VALUES (1, 'after truncate')`);
      await f.waitForConvergence();
      const { counts } = await f.compare();
      assert.deepEqual(counts['public.metrics'], [1, 1]);

      const ok = await walflow(['verify', f.config.id, '--config', f.configFile, '--json']);
      assert.equal(ok.status, 0, ok.stderr);
      assert.equal(JSON.parse(ok.stdout).equal, true);
      // A change the destination never saw: verify names the key and exits 1.
      await f.handle.signal('pause');
      await f.waitFor('paused', async () => (await f.status()).phase === 'paused');
      // Paused means the stream has let go of the slot, not only that the workflow took the signal (the
      // workflow reports paused while the stream activity may still be finishing its cancellation).
      await f.waitFor(
        'the stream to let go of the slot',
        async () =>
          (
            await f.sql(
              'SELECT 1 FROM pg_replication_slots WHERE database = current_database() AND NOT temporary AND NOT active',
            )
          ).rowCount === 1,
      );
      await f.sql(`UPDATE metrics SET name = 'drifted' WHERE id = 1`);
      const bad = await walflow(['verify', f.config.id, '--config', f.configFile]);
      assert.equal(bad.status, 1);
      assert.match(
        bad.stdout,
        /DIFF public\.metrics: source 1 rows, destination 1 rows\n\s+values differ: key \["1"\]/,
      );
    });
  });
}
