/**
 * The repository lock: a held lock (ours, another live process's, another
 * host's) makes a backup fail with LOCKED and change nothing; a stale lock
 * is taken over; two runs at once take turns.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LOCK_NAME, acquireLock, backup, isLockHeld, recover } from '../../src/engine';
import { clock, names, rejectsWith, replayHistory, snapshot, statePath, tmpDir } from '../helpers';

function writeLock(repo: string, owner: { pid: number; host?: string; started?: string }): string {
  const p = path.join(repo, LOCK_NAME);
  fs.writeFileSync(p, JSON.stringify({ host: os.hostname(), started: new Date().toISOString(), what: 'backup', ...owner }));
  return p;
}

/** A pid that is certainly not running: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const pid = Number(r.stdout);
  assert.ok(pid > 0);
  return pid;
}

async function repoAfterS2(t: Parameters<typeof tmpDir>[0]) {
  const dir = tmpDir(t);
  const h = await replayHistory(dir, { steps: 2 });
  fs.copyFileSync(statePath(3), h.data);
  return { dir, ...h };
}

describe('lock', () => {
  it('a lock we hold makes a backup fail with LOCKED and change nothing', async (t) => {
    const { dir, repo, data } = await repoAfterS2(t);
    const lock = await acquireLock(repo, { what: 'test' });
    const before = snapshot(dir);
    const started = Date.now();
    const e = await rejectsWith(backup({ file: data, repository: repo, now: clock('2026-01-03-10-00-00'), lockWaitMs: 200 }), 'LOCKED');
    assert.ok(Date.now() - started >= 150, 'it waited for the lock');
    assert.equal(e.path, path.join(repo, LOCK_NAME));
    assert.match(e.message, new RegExp(`pid ${process.pid}`));
    assert.ok(e.hint);
    assert.deepEqual(snapshot(dir), before);
    await lock.release();
    assert.ok(!fs.existsSync(path.join(repo, LOCK_NAME)));
    const r = await backup({ file: data, repository: repo, now: clock('2026-01-03-10-00-00'), lockWaitMs: 0 });
    assert.equal(r.action, 'incremental');
    assert.ok(!names(repo).includes(LOCK_NAME), 'the backup released its lock');
  });

  it('a lock file of another live process makes a backup fail with LOCKED', async (t) => {
    const { dir, repo, data } = await repoAfterS2(t);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    t.after(() => {
      child.kill('SIGKILL');
    });
    await new Promise((r) => child.once('spawn', r));
    writeLock(repo, { pid: child.pid! });
    assert.equal((await isLockHeld(path.join(repo, LOCK_NAME)))?.pid, child.pid);
    const before = snapshot(dir);
    const e = await rejectsWith(backup({ file: data, repository: repo, now: clock('2026-01-03-10-00-00'), lockWaitMs: 100 }), 'LOCKED');
    assert.match(e.message, new RegExp(`pid ${child.pid}`));
    assert.deepEqual(snapshot(dir), before);
    // Once that process is gone, its lock is stale.
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.equal(await isLockHeld(path.join(repo, LOCK_NAME)), undefined);
    const r = await backup({ file: data, repository: repo, now: clock('2026-01-03-10-00-00'), lockWaitMs: 0 });
    assert.equal(r.action, 'incremental');
  });

  it('a lock of another host is respected (its pid cannot be checked)', async (t) => {
    const { dir, repo, data } = await repoAfterS2(t);
    writeLock(repo, { pid: deadPid(), host: `not-${os.hostname()}` });
    const before = snapshot(dir);
    await rejectsWith(backup({ file: data, repository: repo, lockWaitMs: 0 }), 'LOCKED');
    assert.deepEqual(snapshot(dir), before);
  });

  it('a stale lock (its process died) is taken over', async (t) => {
    const { repo, data } = await repoAfterS2(t);
    writeLock(repo, { pid: deadPid() });
    const r = await backup({ file: data, repository: repo, now: clock('2026-01-03-10-00-00'), lockWaitMs: 0 });
    assert.equal(r.action, 'incremental');
    assert.ok(!fs.existsSync(path.join(repo, LOCK_NAME)));
  });

  it('an empty lock file is waited for while fresh, taken over once old', async (t) => {
    const { dir, repo, data } = await repoAfterS2(t);
    const p = path.join(repo, LOCK_NAME);
    fs.writeFileSync(p, '');
    const before = snapshot(dir);
    await rejectsWith(backup({ file: data, repository: repo, lockWaitMs: 0 }), 'LOCKED');
    assert.deepEqual(snapshot(dir), before);
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(p, old, old);
    const r = await backup({ file: data, repository: repo, now: clock('2026-01-03-10-00-00'), lockWaitMs: 0 });
    assert.equal(r.action, 'incremental');
  });

  it('a backup waits for a lock that is released in time', async (t) => {
    const { repo, data } = await repoAfterS2(t);
    const lock = await acquireLock(repo, { what: 'test' });
    setTimeout(() => void lock.release(), 250);
    const r = await backup({ file: data, repository: repo, now: clock('2026-01-03-10-00-00'), lockWaitMs: 5000 });
    assert.equal(r.action, 'incremental');
  });

  it('two backups at once take turns and both are restorable', async (t) => {
    const { dir, repo, data } = await repoAfterS2(t);
    const now = clock('2026-01-03-10-00-00');
    const [a, b] = await Promise.all([
      backup({ file: data, repository: repo, now, lockWaitMs: 5000, full: true }),
      backup({ file: data, repository: repo, now, lockWaitMs: 5000, full: true, gzip: true }),
    ]);
    const stamps = [a.stamp, b.stamp].sort();
    assert.deepEqual(stamps, ['2026-01-03-10-00-00', '2026-01-03-10-00-01']);
    const out = path.join(dir, 'out.fs');
    for (const date of stamps) {
      await recover({ repository: repo, output: out, date: date!, keepOld: false, withVerify: true });
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(statePath(3))));
    }
  });

  it('release removes only our own lock', async (t) => {
    const dir = tmpDir(t);
    const lock = await acquireLock(dir, { what: 'test' });
    // Someone (wrongly) replaced it: releasing must not remove theirs.
    writeLock(dir, { pid: process.pid, started: '1999-01-01T00:00:00.000Z' });
    await lock.release();
    assert.ok(fs.existsSync(path.join(dir, LOCK_NAME)));
    await lock.release(); // twice is fine
  });

  it('a lock in a folder that does not exist is REPO_MISSING', async (t) => {
    await rejectsWith(acquireLock(path.join(tmpDir(t), 'nope'), { what: 'test' }), 'REPO_MISSING');
  });

  it('the lock file names its owner', async (t) => {
    const dir = tmpDir(t);
    const lock = await acquireLock(dir, { what: 'backup' });
    const owner = await isLockHeld(lock.path);
    assert.equal(owner?.pid, process.pid);
    assert.equal(owner?.host, os.hostname());
    assert.equal(owner?.what, 'backup');
    await lock.release();
    assert.equal(await isLockHeld(lock.path), undefined);
  });
});
