/**
 * Deleting a backup generation by hand (the extension's "Delete"): a full
 * backup goes with its incrementals (they continue it and restore nothing
 * without it); an incremental goes with the incrementals after it, for the
 * same reason. Each piece goes with its `.index` and its blob generation (or
 * blob archive); a full takes its `.dat` along, an incremental is struck from
 * its chain's `.dat`.
 *
 * The newest complete generation of a group (readable, with the blob
 * generation made with it) is never deleted, nor anything it continues:
 * there is always one state to restore. Make a new backup first.
 *
 * Runs under the repository's lock, so never beside a backup or a restore.
 * Pieces go first, newest first, so an interruption leaves a chain that is
 * still a prefix of itself, then the `.dat`, the indexes, the blob
 * generations, and `latest` is pointed at the newest generation left.
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from '../base/errors';
import { acquireLock } from '../base/lock';
import { datName, formatDatLine, indexName, readDat } from '../repozo/repository';
import { fileLayer, fsyncDir, writeFileAtomic } from '../base/io';
import type { OperationOptions } from '../base/progress';
import { LATEST, listGenerations, setLatest } from './blobgen';
import { removeGenerations } from './blobpool';
import { KINDS, foldersFor, type Kind } from './kinds';
import { listDeployment, type GenerationView, type GroupView } from './list';
import type { Deployment, StorageConfig } from './deployment';

export interface DeletionPlan {
  storage: string;
  kind: Kind;
  /** The generation asked for. */
  stamp: string;
  repository: string;
  /** Every generation that goes (the one asked for first, then those continuing it), oldest first. */
  generations: GenerationView[];
  /** Whether the chain's .dat goes too (a full was asked for). */
  wholeChain: boolean;
  /** Files of the repository that are removed: pieces, indexes, and the .dat for a whole chain. */
  files: string[];
  /** Blob generation folders and archives that are removed. */
  blobGenerations: string[];
}

export interface DeletionResult {
  storage: string;
  kind: Kind;
  /** Stamps of the generations deleted. */
  stamps: string[];
  /** Every file and folder removed. */
  removed: string[];
}

export interface DeleteOptions extends OperationOptions {
  lockWaitMs?: number;
}

/** Whether a generation can be restored as it is: readable, and with the blob generation made with it. */
export function isComplete(g: GenerationView): boolean {
  return !g.problem && (g.blob.status === 'match' || g.blob.status === 'archived' || g.blob.status === 'none');
}

/** The newest complete generation of a group (the one never deleted), if any. */
export function newestComplete(group: GroupView): GenerationView | undefined {
  const all = group.chains.flatMap((c) => [c.full, ...c.incrementals]);
  for (let i = all.length - 1; i >= 0; i--) if (isComplete(all[i]!)) return all[i];
  return undefined;
}

function storageOf(dep: Deployment, storage: string): StorageConfig {
  const s = dep.storages.find((x) => x.name === storage);
  if (!s) {
    throw new PloneBackupError('NOT_FOUND', `The deployment in ${dep.root} has no storage named ${storage}.`, {
      hint: `Its storages are ${dep.storages.map((x) => x.name).join(', ')}.`,
    });
  }
  return s;
}

/** Works out what deleting `stamp` removes, without changing anything (for the confirmation). */
export async function planDeletion(dep: Deployment, storage: string, kind: Kind, stamp: string, opts: OperationOptions = {}): Promise<DeletionPlan> {
  const s = storageOf(dep, storage);
  const [view] = await listDeployment({ ...dep, storages: [s] }, opts);
  const group = view!.groups.find((g) => g.kind === kind);
  if (!group) throw new PloneBackupError('USAGE', `"${kind}" is not a kind of backup; use backup, snapshot or zip.`);
  let doomed: GenerationView[] | undefined;
  let wholeChain = false;
  for (const c of group.chains) {
    if (c.full.stamp === stamp) {
      doomed = [c.full, ...c.incrementals];
      wholeChain = true;
      break;
    }
    const i = c.incrementals.findIndex((g) => g.stamp === stamp);
    if (i >= 0) {
      doomed = c.incrementals.slice(i);
      break;
    }
  }
  if (!doomed) {
    throw new PloneBackupError('NOT_FOUND', `There is no ${KINDS[kind].noun} ${stamp} of ${storage} in ${group.repository}.`, {
      path: group.repository,
      hint: 'Refresh the list of backups; it may have been deleted or rotated already.',
    });
  }
  const newest = newestComplete(group);
  if (newest && doomed.some((g) => g.stamp === newest.stamp)) {
    const message =
      newest.stamp === stamp
        ? `The ${KINDS[kind].noun} ${stamp} is the newest complete one of ${storage}, so it is not deleted.`
        : `Deleting the ${KINDS[kind].noun} ${stamp} would delete ${newest.stamp}, the newest complete one of ${storage}, which continues it; nothing was deleted.`;
    throw new PloneBackupError('KEEP_NEWEST', message, {
      path: path.join(group.repository, doomed[0]!.name),
      hint: 'Make a new backup first (a full backup starts a new chain); there must always be one to restore.',
    });
  }
  const repo = group.repository;
  const files: string[] = [];
  for (const g of [...doomed].reverse()) files.push(path.join(repo, g.name));
  for (const g of doomed) files.push(path.join(repo, indexName(g.stamp)));
  if (wholeChain) files.push(path.join(repo, datName(doomed[0]!.stamp)));
  const stamps = new Set(doomed.map((g) => g.stamp));
  const blobGenerations: string[] = [];
  if (s.blobDir) {
    const { blobs } = foldersFor(s, kind);
    for (const g of (await listGenerations(blobs, path.basename(s.blobDir))).reverse()) {
      if (g.stamp && stamps.has(g.stamp)) blobGenerations.push(g.path);
    }
  }
  return { storage, kind, stamp, repository: repo, generations: doomed, wholeChain, files, blobGenerations };
}

