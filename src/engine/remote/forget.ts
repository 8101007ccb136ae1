/**
 * `plone-backup forget`: remote retention, independent of the local one.
 *
 * Which generations stay (the union of what each rule keeps; the newest
 * generation always stays):
 *   keep N          the newest N chains (a full backup's generation and its
 *                   incrementals), as the local `keep`; 0 keeps everything
 *   keepDaily N     for the newest N days (UTC) that have generations, the
 *                   newest generation of each, as restic's forget; likewise
 *   keepWeekly N    ISO weeks, and
 *   keepMonthly N   months
 * and every generation a kept one names as its blob parent (its files are
 * the kept one's too).
 *
 * Snapshots and zip backups (their spaces, layout.ts) are kept by the same
 * rules among their own generations, each space on its own: a space's
 * objects are named only by its manifests, and the backups' sweep of
 * `<storage>/` never takes what lies in `<storage>/snapshot/` or
 * `<storage>/zip/` (not of its shapes).
 *
 * What goes: the manifests of the other generations first, newest first (a
 * manifest never loses its parent while it is there), then the objects no
 * remaining manifest names: pieces, indexes, blob files (and what an
 * interrupted push left). Only objects of our layout's shapes are deleted.
 * While any manifest of the remote cannot be read (garbled, not ours, not
 * decrypting with the key), nothing at all is deleted, neither manifests nor
 * objects: it may name them, and it may be the parent a kept generation
 * needs; the run fails with REMOTE_BAD naming it. The whole run holds the remote's
 * forget lock (lock.ts), so no push writes meanwhile; `dryRun` reads only,
 * takes no lock and deletes nothing.
 *
 * What pushes started and will never finish goes too (`unfinished`): the
 * open multipart uploads of the deployment's objects that no push can be
 * continuing, since none runs while the forget holds its lock: those of an
 * object that is there already, and those started more than
 * `uploadsOlderThanMs` ago (24 hours: a younger one is left for the next
 * push, which continues it instead of sending it again); on a folder target,
 * the temp files of dead writers.
 */

import { PloneBackupError } from '../base/errors';
import type { OperationOptions } from '../base/progress';
import { parseDataFileName } from '../repozo/repository';
import type { Deployment, StorageConfig } from '../deploy/deployment';
import { KIND_ORDER, type Kind } from '../deploy/kinds';
import {
  ARCHIVE_NAME,
  type RemoteManifest,
  RemoteResolver,
  archiveKey,
  blobKey,
  indexKey,
  isStorageName,
  manifestKey,
  packKey,
  pieceKey,
  remoteStamps,
  spaceOf,
  storagePrefix,
} from './layout';
import { EncryptedTarget, physicalKey } from './crypt';
import { RemoteLock } from './lock';
import { pushIndexPath } from './push';
import { prunePushIndex } from './pushindex';
import { FILE_TEMPS, FileTarget, type RemoteStats, type RemoteTarget } from './target';

export interface ForgetPolicy {
  keep?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}

export interface ForgetOptions extends OperationOptions {
  dryRun?: boolean;
  /** How long to wait for a push running on the remote (default 10 minutes). */
  lockWaitMs?: number;
  /** An open multipart upload younger than this is left for the next push to continue (default 24 hours; see the header). */
  uploadsOlderThanMs?: number;
}

/** The default of `uploadsOlderThanMs`: a push interrupted last night is continued by tonight's, before that. */
export const STALE_UPLOAD_MS = 24 * 3600_000;

export interface StorageForgetResult {
  storage: string;
  kept: string[];
  /** Generations whose manifests were deleted (would be, with dryRun), newest first. */
  forgotten: string[];
  /** Object keys (as on the remote) deleted (would be). */
  objects: string[];
}

export interface ForgetResult {
  url: string;
  dryRun: boolean;
  storages: StorageForgetResult[];
  /** Unfinished writes ended (would be, with dryRun): the keys of aborted multipart uploads, or a folder's temp files. */
  unfinished: string[];
  stats: RemoteStats;
}

/** Whether the policy keeps anything less than everything (a policy with no rule is a usage error). */
export function policyIsEmpty(p: ForgetPolicy): boolean {
  return p.keep === undefined && p.keepDaily === undefined && p.keepWeekly === undefined && p.keepMonthly === undefined;
}

