/**
 * Proves that no hostile input crashes, hangs or balloons a parser: every
 * parser of the engine (FileStorage headers and records, the index pickle
 * stream, .dat lines, stamps and dates, zope.conf, plone-backup.json, blob
 * paths, tar archives, repository pieces) is fed seeded random bytes,
 * mutations of the ZODB fixtures and hand-made hostile inputs (length fields
 * of 2^63, `../x` and `/etc/x` members, links, huge sizes). Each input ends in
 * success or a PloneBackupError of the parser's own codes, within a time
 * bound, with rss bounded; extraction never writes outside its target.
 *
 * Each group runs in a worker thread under a watchdog, so that even a
 * synchronous endless loop fails the test (naming the input) instead of
 * hanging it. FUZZ_SCALE multiplies the number of random inputs (default 1),
 * FUZZ_SEED changes the seed.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { recordFigures } from '../support/crash';
import { GROUPS, type GroupResult } from './fuzzcases';

const SEED = Number(process.env.FUZZ_SEED ?? 20261126);
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
const WATCHDOG_MS = 15_000;
const results: GroupResult[] = [];

function runInWorker(group: string, seed: number): Promise<GroupResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'fuzzcases.js'), { workerData: { fuzzGroup: group, seed, scale: SCALE } });
    let last = -1;
    let timer = setTimeout(hung, WATCHDOG_MS);
    function hung() {
      void w.terminate();
      reject(new Error(`${group}: input ${last + 1} (seed ${seed}) made no progress for ${WATCHDOG_MS / 1000} s: a hang`));
    }
    w.on('message', (m: { progress?: number; done?: GroupResult; error?: string }) => {
      if (m.progress !== undefined) {
        last = m.progress;
        clearTimeout(timer);
        timer = setTimeout(hung, WATCHDOG_MS);
      } else {
        clearTimeout(timer);
        void w.terminate();
        if (m.done) resolve(m.done);
        else reject(new Error(`${group}: the worker failed: ${m.error}`));
      }
    });
    w.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

describe('hostile input: every parser fails typed, in time, in bounded memory', () => {
  for (const [k, group] of Object.keys(GROUPS).entries()) {
    it(group, async (t) => {
      const r = await runInWorker(group, SEED + k);
      results.push(r);
      t.diagnostic(`${group}: ${r.inputs} inputs, ${JSON.stringify(r.outcomes)}, slowest ${r.maxMs.toFixed(1)} ms, rss +${r.maxRssMb} MB`);
      assert.deepEqual(r.failures, []);
      assert.ok(r.inputs > 0);
    });
  }
});

process.on('exit', () => {
  if (!results.length) return;
  const groups = Object.fromEntries(results.map((r) => [r.group, { inputs: r.inputs, outcomes: r.outcomes, slowestMs: Math.round(r.maxMs * 10) / 10, rssGrowthMb: r.maxRssMb }]));
  recordFigures('fuzz', 'groups', groups);
  recordFigures('fuzz', 'total', { inputs: results.reduce((a, r) => a + r.inputs, 0), seed: SEED, scale: SCALE });
});
