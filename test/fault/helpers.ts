/**
 * Shared helpers of the fault suite: the crash harness (the CLI bundle run as
 * a child with test/fault/crashhook.js preloaded, counted once, then killed
 * after every counted disk step), the states to compare before and after a
 * kill (what every registered backup restores to, the live Data.fs and blob
 * files), a seeded PRNG for the fuzz tests, a time bound for one fuzz case,
 * and a place to record the figures the README quotes.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import {
  PloneBackupError,
  allChains,
  datName,
  listRepository,
  readDat,
  recover,
  verifyChain,
  committedEnd,
  readIndexFile,
} from '../../src/engine/internal';
import { CLI, ROOT, blobContents, md5File, tempLeftovers } from '../deploy/helpers';

export { CLI, ROOT };
export const HOOK = path.join(ROOT, 'test', 'fault', 'crashhook.js');
/** Figures for docs/reliability.md, one JSON file per test file. */
export const FIGURES = path.join(ROOT, 'out', 'fault-figures');

type T = { after: (fn: () => void | Promise<void>) => void; diagnostic?: (m: string) => void };

export function tmp(t: T, tag = 'pb-fault-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), tag));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

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

// ---------------------------------------------------------------------------
// Running the CLI with the crash hook

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

/** Every step 1..total, or `max` points spread evenly over them (first and last included). */
export function killPoints(total: number, max = 60): number[] {
  if (total <= max) return Array.from({ length: total }, (_, i) => i + 1);
  const out = new Set<number>();
  for (let i = 0; i < max; i++) out.add(1 + Math.round((i * (total - 1)) / (max - 1)));
  return [...out].sort((a, b) => a - b);
}

/** Copies a prepared folder for one run (symlinks kept as they are, mtimes kept). */
export function cloneDir(src: string, dest: string): void {
  fs.cpSync(src, dest, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
}

export interface KillReport {
  name: string;
  /** Steps of a whole run. */
  total: number;
  /** Kill points tried. */
  tried: number;
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
  t: T,
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
  const work = tmp(t, 'pb-crash-');
  const countDir = path.join(work, 'count');
  cloneDir(opts.base, countDir);
  const counted = await runHooked(opts.args(countDir), { count: true, cwd: countDir });
  assert.equal(counted.status, 0, `${opts.name}: the uninterrupted run failed: ${counted.stderr}`);
  assert.ok(counted.count && counted.count > 0, `${opts.name}: no steps counted`);
  const total = counted.count!;
  await opts.afterCount?.(countDir, counted);
  const points = killPoints(total, opts.max ?? 60);
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
  const report: KillReport = { name: opts.name, total, tried: points.length, killed, byStep, seconds: (Date.now() - t0) / 1000, runSeconds: runMs / 1000, checkSeconds: checkMs / 1000 };
  t.diagnostic?.(`${opts.name}: ${total} steps, ${points.length} kill points tried, ${killed} killed (${JSON.stringify(byStep)}) in ${report.seconds.toFixed(1)} s`);
  return report;
}

// ---------------------------------------------------------------------------
// States to compare

export function md5(b: Buffer | string): string {
  return createHash('md5').update(b).digest('hex');
}
export { md5File, blobContents, tempLeftovers };

/** md5 of what `recover` writes for the chain as of `date` (the newest when undefined), or the error code. */
export async function recoverMd5(repo: string, date?: string): Promise<string> {
  const h = createHash('md5');
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      h.update(c);
      cb();
    },
  });
  try {
    await recover({ repository: repo, date, stream: sink });
  } catch (e) {
    if (PloneBackupError.is(e)) return `error:${e.code}`;
    throw e;
  }
  return h.digest('hex');
}

/** Stamps of every piece a .dat registers (and that exists). */
export async function registeredStamps(repo: string): Promise<string[]> {
  let files;
  try {
    ({ files } = await listRepository(repo));
  } catch (e) {
    if (PloneBackupError.is(e, 'REPO_MISSING')) return [];
    throw e;
  }
  const out: string[] = [];
  for (const chain of allChains(files)) {
    const lines = await readDat(path.join(repo, datName(chain[0].stamp))).catch(() => undefined);
    if (!lines) continue;
    const listed = new Set(lines.map((l) => path.basename(l.path)));
    for (const f of chain) if (listed.has(f.name)) out.push(f.stamp);
  }
  return out;
}

/** What every registered state of a repository restores to: stamp -> md5. */
export async function repoStates(repo: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const s of await registeredStamps(repo)) out[s] = await recoverMd5(repo, s);
  return out;
}

/**
 * Right after a kill: every piece a .dat registers matches it; a piece no
 * .dat registers (or a full without its .dat) may only be the killed run's
 * own, newer than every state known before.
 */
