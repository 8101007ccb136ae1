/**
 * The repository lock: a held lock (ours, another live process's, another
 * host's) makes a backup fail with LOCKED and change nothing; a stale lock
 * is taken over, by exactly one of many processes racing for it; two runs at
 * once take turns.
 *
 * Temp cleanup: in a shared folder (sticky, world-writable, like /tmp)
 * temps that may be anyone's are left alone; in our own folder a temp of
 * another uid is left alone and a link is removed, never followed.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { acquireLock, backup, cleanLeftovers, isLockHeld, LOCK_NAME, recover, removeDeadTemps } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { at, replayHistory, statePath } from '../support/fixtures';
import { names, snapshot, tmpDir } from '../support/fs';
import { ROOT } from '../support/paths';

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
    const e = await rejectsWith(backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), lockWaitMs: 200 }), 'LOCKED');
    assert.ok(Date.now() - started >= 150, 'it waited for the lock');
    assert.equal(e.path, path.join(repo, LOCK_NAME));
    assert.match(e.message, new RegExp(`pid ${process.pid}`));
    assert.ok(e.hint);
    assert.deepEqual(snapshot(dir), before);
    await lock.release();
    assert.ok(!fs.existsSync(path.join(repo, LOCK_NAME)));
    const r = await backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), lockWaitMs: 0 });
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
    const e = await rejectsWith(backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), lockWaitMs: 100 }), 'LOCKED');
    assert.match(e.message, new RegExp(`pid ${child.pid}`));
    assert.deepEqual(snapshot(dir), before);
    // Once that process is gone, its lock is stale.
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.equal(await isLockHeld(path.join(repo, LOCK_NAME)), undefined);
    const r = await backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), lockWaitMs: 0 });
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
    const r = await backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), lockWaitMs: 0 });
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
    const r = await backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), lockWaitMs: 0 });
    assert.equal(r.action, 'incremental');
  });

  it('a backup waits for a lock that is released in time', async (t) => {
    const { repo, data } = await repoAfterS2(t);
    const lock = await acquireLock(repo, { what: 'test' });
    setTimeout(() => void lock.release(), 250);
    const r = await backup({ file: data, repository: repo, now: at('2026-01-03-10-00-00'), lockWaitMs: 5000 });
    assert.equal(r.action, 'incremental');
  });

  it('two backups at once take turns and both are restorable', async (t) => {
    const { dir, repo, data } = await repoAfterS2(t);
    const now = at('2026-01-03-10-00-00');
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

  it('many processes racing for a stale lock: exactly one holds it at a time', async (t) => {
    const dir = tmpDir(t);
    const log = path.join(dir, 'log');
    const engine = path.join(ROOT, 'out', 'src', 'engine', 'base', 'lock.js');
    // Each takes the lock, notes enter and exit (O_APPEND: one write a line),
    // and dies holding it: every hand-over is a takeover of a stale lock.
    const script = `
      const fs = require('fs');
      const { acquireLock } = require(${JSON.stringify(engine)});
      const [dir, log, go] = process.argv.slice(1);
      (async () => {
        while (Date.now() < Number(go)) await new Promise((r) => setTimeout(r, 1));
        await acquireLock(dir, { what: 'race', waitMs: 120000 });
        fs.appendFileSync(log, 'enter ' + process.pid + '\\n');
        await new Promise((r) => setTimeout(r, 5));
        fs.appendFileSync(log, 'exit ' + process.pid + '\\n');
        process.exit(0);
      })();`;
    const N = 12;
    for (let round = 0; round < 3; round++) {
      fs.writeFileSync(log, '');
      writeLock(dir, { pid: deadPid() });
      const go = Date.now() + 1500; // all start at once, on the stale lock
      const kids = Array.from({ length: N }, () => spawn(process.execPath, ['-e', script, dir, log, String(go)], { stdio: ['ignore', 'ignore', 'pipe'] }));
      const codes = await Promise.all(
        kids.map(
          (k) =>
            new Promise<string>((resolve) => {
              let err = '';
              k.stderr!.on('data', (d) => (err += d));
              k.once('exit', (code) => resolve(code === 0 ? '' : `exit ${code}: ${err}`));
            }),
        ),
      );
      assert.deepEqual(codes.filter(Boolean), [], `round ${round}`);
      const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
      let holder: string | undefined;
      for (const line of lines) {
        const [what, pid] = line.split(' ');
        if (what === 'enter') {
          assert.equal(holder, undefined, `round ${round}: ${pid} entered while ${holder} held the lock:\n${lines.join('\n')}`);
          holder = pid;
        } else {
          assert.equal(pid, holder, `round ${round}: ${line}`);
          holder = undefined;
        }
      }
      assert.equal(lines.length, 2 * N, `round ${round}: every process got its turn`);
      // What the takeovers used is gone (the last holder's lock stays: it died holding it).
      assert.deepEqual(
        fs.readdirSync(dir).filter((n) => n.startsWith(`${LOCK_NAME}.`)),
        [],
        `round ${round}`,
      );
    }
  });

  it('a stale lock is taken over when its first claimant died mid-takeover', async (t) => {
    const dir = tmpDir(t);
    const lockPath = writeLock(dir, { pid: deadPid() });
    const st = fs.statSync(lockPath, { bigint: true });
    // A claim on that very lock, by a process that died before replacing it.
    fs.writeFileSync(`${lockPath}.stale-${st.ino}-${st.mtimeNs}.1`, JSON.stringify({ pid: deadPid(), host: os.hostname(), started: '', what: 'backup' }));
    const lock = await acquireLock(dir, { what: 'test', waitMs: 0 });
    assert.equal((await isLockHeld(lockPath))?.what, 'test');
    assert.deepEqual(fs.readdirSync(dir), [LOCK_NAME]);
    await lock.release();
  });

  it('a live claimant of a stale lock is waited for', async (t) => {
    const dir = tmpDir(t);
    const lockPath = writeLock(dir, { pid: deadPid() });
    const st = fs.statSync(lockPath, { bigint: true });
    fs.writeFileSync(`${lockPath}.stale-${st.ino}-${st.mtimeNs}.1`, JSON.stringify({ pid: process.pid, host: os.hostname(), started: '', what: 'backup' }));
    await rejectsWith(acquireLock(dir, { what: 'test', waitMs: 200 }), 'LOCKED');
    assert.deepEqual(fs.readdirSync(dir).sort(), [LOCK_NAME, path.basename(`${lockPath}.stale-${st.ino}-${st.mtimeNs}.1`)], 'it left no file of its own');
  });
});

describe('temp cleanup', () => {
  const root = process.getuid?.() === 0;
  const OTHER_UID = 4321;

  /** A sticky, world-writable folder like /tmp with a foreign temp folder and a temp link pointing elsewhere planted in it. */
  function plant(t: Parameters<typeof tmpDir>[0], mode: number) {
    const base = tmpDir(t);
    const shared = path.join(base, 'shared');
    fs.mkdirSync(shared);
    fs.chmodSync(shared, mode);
    const elsewhere = path.join(base, 'elsewhere');
    fs.mkdirSync(elsewhere);
    fs.writeFileSync(path.join(elsewhere, 'precious'), 'keep me');
    const pid = deadPid();
    const foreign = path.join(shared, `.plone-backup-Data.fs.${pid}.deadbeef.restore`);
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'theirs'), 'keep me too');
    fs.chownSync(foreign, OTHER_UID, OTHER_UID);
    fs.chownSync(path.join(foreign, 'theirs'), OTHER_UID, OTHER_UID);
    const link = path.join(shared, `.plone-backup-Data.fs.${pid}.deadbef0.tmp`);
    fs.symlinkSync(elsewhere, link);
    return { base, shared, elsewhere, foreign, link };
  }

  it('in a shared folder (sticky, world-writable) nothing is removed', { skip: !root && 'needs root (chown)' }, async (t) => {
    const { base, shared, foreign, link } = plant(t, 0o1777);
    const before = snapshot(base);
    assert.deepEqual(await removeDeadTemps(shared), []);
    assert.deepEqual(await cleanLeftovers(shared), []);
    assert.deepEqual(snapshot(base), before);
    assert.ok(fs.existsSync(path.join(foreign, 'theirs')));
    assert.ok(fs.lstatSync(link).isSymbolicLink());
  });

  it('in our own folder a temp of another uid stays and a temp link is removed, not followed', { skip: !root && 'needs root (chown)' }, async (t) => {
    const { shared, elsewhere, foreign, link } = plant(t, 0o755);
    const ours = path.join(shared, `.plone-backup-Data.fs.${deadPid()}.0badcafe.tmp`);
    fs.mkdirSync(ours);
    fs.writeFileSync(path.join(ours, 'x'), 'x');
    assert.deepEqual((await removeDeadTemps(shared)).sort(), [link, ours].sort());
    assert.ok(fs.existsSync(path.join(foreign, 'theirs')));
    assert.equal(fs.readFileSync(path.join(elsewhere, 'precious'), 'utf8'), 'keep me');
    assert.ok(!fs.existsSync(ours));
  });
});
