/**
 * A lock file that keeps two runs from writing one repository (or one
 * deployment) at once. repozo has none; two cron jobs overlapping there
 * write into the same fixed temp name.
 *
 * The lock file holds the owner's pid, host, start time and a nonce. It is
 * put in place whole: the owner is written to a file of our own
 * (`.plone-backup.lock.<pid>.<hex>.new`) and hard-linked to the lock name,
 * which fails if the name exists (O_EXCL where a filesystem has no hard
 * links), so a reader never sees half an owner.
 *
 * A lock whose owner died on this host is stale and taken over. Taking over
 * must let exactly one waiter win: removing the stale file and creating ours
 * (as we did) lets a second waiter, which judged the same file stale a moment
 * earlier, remove the winner's fresh lock and win too (four holders at once
 * were seen). So a takeover first claims the stale file by its identity
 * (inode and mtime): it links its owner file to `<lock>.stale-<id>.1`, which
 * only one waiter can create. The claimant checks the lock is still that
 * file and renames its own over it in one step. Nobody else can change the
 * lock meanwhile: its owner is dead, a fresh lock cannot be created over an
 * existing name, and other waiters wait for a live claimant. A claimant that
 * dies is replaced through claim `.2` (created only once claim `.1`'s owner
 * is dead), and so on. The winner removes the claims; a late waiter that
 * still claims an old identity finds the lock changed and lets go.
 *
 * Otherwise the caller waits up to `waitMs`, then gets a LOCKED error naming
 * the owner. A lock of another host is never judged stale (its pid cannot be
 * checked).
 *
 * Every change to the disk here (the owner file, its links and renames, the
 * removals) goes through `fileLayer`, so the fault suite can fail them and the
 * crash suite kill a run between them.
 *
 * Cleaning up temp files (`removeDeadTemps`, and the backups' leftovers)
 * happens only in a private folder: one owned by us that nobody else may
 * write. In a shared folder such as /tmp anyone can plant a `.plone-backup-*`
 * name (or swap a folder for a link while we delete it); there we leave other
 * temps alone. Entries are examined with lstat and never followed.
 */

import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from './errors';
import { fileLayer, isTempName, writeAll } from './io';

export const LOCK_NAME = '.plone-backup.lock';

