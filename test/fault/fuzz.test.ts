/**
 * Proves that no hostile input crashes, hangs or balloons a parser: every
 * parser of the engine (FileStorage headers and records, the index pickle
 * stream, .dat lines, stamps and dates, zope.conf, plone-backup.json, blob
 * paths, tar archives, repository pieces) is fed seeded random bytes,
 * mutations of the ZODB fixtures and hand-made hostile inputs (length fields
 * of 2^63, `../x` and `/etc/x` members, links, huge sizes). Each input ends in
 * success or a PloneBackupError of the parser's own codes, never hangs,
 * with rss bounded; extraction never writes outside its target.
 *
 * Each group runs in a worker thread under a watchdog, so that even a
 * synchronous endless loop fails the test (naming the input) instead of
 * hanging it. FUZZ_SCALE multiplies the number of random inputs (default 1),
 * FUZZ_SEED changes the seed.
 *
 * Hostile shapes (small files that once cost gigabytes or seconds, FIFOs and
 * /dev/zero links where metadata belongs) each run in a child process of
 * their own, which reports its peak RSS and CPU time; the memory ceilings
 * are asserted, and a child that does not finish is a hang.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { recordFigures } from '../support/crash';
import { type GroupResult, GROUPS, type ShapeReport, SHAPES } from './fuzzcases';
import { spawn, spawnSync } from 'node:child_process';

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

describe('hostile input: every parser fails typed, never hangs, in bounded memory', () => {
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

/**
 * Per shape, in the child that runs it: peak RSS of the process (and of its
 * Buffers) is asserted; CPU time is reported, never asserted (a loaded CI
 * machine is no clock). A blow-up in time is a hang, which SHAPE_WALL_MS
 * catches; how cost grows with input size is measured by `npm run bench`.
 */
const MAX_RSS_MB = 300;
/** A child still running after this is hung (a FIFO opened for reading blocks forever). */
const SHAPE_WALL_MS = 30_000;
const shapeReports: ShapeReport[] = [];

function runShapeChild(shape: string, scratch: string): Promise<ShapeReport> {
  const script = path.join(__dirname, 'fuzzcases.js');
  // The files are made by another child, so setting them up costs this one nothing.
  const made = spawnSync(process.execPath, [script, '--make', shape, scratch], { encoding: 'utf8', timeout: 120_000 });
  if (made.status !== 0) return Promise.reject(new Error(`${shape}: making the input failed: ${made.stderr}`));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, '--shape', shape, scratch], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${shape}: still running after ${SHAPE_WALL_MS / 1000} s: a hang`));
    }, SHAPE_WALL_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${shape}: the child ended with ${signal ?? code}: ${err.slice(0, 2000)}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as ShapeReport);
      } catch {
        reject(new Error(`${shape}: no report from the child: ${out.slice(0, 500)} ${err.slice(0, 1000)}`));
      }
    });
  });
}

describe('hostile shapes: typed or fine, under 300 MB and 2 s of CPU each, in a child process', () => {
  for (const [shape, s] of Object.entries(SHAPES)) {
    it(shape, { todo: s.todo, timeout: 180_000 }, async (t) => {
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-shape-'));
      t.after(() => fs.rmSync(scratch, { recursive: true, force: true }));
      const r = await runShapeChild(shape, scratch);
      shapeReports.push(r);
      t.diagnostic(`${shape}: ${r.outcome}, max RSS ${r.maxRssMb} MB, Buffers ${r.maxBuffersMb} MB, CPU ${r.cpuMs} ms, ${r.wallMs} ms`);
      assert.ok(!r.outcome.startsWith('FAILED'), r.outcome);
      assert.ok(r.maxRssMb < MAX_RSS_MB, `max RSS ${r.maxRssMb} MB`);
      assert.ok(r.maxBuffersMb < MAX_RSS_MB, `Buffers of ${r.maxBuffersMb} MB (allocated, if not yet resident)`);
    });
  }
});

process.on('exit', () => {
  if (shapeReports.length)
    recordFigures(
      'fuzz',
      'shapes',
      Object.fromEntries(shapeReports.map((r) => [r.shape, { outcome: r.outcome, maxRssMb: r.maxRssMb, maxBuffersMb: r.maxBuffersMb, cpuMs: r.cpuMs }])),
    );
  if (!results.length) return;
  const groups = Object.fromEntries(results.map((r) => [r.group, { inputs: r.inputs, outcomes: r.outcomes, slowestMs: Math.round(r.maxMs * 10) / 10, rssGrowthMb: r.maxRssMb }]));
  recordFigures('fuzz', 'groups', groups);
  recordFigures('fuzz', 'total', { inputs: results.reduce((a, r) => a + r.inputs, 0), seed: SEED, scale: SCALE });
});
