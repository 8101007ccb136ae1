/**
 * Restoring a deployment to a point in time: for every storage, the
 * filestorage chain as of the date and the blob generation that belongs to
 * its last piece. One way through, from the command to the disk:
 *
 *   const session = await openRestore(dep, opts); // locks, "running?", the plan
 *   ...show session.plans, ask...
 *   await session.run();                           // exactly that plan
 *   await session.close();                         // always, also when declined
 *
 * openRestore takes the repository locks and ZODB's own lock on every
 * storage's Data.fs.lock (site.ts) first, refuses a running site
 * (SITE_RUNNING, unless `force`) and a target that is no FileStorage or
 * blobstorage, and only then plans (plan.ts): while the session is open no
 * backup, restore or Zope can change what the plan describes, so the plan a
 * caller shows is the plan run. A Zope started meanwhile refuses to open the
 * storage rather than open it half restored.
 *
 * Full restore (stage.ts, swap.ts): Data.fs (with its index) and the
 * blobstorage are built beside the live ones, for every storage, and only
 * then swapped in; the previous state is kept aside (base/keep.ts:
 * `<name>.before-restore-<stamp>`), or removed when the caller says so.
 *
 * Incremental restore: when the live Data.fs ends exactly where a piece of the
 * wanted chain ends and its last bytes are that piece's, only the missing
 * pieces are appended and only the missing blob files are added: blobs first,
 * then the records, as ZODB commits, so a crash leaves at worst a torn tail
 * that ZODB cuts off. Refreshing a dev database costs what changed.
 *
 * `restoreDeployment` is open, run, close in one call.
 */

import * as path from 'node:path';
import { PloneBackupError, toPloneBackupError } from '../../base/errors';
import { acquireLock, removeDeadTemps, type Lock } from '../../base/lock';
import { keepStamp } from '../../base/keep';
import { exists } from '../../base/io';
import type { OperationOptions } from '../../base/progress';
import { lockSite, siteRunning, type RunningSite, type SiteLock } from '../site';
import type { Deployment, StorageConfig } from '../deployment';
import { assertBlobTarget, assertFileStorage } from './checks';
import { noRepository, planStorage, settle, sourcesFor, type RestoreOptions, type RestoreSource, type Settled, type StoragePlan, type StorageRestoreResult } from './plan';
import { stage, type Staged } from './stage';
import { runHook } from '../hooks';
import { KINDS } from '../kinds';

export { altSource } from './plan';
export type { RestoreOptions, RestoreSource, StoragePlan, StorageRestoreResult } from './plan';

export interface RestoreSession {
  /** What `run` will do, storage by storage: what a confirmation shows. */
  readonly plans: StoragePlan[];
  /** Whether the replaced state will be kept aside (the caller's choice, else the default). */
  readonly keepOld: boolean;
  /**
   * Restores exactly `plans`. `more` may add what only exists once the
   * caller runs it (a progress notification's signal and callback).
   */
  run(more?: Pick<OperationOptions, 'signal' | 'onProgress' | 'log'>): Promise<StorageRestoreResult[]>;
  /** Lets go of every lock (the site's first, then the repositories'); safe to call twice. */
  close(): Promise<void>;
}

/** Takes the locks, refuses a running site, and plans: see the header. Close the session whatever happens. */
export async function openRestore(dep: Deployment, options: RestoreOptions = {}): Promise<RestoreSession> {
  const opts = settle({ blobsOnly: dep.settings.onlyBlobs, ...options });
  if (opts.kind === 'snapshot' && !dep.settings.enableSnapshotrestore) {
    throw new PloneBackupError('CONFIG_BAD', `Restoring snapshots is disabled for ${dep.part ? `the [${dep.part.name}] part` : dep.root}.`, {
      path: dep.configFile,
      hint: 'Set enable_snapshotrestore = true (collective.recipe.backup makes no bin/snapshotrestore without it).',
    });
  }
  const locks = new Locks();
  try {
    if (opts.prepare) {
      // What the restore reads is fetched first (a remote, pull.ts): only once every site is locked and known stopped.
      for (const s of dep.storages) await lockLive(s, opts, locks);
      const more = await opts.prepare();
      if (more?.date !== undefined) opts.date = more.date;
    }
    const sources = await sourcesFor(dep, opts);
    for (const [i, s] of dep.storages.entries()) await lockStorage(s, sources[i]!, opts, locks, opts.prepare !== undefined);
    const plans: StoragePlan[] = [];
    for (const [i, s] of dep.storages.entries()) plans.push(await planStorage(s, sources[i]!, opts));
    // Nothing but a database is replaced, and blobs go only into a blobstorage.
    for (const p of plans) {
      if (p.mode !== 'blobs') await assertFileStorage(p.storage.file, 'replaced');
      if (p.storage.blobDir && p.generation) await assertBlobTarget(p.storage.blobDir);
    }
    return session(dep, plans, opts, locks);
  } catch (e) {
    await locks.release();
    throw toPloneBackupError(e);
  }
}

