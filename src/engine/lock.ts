/**
 * A lock file that keeps two runs from writing one repository (or one
 * deployment) at once. repozo has none; two cron jobs overlapping there
 * write into the same fixed temp name.
 *
 * The lock is a file created with O_EXCL holding the owner's pid and host.
 * A lock whose owner died on this host is stale and taken over. Otherwise the
 * caller waits up to `waitMs`, then gets a LOCKED error naming the owner.
 */

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from './errors';
import { isTempName } from './io';

export const LOCK_NAME = '.plone-backup.lock';

export interface LockOwner {
  pid: number;
  host: string;
  started: string;
  what: string;
}

export interface Lock {
  path: string;
  release(): Promise<void>;
}

/** Whether a process with this pid exists (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function readLockOwner(lockPath: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await fsp.readFile(lockPath, 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

/** Whether a lock file is held by a live process (false when absent or stale). */
export async function isLockHeld(lockPath: string): Promise<LockOwner | undefined> {
  const owner = await readLockOwner(lockPath);
  if (!owner) return undefined;
  if (owner.host === os.hostname() && !pidAlive(owner.pid)) return undefined;
  return owner;
}

export async function acquireLock(
  dir: string,
  opts: { what: string; waitMs?: number; signal?: AbortSignal; name?: string } = { what: 'backup' },
): Promise<Lock> {
  const lockPath = path.join(dir, opts.name ?? LOCK_NAME);
  const deadline = Date.now() + (opts.waitMs ?? 10_000);
  const me: LockOwner = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), what: opts.what };
  for (;;) {
    checkAbort(opts.signal);
    try {
      const fh = await fsp.open(lockPath, 'wx');
      await fh.writeFile(JSON.stringify(me));
      await fh.close();
      let released = false;
      return {
        path: lockPath,
        async release() {
          if (released) return;
          released = true;
          const owner = await readLockOwner(lockPath);
          if (owner && owner.pid === me.pid && owner.started === me.started) await fsp.rm(lockPath, { force: true });
        },
      };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw new PloneBackupError('REPO_MISSING', `The folder ${dir} does not exist.`, { path: dir, hint: 'Create it first.' });
      }
      if (code !== 'EEXIST') throw e;
    }
    const owner = await readLockOwner(lockPath);
    if (owner === undefined || (owner.host === os.hostname() && !pidAlive(owner.pid))) {
      // Stale (its owner died) or half-written by an owner that died right after creating it.
      const stat = await fsp.stat(lockPath).catch(() => undefined);
      if (owner !== undefined || (stat && Date.now() - stat.mtimeMs > 2000)) {
        await fsp.rm(lockPath, { force: true });
        continue;
      }
    }
    if (Date.now() >= deadline) {
      const who = owner ? `pid ${owner.pid} on ${owner.host}, ${owner.what} since ${owner.started}` : 'another process';
      throw new PloneBackupError('LOCKED', `${dir} is in use by another plone-backup run (${who}).`, {
        path: lockPath,
        hint: 'Wait for it to finish, or remove the lock file if that process is gone.',
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Removes the temp files and folders (`.plone-backup-<name>.<pid>.<hex>.<tag>`)
 * that runs killed on this host left in `dir`: only those whose pid is no
 * longer alive, so a run going on beside us keeps its own. `only` narrows it
 * to the temps of one target name. Returns what it removed.
 */
export async function removeDeadTemps(dir: string, only?: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    if (!isTempName(n)) continue;
    const m = /\.(\d+)\.[0-9a-f]{8}\.[a-z]+$/.exec(n);
    if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    if (only !== undefined && !n.startsWith(`.plone-backup-${only}.`)) continue;
    await fsp.rm(path.join(dir, n), { recursive: true, force: true });
    removed.push(path.join(dir, n));
  }
  return removed;
}
