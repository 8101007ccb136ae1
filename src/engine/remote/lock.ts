/**
 * Who may delete on a remote while who writes: a push and a forget never run
 * at once on one target (a forget would see a push's new objects as named by
 * no manifest, or delete a generation the push is about to name as a parent,
 * or an object the push knows is there and does not send again). Pushes run
 * together freely, and so do forgets (each deletes only what its kept
 * generations do not name; together they delete what neither keeps).
 *
 * Object storage has no locks, so each run puts an object
 * `locks/<push|forget>-<ms since 1970>-<random>.json` (If-None-Match: a new
 * name every time), then lists `locks/`. A push that sees a forget's lock
 * waits for it to go (keeping its own); a forget that sees a push's lock takes
 * its own away and tries again later. Servers list what was written before
 * (read-after-write, as S3 and RGW are), so of two runs that both wrote their
 * lock, the later lister sees the other's: at most one of them proceeds, and
 * a forget that proceeds finishes before the push does anything.
 *
 * A lock names the time it was put; a running run puts a new one every 5
 * minutes (and deletes the old), so one older than 30 minutes is a dead run's
 * and ignored (clocks of the machines must agree within minutes). A younger
 * one in the way is read: when its owner is a process of this host that is
 * gone (a push killed a minute ago), it is a dead run's too, ignored and
 * removed at once; another host's is trusted until it is 30 minutes old.
 */

import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { PloneBackupError, checkAbort } from '../base/errors';
import { pidAlive } from '../base/lock';
import { hashBuffer, type RemoteTarget } from './target';

export const LOCKS_PREFIX = 'locks/';
export const LOCK_STALE_MS = 30 * 60_000;
const REFRESH_MS = 5 * 60_000;
const NAME = /^(push|forget)-(\d{13})-([0-9a-f]{12})\.json$/;

export type LockKind = 'push' | 'forget';

function parseLock(name: string): { kind: LockKind; time: number } | undefined {
  const m = NAME.exec(name);
  return m ? { kind: m[1] as LockKind, time: Number(m[2]) } : undefined;
}

export interface RemoteLockOptions {
  signal?: AbortSignal;
  /** How long to wait for the other kind of run (default 10 minutes). */
  waitMs?: number;
  log?: (m: string) => void;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((res) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      res();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/**
 * Whether the lock `name` is a dead run's of this host (its owner's pid is
 * gone); such a lock is removed. Read once per name (`known`); a lock that
 * cannot be read counts as alive.
 */
async function deadHere(t: RemoteTarget, name: string, known: Map<string, boolean>, signal?: AbortSignal): Promise<boolean> {
  let dead = known.get(name);
  if (dead !== undefined) return dead;
  let owner: { host?: unknown; pid?: unknown } | null;
  try {
    owner = JSON.parse((await t.get(LOCKS_PREFIX + name, 4096, signal))?.toString('utf8') ?? 'null') as { host?: unknown; pid?: unknown } | null;
  } catch {
    checkAbort(signal);
    owner = null;
  }
  const pid = owner?.pid;
  dead = owner?.host === os.hostname() && typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid);
  known.set(name, dead);
  if (dead) await t.delete([LOCKS_PREFIX + name], signal).catch(() => undefined);
  return dead;
}

export class RemoteLock {
  private timer?: NodeJS.Timeout;
  private released = false;
  private constructor(
    private readonly t: RemoteTarget,
    private readonly kind: LockKind,
    private name: string,
  ) {}

  private static async put(t: RemoteTarget, kind: LockKind, signal?: AbortSignal): Promise<string> {
    const name = `${kind}-${String(Date.now()).padStart(13, '0')}-${randomBytes(6).toString('hex')}.json`;
    const body = Buffer.from(JSON.stringify({ kind, host: os.hostname(), pid: process.pid, time: new Date().toISOString() }));
    await t.put(LOCKS_PREFIX + name, body, hashBuffer(body), signal);
    return name;
  }

  /** Takes the lock of `kind` on the target (see the header); LOCKED after `waitMs`. */
  static async acquire(t: RemoteTarget, kind: LockKind, opts: RemoteLockOptions = {}): Promise<RemoteLock> {
    const other: LockKind = kind === 'push' ? 'forget' : 'push';
    const deadline = Date.now() + (opts.waitMs ?? 10 * 60_000);
    let name: string | undefined = await RemoteLock.put(t, kind, opts.signal);
    let said = false;
    const dead = new Map<string, boolean>();
    for (;;) {
      const now = Date.now();
      const blockers: { kind: LockKind; time: number }[] = [];
      for (const n of await t.list(LOCKS_PREFIX, opts.signal)) {
        const l = parseLock(n);
        if (l && l.kind === other && now - l.time < LOCK_STALE_MS && !(await deadHere(t, n, dead, opts.signal))) blockers.push(l);
      }
      if (!blockers.length) {
        if (name === undefined) {
          // A forget that stepped back puts a new lock and looks again.
          name = await RemoteLock.put(t, kind, opts.signal);
          continue;
        }
        const lock = new RemoteLock(t, kind, name);
        lock.timer = setInterval(() => void lock.refresh(), REFRESH_MS);
        lock.timer.unref();
        return lock;
      }
      if (kind === 'forget' && name !== undefined) {
        await t.delete([LOCKS_PREFIX + name], opts.signal);
        name = undefined;
      }
      if (!said) opts.log?.(`waiting for a ${other} running on ${t.url} (since ${new Date(Math.min(...blockers.map((b) => b.time))).toISOString()})`);
      said = true;
      if (Date.now() > deadline || opts.signal?.aborted) {
        if (name !== undefined) await t.delete([LOCKS_PREFIX + name]).catch(() => undefined);
        checkAbort(opts.signal);
        throw new PloneBackupError(
          'LOCKED',
          `A ${other} is running on ${t.url} (since ${new Date(Math.min(...blockers.map((b) => b.time))).toISOString()}); ${kind === 'push' ? 'a push does not write while a forget deletes' : 'a forget does not delete while a push writes'}.`,
          {
            hint: `Run it again later. A run that died leaves its lock in ${LOCKS_PREFIX} of the remote; it is ignored 30 minutes after it was put.`,
          },
        );
      }
      await sleep(300 + Math.floor(Math.random() * 400), opts.signal);
    }
  }

  private async refresh(): Promise<void> {
    if (this.released) return;
    try {
      const old = this.name;
      const fresh = await RemoteLock.put(this.t, this.kind);
      if (this.released) return void (await this.t.delete([LOCKS_PREFIX + fresh]));
      this.name = fresh;
      await this.t.delete([LOCKS_PREFIX + old]);
    } catch {
      // The next refresh tries again; a lock 30 minutes old is ignored by the others anyway.
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    await this.t.delete([LOCKS_PREFIX + this.name]).catch(() => undefined);
  }
}
