/**
 * Blob files into a restored (or, incremental, the live) blobstorage: hard
 * links into the backup generation (ZODB never changes a committed blob
 * file) or copies, never through a link; which files an incremental restore
 * needs; which files a restored Data.fs misses. Every change through fileLayer.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { PloneBackupError } from '../../base/errors';
import { copyRegularFile, exists, fileLayer, linkRegularFile, tempPath, writeAll, writeNewFile, type Modes } from '../../base/io';
import { readPiece } from '../../base/streams';
import { FileWindow, TxnScanner, openFileStorage } from '../../zodb/filestorage';
import { BlobCollector, scanBlobRefs } from '../../zodb/blobrefs';
import { readLayout, listBlobFiles, blobRelPath, eachAtMost, notABlobFile, statBlobFiles, LAYOUT_FILE } from '../../zodb/blobdir';
import { extractTar } from '../../archive/tar';
import { extractIncremental } from '../../archive/incremental';
import { makeDirs, type Generation } from '../blobgen';
import { generationFiles } from '../blobpool';
import type { StoragePlan } from './plan';

/**
 * Puts the regular file `src` at `dst`: a hard link (blob files never change),
 * or a copy. Neither goes through a symbolic link: link(2) would link the link
 * itself (a backup folder's link into the live blobstorage, which the site
 * would then follow and serve), so what landed is checked and removed again
 * if it is not a plain file; a copy reads the file opened without following.
 */
async function linkOrCopy(src: string, dst: string, mode: 'link' | 'copy', maxMode: number): Promise<void> {
  if (mode === 'link') {
    let r;
    try {
      r = await linkRegularFile(src, dst);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
    }
    if (r && 'st' in r) return;
    if (r) throw notABlobFile(src, r.landed);
  }
  // EXCL: the destination is a fresh tree, or (incremental) the live blobstorage,
  // where an existing blob file is never overwritten.
  await copyRegularFile(src, dst, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL, notABlobFile, maxMode);
}

/** Puts the generation's blob tree into `dest` (existing files are left as they are). */
export async function fillBlobs(g: Generation, dest: string, modes: Modes, mode: 'link' | 'copy', onlyMissing: boolean, signal?: AbortSignal, only?: string[]): Promise<number> {
  await fileLayer.mkdir(dest, { recursive: true, mode: modes.dir });
  if (g.kind !== 'dir' && g.kind !== 'pool') {
    const tmp = tempPath(path.join(dest, 'x'), 'tar');
    await fileLayer.mkdir(tmp, { mode: 0o700 });
    try {
      if (g.delta || (g.archives && g.archives.length > 1)) {
        // An incremental_blobs state: the full archive, then every delta up to this
        // one, with the deletions their directory listings record (as the recipe's
        // `tar xf --incremental`, one after the other).
        if (!g.archives?.length) {
          throw new PloneBackupError('ARCHIVE_BAD', `${g.path} is a delta whose full archive (with its .snar) is not in ${path.dirname(g.path)}; it restores nothing.`, {
            path: g.path,
            hint: 'Restore a date whose chain is complete (`plone-backup list`).',
          });
        }
        await fileLayer.rm(tmp, { recursive: true, force: true });
        await extractIncremental(g.archives, tmp, { signal, modes });
      } else {
        // The blob folder's name: the archive's name without `.<STAMP or N>.tar[.gz]`.
        const base = g.name.replace(/\.tar(\.gz)?$/, '').replace(/\.[^.]*$/, '');
        await extractTar(g.path, tmp, { gzip: g.kind === 'tar.gz', signal, prefix: base, modes });
      }
      return await fillFromTree(tmp, dest, modes, 'link', onlyMissing, signal);
    } finally {
      await fileLayer.rm(tmp, { recursive: true, force: true });
    }
  }
  return fillFromTree(g.content!, dest, modes, mode, onlyMissing, signal, g, only);
}

/**
 * The blob files the pieces an incremental restore appends need: the blob
 * records of the appended transactions, and their undo records that point
 * at blob records (ZODB gives an undo its own file). Each is a new (oid, tid),
 * so the live state cannot have it; the files of the live state are trusted
 * to be there, as the running site trusts them (`check` verifies that). The
 * appended bytes are unpacked into a sparse temp file at their place in
 * Data.fs, since records carry absolute positions, and scanned; back pointers
 * into the live part are resolved against the live file. This costs what
 * changed, not the size of the database. Undefined when the pieces cannot be
 * scanned (the append then fails on them anyway): every file of the
 * generation is looked for instead.
 */