const day = (s: string) => s.slice(0, 10);
const month = (s: string) => s.slice(0, 7);
function isoWeek(s: string): string {
  const d = new Date(Date.UTC(Number(s.slice(0, 4)), Number(s.slice(5, 7)) - 1, Number(s.slice(8, 10))));
  const dow = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - dow);
  const week = Math.ceil(((d.getTime() - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/**
 * The stamps the policy keeps among `gens` (stamp → its chain's full stamp),
 * before parents are added. Pure, for the tests.
 */
export function selectKept(gens: Map<string, string>, p: ForgetPolicy): Set<string> {
  const newestFirst = [...gens.keys()].sort().reverse();
  const kept = new Set<string>();
  if (newestFirst[0] !== undefined) kept.add(newestFirst[0]);
  if (p.keep !== undefined) {
    if (p.keep === 0) return new Set(newestFirst);
    const chains = [...new Set(gens.values())].sort().reverse().slice(0, p.keep);
    for (const s of newestFirst) if (chains.includes(gens.get(s)!)) kept.add(s);
  }
  const byPeriod = (n: number | undefined, period: (s: string) => string) => {
    if (!n) return;
    let last: string | undefined;
    let count = 0;
    for (const s of newestFirst) {
      const k = period(s);
      if (k === last) continue;
      last = k;
      kept.add(s);
      if (++count >= n) break;
    }
  };
  byPeriod(p.keepDaily, day);
  byPeriod(p.keepWeekly, isoWeek);
  byPeriod(p.keepMonthly, month);
  return kept;
}

/** The keys (logical) of the objects a manifest names itself (its blob parents' are theirs). */
function objectsOf(storage: string, m: RemoteManifest): string[] {
  const out = m.pieces.map((p) => pieceKey(storage, p.name));
  if (m.index) out.push(indexKey(storage, m.stamp));
  if (m.archive) out.push(archiveKey(storage, m.archive.name));
  for (const a of m.archives ?? []) out.push(archiveKey(storage, a.name));
  // A blob file in a pack keeps its pack (layout.ts); its blob key is named too, for the push index (prunePushIndex).
  for (const e of m.blobs?.files ?? []) out.push(blobKey(storage, e[0], e[1]), ...(e.length === 6 ? [packKey(storage, e[4])] : []));
  return out;
}

/** Keys below `<storage>/` that our layout writes (and so a forget may delete). */
function ours(rel: string): boolean {
  const [dir, a, b, ...rest] = rel.split('/');
  if (rest.length) return false;
  if (dir === 'pieces') return b === undefined && a !== undefined && parseDataFileName(a) !== undefined;
  if (dir === 'indexes') return b === undefined && /^\d{4}(-\d\d){5}\.index$/.test(a ?? '');
  if (dir === 'archives') return b === undefined && ARCHIVE_NAME.test(a ?? '');
  if (dir === 'packs') return b === undefined && /^[0-9a-f]{64}\.pack$/.test(a ?? '');
  if (dir === 'blobs') return (/^[0-9a-f]{16}$/.test(a ?? '') && /^[0-9a-f]{16}\.blob$/.test(b ?? '')) || (/^[0-9a-f]{2}$/.test(a ?? '') && /^[0-9a-f]{62}$/.test(b ?? ''));
  return false;
}

/** Applies the policy to every storage of the deployment on the target (see the header). */
export async function forgetRemote(dep: Deployment, t: RemoteTarget, policy: ForgetPolicy, opts: ForgetOptions = {}): Promise<ForgetResult> {
  if (policyIsEmpty(policy))
    throw new PloneBackupError('USAGE', 'forget needs a rule: --keep N, --keep-daily N, --keep-weekly N or --keep-monthly N (or remote.keep… in plone-backup.json).', {
      hint: 'Run plone-backup help for the options.',
    });
  // A folder target removes dead writers' temp files at its first write (the lock object): this run's are reported too.
  const raw = t instanceof EncryptedTarget ? t.inner : t;
  const sweptBefore = raw instanceof FileTarget ? raw.cleanedTemps.length : 0;
  const lock = opts.dryRun ? undefined : await RemoteLock.acquire(t, 'forget', { signal: opts.signal, waitMs: opts.lockWaitMs, log: opts.log });
  try {
    const storages: StorageForgetResult[] = [];
    // Every manifest of every storage read first: one that cannot be read stops the run before any delete.
    // Every kind in its space (layout.ts), each kept by the same rules on its own generations.
    const read: { s: StorageConfig; kind: Kind; space: string; manifests: Map<string, RemoteManifest> }[] = [];
    const unreadable: string[] = [];
    for (const s of dep.storages) {
      if (!isStorageName(s.name)) continue;
      for (const kind of KIND_ORDER) {
        const space = spaceOf(s.name, kind);
        const r = await readManifests(space, t, opts.signal);
        read.push({ s, kind, space, manifests: r.manifests });
        unreadable.push(...r.unreadable);
      }
    }
    if (unreadable.length) {
      throw new PloneBackupError(
        'REMOTE_BAD',
        `Nothing was forgotten on ${t.url}: ${unreadable.length === 1 ? 'a generation manifest cannot be read' : `${unreadable.length} generation manifests cannot be read`} (${unreadable
          .slice(0, 5)
          .join('; ')}${unreadable.length > 5 ? '; …' : ''}), and ${unreadable.length === 1 ? 'it' : 'they'} may name objects or parents that kept generations need.`,
        {
          path: unreadable[0],
          hint: 'Run plone-backup verify --from URL to see what is wrong; remove the damaged manifest from the remote (or push it again from a site that still has that backup), then forget again.',
        },
      );
    }
    for (const { s, kind, space, manifests } of read) {
      if (kind !== 'backup' && !manifests.size) continue;
      const { res, named } = await forgetStorage(space, manifests, t, policy, opts);
      storages.push(res);
      // The local index of what the remote holds (push.ts) forgets it too, so the next push need not ask.
      if (!opts.dryRun && (res.forgotten.length || res.objects.length)) await prunePushIndex(pushIndexPath(s, t.url, kind), res.forgotten, named);
    }
    const ended = await endUnfinished(
      raw,
      read.map((r) => r.space),
      opts,
    );
    const unfinished = raw instanceof FileTarget && !opts.dryRun ? raw.cleanedTemps.slice(sweptBefore).sort() : ended;
    return { url: t.url, dryRun: opts.dryRun === true, storages, unfinished, stats: { ...t.stats } };
  } finally {
    await lock?.release();
  }
}

/**
 * The writes that pushes started and will never finish (target.ts,
 * `unfinishedWrites`): open multipart uploads of this deployment's objects
 * (of our layout's shapes, in its spaces) that are older than the cutoff or
 * whose object is there, and a folder target's dead temp files. Ended under
 * the forget lock, so while no push runs; with dryRun only counted.
 */
async function endUnfinished(raw: RemoteTarget, spaces: string[], opts: ForgetOptions): Promise<string[]> {
  if (!raw.unfinishedWrites || !raw.discardWrites) return [];
  const ownedKey = (key: string) => key.startsWith(`${FILE_TEMPS}/`) || spaces.some((sp) => key.startsWith(storagePrefix(sp)) && ours(key.slice(storagePrefix(sp).length)));
  const writes = (await raw.unfinishedWrites(opts.uploadsOlderThanMs ?? STALE_UPLOAD_MS, opts.signal)).filter((w) => ownedKey(w.key));
  if (writes.length && !opts.dryRun) {
    opts.log?.(`ending ${writes.length} unfinished write${writes.length === 1 ? '' : 's'} no push will continue`);
    await raw.discardWrites(writes, opts.signal);
  }
  return writes.map((w) => w.key).sort();
}

/** Every manifest of a storage on the remote, and the keys of those that cannot be read (REMOTE_BAD), with why. */
async function readManifests(storage: string, t: RemoteTarget, signal?: AbortSignal): Promise<{ manifests: Map<string, RemoteManifest>; unreadable: string[] }> {
  const resolver = new RemoteResolver(t, storage, signal);
  const manifests = new Map<string, RemoteManifest>();
  const unreadable: string[] = [];
  for (const stamp of await remoteStamps(t, storage, signal)) {
    try {
      const m = await resolver.manifest(stamp);
      if (m) manifests.set(stamp, m);
    } catch (e) {
      if (!PloneBackupError.is(e, 'REMOTE_BAD')) throw e;
      unreadable.push(`${manifestKey(storage, stamp)}: ${e.message.replace(/\.$/, '')}`);
    }
  }
  return { manifests, unreadable };
}

async function forgetStorage(
  storage: string,
  manifests: Map<string, RemoteManifest>,
  t: RemoteTarget,
  policy: ForgetPolicy,
  opts: ForgetOptions,
): Promise<{ res: StorageForgetResult; named?: Set<string> }> {
  const res: StorageForgetResult = { storage, kept: [], forgotten: [], objects: [] };
  if (!manifests.size) return { res };
  const kept = selectKept(new Map([...manifests].map(([s, m]) => [s, m.full])), policy);
  // A kept generation's blob parents stay with it.
  for (const s of [...kept]) {
    let at = manifests.get(s)?.blobs?.parent;
    while (at !== undefined && !kept.has(at) && manifests.has(at)) {
      kept.add(at);
      at = manifests.get(at)!.blobs?.parent;
    }
  }
  res.kept = [...kept].sort();
  res.forgotten = [...manifests.keys()]
    .filter((s) => !kept.has(s))
    .sort()
    .reverse();
  const logical = new Set<string>();
  for (const s of kept) for (const k of objectsOf(storage, manifests.get(s)!)) logical.add(k);
  const named = new Set([...logical].map((k) => physicalKey(t, k)));
  const raw = t instanceof EncryptedTarget ? t.inner : t;
  for (const stamp of res.forgotten) {
    opts.log?.(`${opts.dryRun ? 'would forget' : 'forgetting'} ${storage} ${stamp}`);
    if (!opts.dryRun) await raw.delete([manifestKey(storage, stamp)], opts.signal);
  }
  const base = storagePrefix(storage);
  for (const rel of await raw.list(base, opts.signal, { recursive: true })) {
    if (!ours(rel) || named.has(base + rel)) continue;
    res.objects.push(base + rel);
  }
  res.objects.sort();
  if (!opts.dryRun && res.objects.length) {
    opts.log?.(`deleting ${res.objects.length} objects of ${storage} no kept generation names`);
    await raw.delete(res.objects, opts.signal);
  }
  return { res, named: logical };
}
