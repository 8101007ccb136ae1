/**
 * Building a restore beside the live files, for one storage, before any
 * storage is changed. Full: Data.fs (with its index) in a work folder and the
 * blob tree beside the live one, both no more readable than the live Data.fs.
 * Incremental: only the missing blob files, straight into the live
 * blobstorage (files no record references yet are harmless, as in a ZODB
 * commit); the records are appended in swap.ts.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from '../../base/errors';
import { copyRegularFile, exists, fileLayer, isRegularFile, modesFrom, modesOf, tempPath, type Modes } from '../../base/io';
import { recover } from '../../repozo/recover';
import { readLayout, LAYOUT_FILE } from '../../zodb/blobdir';
import { appendedBlobs, fillBlobs, linkTree, missingBlobs, treeFiles } from './blobs';
import { assertFileStorage } from './checks';
import { appendPieces, placeIndex, stageIndex, swapFull, type BlobMerge, type BuiltFull } from './swap';
import type { Settled, StoragePlan, StorageRestoreResult } from './plan';

export interface Staged {
  /** Puts it in place; `stamp` names what is kept aside. */
  apply(stamp: string): Promise<StorageRestoreResult>;
  /** Removes what was built (nothing live was changed). */
  discard(): Promise<void>;
}

export async function stage(p: StoragePlan, opts: Settled): Promise<Staged> {
  return p.mode === 'full' || p.mode === 'blobs' ? stageFull(p, opts) : stageIncremental(p, opts);
}

function result(p: StoragePlan, bytesWritten: number, blobFilesAdded: number, keptOld: string[], warnings: string[]): StorageRestoreResult {
  return { storage: p.storage.name, mode: p.mode, stamp: p.stamp, bytesWritten, blobFilesAdded, generation: p.generation?.path, keptOld, warnings };
}

async function stageIncremental(p: StoragePlan, opts: Settled): Promise<Staged> {
  const s = p.storage;
  const modes = await modesFrom(s.file);
  const added = s.blobDir && p.generation ? await fillBlobs(p.generation, s.blobDir, modes, opts.blobMode, true, opts.signal, await appendedBlobs(p, opts.signal)) : 0;
  const warnings = p.mismatch ? [p.mismatch] : [];
  const index = await stageIndex(p, modes, p.mode === 'unchanged');
  return {
    async apply() {
      const written = p.mode === 'incremental' ? await appendPieces(p, opts) : 0;
      await placeIndex(p, index);
      return result(p, written, added, [], warnings);
    },
    async discard() {
      if (index) await fileLayer.rm(index, { force: true });
    },
  };
}

async function stageFull(p: StoragePlan, opts: Settled): Promise<Staged> {
  const s = p.storage;
  const warnings = p.mismatch ? [p.mismatch] : [];
  const fileMode = await liveOrSourceMode(p);
  const modes = modesOf(fileMode);
  await fileLayer.mkdir(path.dirname(s.file), { recursive: true, mode: modes.dir });
  const work = tempPath(s.file, 'restore');
  await fileLayer.mkdir(work, { mode: 0o700 });
  // only_blobs: the blobstorage alone; Data.fs stays as it is.
  const built: BuiltFull = { plan: p, work, newFile: p.mode === 'blobs' ? undefined : path.join(work, path.basename(s.file)), modes };
  const discard = async () => {
    await fileLayer.rm(work, { recursive: true, force: true });
    if (built.newBlobs) await fileLayer.rm(built.newBlobs, { recursive: true, force: true });
    if (built.merge?.keep) await fileLayer.rm(built.merge.keep, { recursive: true, force: true });
  };
  let written = 0;
  let added = 0;
  try {
    if (built.newFile) {
      written = await buildDataFs(p, built.newFile, fileMode, modes, opts);
      // What replaces a database must be one: pieces whose md5 matches a .dat
      // written by someone else can hold anything.
      await assertFileStorage(built.newFile, 'written');
    }
    checkAbort(opts.signal);
    if (s.blobDir && p.generation) {
      await fileLayer.mkdir(path.dirname(s.blobDir), { recursive: true, mode: modes.dir });
      built.newBlobs = tempPath(s.blobDir, 'restore');
      added = await fillBlobs(p.generation, built.newBlobs, modes, opts.blobMode, false, opts.signal);
      if (built.newFile) await checkMissingBlobs(p, built.newFile, built.newBlobs, opts, warnings);
      built.merge = await planMerge(s.blobDir, built.newBlobs, modes, opts.keepOld);
    }
  } catch (e) {
    await discard();
    throw e;
  }
  return {
    async apply(stamp) {
      return result(p, written, added, await swapFull(built, stamp, opts.keepOld), warnings);
    },
    discard,
  };
}

