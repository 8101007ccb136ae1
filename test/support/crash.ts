/**
 * The crash harness of the fault suite: the CLI bundle run as a child with
 * test/fault/crashhook.js preloaded, counted once, then killed after every
 * counted disk step; and a place to record the figures docs/reliability.md
 * quotes.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cloneDir, tmpDir, type TestHooks } from './fs';
import { CLI, ROOT } from './paths';

export const HOOK = path.join(ROOT, 'test', 'fault', 'crashhook.js');
/** Figures for docs/reliability.md, one JSON file per test file. */
export const FIGURES = path.join(ROOT, 'out', 'fault-figures');

/** Records figures under `name` (merged into out/fault-figures/<file>.json). */
export function recordFigures(file: string, name: string, data: unknown): void {
  fs.mkdirSync(FIGURES, { recursive: true });
  const f = path.join(FIGURES, `${file}.json`);
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch {
    // first figure of this file
  }
  all[name] = data;
  fs.writeFileSync(f, JSON.stringify(all, null, 2));
}

export interface HookedRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Counting runs: the number of steps and their log. */
  count?: number;
  ops?: string[];
  /** Killed runs: the step it was killed after. */
  note?: string;
}

/** Runs `node -r crashhook dist/cli.js ...args`. */
export function runHooked(
  args: string[],
  opts: { cwd?: string; crashAt?: number; count?: boolean; env?: Record<string, string>; timeoutMs?: number; runAs?: string } = {},
): Promise<HookedRun> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pb-hook-'));
  const env: Record<string, string> = { ...(process.env as Record<string, string>), PLONE_BACKUP_DEBUG: '', ...opts.env };
  delete env.NODE_OPTIONS;
  if (opts.count) {
    env.CRASH_COUNT = '1';
    env.CRASH_COUNT_FILE = path.join(scratch, 'count');
    env.CRASH_LOG_FILE = path.join(scratch, 'log');
  }
  if (opts.crashAt) {
    env.CRASH_AT = String(opts.crashAt);
    env.CRASH_NOTE_FILE = path.join(scratch, 'note');
  }
  let cmd = process.execPath;
  let argv = ['-r', HOOK, CLI, ...args];
  if (opts.runAs) {
    argv = ['-u', opts.runAs, '--', cmd, ...argv];
    cmd = 'runuser';
  }
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { cwd: opts.cwd ?? os.tmpdir(), env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const read = (n: string) => {
        try {
          return fs.readFileSync(path.join(scratch, n), 'utf8');
        } catch {
          return undefined;
        }
      };
      const count = read('count');
      const log = read('log');
      const note = read('note');
      fs.rmSync(scratch, { recursive: true, force: true });
      resolve({
        status,
        signal,
        stdout,
        stderr,
        count: count === undefined ? undefined : Number(count),
        ops: log?.trim().split('\n'),
        note: note?.trim(),
      });
    });
  });
}

/**
 * Every step 1..total, or `max` points spread evenly over them (first and last
 * included), and the steps in `always` whatever `max` says.
 */
export function killPoints(total: number, max = 60, always: number[] = []): number[] {
  if (total <= max) return Array.from({ length: total }, (_, i) => i + 1);
  const out = new Set<number>(always.filter((n) => n >= 1 && n <= total));
  for (let i = 0; i < max; i++) out.add(1 + Math.round((i * (total - 1)) / (max - 1)));
  return [...out].sort((a, b) => a - b);
}

/** The files of the locks: the repository's (base/lock.ts: the lock, its owner files and claims) and ZODB's Data.fs.lock (deploy/site.ts). */
const LOCK_FILE = /\/\.plone-backup\.lock(\.|$| )|\.fs\.lock$/;

/** The steps (numbers) of a counted run's log that change a lock file. */
export function lockSteps(ops: string[]): number[] {
  return ops
    .filter((l) =>
      l
        .split(' ')
        .slice(2)
        .some((p) => LOCK_FILE.test(p)),
    )
    .map((l) => Number(l.split(' ')[0]));
}

export interface KillReport {
  name: string;
  /** Steps of a whole run. */
  total: number;
  /** Kill points tried. */
  tried: number;
  /** Steps that change a lock file (each one a kill point). */
  lockSteps: number;
  /** Runs that were really killed (a point past the end lets the run finish). */
  killed: number;
  /** How many of the kill points came right after each kind of step. */
  byStep: Record<string, number>;
  seconds: number;
  /** Of which: running the killed children, and checking what they left. */
  runSeconds: number;
  checkSeconds: number;
}

/**
 * The crash loop: counts the steps of `args` run on a copy of `base`, then,
 * for every kill point, runs it on a fresh copy killed right after that step
 * and calls `check(dir, run, point)` on what the kill left.
 */
export async function crashLoop(
  t: TestHooks,
  opts: {
    name: string;
    base: string;
    args: (dir: string) => string[];
    check: (dir: string, run: HookedRun, point: number) => Promise<void>;
    /** Called with the folder of the uninterrupted (counting) run, before any kill. */
    afterCount?: (dir: string, run: HookedRun) => Promise<void>;
    max?: number;
  },
): Promise<KillReport> {
  const t0 = Date.now();
  const work = tmpDir(t, 'pb-crash-');
  const countDir = path.join(work, 'count');
  cloneDir(opts.base, countDir);
  const counted = await runHooked(opts.args(countDir), { count: true, cwd: countDir });
  assert.equal(counted.status, 0, `${opts.name}: the uninterrupted run failed: ${counted.stderr}`);
  assert.ok(counted.count && counted.count > 0, `${opts.name}: no steps counted`);
  const total = counted.count!;
  await opts.afterCount?.(countDir, counted);
  // The locks' steps are few and come first and last: each is a kill point, whatever `max`.
  const locks = lockSteps(counted.ops ?? []);
  const points = killPoints(total, opts.max ?? 60, locks);
  const byStep: Record<string, number> = {};
  let killed = 0;
  let i = 0;
  let runMs = 0;
  let checkMs = 0;
  for (const point of points) {
    const dir = path.join(work, `k${i++}`);
    cloneDir(opts.base, dir);
    const r0 = Date.now();
    const run = await runHooked(opts.args(dir), { crashAt: point, cwd: dir });
    runMs += Date.now() - r0;
    if (run.signal === 'SIGKILL') {
      killed++;
      const kind = run.note?.split(' ')[1] ?? '?';
      byStep[kind] = (byStep[kind] ?? 0) + 1;
    } else {
      assert.equal(run.status, 0, `${opts.name}: run with kill point ${point} failed without being killed: ${run.stderr}`);
    }
    const c0 = Date.now();
    try {
      await opts.check(dir, run, point);
      checkMs += Date.now() - c0;
    } catch (e) {
      (e as Error).message = `${opts.name}, killed after step ${point} (${run.note ?? 'not reached'}): ${(e as Error).message}`;
      throw e;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const report: KillReport = {
    name: opts.name,
    total,
    tried: points.length,
    lockSteps: locks.length,
    killed,
    byStep,
    seconds: (Date.now() - t0) / 1000,
    runSeconds: runMs / 1000,
    checkSeconds: checkMs / 1000,
  };
  t.diagnostic?.(`${opts.name}: ${total} steps, ${points.length} kill points tried, ${killed} killed (${JSON.stringify(byStep)}) in ${report.seconds.toFixed(1)} s`);
  return report;
}