export async function appendedBlobs(p: StoragePlan, signal?: AbortSignal): Promise<string[] | undefined> {
  if (p.mode !== 'incremental' || p.source.type !== 'repository' || (p.generation?.kind !== 'dir' && p.generation?.kind !== 'pool')) return undefined;
  const repo = p.source.repo;
  const oldEnd = p.lines[p.appendAfter!]!.end;
  const newEnd = p.lines[p.lines.length - 1]!.end;
  const tmp = tempPath(p.storage.file, 'scan');
  let out: FileHandle | undefined;
  let live: FileHandle | undefined;
  try {
    out = await fileLayer.open(tmp, 'wx+');
    let pos = oldEnd;
    for (let i = p.appendAfter! + 1; i < p.chain.length; i++) {
      const f = p.chain[i]!;
      for await (const c of readPiece(path.join(repo, f.name), f.gzip, signal)) {
        await writeAll(out, c, pos, tmp);
        pos += c.length;
      }
    }
    if (pos !== newEnd) return undefined;
    const collector = new BlobCollector();
    const w = new FileWindow(out, oldEnd, newEnd, { signal });
    const scanner = new TxnScanner(w, tmp, oldEnd, { fileSize: newEnd });
    try {
      await scanner.run((t) => t.records.forEach((r) => collector.add(r)), signal);
    } finally {
      await w.settle();
    }
    if (scanner.end !== newEnd) return undefined;
    live = await fsp.open(p.storage.file, 'r');
    const refs = await collector.finish({ fh: live, size: oldEnd }, oldEnd);
    const { layout } = await readLayout(p.generation.content!);
    return refs.map((r) => blobRelPath(r.oid, r.tid, layout));
  } catch (e) {
    if (signal?.aborted) throw e;
    return undefined;
  } finally {
    await out?.close();
    await live?.close();
    await fileLayer.rm(tmp, { force: true });
  }
}

export async function fillFromTree(
  src: string,
  dest: string,
  modes: Modes,
  mode: 'link' | 'copy',
  onlyMissing: boolean,
  signal?: AbortSignal,
  gen?: Generation,
  only?: string[],
): Promise<number> {
  const { layout } = await readLayout(src);
  // From a manifest (checked: blob paths of its layout only, so inside `src`
  // and `dest`), or from a walk that takes no link for a file.
  let files = only ?? (gen ? [...(await generationFiles(gen, layout)).keys()] : (await listBlobFiles(src, layout)).files.map((f) => f.rel));
  // Every source looked up first, no link followed on the way: a link or a
  // device in the backup folder (not written by us) fails the restore before
  // anything is changed, as does a missing file.
  const inSource = await statBlobFiles(src, files, signal);
  if (inSource.missing.length) {
    const rel = inSource.missing[0]!;
    throw new PloneBackupError(
      'BLOB_MISSING',
      `The blob backup ${gen?.path ?? src} lacks ${rel}${inSource.missing.length > 1 ? ` and ${inSource.missing.length - 1} more` : ''}, which the restored state needs; nothing was restored.`,
      {
        path: path.join(src, rel),
        hint: 'Restore another date (`plone-backup list` shows which generations are whole), or run `plone-backup check`.',
      },
    );
  }
  if (onlyMissing) {
    // Existing files are left as they are: only the missing ones (and their folders) are made.
    const missing = new Set((await statBlobFiles(dest, files, signal)).missing);
    files = files.filter((rel) => missing.has(rel));
  }
  // Folders first, once each, a level at a time in parallel (one awaited mkdir -p
  // per file was most of a full restore's time: 20,000 round trips).
  await makeDirs(dest, files, modes.dir);
  let added = 0;
  await eachAtMost(
    files,
    16,
    async (rel) => {
      await linkOrCopy(path.join(src, rel), path.join(dest, rel), mode, modes.file);
      added++;
    },
    signal,
  );
  if (!(await exists(path.join(dest, LAYOUT_FILE)))) await writeNewFile(path.join(dest, LAYOUT_FILE), layout + '\n', modes.file);
  return added;
}

/** The blob files (relative paths) the Data.fs `file` needs that the blob tree `blobDir` lacks. */
export async function missingBlobs(file: string, blobDir: string, signal?: AbortSignal): Promise<string[]> {
  const { layout } = await readLayout(blobDir);
  const st = await openFileStorage(file);
  let refs;
  try {
    refs = (await scanBlobRefs(st, 4, st.size, signal)).refs;
  } finally {
    await st.fh.close();
  }
  return (
    await statBlobFiles(
      blobDir,
      refs.map((r) => blobRelPath(r.oid, r.tid, layout)),
      signal,
    )
  ).missing;
}

/** Every file under `root` (relative, '/' separators) with its size. */
export async function treeFiles(root: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const ent of await fsp.readdir(dir, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (ent.isDirectory()) await walk(path.join(dir, ent.name), r);
      else out.set(r, (await fsp.lstat(path.join(dir, ent.name))).size);
    }
  };
  await walk(root, '');
  return out;
}

/** A copy of the tree `src` at `dest` made of hard links (copies where links are refused). */
export async function linkTree(src: string, dest: string, files: Map<string, number>, dirMode: number): Promise<void> {
  await fileLayer.mkdir(dest, { recursive: true, mode: dirMode });
  const dirs = new Set<string>();
  for (const rel of files.keys()) dirs.add(path.posix.dirname(rel));
  for (const d of [...dirs].sort()) await fileLayer.mkdir(path.join(dest, d), { recursive: true, mode: dirMode });
  await eachAtMost([...files.keys()], 16, (rel) => linkOrCopy(path.join(src, rel), path.join(dest, rel), 'link', 0o777));
}