/** Restores every storage of the deployment (openRestore, run, close). */
export async function restoreDeployment(dep: Deployment, opts: RestoreOptions = {}): Promise<StorageRestoreResult[]> {
  const s = await openRestore(dep, opts);
  try {
    return await s.run();
  } finally {
    await s.close();
  }
}

class Locks {
  readonly repos: Lock[] = [];
  readonly sites: SiteLock[] = [];
  async release(): Promise<void> {
    for (const l of this.sites.splice(0)) await l.release();
    for (const l of this.repos.splice(0)) await l.release();
  }
}

/**
 * The repository first (a second restore waits there for the first, which
 * lets go of the site before it), then ZODB's own lock on the storage, held
 * until the session closes. Whether a site runs is decided here and nowhere
 * else: the storage restored (lockLive), and another site's live files
 * restored from. `liveLocked`: the site's lock was taken before (a restore
 * that prepares its source: see RestoreOptions.prepare).
 */
async function lockStorage(s: StorageConfig, source: RestoreSource, opts: Settled, locks: Locks, liveLocked = false): Promise<void> {
  // No folder, no backups (and no lock to take in it).
  if (source.type === 'repository' && !(await exists(source.repo))) throw noRepository(s, source.repo, opts);
  if (source.type === 'repository') locks.repos.push(await acquireLock(source.repo, { what: 'restore', waitMs: opts.lockWaitMs, signal: opts.signal }));
  if (!liveLocked) await lockLive(s, opts, locks);
  // Another site's live files: while that site runs they change under the copy.
  const other = source.type === 'copy' && !opts.force ? await siteRunning(source.file) : undefined;
  if (other)
    throw siteRunningError(
      other,
      'The site being restored from is running',
      'Restore from its backups (point altrestore at a folder with backups/), stop that site, or pass --force.',
    );
}

/** ZODB's lock on the storage restored, held until the session closes; SITE_RUNNING when the site holds it (unless `force`). */
async function lockLive(s: StorageConfig, opts: Settled, locks: Locks): Promise<void> {
  const site = await lockSite(s.file);
  locks.sites.push(site);
  if (site.note) opts.log?.(site.note);
  if (site.running && !opts.force)
    throw siteRunningError(site.running, 'The site is running', 'Stop Zope (or the ZEO server) first, or pass --force if you are sure it is not running.');
}

function siteRunningError(running: RunningSite, what: string, hint: string): PloneBackupError {
  return new PloneBackupError('SITE_RUNNING', `${what}: ${running.lockFile} is held${running.pid ? ` by process ${running.pid}` : ''}; nothing was restored.`, {
    path: running.lockFile,
    hint,
  });
}

function session(dep: Deployment, plans: StoragePlan[], opts: Settled, locks: Locks): RestoreSession {
  let state: 'open' | 'ran' | 'closed' = 'open';
  return {
    plans,
    keepOld: opts.keepOld,
    async run(more = {}) {
      if (state !== 'open') throw new Error(`restore session: run() on a session that is ${state}`);
      state = 'ran';
      const o = { ...opts, ...more };
      const hook = { command: opts.source ? 'altrestore' : KINDS[opts.kind].restoreCommand, kind: opts.kind, signal: o.signal, log: o.log };
      await runHook(dep, { ...hook, phase: 'pre' });
      const results = await runPlans(plans, o);
      await runHook(dep, { ...hook, phase: 'post', stamp: results[0]?.stamp });
      return results;
    },
    async close() {
      state = 'closed';
      await locks.release();
    },
  };
}

/** Builds every storage first, and swaps them in only when all are ready. */
async function runPlans(plans: StoragePlan[], opts: Settled): Promise<StorageRestoreResult[]> {
  const staged: Staged[] = [];
  try {
    // What a restore killed before us left beside the live files (its pid is gone).
    for (const p of plans) {
      await removeDeadTemps(path.dirname(p.storage.file));
      if (p.storage.blobDir) await removeDeadTemps(path.dirname(p.storage.blobDir));
    }
    for (const p of plans) staged.push(await stage(p, opts));
    const stamp = keepStamp(opts.now);
    const results: StorageRestoreResult[] = [];
    for (const s of staged) results.push(await s.apply(stamp));
    return results;
  } catch (e) {
    for (const s of staged) await s.discard().catch(() => undefined);
    // An OS error (a full disk, a permission) reaches callers typed, like ours.
    throw toPloneBackupError(e);
  }
}