/** The mode of the live Data.fs, else of the source (the backup piece has its source's), else private. */
async function liveOrSourceMode(p: StoragePlan): Promise<number> {
  const last = p.chain.at(-1);
  const source = p.source.type === 'repository' ? (last ? path.join(p.source.repo, last.name) : (p.generation?.path ?? p.source.repo)) : p.source.file;
  return fsp.stat(p.storage.file).then(
    (st) => st.mode,
    () =>
      fsp.stat(source).then(
        (st) => st.mode,
        () => 0o600,
      ),
  );
}

/** The new Data.fs (and its index) at `newFile`: recovered from the chain, or copied from another site. Returns its size. */
async function buildDataFs(p: StoragePlan, newFile: string, fileMode: number, modes: Modes, opts: Settled): Promise<number> {
  if (p.source.type === 'repository') {
    // The planned state exactly: the chain ending at the plan's last piece, the one its blob generation belongs to.
    const r = await recover({
      repository: p.source.repo,
      output: newFile,
      date: p.stamp,
      keepOld: false,
      mode: fileMode,
      signal: opts.signal,
      onProgress: opts.onProgress,
      now: opts.now,
    });
    return r.bytes;
  }
  // Another site's Data.fs: a regular file only (a FIFO would block the copy), no more readable than ours.
  const notDb = (f: string) =>
    new PloneBackupError('NOT_FILESTORAGE', `${f} is not a regular file, so not a ZODB FileStorage to restore from.`, {
      path: f,
      hint: 'Point altrestore at a folder holding the Data.fs itself.',
    });
  await copyRegularFile(p.source.file, newFile, fsc.COPYFILE_EXCL, notDb);
  await fileLayer.chmod(newFile, modes.file);
  if (await isRegularFile(`${p.source.file}.index`)) {
    await fileLayer.copyFile(`${p.source.file}.index`, `${newFile}.index`);
    await fileLayer.chmod(`${newFile}.index`, modes.file);
  }
  return (await fsp.stat(newFile)).size;
}

/**
 * A generation not made with this state (the recipe's numbered folders, or
 * the nearest older one) may lack files the restored Data.fs needs: the site
 * would fail on them. Only then is the restored Data.fs scanned for them.
 */
async function checkMissingBlobs(p: StoragePlan, newFile: string, newBlobs: string, opts: Settled, warnings: string[]): Promise<void> {
  if (!p.mismatch || !p.generation) return;
  const missing = await missingBlobs(newFile, newBlobs, opts.signal);
  if (!missing.length) return;
  const n = missing.length;
  if (!opts.allowMissingBlobs) {
    throw new PloneBackupError(
      'BLOB_MISSING',
      `The blob backup ${p.generation.path} was not made with ${p.stamp ?? 'this state'} and lacks ${n} blob file${n > 1 ? 's' : ''} the restored Data.fs needs (first: ${missing[0]}); nothing was restored.`,
      { path: p.generation.path, hint: 'Restore a date whose backup has its own blob generation (`plone-backup list`), or pass --allow-missing-blobs to restore it without them.' },
    );
  }
  warnings.push(`${n} blob file${n > 1 ? 's' : ''} the restored Data.fs needs ${n > 1 ? 'are' : 'is'} missing (restored with --allow-missing-blobs; first: ${missing[0]})`);
}

/**
 * Blob files join the live blobstorage in place (see swap.ts) when both trees
 * have one layout and agree on every file they share; the old tree is then
 * kept as a tree of hard links. Undefined: the trees are swapped whole.
 */
async function planMerge(blobDir: string, newBlobs: string, modes: Modes, keepOld: boolean): Promise<BlobMerge | undefined> {
  if (!(await exists(blobDir))) return undefined;
  const [live, next] = await Promise.all([treeFiles(blobDir), treeFiles(newBlobs)]);
  const same = (await readLayout(blobDir)).layout === (await readLayout(newBlobs)).layout;
  if (!same || ![...next].every(([rel, size]) => rel === LAYOUT_FILE || live.get(rel) === undefined || live.get(rel) === size)) return undefined;
  const merge: BlobMerge = { live, next };
  if (keepOld) {
    merge.keep = tempPath(blobDir, 'keep');
    try {
      await linkTree(blobDir, merge.keep, live, modes.dir);
    } catch (e) {
      await fileLayer.rm(merge.keep, { recursive: true, force: true });
      throw e;
    }
  }
  return merge;
}