export async function verifyAfterKill(repo: string, known: string[]): Promise<void> {
  let files;
  try {
    ({ files } = await listRepository(repo));
  } catch (e) {
    if (PloneBackupError.is(e, 'REPO_MISSING')) return;
    throw e;
  }
  const newest = known.length ? known.reduce((a, b) => (a > b ? a : b)) : '';
  for (const chain of allChains(files)) {
    let r;
    try {
      r = await verifyChain(repo, chain);
    } catch (e) {
      if (PloneBackupError.is(e, 'DAT_BAD') && /missing/.test(e.message) && chain.length === 1 && chain[0].stamp > newest) continue;
      throw e;
    }
    for (const p of r.pieces) assert.equal(p.problem, undefined, `${repo}: ${p.problem}`);
    for (const n of r.unregistered) assert.ok(n.slice(0, 19) > newest, `${repo}: ${n} was registered before the kill and is no longer`);
  }
}

/** Every chain verifies completely (nothing unregistered). */
export async function verifyClean(repo: string): Promise<number> {
  const { files } = await listRepository(repo);
  let n = 0;
  for (const chain of allChains(files)) {
    const r = await verifyChain(repo, chain);
    assert.ok(r.ok, `${repo}: chain ${chain[0].name} does not verify: ${JSON.stringify(r.pieces.filter((p) => p.problem))} unregistered ${r.unregistered}`);
    n++;
  }
  return n;
}

/** The live state of one storage: Data.fs md5 and its blob files (rel -> md5). */
export interface LiveState {
  data: string;
  blobs: Record<string, string>;
}

export function liveState(file: string, blobDir?: string): LiveState {
  return { data: md5File(file), blobs: blobDir ? blobContents(blobDir) : {} };
}

/** The committed end of a Data.fs and the md5 of the bytes before it. */
export async function committedMd5(file: string): Promise<{ end: number; md5: string; size: number }> {
  const r = await committedEnd(file);
  const b = fs.readFileSync(file);
  return { end: r.end, md5: md5(b.subarray(0, r.end)), size: b.length };
}

/** The index beside a Data.fs, when there is one, must describe its committed end. */
export async function assertIndexFits(file: string): Promise<void> {
  if (!fs.existsSync(`${file}.index`)) return;
  const { pos } = await readIndexFile(`${file}.index`);
  const { end } = await committedEnd(file);
  assert.ok(pos <= end, `${file}.index describes byte ${pos}, past the committed end ${end}`);
}

// ---------------------------------------------------------------------------
// Fuzzing

/** A small seeded PRNG (mulberry32). */
export class Rng {
  constructor(private s: number) {}
  next(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<X>(a: readonly X[]): X {
    return a[this.int(a.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** A mutation of `src`: flipped bits, overwritten runs, cuts, insertions, big length fields. */
  mutate(src: Buffer, maxEdits = 4): Buffer {
    let b = Buffer.from(src);
    const edits = 1 + this.int(maxEdits);
    for (let e = 0; e < edits; e++) {
      const pos = b.length ? this.int(b.length) : 0;
      switch (this.int(7)) {
        case 0:
          if (b.length) b[pos] ^= 1 << this.int(8);
          break;
        case 1:
          if (b.length) b[pos] = this.int(256);
          break;
        case 2:
          b = b.subarray(0, pos);
          break;
        case 3:
          b = Buffer.concat([b.subarray(0, pos), this.bytes(1 + this.int(16)), b.subarray(pos)]);
          break;
        case 4:
          // an 8-byte big-endian length of 2^63, 2^53 or all ones
          if (b.length >= 8) {
            const at = this.int(b.length - 7);
            const v = this.pick([0x80n << 56n, 1n << 53n, 0xffffffffffffffffn, 0x7fffffffffffffffn]);
            b.writeBigUInt64BE(v, at);
          }
          break;
        case 5:
          if (b.length > 1) {
            const len = 1 + this.int(Math.min(64, b.length - pos));
            b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + len)]);
          }
          break;
        default:
          if (b.length) b.fill(this.pick([0, 0xff, 0x20]), pos, Math.min(b.length, pos + 1 + this.int(32)));
      }
    }
    return b;
  }
}

/** Runs `fn` and fails when it takes longer than `ms` (a parser must never hang). */
export async function bounded<R>(ms: number, what: string, fn: () => Promise<R> | R): Promise<R> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([Promise.resolve().then(fn), limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** Calls `fn`; anything thrown must be a PloneBackupError with one of `codes`. Returns the code or 'ok'. */
export async function typedOrOk(what: string, codes: string[], fn: () => unknown): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    assert.ok(PloneBackupError.is(e), `${what}: threw a ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? e}`);
    assert.ok(codes.includes(e.code), `${what}: unexpected code ${e.code}: ${e.message}`);
    assert.ok(e.message.length > 0);
    return e.code;
  }
}
