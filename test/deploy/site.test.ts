/**
 * Running-site detection and the lock a restore holds, against real holders:
 *
 * - a site in another PID namespace (a container): a flock holder, and the
 *   real ZODB opening a FileStorage, run under `unshare --pid --mount-proc`,
 *   and the check (and a restore) run in a second namespace of their own,
 *   where /proc/locks shows nothing of the holder;
 * - the real ZODB in our namespace: seen while open, not once closed;
 * - while we hold the lock (as a restore does) the real ZODB refuses to open
 *   the storage, and a Data.fs.lock we had to create is gone afterwards;
 * - without flock and python3 the answer falls back on /proc/locks and says so.
 *
 * The real ZODB is the oracle's (ZODB 6 on Debian's python3 with
 * python3-zc.lockfile; found by support/oracles.ts); those tests are skipped
 * where it is not installed, except in CI, where they fail. The namespace
 * tests need root.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backupDeployment, discoverDeployment, lockSite, restoreDeployment, siteRunning } from '../../src/engine/internal';
import { fakeClock } from '../support/fixtures';
import { md5File, tmpDir } from '../support/fs';
import { ENGINE } from '../support/paths';
import { oracleEnv, oracleSkip } from '../support/oracles';
import { makeSite } from '../support/site';
import { nth } from '../support/must';

const root = process.getuid?.() === 0;
const canUnshare = root && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

/** The real ZODB (the oracles'): skipped where missing, failing in CI (support/oracles.ts). */
const noZodb = oracleSkip();
const zodbEnv = (): NodeJS.ProcessEnv => oracleEnv();

const OPEN_ZODB = 'import sys, time\nfrom ZODB.FileStorage import FileStorage\ns = FileStorage(sys.argv[1])\nprint("open", flush=True)\ntime.sleep(120)';

