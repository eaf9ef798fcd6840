/**
 * Source shape changes mid-stream, on every Postgres major of the stack, into an analytics destination:
 * each table either equals the source after the change, or is stopped (errored, with the column, the
 * types and the fix) with none of its later changes written while the other tables keep streaming;
 * `walflow resync --tables` then rebuilds a stopped table with the new shape.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { createClient } from '@clickhouse/client';
import { pgAdminUrls, requireEnv } from './env.ts';
import { PipelineFixture } from './pipeline.ts';
import type { PipelineStatus } from '../../lib/contract/status.ts';

const TABLES = ['wide', 'scaled', 'narrow', 'cols', 'moved', 'defaulted', 'gen', 'parted', 'other'];

export function describeShapeChangesInto(destination: 'clickhouse' | 'snowflake' | 'postgres'): void {
  for (const [i, adminUrl] of pgAdminUrls().entries()) {
    describe(`shape changes into ${destination} from the Postgres on ${new URL(adminUrl).port}`, () => {
      const f = new PipelineFixture({
        name: `shape_${destination}_${i}`,
        destination,
        adminUrl,
        tables: TABLES,
        setup: `CREATE TABLE wide (id int PRIMARY KEY, n int4, amount numeric(10,2), label varchar(10), f float4);
          CREATE TABLE scaled (id int PRIMARY KEY, amount numeric(10,2));
          CREATE TABLE narrow (id int PRIMARY KEY, big int8);
          CREATE TABLE cols (id int PRIMARY KEY, a text, d text);
          CREATE TABLE moved (id int PRIMARY KEY, v text);
          CREATE TABLE defaulted (id int PRIMARY KEY, v text);
          CREATE TABLE gen (id int PRIMARY KEY, v int, twice int GENERATED ALWAYS AS (v * 2) STORED);
          CREATE TABLE other (id int PRIMARY KEY, v text);
          CREATE TABLE parted (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
          CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
          CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
          CREATE TABLE parted_asia PARTITION OF parted FOR VALUES IN ('asia');
          INSERT INTO parted SELECT g, (ARRAY['eu', 'us', 'asia'])[g % 3 + 1], 'v' || g FROM generate_series(1, 9) g;
          CREATE TABLE parted_af (id int, region text, v text, PRIMARY KEY (id, region));
          INSERT INTO parted_af SELECT g, 'af', 'filled before the attach' FROM generate_series(100, 109) g;
          INSERT INTO gen (id, v) SELECT g, g FROM generate_series(1, 3) g;
          INSERT INTO wide SELECT g, g, g + 0.25, 'l' || g, g / 4.0 FROM generate_series(1, 3) g;
          INSERT INTO scaled SELECT g, g + 0.5 FROM generate_series(1, 3) g;
          INSERT INTO narrow SELECT g, g FROM generate_series(1, 3) g;
          INSERT INTO cols SELECT g, 'a' || g, 'd' || g FROM generate_series(1, 3) g;
          INSERT INTO moved SELECT g, 'v' || g FROM generate_series(1, 3) g;
          INSERT INTO defaulted SELECT g, 'v' || g FROM generate_series(1, 3) g;
          INSERT INTO other SELECT g, 'v' || g FROM generate_series(1, 3) g;`,
      });
      after(() => f.teardown());
      // Not spawnSync: the worker runs in this process and must answer the CLI's queries meanwhile.
      const cli = (...args: string[]) =>
        promisify(execFile)(process.execPath, ['bin/walflow.js', ...args, '--config', f.configFile], {
          encoding: 'utf8',
        });
      const stateOf = (s: PipelineStatus, t: string) => s.tables[t]?.state;
      let expectStopped: string[] = [];
      let expectEqual: string[] = [];

      test(
        'widen, rename and add/drop columns replicate exactly; ADD COLUMN DEFAULT is re-copied by itself; ' +
          'narrowing and table rename stop only their table; resync rebuilds',
        async () => {
          await f.setup();
          // Snowflake changes a NUMBER's precision in place, never its scale. (gen: Postgres before 18 cannot publish
          // generated columns; walflow reads them by key, so the table is equal on every major.)
          expectStopped = ['narrow', 'moved', ...(destination === 'snowflake' ? ['scaled'] : [])];
          // defaulted: its existing rows got the default, which the WAL does not carry: walflow re-copies it itself.
          // parted: ATTACH, DETACH and TRUNCATE of a partition reach no WAL: walflow notices and re-copies it.
          expectEqual = ['wide', 'scaled', 'cols', 'gen', 'defaulted', 'parted', 'other'].filter(
            (t) => !expectStopped.includes(t),
          );
          await f.start();
          await f.waitForConvergence();
          await f.sql(`ALTER TABLE wide ALTER n TYPE int8, ALTER amount TYPE numeric(14,2),
          ALTER label TYPE varchar(40), ALTER f TYPE float8;
          INSERT INTO wide VALUES (10, 5000000000, 123456789012.34, 'a label longer than ten', 1.2345678901234);
          UPDATE wide SET n = 9223372036854775807 WHERE id = 1;
          ALTER TABLE scaled ALTER amount TYPE numeric(12,4); INSERT INTO scaled VALUES (10, 0.0001);
          ALTER TABLE narrow ALTER big TYPE int4; INSERT INTO narrow VALUES (10, 7);
          ALTER TABLE cols RENAME COLUMN a TO b; ALTER TABLE cols ADD COLUMN c int; ALTER TABLE cols DROP COLUMN d;
          INSERT INTO cols (id, b, c) VALUES (10, 'x', 3); UPDATE cols SET c = 1 WHERE id = 1;
          ALTER TABLE moved RENAME TO moved2; INSERT INTO moved2 VALUES (10, 'after the rename');
          ALTER TABLE defaulted ADD COLUMN n int NOT NULL DEFAULT 7; INSERT INTO defaulted VALUES (10, 'x', 8);
          INSERT INTO gen (id, v) VALUES (10, 21); UPDATE gen SET v = 5 WHERE id = 1;
          ALTER TABLE parted ATTACH PARTITION parted_af FOR VALUES IN ('af');
          ALTER TABLE parted DETACH PARTITION parted_us; TRUNCATE parted_asia;
          INSERT INTO other VALUES (10, 'keeps streaming');`);
          await f.waitForConvergence(180_000, expectEqual);

          const status = await f.waitFor('the stopped tables to show errored', async () => {
            const s = await f.status();
            return expectStopped.every((t) => stateOf(s, t) === 'errored') && s;
          });
          assert.deepEqual(TABLES.filter((t) => stateOf(status, t) === 'errored').sort(), [...expectStopped].sort());
          const narrow = status.tables.narrow!.error!;
          assert.deepEqual([narrow.column, narrow.oldType, narrow.newType], ['big', 'bigint', 'integer']);
          assert.equal(narrow.fix, `walflow resync ${f.config.id} --tables narrow`);
          assert.match(status.tables.moved!.error!.reason, /renamed to public\.moved2/);
          assert.equal(
            status.tables.moved!.error!.fix,
            `walflow tables remove ${f.config.id} moved, then walflow tables add ${f.config.id} public.moved2`,
          );
          assert.match(
            status.lastError ?? '',
            /table narrow stopped at LSN [0-9A-F/]+: column big changed type from bigint to integer.*\(source: ALTER TABLE public\.narrow ALTER COLUMN big TYPE integer\).*fix: walflow resync/,
          );
          assert.deepEqual(status.tables.cols!.droppedColumns, ['d']);
          const json = JSON.parse((await cli('status', f.config.id, '--json')).stdout) as PipelineStatus;
          assert.equal(json.tables.narrow!.state, 'errored');
          assert.match((await cli('status', f.config.id)).stdout, /narrow\s+ERRORED .*\n.*fix: walflow resync/);

          // verify reports the renamed table (and the stopped ones) instead of aborting.
          const verified = await cli('verify', f.config.id, '--json').then(
            () => assert.fail('verify passed with stopped tables'),
            (e: { stdout: string }) =>
              JSON.parse(e.stdout) as { equal: boolean; tables: { table: string; equal: boolean; problem?: string }[] },
          );
          assert.equal(verified.equal, false);
          assert.match(
            verified.tables.find((t) => t.table === 'public.moved')?.problem ?? '',
            /public\.moved does not exist in the source \(renamed or dropped\?\)/,
          );
          assert.deepEqual(
            verified.tables
              .filter((t) => !t.equal)
              .map((t) => t.table)
              .sort(),
            expectStopped.map((t) => `public.${t}`).sort(),
          );

          // None of a stopped table's changes past the stop is written, though the slot moved on for the others.
          const { counts } = await f.compare(['narrow']);
          assert.deepEqual(counts, { 'public.narrow': [4, 3] });
          // Re-copied by walflow itself, they stream again without an operator.
          await f.waitFor('defaulted and parted to stream again', async () => {
            const s = await f.status();
            return ['defaulted', 'parted'].every((t) => stateOf(s, t) === 'streaming');
          });
          await f.sql(`INSERT INTO parted VALUES (200, 'af', 'after the re-copy'); DELETE FROM parted WHERE id = 100`);

          const resynced = expectStopped.filter((t) => t !== 'moved');
          await cli('resync', f.config.id, '--tables', resynced.join(','));
          await f.sql(`INSERT INTO narrow VALUES (11, 2147483647)`);
          await f.waitFor(
            'resynced tables to stream again',
            async () => {
              const s = await f.status();
              return resynced.every((t) => stateOf(s, t) === 'streaming');
            },
            180_000,
          );
          await f.waitForConvergence(180_000, [...expectEqual, ...resynced]);
          if (destination === 'clickhouse') {
            const ch = createClient({ url: requireEnv('CLICKHOUSE_URL') });
            const rs = await ch.query({
              query:
                `SELECT table, name, type FROM system.columns WHERE database = {db:String} AND table IN ` +
                `('narrow', 'wide', 'cols') ORDER BY table, position`,
              query_params: { db: f.target.name },
              format: 'JSONEachRow',
            });
            const types = Object.fromEntries(
              (await rs.json<{ table: string; name: string; type: string }>())
                .filter((c) => !c.name.startsWith('_walflow'))
                .map((c) => [`${c.table}.${c.name}`, c.type]),
            );
            await ch.close();
            assert.equal(types['narrow.big'], 'Nullable(Int32)', 'the rebuilt table has the new type');
            assert.equal(types['wide.n'], 'Nullable(Int64)');
            assert.equal(types['wide.amount'], 'Nullable(Decimal(14, 2))');
            assert.deepEqual(
              Object.keys(types).filter((k) => k.startsWith('cols.')),
              ['cols.id', 'cols.b', 'cols.d', 'cols.c'],
            );
          }

          // The way out of a rename, taken while the stream is behind it (paused): the table is added by its new
          // name; its changes from before the add, under its old name, are left to its backfill.
          await cli('pause', f.config.id);
          await f.waitFor('the pipeline to pause', async () => (await f.status()).phase === 'paused');
          await f.sql(`UPDATE moved2 SET v = 'before the second rename' WHERE id = 1;
          ALTER TABLE moved2 RENAME TO moved3; INSERT INTO moved3 VALUES (11, 'after the second rename')`);
          await cli('tables', 'remove', f.config.id, 'moved');
          await cli('tables', 'add', f.config.id, 'moved3');
          await cli('resume', f.config.id);
          await f.sql(`INSERT INTO moved3 VALUES (12, 'after the add')`);
          await f.waitFor('moved3 to stream', async () => stateOf(await f.status(), 'moved3') === 'streaming', 180_000);
          await f.waitForConvergence(180_000, ['moved3']);
        },
      );
    });
  }
}
