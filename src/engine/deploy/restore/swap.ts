/**
 * Putting a staged restore in place. Full: at every moment Data.fs is the
 * whole old or the whole new file, and the blob folder holds every file of
 * the Data.fs beside it: the new blob files go in first (no record of the
 * live Data.fs names them), Data.fs is replaced by one rename, then the files
 * only the old state had go. The replaced state is kept aside by
 * base/keep.ts. Incremental: the missing pieces are appended with the first
 * appended transaction voted ('c'), flipped to its real status last.
 */

import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { PloneBackupError } from '../../base/errors';
import { copyToTemp, exists, fileLayer, fsyncDir, isRegularFile, writeAll, type Modes } from '../../base/io';
import { dropKept, keepBuilt, keepDataFs, moveAside } from '../../base/keep';
import { readPiece } from '../../base/streams';
import { BLOB_TMP_DIR } from '../../zodb/blobdir';
import { indexName } from '../../repozo/repository';
import { indexPos } from './checks';
import type { Settled, StoragePlan } from './plan';

/** A full restore built beside the live files (stage.ts). */
export interface BuiltFull {
  plan: StoragePlan;
  /** The work folder holding the new Data.fs (and its index). */
  work: string;
  /** The new Data.fs; undefined when only the blobstorage is restored (only_blobs). */
  newFile?: string;
  /** The new blob tree, beside the live one. */
  newBlobs?: string;
  /** Set when the new blob files join the live tree in place. */
  merge?: BlobMerge;
  modes: Modes;
}

/** Both trees' files (relative path → size); `keep`: the live tree as hard links, to keep aside. */
export interface BlobMerge {
  live: Map<string, number>;
  next: Map<string, number>;
  keep?: string;
}

/** Swaps a built full restore in; returns what was kept aside. */
export async function swapFull(b: BuiltFull, stamp: string, keepOld: boolean): Promise<string[]> {
  const s = b.plan.storage;
  let newBlobs = b.newBlobs;
  if (s.blobDir && newBlobs && b.merge) await addNewBlobFiles(s.blobDir, newBlobs, b.merge, b.modes);
  else if (s.blobDir && newBlobs && !(await exists(s.blobDir))) {
    await fileLayer.rename(newBlobs, s.blobDir);
    newBlobs = undefined;
  }
  const kept: string[] = [];
  if (b.newFile) {
    kept.push(...(await keepDataFs(s.file, stamp)));
    await fileLayer.rename(b.newFile, s.file);
    if (await exists(`${b.newFile}.index`)) await fileLayer.rename(`${b.newFile}.index`, `${s.file}.index`);
    await fsyncDir(path.dirname(s.file));
  }
  if (s.blobDir && newBlobs && b.merge) {
    await removeOldBlobFiles(s.blobDir, b.merge);
    if (b.merge.keep) kept.push(await keepBuilt(s.blobDir, b.merge.keep, stamp));
    await fileLayer.rm(newBlobs, { recursive: true, force: true });
  } else if (s.blobDir && newBlobs) {
    // Another layout, or files that differ: the old way, folder for folder.
    const aside = await moveAside(s.blobDir, stamp);
    if (aside) kept.push(aside);
    await fileLayer.rename(newBlobs, s.blobDir);
  }
  await fileLayer.rm(b.work, { recursive: true, force: true });
  await fsyncDir(path.dirname(s.file));
  if (s.blobDir) await fsyncDir(path.dirname(s.blobDir));
  if (keepOld) return kept;
  await dropKept(kept);
  return [];
}

/** The new state's blob files the live tree lacks, moved in. */
async function addNewBlobFiles(blobDir: string, newBlobs: string, merge: BlobMerge, modes: Modes): Promise<void> {
  for (const rel of merge.next.keys()) {
    if (merge.live.has(rel)) continue;
    await fileLayer.mkdir(path.dirname(path.join(blobDir, rel)), { recursive: true, mode: modes.dir });
    await fileLayer.rename(path.join(newBlobs, rel), path.join(blobDir, rel));
  }
}

