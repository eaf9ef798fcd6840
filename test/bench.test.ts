/**
 * The benchmark script runs end to end on the stack and writes well-formed results (a tiny smoke run:
 * timings are never asserted in tests; `npm run bench` measures them).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

test('npm run bench -- all --smoke prints a table and writes JSON results with machine info', () => {
  const dir = mkdtempSync(join(tmpdir(), 'walflow-bench-'));
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', 'all', '--smoke'], {
    encoding: 'utf8',
    env: { ...process.env, WALFLOW_BENCH_RESULTS: dir },
    timeout: 600_000,
  });
  assert.equal(run.status, 0, run.stderr.slice(-3000));
  assert.match(run.stdout, /\| scenario \| destination \| count \|/);
  const [file] = readdirSync(dir);
  const out = JSON.parse(readFileSync(join(dir, file!), 'utf8'));
  assert.ok(out.machine.cpus > 0 && out.machine.node && out.machine.postgres);
  const scenarios = out.results.map((r: { scenario: string }) => r.scenario.split(' ')[0]);
  assert.deepEqual([...new Set(scenarios)], ['backfill', 'cdc', 'latency']);
  for (const r of out.results) {
    assert.ok(r.count > 0 && r.seconds > 0 && r.perSecond > 0 && r.workerPeakRssMb > 0, JSON.stringify(r));
    if (r.scenario.startsWith('latency'))
      assert.ok(r.latencyMs.p50 > 0 && r.latencyMs.p99 >= r.latencyMs.p50, JSON.stringify(r));
    else assert.ok(r.ceilingPerSecond > 0 && r.ratio > 0, JSON.stringify(r));
    if (r.scenario.startsWith('backfill'))
      assert.ok(r.parallelCeilingPerSecond > 0 && r.parallelRatio > 0, JSON.stringify(r));
  }
});