async function unlinkIfThere(file: string, removed: string[]): Promise<void> {
  try {
    await fileLayer.rm(file);
    removed.push(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * Deletes the generation `stamp` of `storage` in the `kind` group, with the
 * generations continuing it and their blob generations (see the top of this file).
 */
export async function deleteGeneration(dep: Deployment, storage: string, kind: Kind, stamp: string, opts: DeleteOptions = {}): Promise<DeletionResult> {
  const s = storageOf(dep, storage);
  const { repo, blobs } = foldersFor(s, kind);
  const lock = await acquireLock(repo, { what: 'delete', waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    // Planned again under the lock: a backup may have run since the caller asked.
    const plan = await planDeletion(dep, storage, kind, stamp, opts);
    checkAbort(opts.signal);
    const removed: string[] = [];
    const doomedNames = new Set(plan.generations.map((g) => g.name));
    // Pieces, newest first: what is left is always a chain that restores.
    for (const g of [...plan.generations].reverse()) await unlinkIfThere(path.join(repo, g.name), removed);
    const dat = path.join(repo, datName(plan.generations[0]!.chain));
    if (plan.wholeChain) await unlinkIfThere(dat, removed);
    else {
      const lines = await readDat(dat);
      if (lines) {
        const kept = lines.filter((l) => !doomedNames.has(path.basename(l.path)));
        if (kept.length !== lines.length) await writeFileAtomic(dat, Buffer.from(kept.map(formatDatLine).join(''), 'latin1'));
      }
    }
    for (const g of plan.generations) await unlinkIfThere(path.join(repo, indexName(g.stamp)), removed);
    await fsyncDir(repo);
    if (s.blobDir && plan.blobGenerations.length) {
      // The planned generations as listed (oldest first), with the pool files only they named.
      const base = path.basename(s.blobDir);
      const doomed = new Set(plan.blobGenerations);
      removed.push(
        ...(await removeGenerations(
          blobs,
          base,
          (await listGenerations(blobs, base)).filter((g) => doomed.has(g.path)),
          opts.signal,
        )),
      );
    }
    if (s.blobDir && plan.blobGenerations.length) {
      const link = path.join(blobs, LATEST);
      const target = await fsp.readlink(link).catch(() => undefined);
      if (target !== undefined && plan.blobGenerations.some((g) => path.basename(g) === path.basename(target))) {
        const newest = (await listGenerations(blobs, path.basename(s.blobDir))).filter((g) => g.kind === 'dir').at(-1);
        if (newest) await setLatest(blobs, newest.name);
        else await fileLayer.rm(link, { force: true });
      }
      await fsyncDir(blobs);
    }
    opts.log?.(`deleted ${KINDS[kind].noun} ${stamp} of ${storage}: ${removed.length} files and folders`);
    return { storage, kind, stamps: plan.generations.map((g) => g.stamp), removed };
  } finally {
    await lock.release();
  }
}

/**
 * Whether deleting `gen` (with what continues it) would leave the newest
 * complete generation of its group in place: what a view offers Delete for.
 * A full backup takes its chain with it, an incremental those after it.
 */
export function isDeletable(group: GroupView, gen: GenerationView): boolean {
  const newest = newestComplete(group);
  for (const c of group.chains) {
    const all = [c.full, ...c.incrementals];
    const i = all.findIndex((g) => g.stamp === gen.stamp);
    if (i < 0) continue;
    return !newest || !all.slice(i).some((g) => g.stamp === newest.stamp);
  }
  return false;
}

/** The full backups of the chains older than the one holding the newest complete generation (deleting each takes its chain). */
export function olderChains(group: GroupView): GenerationView[] {
  const newest = newestComplete(group);
  if (!newest) return [];
  const at = group.chains.findIndex((c) => [c.full, ...c.incrementals].some((g) => g.stamp === newest.stamp));
  return group.chains.slice(0, Math.max(0, at)).map((c) => c.full);
}
