/**
 * Is the site running? ZODB holds `Data.fs.lock` while a storage is open:
 * zc.lockfile opens it (creating it if missing), takes
 * `fcntl.flock(fd, LOCK_EX | LOCK_NB)` and writes its pid into it. A restore
 * must not replace a database under a running Zope.
 *
 * We ask the kernel the same question ZODB does: we try to take that flock
 * ourselves, without waiting. flock locks conflict per open file, for every
 * process on the machine, whatever its PID namespace, so a Zope in a
 * container is seen from the host and the other way round. /proc/locks (which
 * we used alone before) lists only the locks of processes in our own PID
 * namespace; a restore started in another one replaced the Data.fs of a
 * running site. Node has no flock binding, so a child does it on our
 * descriptor: util-linux `flock -n 3` (or python3's fcntl.flock when there
 * is no flock command) is handed our open file as fd 3, takes the lock on
 * that open file and exits. The lock belongs to the open file, not to the
 * child, so it stays held while our descriptor is open and goes away when we
 * close it or die: no process to keep alive and none to leak.
 *
 * `lockSite` keeps it: a restore holds the lock while it replaces the files,
 * so a Zope started meanwhile refuses to open the storage (LockError) instead
 * of opening a half-restored one. Where the site has no Data.fs.lock, we
 * create it (as ZODB would, with our pid) and remove it again on release, so
 * no stray file is left (created, written and removed through `fileLayer`,
 * so the fault and crash suites reach it). `siteRunning` only asks (never creates the file);
 * asking takes the lock for the few milliseconds the child runs, so a Zope
 * starting in exactly that moment refuses to start, as with any second opener.
 *
 * More evidence: a lock on the file's inode listed in /proc/locks (an fcntl
 * lock of some other program, too) means running. Without flock and python3
 * we fall back on /proc/locks alone, and without that on the pid in the file
 * (it may have been reused); `evidence` says which. None of this sees a ZEO
 * server or Zope on another host using the storage over NFS or the like.
 */

import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fileLayer, writeAll } from '../base/io';
import { pidAlive } from '../base/lock';

export interface RunningSite {
  lockFile: string;
  pid?: number;
  /**
   * How we know: `lock held` (we tried to take ZODB's lock and could not:
   * seen across PID namespaces); `lock listed in /proc/locks` (some other
   * lock on the file, e.g. an fcntl one), with a note when we could not try
   * the lock (no flock or python3; then a holder in another PID namespace is
   * not seen); `pid alive` when neither the lock could be tried nor
   * /proc/locks read.
   */
  evidence:
    | 'lock held'
    | 'lock listed in /proc/locks'
    | 'lock listed in /proc/locks (no flock or python3 to try the lock)'
    | 'pid alive (no flock, python3 or /proc/locks to check the lock)';
}

export interface SiteLock {
  lockFile: string;
  /** Set when the site is running: nothing is held then. */
  running?: RunningSite;
  /** Whether we hold ZODB's lock (false: running, or no flock/python3 to take it with; see `note`). */
  held: boolean;
  note?: string;
  release(): Promise<void>;
}

/** Exit status our children use for "someone else holds it". */
const BUSY = 75;

const TOOLS: [string, string[]][] = [
  ['flock', ['-n', '-E', String(BUSY), '3']],
  ['python3', ['-c', `import fcntl, sys\ntry:\n  fcntl.flock(3, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n  sys.exit(${BUSY})`]],
];

/** Takes an exclusive flock on the open file `fh` (held until it is closed): taken, busy, or no tool could. */
async function tryFlock(fh: FileHandle): Promise<'taken' | 'busy' | 'no tool'> {
  for (const [cmd, args] of TOOLS) {
    const status = await new Promise<number | null>((resolve) => {
      const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'ignore', fh.fd] });
      child.once('error', () => resolve(null));
      child.once('exit', (code) => resolve(code));
    });
    if (status === 0) return 'taken';
    if (status === BUSY) return 'busy';
    // Missing (null) or failed in some other way: the next tool.
  }
  return 'no tool';
}

/** Whether /proc/locks lists a lock on this file (undefined: no /proc/locks). */
async function listedInProcLocks(dev: bigint, ino: bigint): Promise<boolean | undefined> {
  let locks: string;
  try {
    locks = await fsp.readFile('/proc/locks', 'utf8');
  } catch {
    return undefined;
  }
  // st_dev as glibc encodes it; /proc/locks prints the kernel's major:minor in hex.
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn & 0xffffffffn);
  for (const line of locks.split('\n')) {
    const where = line
      .trim()
      .split(/\s+/)
      .find((x) => /^[0-9a-f]+:[0-9a-f]+:\d+$/.test(x));
    if (!where) continue;
    const [ma, mi, i] = where.split(':');
    if (BigInt(i!) === ino && BigInt(`0x${ma}`) === major && BigInt(`0x${mi}`) === minor) return true;
  }
  return false;
}