export interface LockOwner {
  pid: number;
  host: string;
  started: string;
  what: string;
  /** Tells two locks of one process apart. */
  nonce?: string;
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

/** A half-written (or foreign, unparsable) lock or claim counts as stale only once this old. */
const GARBLED_STALE_MS = 2000;

interface Seen {
  /** Inode and mtime: which file this is, so a takeover replaces only the file judged stale. */
  id: string;
  owner?: LockOwner;
  mtimeMs: number;
}

/** The file at `p` now, read through one descriptor (identity and content agree); undefined when absent. */
async function look(p: string): Promise<Seen | undefined> {
  let fh;
  try {
    fh = await fsp.open(p, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const st = await fh.stat({ bigint: true });
    let owner: LockOwner | undefined;
    try {
      owner = JSON.parse(await fh.readFile('utf8')) as LockOwner;
      if (typeof owner?.pid !== 'number') owner = undefined;
    } catch {
      owner = undefined;
    }
    return { id: `${st.ino}-${st.mtimeNs}`, owner, mtimeMs: Number(st.mtimeMs) };
  } finally {
    await fh.close();
  }
}

/** Whether what `s` says is dead: its owner died on this host, or it is garbled and old. */
function dead(s: Seen): boolean {
  if (s.owner === undefined) return Date.now() - s.mtimeMs > GARBLED_STALE_MS;
  return s.owner.host === os.hostname() && !pidAlive(s.owner.pid);
}

const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);

/**
 * Creates `target` (EEXIST if it exists) holding `content`, through
 * fileLayer; a write that fails (a full disk) removes it again, so no half
 * owner is left behind.
 */
async function createWhole(target: string, content: string): Promise<void> {
  const fh = await fileLayer.open(target, 'wx');
  try {
    await writeAll(fh, Buffer.from(content), 0, target);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlinkQuiet(target);
    throw e;
  }
  await fh.close();
}

/** Puts a copy of our owner file at `target` only if nothing is there (EEXIST otherwise): a hard link, or O_EXCL. */
async function placeExclusive(mine: string, content: string, target: string): Promise<void> {
  try {
    await fileLayer.link(mine, target);
    return;
  } catch (e) {
    if (!NO_LINKS.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
  }
  // No hard links here (some network and FUSE filesystems): a reader may see
  // it empty for a moment, which `dead` tolerates for GARBLED_STALE_MS.
  await createWhole(target, content);
}

async function unlinkQuiet(p: string): Promise<void> {
  await fileLayer.rm(p, { force: true }).catch(() => undefined);
}

/**
 * Claims the stale lock `seen` and replaces it with ours (moving `mine` onto
 * `lockPath`). True when we hold the lock; false when someone else is at it or
 * the lock changed (the caller looks again).
 */
async function takeOver(lockPath: string, seen: Seen, mine: string, content: string): Promise<boolean> {
  const prefix = `${lockPath}.stale-${seen.id}.`;
  let claim: string | undefined;
  for (let k = 1; claim === undefined; k++) {
    try {
      await placeExclusive(mine, content, prefix + k);
      claim = prefix + k;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const other = await look(prefix + k);
      // Gone: the winner is cleaning up, so the lock has changed.
      if (other === undefined || !dead(other)) return false;
      // That claimant died: the next number is ours to try.
    }
  }
  try {
    const now = await look(lockPath);
    if (now?.id !== seen.id) return false;
    await fileLayer.rename(mine, lockPath);
  } finally {
    await unlinkQuiet(claim);
  }
  // Claims of this identity (ours, dead claimants') are of no use any more.
  await removeLockDebris(path.dirname(lockPath), path.basename(lockPath), prefix);
  return true;
}

/** Removes `<lock>.stale-*` claims (only those starting with `prefix` when given) and owner files of dead processes. */
async function removeLockDebris(dir: string, lockName: string, prefix?: string): Promise<void> {
  if (!(await isPrivateFolder(dir))) return;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return;
  }
  const base = prefix ? path.basename(prefix) : `${lockName}.stale-`;
  for (const n of names) {
    const owner = n.startsWith(`${lockName}.`) ? /^\.(\d+)\.[0-9a-f]+\.new$/.exec(n.slice(lockName.length)) : null;
    if (n.startsWith(base) || (owner && Number(owner[1]) !== process.pid && !pidAlive(Number(owner[1])))) {
      await removeOwnEntry(dir, n);
    }
  }
}

export async function acquireLock(dir: string, opts: { what: string; waitMs?: number; signal?: AbortSignal; name?: string } = { what: 'backup' }): Promise<Lock> {
  const name = opts.name ?? LOCK_NAME;
  const lockPath = path.join(dir, name);
  const deadline = Date.now() + (opts.waitMs ?? 10_000);
  const me: LockOwner = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), what: opts.what, nonce: randomBytes(8).toString('hex') };
  const content = JSON.stringify(me);
  checkAbort(opts.signal);
  // Our owner file, written whole before it is ever linked to a lock or claim name.
  const mine = path.join(dir, `${name}.${process.pid}.${randomBytes(4).toString('hex')}.new`);
  try {
    await createWhole(mine, content);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PloneBackupError('REPO_MISSING', `The folder ${dir} does not exist.`, { path: dir, hint: 'Create it first.' });
    }
    throw e;
  }
  let held = false;
  try {
    for (;;) {
      checkAbort(opts.signal);
      try {
        await placeExclusive(mine, content, lockPath);
        held = true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      if (!held) {
        const seen = await look(lockPath);
        if (seen === undefined) continue; // released meanwhile
        if (dead(seen) && (await takeOver(lockPath, seen, mine, content))) held = true;
        if (!held) {
          if (Date.now() >= deadline) {
            const owner = (await look(lockPath))?.owner ?? seen.owner;
            const who = owner ? `pid ${owner.pid} on ${owner.host}, ${owner.what} since ${owner.started}` : 'another process';
            throw new PloneBackupError('LOCKED', `${dir} is in use by another plone-backup run (${who}).`, {
              path: lockPath,
              hint: 'Wait for it to finish, or remove the lock file if that process is gone.',
            });
          }
          // Jitter: waiters that woke together do not keep colliding.
          await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
          continue;
        }
      }
      await removeLockDebris(dir, name);
      let released = false;
      return {
        path: lockPath,
        async release() {
          if (released) return;
          released = true;
          const owner = await readLockOwner(lockPath);
          if (owner && owner.pid === me.pid && owner.started === me.started && owner.nonce === me.nonce) await fileLayer.rm(lockPath, { force: true });
        },
      };
    }
  } finally {
    // Linked (the lock has it under its own name) or renamed onto the lock, or never used.
    await unlinkQuiet(mine);
  }
}

/**
 * Whether only we can add, remove or rename entries of `dir`: it is ours and
 * writable by nobody else (group-writable counts as ours only when the group
 * is our own primary group, as with Debian's user private groups). Elsewhere
 * (/tmp, a folder of another user or of a shared group) an entry may be
 * planted or swapped by someone else while we look at it.
 */
export async function isPrivateFolder(dir: string): Promise<boolean> {
  if (process.platform === 'win32' || typeof process.getuid !== 'function') return true; // no uids to check
  let st;
  try {
    st = await fsp.stat(dir);
  } catch {
    return false;
  }
  if (st.uid !== process.getuid()) return false;
  if (st.mode & 0o002) return false;
  if (st.mode & 0o020 && st.gid !== process.getgid?.()) return false;
  return true;
}

/**
 * Removes the entry `name` of the private folder `dir` if it is ours: a link
 * is unlinked (never followed), a folder removed with what is in it. False when
 * it is not ours (another uid made it) or gone.
 */
export async function removeOwnEntry(dir: string, name: string): Promise<boolean> {
  const p = path.join(dir, name);
  const st = await fsp.lstat(p).catch(() => undefined);
  if (!st) return false;
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return false;
  if (st.isDirectory()) await fileLayer.rm(p, { recursive: true, force: true });
  else await unlinkQuiet(p);
  return true;
}

/**
 * Removes the temp files and folders (`.plone-backup-<name>.<pid>.<hex>.<tag>`)
 * that runs killed on this host left in `dir`: only those whose pid is no
 * longer alive, so a run going on beside us keeps its own. `only` narrows it
 * to the temps of one target name. Nothing in a shared folder (see
 * isPrivateFolder): a name there may be anyone's. Returns what it removed.
 */
export async function removeDeadTemps(dir: string, only?: string): Promise<string[]> {
  if (!(await isPrivateFolder(dir))) return [];
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
    if (await removeOwnEntry(dir, n)) removed.push(path.join(dir, n));
  }
  return removed;
}