/** Starts `cmd` (optionally in a PID namespace of its own) and resolves once it printed `ready` (or, for flock, once it holds). */
async function startHolder(t: { after: (fn: () => void) => void }, cmd: string[], opts: { ns: boolean; ready: RegExp; env?: NodeJS.ProcessEnv }): Promise<ChildProcess> {
  const argv = opts.ns ? ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', ...cmd] : cmd;
  const child = spawn(nth(argv, 0), argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  t.after(() => {
    child.kill('SIGKILL');
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd.join(' ')} never got ready: ${out}`)), 20_000);
    const look = (d: Buffer) => {
      out += d;
      if (opts.ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', (code) => reject(new Error(`${cmd.join(' ')} exited (${code}): ${out}`)));
  });
  return child;
}

/** Runs `siteRunning` and a restore in a PID namespace of their own (a container beside the site's). */
function checkFromOtherNamespace(root: string, file: string): { running?: { evidence: string; pid?: number }; restore: string; procLocks: number } {
  const script = `
    const fs = require('fs');
    const e = require(${JSON.stringify(ENGINE)});
    (async () => {
      const running = await e.siteRunning(process.argv[1]);
      let restore = 'restored';
      try {
        await e.restoreDeployment(await e.discoverDeployment(process.argv[2]), { keepOld: false });
      } catch (err) {
        restore = err.code || String(err);
      }
      // Only the locks on this site's files count: open file description locks
      // (pid -1) of other programs on the machine show in every namespace.
      const inodes = new Set([process.argv[1], process.argv[1] + '.lock'].filter((f) => fs.existsSync(f)).map((f) => String(fs.statSync(f).ino)));
      const procLocks = fs.readFileSync('/proc/locks', 'utf8').split('\\n').filter((l) => inodes.has(/ [0-9a-f]+:[0-9a-f]+:(\\d+) /.exec(l)?.[1] ?? '')).length;
      process.stdout.write(JSON.stringify({ running, restore, procLocks }));
    })();`;
  const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, '-e', script, file, root], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function siteWithBackup(t: Parameters<typeof tmpDir>[0]) {
  const dir = tmpDir(t);
  const s = await makeSite(t, dir, { docs: 2, files: 1 });
  const dep = await discoverDeployment(dir);
  await backupDeployment(dep, 'backup', { now: fakeClock().now });
  await s.site.addDocument('after the backup');
  await s.site.close();
  return { dir, s, dep };
}

/**
 * Runs the check and a restore from another PID namespace, where /proc/locks
 * does not show the holder: the lock is seen all the same, the restore is
 * refused and Data.fs is untouched.
 */
function refusedFromOtherNamespace(dir: string, file: string): ReturnType<typeof checkFromOtherNamespace> {
  const before = md5File(file);
  const r = checkFromOtherNamespace(dir, file);
  assert.equal(r.procLocks, 0, 'the holder is invisible in /proc/locks there');
  assert.equal(r.restore, 'SITE_RUNNING', 'the restore refused');
  assert.equal(md5File(file), before, 'Data.fs untouched');
  assert.equal(r.running?.evidence, 'lock held');
  return r;
}

describe('running site across PID namespaces', () => {
  it('a flock holder in another PID namespace is seen; the restore refuses', { skip: !canUnshare && 'needs root and unshare' }, async (t) => {
    const { dir, s } = await siteWithBackup(t);
    const lockFile = `${s.file}.lock`;
    fs.writeFileSync(lockFile, ' 1\n');
    await startHolder(t, ['flock', lockFile, 'sh', '-c', 'echo held; sleep 120'], { ns: true, ready: /held/ });
    refusedFromOtherNamespace(dir, s.file);
  });

  it('the real ZODB open in another PID namespace is seen; the restore refuses', { skip: (!canUnshare && 'needs root and unshare') || noZodb }, async (t) => {
    const { dir, s } = await siteWithBackup(t);
    await startHolder(t, ['/usr/bin/python3', '-c', OPEN_ZODB, s.file], { ns: true, ready: /open/, env: zodbEnv() });
    const r = refusedFromOtherNamespace(dir, s.file);
    assert.ok(r.running?.pid, "the pid ZODB wrote (its own namespace's)");
  });
});

describe('running site: the real ZODB', () => {
  it('is seen while it has the storage open, not once it closed it', { skip: noZodb }, async (t) => {
    const { s } = await siteWithBackup(t);
    const zodb = await startHolder(t, ['/usr/bin/python3', '-c', OPEN_ZODB, s.file], { ns: false, ready: /open/, env: zodbEnv() });
    const running = await siteRunning(s.file);
    assert.equal(running?.evidence, 'lock held');
    assert.equal(running?.pid, zodb.pid);
    zodb.kill('SIGKILL');
    await new Promise((r) => zodb.once('exit', r));
    assert.equal(await siteRunning(s.file), undefined);
  });

  it('cannot open the storage while we hold the lock (as a restore does); no stray lock file after', { skip: noZodb }, async (t) => {
    const { s } = await siteWithBackup(t);
    const lockFile = `${s.file}.lock`;
    fs.rmSync(lockFile, { force: true });
    assert.equal(await siteRunning(s.file), undefined);
    assert.ok(!fs.existsSync(lockFile), 'asking never creates the lock file');
    const lock = await lockSite(s.file);
    assert.equal(lock.held, true);
    assert.equal(lock.running, undefined);
    const env = zodbEnv();
    const open = '\nfrom ZODB.FileStorage import FileStorage\nFileStorage(__import__("sys").argv[1]).close()\nprint("opened")';
    const refused = spawnSync('/usr/bin/python3', ['-c', open, s.file], { encoding: 'utf8', env });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /LockError/);
    // Another run asking sees it held too.
    assert.equal((await siteRunning(s.file))?.evidence, 'lock held');
    await lock.release();
    assert.ok(!fs.existsSync(lockFile), 'the lock file we created is gone');
    const opened = spawnSync('/usr/bin/python3', ['-c', open, s.file], { encoding: 'utf8', env });
    assert.equal(opened.status, 0, opened.stderr);
    assert.ok(fs.existsSync(lockFile), 'ZODB makes its own');
    // A lock file ZODB made stays when we release ours.
    const again = await lockSite(s.file);
    assert.equal(again.held, true);
    await again.release();
    assert.ok(fs.existsSync(lockFile));
  });
});

describe('running site without flock and python3', () => {
  it('falls back on /proc/locks and says so; nothing is held', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    fs.writeFileSync(file, 'FS21');
    fs.writeFileSync(`${file}.lock`, '');
    // -o: the lock stays with flock itself, so killing it lets go.
    const holder = await startHolder(t, ['flock', '-o', `${file}.lock`, 'sh', '-c', 'echo held; exec sleep 120 >/dev/null 2>&1'], { ns: false, ready: /held/ });
    const empty = tmpDir(t);
    const saved = process.env.PATH;
    process.env.PATH = empty;
    try {
      const running = await siteRunning(file);
      assert.equal(running?.evidence, 'lock listed in /proc/locks (no flock or python3 to try the lock)');
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
      assert.equal(await siteRunning(file), undefined);
      const lock = await lockSite(file);
      assert.equal(lock.held, false);
      assert.match(lock.note ?? '', /Neither flock nor python3/);
      await lock.release();
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe('a restore holds the site lock', () => {
  it('a Zope starting mid-restore could not take the lock; none is left behind', async (t) => {
    const { s, dep } = await siteWithBackup(t);
    const lockFile = `${s.file}.lock`;
    fs.rmSync(lockFile, { force: true });
    const seen: (number | null)[] = [];
    await restoreDeployment(dep, {
      keepOld: false,
      incremental: false,
      onProgress: () => {
        if (seen.length < 3) seen.push(spawnSync('flock', ['-n', '-E', '75', lockFile, 'true']).status);
      },
    });
    assert.ok(seen.length > 0, 'the restore reported progress');
    assert.deepEqual([...new Set(seen)], [75], 'held all through');
    assert.ok(!fs.existsSync(lockFile), 'no stray Data.fs.lock');
    assert.equal(await siteRunning(s.file), undefined);
  });
});