/**
 * Creates the missing Data.fs.lock holding what zc.lockfile writes (so a Zope
 * that finds it held names us). A failed write (a full disk) removes it again:
 * no lock file of ours is left behind.
 */
async function createLockFile(lockFile: string): Promise<FileHandle> {
  const fh = await fileLayer.open(lockFile, 'wx');
  try {
    await writeAll(fh, Buffer.from(` ${process.pid}\n`), null, lockFile);
    return fh;
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fileLayer.rm(lockFile, { force: true }).catch(() => undefined);
    throw e;
  }
}

async function examine(file: string, hold: boolean): Promise<SiteLock> {
  const lockFile = `${file}.lock`;
  const free = (note?: string): SiteLock => ({ lockFile, held: false, note, release: async () => undefined });
  let fh: FileHandle | undefined;
  let created = false;
  while (!fh) {
    try {
      // Read-only and never created here: flock needs no write access.
      fh = await fsp.open(lockFile, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (!hold) return free();
      try {
        fh = await createLockFile(lockFile);
        created = true;
      } catch (e2) {
        const code = (e2 as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return free(`${lockFile} cannot be created: its folder does not exist.`);
        if (code !== 'EEXIST') throw e2; // EEXIST: a Zope made it meanwhile; look again
      }
    }
  }
  const close = async (): Promise<void> => {
    await fh!.close().catch(() => undefined);
  };
  let st;
  let pid: number | undefined;
  try {
    st = await fh.stat({ bigint: true });
    if (!created) {
      const m = /\d+/.exec((await fh.read(Buffer.alloc(64), 0, 64, 0)).buffer.toString('latin1'));
      pid = m ? Number(m[0]) : undefined;
    }
  } catch (e) {
    await close();
    throw e;
  }
  const running = (evidence: RunningSite['evidence']): SiteLock => ({ lockFile, running: { lockFile, pid, evidence }, held: false, release: async () => undefined });
  // Read before we lock it ourselves (ours would be listed too). It also
  // shows fcntl (POSIX) locks, which do not conflict with flock.
  const listed = await listedInProcLocks(st.dev, st.ino);
  const result = await tryFlock(fh);
  if (result === 'busy') {
    // A Zope that opened the file we just created holds it now: its file, left alone.
    await close();
    return running('lock held');
  }
  if (result === 'no tool' || listed) {
    // Nothing of ours to keep: not held (no tool), or the site is running.
    if (created) await fileLayer.rm(lockFile, { force: true }).catch(() => undefined);
    await close();
    if (listed) return running(result === 'no tool' ? 'lock listed in /proc/locks (no flock or python3 to try the lock)' : 'lock listed in /proc/locks');
    if (listed === undefined && pid !== undefined && pid !== process.pid && pidAlive(pid)) return running('pid alive (no flock, python3 or /proc/locks to check the lock)');
    return free('Neither flock nor python3 could take the lock: a holder in another PID namespace is not seen, and the lock is not held.');
  }
  let released = false;
  const lock: SiteLock = {
    lockFile,
    held: true,
    async release() {
      if (released) return;
      released = true;
      // Ours alone while we hold the lock: removed before it is let go, so no Zope
      // can have it open and locked when it goes.
      if (created) {
        const now = await fsp.stat(lockFile, { bigint: true }).catch(() => undefined);
        if (now && now.ino === st.ino && now.dev === st.dev) await fileLayer.rm(lockFile, { force: true }).catch(() => undefined);
      }
      await close();
    },
  };
  if (!hold) await lock.release();
  return lock;
}

/** Whether an open ZODB (any process on this machine, any PID namespace) holds the storage at `file`. */
export async function siteRunning(file: string): Promise<RunningSite | undefined> {
  const r = await examine(file, false);
  return r.running;
}

/**
 * Takes ZODB's lock on the storage at `file` and holds it until `release`
 * (or our exit), so no Zope can open the storage meanwhile. When the site is
 * running, nothing is held and `running` says why.
 */
export async function lockSite(file: string): Promise<SiteLock> {
  return examine(file, true);
}