/** The files only the old state had, and the folders they leave empty. */
async function removeOldBlobFiles(blobDir: string, merge: BlobMerge): Promise<void> {
  for (const rel of merge.live.keys()) {
    if (merge.next.has(rel)) continue;
    await fileLayer.rm(path.join(blobDir, rel), { force: true });
    for (let d = path.dirname(rel); d !== '.' && d !== BLOB_TMP_DIR; d = path.dirname(d)) {
      if (
        !(await fileLayer.rmdir(path.join(blobDir, d)).then(
          () => true,
          () => false,
        ))
      )
        break;
    }
  }
}

/**
 * Appends the pieces after `plan.appendAfter` to the live Data.fs. The first
 * appended transaction is written with status 'c' (voted, not committed, as
 * ZODB's tpc_vote leaves it) and flipped to its real status only once
 * everything is written and synced: a crash before that leaves the old state,
 * with a tail ZODB cuts off; the old index stays valid for it. Returns the
 * bytes appended.
 */
export async function appendPieces(p: StoragePlan, opts: Settled): Promise<number> {
  if (p.source.type !== 'repository') throw new Error('appendPieces: not a repository source');
  const repo = p.source.repo;
  const file = p.storage.file;
  const oldEnd = p.lines[p.appendAfter!]!.end;
  const statusPos = oldEnd + 16;
  let status: number | undefined;
  let written = 0;
  const fh = await fileLayer.open(file, 'r+');
  try {
    let pos = oldEnd;
    for (let i = p.appendAfter! + 1; i < p.chain.length; i++) {
      const f = p.chain[i]!;
      const l = p.lines[i]!;
      const h = createHash('md5');
      for await (const piece of readPiece(path.join(repo, f.name), f.gzip, opts.signal)) {
        h.update(piece);
        let c = piece;
        if (status === undefined && statusPos >= pos && statusPos < pos + c.length) {
          status = c[statusPos - pos];
          c = Buffer.from(c);
          c[statusPos - pos] = 0x63; // 'c'
        }
        await writeAll(fh, c, pos, file);
        pos += c.length;
        written += c.length;
        opts.onProgress?.({ phase: `appending ${f.name}`, done: written });
      }
      if (h.digest('hex') !== l.md5 || pos !== l.end) {
        throw new PloneBackupError('PIECE_MISMATCH', `${f.name} does not match its .dat line; the restore was undone.`, { path: path.join(repo, f.name) });
      }
    }
    await fh.sync();
    // The commit: one byte.
    if (status !== undefined) {
      await writeAll(fh, Buffer.from([status]), statusPos, file);
      await fh.sync();
    }
  } catch (e) {
    // Whatever failed (a piece, a full disk), the appended tail goes again.
    await fh.truncate(oldEnd).catch(() => undefined);
    throw e;
  } finally {
    await fh.close();
  }
  return written;
}

/**
 * The index of the restored state, copied beside Data.fs (as readable as
 * Data.fs, fsynced) before anything is appended, so that putting it in place
 * after the commit is a rename, which a full disk cannot fail. Undefined: no
 * index in the repository, or (`onlyIfStale`) the live one already describes
 * the state (a restore killed between its commit and its index left the old one).
 */
export async function stageIndex(p: StoragePlan, modes: Modes, onlyIfStale: boolean): Promise<string | undefined> {
  if (p.source.type !== 'repository') return undefined;
  const index = `${p.storage.file}.index`;
  const src = path.join(p.source.repo, indexName(p.stamp!));
  if (onlyIfStale && (await indexPos(index)) === p.lines[p.lines.length - 1]!.end) return undefined;
  return (await isRegularFile(src)) ? copyToTemp(src, index, modes.file) : undefined;
}

/** Puts the staged index in place; without one, an incremental restore removes the index of the old end. */
export async function placeIndex(p: StoragePlan, staged: string | undefined): Promise<void> {
  const index = `${p.storage.file}.index`;
  if (staged) await fileLayer.rename(staged, index);
  else if (p.mode === 'incremental') await fileLayer.rm(index, { force: true });
  else return;
  await fsyncDir(path.dirname(p.storage.file));
}
