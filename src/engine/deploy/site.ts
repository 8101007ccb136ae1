/**
 * Is the site running? ZODB holds `Data.fs.lock` (zc.lockfile: an fcntl lock
 * on a file holding the owner's pid) while a storage is open. A restore must
 * not replace a database under a running Zope.
 */

import { promises as fsp } from 'node:fs';
import { pidAlive } from '../lock';

export interface RunningSite {
  lockFile: string;
  pid?: number;
  /** How we know: the lock is held (/proc/locks) or its pid is alive. */
  evidence: 'lock held' | 'pid alive';
}


/** Whether an open ZODB holds the storage at `file`. */
export async function siteRunning(file: string): Promise<RunningSite | undefined> {
  const lockFile = `${file}.lock`;
  let text: string;
  let ino: number;
  try {
    text = await fsp.readFile(lockFile, 'utf8');
    ino = (await fsp.stat(lockFile)).ino;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const m = /\d+/.exec(text);
  const pid = m ? Number(m[0]) : undefined;
  // Linux lists every fcntl/flock lock with the inode it is on: authoritative
  // (a pid in a stale lock file may have been reused by another process).
  let locks: string | undefined;
  try {
    locks = await fsp.readFile('/proc/locks', 'utf8');
  } catch {
    locks = undefined; // not Linux: fall back on the pid
  }
  if (locks !== undefined) {
    for (const line of locks.split('\n')) {
      const f = line.trim().split(/\s+/);
      const where = f.find((x) => /^[0-9a-f]+:[0-9a-f]+:\d+$/.test(x));
      if (where && Number(where.split(':')[2]) === ino) return { lockFile, pid, evidence: 'lock held' };
    }
    return undefined;
  }
  if (pid !== undefined && pid !== process.pid && pidAlive(pid)) return { lockFile, pid, evidence: 'pid alive' };
  return undefined;
}
