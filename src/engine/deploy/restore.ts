/**
 * Restoring a deployment to a point in time: for every storage, the
 * filestorage chain as of the date and the blob generation that belongs to
 * its last piece.
 *
 * Full restore: Data.fs (with its index) and the blobstorage are built beside
 * the live ones, for every storage, and only then swapped in; the previous
 * state is moved aside (`<name>.before-restore-<stamp>`), or removed when the
 * caller says so.
 *
 * Incremental restore: when the live Data.fs ends exactly where a piece of the
 * wanted chain ends and its last bytes are that piece's, only the missing
 * pieces are appended and only the missing blob files are added: blobs first,
 * then the records, as ZODB commits, so a crash leaves at worst a torn tail
 * that ZODB cuts off. Refreshing a dev database costs what changed.
 *
 * Throughout, we hold ZODB's own lock on Data.fs.lock (site.ts): a Zope
 * started meanwhile refuses to open the storage rather than open it half
 * restored.
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { PloneBackupError, checkAbort, toPloneBackupError } from '../base/errors';
import { recover } from '../repozo/recover';
import { loadPickle } from '../zodb/pickle';
import { FileWindow, TxnScanner, openFileStorage, txnEndingAt } from '../zodb/filestorage';
import { BlobCollector, scanBlobRefs } from '../zodb/blobrefs';
import type { FileHandle } from 'node:fs/promises';
import { acquireLock, removeDeadTemps, type Lock } from '../base/lock';
import { readLayout, listBlobFiles, blobRelPath, eachAtMost, notABlobFile, statBlobFiles, LAYOUT_FILE, BLOB_TMP_DIR } from '../zodb/blobdir';
import { findChain, listRepository, readDat, datLinesFor, datName, indexName, type DatLine, type RepoFile } from '../repozo/repository';
import { readPiece } from '../base/streams';
import { copyRegularFile, exists, fsyncDir, isRegularFile, modesFrom, modesOf, openRegular, tempPath, writeAll, type Modes } from '../base/io';
import { formatStamp } from '../zodb/tid';
import type { OperationOptions } from '../base/progress';
import { generationFiles, listGenerations, makeDirs, readManifestHead, type Generation } from './blobgen';
import { extractTar } from '../archive/tar';
import { lockSite, siteRunning, type SiteLock } from './site';
import { KINDS, foldersFor, type Kind } from './kinds';
import type { Deployment, StorageConfig } from './deployment';

export interface RestoreOptions extends OperationOptions {
  kind?: Kind;
  /** Normalised repozo date (yyyy-mm-dd[-hh[-mm[-ss]]], UTC); undefined: the newest. */
  date?: string;
  /** Restore even though the site holds its lock. */
  force?: boolean;
  /** Restore with a blob generation not made with the state even when it lacks files the state needs. */
  allowMissingBlobs?: boolean;
  /** Keep the replaced state aside (default true). */
  keepOld?: boolean;
  /** How blob files get into the restored blobstorage: hard links to the backup (default) or copies. */
  blobMode?: 'link' | 'copy';
  /** Try the incremental restore (default true). */
  incremental?: boolean;
  /** Restore from other folders (altrestore). */
  source?: (s: StorageConfig) => RestoreSource | Promise<RestoreSource>;
  lockWaitMs?: number;
  now?: () => Date;
}

export type RestoreSource =
  | { type: 'repository'; repo: string; blobs?: string }
  | { type: 'copy'; file: string; blobDir?: string };

export interface StoragePlan {
  storage: StorageConfig;
  source: RestoreSource;
  /** The state restored: the stamp of the last piece (repository sources). */
  stamp?: string;
  chain: RepoFile[];
  lines: (DatLine | undefined)[];
  generation?: Generation;
  /** Set when the blob generation is not the one made with the last piece. */
  mismatch?: string;
  /** The piece index after which the live Data.fs continues, for an incremental restore. */
  appendAfter?: number;
  /** The blob generation made with that piece (the state the live site is in), when there is one. */
  baseGeneration?: Generation;
  mode: 'full' | 'incremental' | 'unchanged';
}

export interface StorageRestoreResult {
  storage: string;
  mode: StoragePlan['mode'];
  stamp?: string;
  bytesWritten: number;
  blobFilesAdded: number;
  generation?: string;
  keptOld: string[];
  warnings: string[];
}

/** Works out what a restore would do, without changing anything (for the confirmation). */
export async function planRestore(dep: Deployment, opts: RestoreOptions = {}): Promise<StoragePlan[]> {
  const plans: StoragePlan[] = [];
  for (const s of dep.storages) plans.push(await planStorage(s, opts));
  return plans;
}

async function planStorage(s: StorageConfig, opts: RestoreOptions): Promise<StoragePlan> {
  const kind = opts.kind ?? 'backup';
  const f = foldersFor(s, kind);
  const source: RestoreSource = (await opts.source?.(s)) ?? { type: 'repository', repo: f.repo, blobs: s.blobDir ? f.blobs : undefined };
  if (source.type === 'copy') {
    if (!(await exists(source.file))) {
      throw new PloneBackupError('NOT_FOUND', `There is no ${path.basename(source.file)} in ${path.dirname(source.file)} to restore from.`, { path: source.file });
    }
    // Another site's live files: while that site runs they change under the copy.
    const running = opts.force ? undefined : await siteRunning(source.file);
    if (running) {
      throw new PloneBackupError('SITE_RUNNING', `The site being restored from is running: ${running.lockFile} is held${running.pid ? ` by process ${running.pid}` : ''}; nothing was restored.`, {
        path: running.lockFile,
        hint: 'Restore from its backups (point altrestore at a folder with backups/), stop that site, or pass --force.',
      });
    }
    const generation: Generation | undefined = source.blobDir && (await exists(source.blobDir)) ? { name: path.basename(source.blobDir), path: source.blobDir, kind: 'dir', content: source.blobDir } : undefined;
    if (s.blobDir && !generation) {
      throw new PloneBackupError('NOT_FOUND', `There is no blobstorage beside ${source.file} to restore ${s.name}'s blobs from.`, { path: path.dirname(source.file) });
    }
    return { storage: s, source, chain: [], lines: [], generation, mode: 'full' };
  }
  const what = KINDS[kind].noun;
  const make = KINDS[kind].makeCommand;
  let files: RepoFile[];
  try {
    ({ files } = await listRepository(source.repo));
  } catch (e) {
    if (!PloneBackupError.is(e, 'REPO_MISSING')) throw e;
    throw new PloneBackupError('NO_BACKUPS', `There is no ${what} of ${s.name}: ${source.repo} does not exist.`, {
      path: source.repo,
      hint: `Make one first with \`plone-backup ${make}\`.`,
    });
  }
  // No date: the newest backup, even one whose stamp is ahead of the clock
  // (backups in the same second take the next free stamp).
  const chain = findChain(files, opts.date);
  if (chain.length === 0) {
    throw new PloneBackupError('NO_BACKUPS', opts.date ? `There is no ${what} of ${s.name} in ${source.repo} from before ${opts.date}.` : `There is no ${what} of ${s.name} in ${source.repo}.`, {
      path: source.repo,
      hint: opts.date ? 'Pick a later date; `plone-backup list` shows the backups there are.' : `Make one first with \`plone-backup ${make}\`.`,
    });
  }
  const lines = await readDat(path.join(source.repo, datName(chain[0].stamp)));
  const regs = lines ? datLinesFor(chain, lines) : chain.map(() => undefined);
  const stamp = chain[chain.length - 1].stamp;
  const plan: StoragePlan = { storage: s, source, stamp, chain, lines: regs, mode: 'full' };
  let gens: Generation[] = [];
  if (s.blobDir) {
    gens = source.blobs ? await listGenerations(source.blobs, path.basename(s.blobDir)) : [];
    let g = gens.find((x) => x.stamp === stamp);
    if (!g) {
      const older = gens.filter((x) => x.stamp !== undefined && x.stamp <= stamp);
      g = older.at(-1) ?? (opts.date === undefined ? gens.find((x) => x.number === 0) : undefined);
      if (g) plan.mismatch = `the blob backup ${g.name} was not made with the filestorage backup ${stamp}; some blobs may be missing or extra`;
    }
    if (!g) {
      throw new PloneBackupError('NOT_FOUND', `There is no blob backup for ${s.name} at ${stamp} in ${source.blobs}.`, {
        path: source.blobs,
        hint: 'Without it the restored site would miss blob files; restore an earlier date that has one (`plone-backup list`).',
      });
    }
    plan.generation = g;
  }
  if (opts.incremental !== false) await planIncremental(plan, gens);
  return plan;
}

/** Marks the plan incremental when the live Data.fs is a prefix of the wanted state ending at a piece boundary. */
async function planIncremental(plan: StoragePlan, gens: Generation[]): Promise<void> {
  const file = plan.storage.file;
  if (plan.source.type !== 'repository' || plan.lines.some((l) => !l)) return;
  // The live blob files are trusted to be there: not when their folder is gone.
  if (plan.storage.blobDir && plan.generation && !(await exists(plan.storage.blobDir))) return;
  let fh;
  try {
    fh = await fsp.open(file, 'r');
  } catch {
    return;
  }
  try {
    const size = (await fh.stat()).size;
    const k = plan.lines.findIndex((l) => l!.end === size);
    if (k < 0) return;
    const last = size > 4 ? await txnEndingAt(fh, size, size) : undefined;
    if (size > 4 && !last) return;
    // An incremental restore killed before its commit left its first appended
    // transaction voted ('c') at a piece boundary: that is no committed state.
    for (let j = 0; j < k; j++) {
      const b = Buffer.alloc(1);
      const { bytesRead } = await fh.read(b, 0, 1, plan.lines[j]!.end + 16);
      if (bytesRead === 1 && b[0] === 0x63) return;
    }
    const l = plan.lines[k]!;
    const piece = plan.chain[k];
    const g = gens.find((x) => x.stamp === piece.stamp);
    const m = g && (await readManifestHead(g));
    // The live file must end as the piece ends. The generation made with the
    // piece names the piece's last transaction: when the piece is gzipped, a
    // matching tid at the same end says so without gunzipping what may be the
    // whole database (a full piece) to reach its last bytes.
    if (piece.gzip && m?.lastTid && m.end === l.end && last) {
      if (last.tid.toString('hex') !== m.lastTid) return;
    } else {
      const n = Math.min(64 * 1024, l.end - l.start);
      const live = Buffer.alloc(n);
      await fh.read(live, 0, n, size - n);
      const tail = await pieceTail(path.join(plan.source.repo, piece.name), piece.gzip, l.end - l.start, n);
      if (!tail || !tail.equals(live)) return;
    }
    if (g && m && m.end === l.end) plan.baseGeneration = g;
    plan.appendAfter = k;
    plan.mode = k === plan.chain.length - 1 ? 'unchanged' : 'incremental';
  } finally {
    await fh.close();
  }
}

async function pieceTail(file: string, gzip: boolean, size: number, n: number): Promise<Buffer | undefined> {
  if (!gzip) {
    const fh = await fsp.open(file, 'r').catch(() => undefined);
    if (!fh) return undefined;
    try {
      const b = Buffer.alloc(n);
      const { bytesRead } = await fh.read(b, 0, n, size - n);
      return bytesRead === n ? b : undefined;
    } finally {
      await fh.close();
    }
  }
  let keep = Buffer.alloc(0);
  try {
    for await (const c of readPiece(file, true)) {
      keep = Buffer.concat([keep, c]);
      if (keep.length > n) keep = keep.subarray(keep.length - n);
    }
  } catch {
    return undefined;
  }
  return keep.length === n ? keep : undefined;
}

/** Restores every storage of the deployment as planned. */
export async function restoreDeployment(dep: Deployment, opts: RestoreOptions = {}): Promise<StorageRestoreResult[]> {
  const plans = await planRestore(dep, opts);
  const locks: Lock[] = [];
  const siteLocks: SiteLock[] = [];
  const staged: Staged[] = [];
  try {
    for (const p of plans) {
      // The repository first: a second restore waits here for the first to finish (which lets go of the site last).
      if (p.source.type === 'repository') locks.push(await acquireLock(p.source.repo, { what: 'restore', waitMs: opts.lockWaitMs, signal: opts.signal }));
      // ZODB's own lock, held until the end: a Zope started mid-restore refuses to open the storage (see site.ts).
      const site = await lockSite(p.storage.file);
      siteLocks.push(site);
      if (site.note) opts.log?.(site.note);
      const running = site.running;
      if (running && !opts.force) {
        throw new PloneBackupError('SITE_RUNNING', `The site is running: ${running.lockFile} is held${running.pid ? ` by process ${running.pid}` : ''}; nothing was restored.`, {
          path: running.lockFile,
          hint: 'Stop Zope (or the ZEO server) first, or pass --force if you are sure it is not running.',
        });
      }
    }
    // Nothing but a database is replaced, and blobs go only into a blobstorage.
    for (const p of plans) {
      await assertFileStorage(p.storage.file, 'replaced');
      if (p.storage.blobDir && p.generation) await assertBlobTarget(p.storage.blobDir);
    }
    // What a restore killed before us left beside the live files (its pid is gone).
    for (const p of plans) {
      await removeDeadTemps(path.dirname(p.storage.file));
      if (p.storage.blobDir) await removeDeadTemps(path.dirname(p.storage.blobDir));
    }
    // Build everything first; swap in only when every storage is ready.
    for (const p of plans) staged.push(await stage(p, opts));
    const stampNow = formatStamp((opts.now ?? (() => new Date()))());
    const results: StorageRestoreResult[] = [];
    for (const s of staged) results.push(await s.apply(stampNow, opts.keepOld ?? true));
    return results;
  } catch (e) {
    for (const s of staged) await s.discard().catch(() => undefined);
    // An OS error (a full disk, a permission) reaches callers typed, like ours.
    throw toPloneBackupError(e);
  } finally {
    for (const l of siteLocks) await l.release();
    for (const l of locks) await l.release();
  }
}

interface Staged {
  apply(stamp: string, keepOld: boolean): Promise<StorageRestoreResult>;
  discard(): Promise<void>;
}

/**
 * Puts the regular file `src` at `dst`: a hard link (blob files never change),
 * or a copy. Neither goes through a symbolic link: link(2) would link the link
 * itself (a backup folder's link into the live blobstorage, which the site
 * would then follow and serve), so what landed is checked and removed again
 * if it is not a plain file; a copy reads the file opened without following.
 */
async function linkOrCopy(src: string, dst: string, mode: 'link' | 'copy', maxMode: number): Promise<void> {
  if (mode === 'link') {
    let linked = false;
    try {
      await fsp.link(src, dst);
      linked = true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw e;
    }
    if (linked) {
      const st = await fsp.lstat(dst);
      if (st.isFile()) return;
      await fsp.rm(dst, { force: true });
      throw notABlobFile(src, st.isSymbolicLink() ? 'link' : 'other');
    }
  }
  // EXCL: the destination is a fresh tree, or (incremental) the live blobstorage,
  // where an existing blob file is never overwritten.
  await copyRegularFile(src, dst, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL, notABlobFile, maxMode);
}

/** Puts the generation's blob tree into `dest` (existing files are left as they are). */
async function fillBlobs(g: Generation, dest: string, modes: Modes, mode: 'link' | 'copy', onlyMissing: boolean, signal?: AbortSignal, only?: string[]): Promise<number> {
  await fsp.mkdir(dest, { recursive: true, mode: modes.dir });
  if (g.kind !== 'dir') {
    const tmp = tempPath(path.join(dest, 'x'), 'tar');
    await fsp.mkdir(tmp, { mode: 0o700 });
    try {
      // The blob folder's name: the archive's name without `.<STAMP or N>.tar[.gz]`.
      const base = g.name.replace(/\.tar(\.gz)?$/, '').replace(/\.[^.]*$/, '');
      await extractTar(g.path, tmp, { gzip: g.kind === 'tar.gz', signal, prefix: base, modes });
      return await fillFromTree(tmp, dest, modes, 'link', onlyMissing, signal);
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
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
async function appendedBlobs(p: StoragePlan, signal?: AbortSignal): Promise<string[] | undefined> {
  if (p.mode !== 'incremental' || p.source.type !== 'repository' || p.generation?.kind !== 'dir') return undefined;
  const repo = p.source.repo;
  const oldEnd = p.lines[p.appendAfter!]!.end;
  const newEnd = p.lines[p.lines.length - 1]!.end;
  const tmp = tempPath(p.storage.file, 'scan');
  let out: FileHandle | undefined;
  let live: FileHandle | undefined;
  try {
    out = await fsp.open(tmp, 'wx+');
    let pos = oldEnd;
    for (let i = p.appendAfter! + 1; i < p.chain.length; i++) {
      const f = p.chain[i];
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
    await fsp.rm(tmp, { force: true });
  }
}

async function fillFromTree(src: string, dest: string, modes: Modes, mode: 'link' | 'copy', onlyMissing: boolean, signal?: AbortSignal, gen?: Generation, only?: string[]): Promise<number> {
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
    throw new PloneBackupError('BLOB_MISSING', `The blob backup ${gen?.path ?? src} lacks ${rel}${inSource.missing.length > 1 ? ` and ${inSource.missing.length - 1} more` : ''}, which the restored state needs; nothing was restored.`, {
      path: path.join(src, rel),
      hint: 'Restore another date (`plone-backup list` shows which generations are whole), or run `plone-backup check`.',
    });
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
  if (!(await exists(path.join(dest, LAYOUT_FILE)))) await fsp.writeFile(path.join(dest, LAYOUT_FILE), layout + '\n', { flag: 'wx', mode: modes.file });
  return added;
}

async function stage(p: StoragePlan, opts: RestoreOptions): Promise<Staged> {
  const s = p.storage;
  const mode = opts.blobMode ?? 'link';
  const warnings = p.mismatch ? [p.mismatch] : [];
  const genName = p.generation?.path;

  if (p.mode !== 'full' && p.source.type === 'repository') {
    // Incremental: the missing blob files go into the live blobstorage now (before any
    // storage is changed: files no record references yet are harmless, as in a ZODB
    // commit); the missing records are appended in apply.
    const repo = p.source.repo;
    const modes = await modesFrom(s.file);
    const added = s.blobDir && p.generation ? await fillBlobs(p.generation, s.blobDir, modes, mode, true, opts.signal, await appendedBlobs(p, opts.signal)) : 0;
    return {
      async apply() {
        let written = 0;
        if (p.mode === 'incremental') {
          const index = `${s.file}.index`;
          // The first appended transaction is written with status 'c' (voted, not
          // committed, as ZODB's tpc_vote leaves it) and flipped to its real status
          // only once everything is written and synced: a crash before that leaves
          // the old state, with a tail ZODB cuts off; the old index stays valid for it.
          const oldEnd = p.lines[p.appendAfter!]!.end;
          const statusPos = oldEnd + 16;
          let status: number | undefined;
          const fh = await fsp.open(s.file, 'r+');
          try {
            let pos = oldEnd;
            for (let i = p.appendAfter! + 1; i < p.chain.length; i++) {
              const f = p.chain[i];
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
                await writeAll(fh, c, pos, s.file);
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
              await fh.write(Buffer.from([status]), 0, 1, statusPos);
              await fh.sync();
            }
          } catch (e) {
            // Whatever failed (a piece, a full disk), the appended tail goes again.
            await fh.truncate(oldEnd).catch(() => undefined);
            throw e;
          } finally {
            await fh.close();
          }
          const src = path.join(repo, indexName(p.stamp!));
          if (await isRegularFile(src)) {
            const tmp = tempPath(index);
            await fsp.copyFile(src, tmp);
            await fsp.rename(tmp, index);
          } else await fsp.rm(index, { force: true });
          await fsyncDir(path.dirname(s.file));
        } else if (p.mode === 'unchanged') {
          // A restore killed between its commit and its index leaves the old index behind.
          const index = `${s.file}.index`;
          const src = path.join(repo, indexName(p.stamp!));
          if ((await indexPos(index)) !== p.lines[p.lines.length - 1]!.end && (await isRegularFile(src))) {
            const tmp = tempPath(index);
            await fsp.copyFile(src, tmp);
            await fsp.rename(tmp, index);
            await fsyncDir(path.dirname(s.file));
          }
        }
        return { storage: s.name, mode: p.mode, stamp: p.stamp, bytesWritten: written, blobFilesAdded: added, generation: genName, keptOld: [], warnings };
      },
      async discard() {},
    };
  }

  // Full: build beside the live files, no more readable than the live Data.fs
  // (else than the backup piece, which has its source's mode).
  const lastPiece = p.source.type === 'repository' ? path.join(p.source.repo, p.chain.at(-1)!.name) : p.source.file;
  const fileMode = await fsp.stat(s.file).then((st) => st.mode, () => fsp.stat(lastPiece).then((st) => st.mode, () => 0o600));
  const modes = modesOf(fileMode);
  await fsp.mkdir(path.dirname(s.file), { recursive: true, mode: modes.dir });
  const work = tempPath(s.file, 'restore');
  await fsp.mkdir(work, { mode: 0o700 });
  const newFile = path.join(work, path.basename(s.file));
  let newBlobs: string | undefined;
  let written = 0;
  let added = 0;
  try {
    if (p.source.type === 'repository') {
      // The planned state exactly: the chain ending at the plan's last piece, the one its blob generation belongs to.
      const r = await recover({ repository: p.source.repo, output: newFile, date: p.stamp, keepOld: false, mode: fileMode, signal: opts.signal, onProgress: opts.onProgress, now: opts.now });
      written = r.bytes;
    } else {
      // Another site's Data.fs: a regular file only (a FIFO would block the copy), no more readable than ours.
      const notDb = (f: string) => new PloneBackupError('NOT_FILESTORAGE', `${f} is not a regular file, so not a ZODB FileStorage to restore from.`, { path: f, hint: 'Point altrestore at a folder holding the Data.fs itself.' });
      await copyRegularFile(p.source.file, newFile, fsc.COPYFILE_EXCL, notDb);
      await fsp.chmod(newFile, modes.file);
      written = (await fsp.stat(newFile)).size;
      if (await isRegularFile(`${p.source.file}.index`)) {
        await fsp.copyFile(`${p.source.file}.index`, `${newFile}.index`);
        await fsp.chmod(`${newFile}.index`, modes.file);
      }
    }
    // What replaces a database must be one: pieces whose md5 matches a .dat
    // written by someone else can hold anything.
    await assertFileStorage(newFile, 'written');
    checkAbort(opts.signal);
    if (s.blobDir && p.generation) {
      await fsp.mkdir(path.dirname(s.blobDir), { recursive: true, mode: modes.dir });
      newBlobs = tempPath(s.blobDir, 'restore');
      added = await fillBlobs(p.generation, newBlobs, modes, mode, false, opts.signal);
      // A generation not made with this state (the recipe's numbered folders, or
      // the nearest older one) may lack files the restored Data.fs needs: the site
      // would fail on them. Only then is the restored Data.fs scanned for them.
      if (p.mismatch) {
        const missing = await missingBlobs(newFile, newBlobs, opts.signal);
        if (missing.length && !opts.allowMissingBlobs) {
          throw new PloneBackupError(
            'BLOB_MISSING',
            `The blob backup ${p.generation.path} was not made with ${p.stamp ?? 'this state'} and lacks ${missing.length} blob file${missing.length > 1 ? 's' : ''} the restored Data.fs needs (first: ${missing[0]}); nothing was restored.`,
            { path: p.generation.path, hint: 'Restore a date whose backup has its own blob generation (`plone-backup list`), or pass --allow-missing-blobs to restore it without them.' },
          );
        }
        if (missing.length) warnings.push(`${missing.length} blob file${missing.length > 1 ? 's' : ''} the restored Data.fs needs ${missing.length > 1 ? 'are' : 'is'} missing (restored with --allow-missing-blobs; first: ${missing[0]})`);
      }
    }
  } catch (e) {
    await fsp.rm(work, { recursive: true, force: true });
    if (newBlobs) await fsp.rm(newBlobs, { recursive: true, force: true });
    throw e;
  }
  // Blob files join the live blobstorage in place (see apply) when both trees
  // have one layout and agree on every file they share; the old tree is kept
  // as a tree of hard links.
  let merge: { live: Map<string, number>; next: Map<string, number>; keep?: string } | undefined;
  if (s.blobDir && newBlobs && (await exists(s.blobDir))) {
    try {
      const [live, next] = await Promise.all([treeFiles(s.blobDir), treeFiles(newBlobs)]);
      const same = (await readLayout(s.blobDir)).layout === (await readLayout(newBlobs)).layout;
      if (same && [...next].every(([rel, size]) => rel === LAYOUT_FILE || live.get(rel) === undefined || live.get(rel) === size)) {
        merge = { live, next };
        if (opts.keepOld ?? true) {
          merge.keep = tempPath(s.blobDir, 'keep');
          await linkTree(s.blobDir, merge.keep, live, modes.dir);
        }
      }
    } catch (e) {
      await fsp.rm(work, { recursive: true, force: true });
      await fsp.rm(newBlobs, { recursive: true, force: true });
      if (merge?.keep) await fsp.rm(merge.keep, { recursive: true, force: true });
      throw e;
    }
  }
  return {
    async apply(stampNow, keepOld) {
      const kept: string[] = [];
      const keptName = async (live: string) => {
        let name = `${live}.before-restore-${stampNow}`;
        for (let i = 1; await exists(name); i++) name = `${live}.before-restore-${stampNow}-${i}`;
        return name;
      };
      const aside = async (live: string) => {
        if (!(await exists(live))) return;
        const name = await keptName(live);
        await fsp.rename(live, name);
        kept.push(name);
      };
      // At every moment Data.fs is the whole old or the whole new file, and the
      // blob folder holds every file of the Data.fs beside it: the new blob
      // files go in first (no record of the live Data.fs names them), Data.fs
      // is replaced by one rename, then the files only the old state had go.
      if (s.blobDir && newBlobs && merge) {
        for (const rel of merge.next.keys()) {
          if (merge.live.has(rel)) continue;
          await fsp.mkdir(path.dirname(path.join(s.blobDir, rel)), { recursive: true, mode: modes.dir });
          await fsp.rename(path.join(newBlobs, rel), path.join(s.blobDir, rel));
        }
      } else if (s.blobDir && newBlobs && !(await exists(s.blobDir))) {
        await fsp.rename(newBlobs, s.blobDir);
        newBlobs = undefined;
      }
      await aside(`${s.file}.index`);
      if (await exists(s.file)) {
        const name = await keptName(s.file);
        await fsp.link(s.file, name).catch(async (e) => {
          if (!['EXDEV', 'EPERM', 'ENOTSUP', 'EMLINK'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
          await fsp.copyFile(s.file, name);
        });
        kept.push(name);
      }
      await fsp.rename(newFile, s.file);
      if (await exists(`${newFile}.index`)) await fsp.rename(`${newFile}.index`, `${s.file}.index`);
      await fsyncDir(path.dirname(s.file));
      if (s.blobDir && newBlobs && merge) {
        for (const rel of merge.live.keys()) {
          if (merge.next.has(rel)) continue;
          await fsp.rm(path.join(s.blobDir, rel), { force: true });
          // Folders it leaves empty go too.
          for (let d = path.dirname(rel); d !== '.' && d !== BLOB_TMP_DIR; d = path.dirname(d)) {
            if (!(await fsp.rmdir(path.join(s.blobDir, d)).then(() => true, () => false))) break;
          }
        }
        if (merge.keep) {
          const name = await keptName(s.blobDir);
          await fsp.rename(merge.keep, name);
          kept.push(name);
        }
        await fsp.rm(newBlobs, { recursive: true, force: true });
      } else if (s.blobDir && newBlobs) {
        // Another layout, or files that differ: the old way, folder for folder.
        await aside(s.blobDir);
        await fsp.rename(newBlobs, s.blobDir);
      }
      await fsp.rm(work, { recursive: true, force: true });
      await fsyncDir(path.dirname(s.file));
      if (s.blobDir) await fsyncDir(path.dirname(s.blobDir));
      if (!keepOld) {
        for (const k of kept) await fsp.rm(k, { recursive: true, force: true });
        kept.length = 0;
      }
      return { storage: s.name, mode: 'full', stamp: p.stamp, bytesWritten: written, blobFilesAdded: added, generation: genName, keptOld: kept, warnings };
    },
    async discard() {
      await fsp.rm(work, { recursive: true, force: true });
      if (newBlobs) await fsp.rm(newBlobs, { recursive: true, force: true });
      if (merge?.keep) await fsp.rm(merge.keep, { recursive: true, force: true });
    },
  };
}

/**
 * Refuses to put anything but a FileStorage at a database's path, or to
 * replace anything but one: a configuration may point `file` at any file of
 * the user's (~/.bashrc), and a backup folder may hold anything whose md5
 * matches its own .dat. Checks the FS21/FS30 magic of a regular file.
 */
async function assertFileStorage(file: string, role: 'written' | 'replaced'): Promise<void> {
  let fh;
  try {
    fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    if (role === 'replaced' && (e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    const st = await fh.stat();
    const head = Buffer.alloc(4);
    const { bytesRead } = st.isFile() ? await fh.read(head, 0, 4, 0) : { bytesRead: 0 };
    const magic = head.toString('latin1', 0, bytesRead);
    if (magic === 'FS21' || magic === 'FS30') return;
    throw role === 'written'
      ? new PloneBackupError('NOT_FILESTORAGE', `The restored ${path.basename(file)} is not a ZODB FileStorage (no FS21/FS30 magic); nothing was restored.`, {
          path: file,
          position: 0,
          hint: 'The backup folder holds something else than backups; check where it comes from.',
        })
      : new PloneBackupError('UNSAFE', `${file} is not a ZODB FileStorage (no FS21/FS30 magic), so a restore will not replace it; nothing was restored.`, {
          path: file,
          position: 0,
          hint: 'Check the storage paths (plone-backup.json, zope.conf, --file); move the file away if it really is to be replaced.',
        });
  } finally {
    await fh.close();
  }
}

/**
 * Refuses to restore blobs into a folder that is no blobstorage: a
 * configuration's `blobDir` may name ~/.ssh. A blobstorage has `.layout`, or
 * only ZODB's own names (0x.. folders, tmp), or nothing yet.
 */
async function assertBlobTarget(dir: string): Promise<void> {
  let names: string[];
  try {
    if (!(await fsp.stat(dir)).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    if ((await fsp.lstat(path.join(dir, LAYOUT_FILE)).catch(() => undefined))?.isFile()) return;
    names = await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'ENOTDIR') throw e;
    names = ['(a file)'];
  }
  const foreign = names.filter((n) => n !== BLOB_TMP_DIR && !/^0x[0-9a-f]{2,16}$/.test(n));
  if (foreign.length === 0) return;
  throw new PloneBackupError('UNSAFE', `${dir} does not look like a blobstorage (no ${LAYOUT_FILE}, and it holds ${foreign[0]}), so a restore will not write into it; nothing was restored.`, {
    path: dir,
    hint: 'Check the blob folder in plone-backup.json, zope.conf or --blob-dir.',
  });
}

/** The blob files (relative paths) the Data.fs `file` needs that the blob tree `blobDir` lacks. */
async function missingBlobs(file: string, blobDir: string, signal?: AbortSignal): Promise<string[]> {
  const { layout } = await readLayout(blobDir);
  const st = await openFileStorage(file);
  let refs;
  try {
    refs = (await scanBlobRefs(st, 4, st.size, signal)).refs;
  } finally {
    await st.fh.close();
  }
  return (await statBlobFiles(blobDir, refs.map((r) => blobRelPath(r.oid, r.tid, layout)), signal)).missing;
}

/** The committed end an index file describes (its first pickle), or undefined. */
async function indexPos(file: string): Promise<number | undefined> {
  try {
    const fh = await openRegular(file);
    try {
      const b = Buffer.alloc(32);
      const { bytesRead } = await fh.read(b, 0, 32, 0);
      const v = loadPickle(b.subarray(0, bytesRead), 0, file).value;
      return typeof v === 'number' ? v : undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

/** Every file under `root` (relative, '/' separators) with its size. */
async function treeFiles(root: string): Promise<Map<string, number>> {
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
async function linkTree(src: string, dest: string, files: Map<string, number>, dirMode: number): Promise<void> {
  await fsp.mkdir(dest, { recursive: true, mode: dirMode });
  const dirs = new Set<string>();
  for (const rel of files.keys()) dirs.add(path.posix.dirname(rel));
  for (const d of [...dirs].sort()) await fsp.mkdir(path.join(dest, d), { recursive: true, mode: dirMode });
  await eachAtMost([...files.keys()], 16, (rel) => linkOrCopy(path.join(src, rel), path.join(dest, rel), 'link', 0o777));
}

/** altrestore's sources: a folder holding Data.fs (+ blobstorage), or a var folder / repository of another deployment. */
export async function altSource(sourceDir: string, s: StorageConfig): Promise<RestoreSource> {
  const src = path.resolve(sourceDir);
  const fsName = path.basename(s.file);
  const sfx = s.name === 'main' ? '' : `_${s.name}`;
  // Backups first, as the recipe's altrestore: they are consistent states by
  // construction, while another site's live Data.fs and blobstorage may be in
  // motion (that site may be running) and agree with each other only by luck.
  const repo = path.join(src, `backups${sfx}`);
  if ((await listRepository(repo).catch(() => ({ files: [] }))).files.length) {
    return { type: 'repository', repo, blobs: path.join(src, `blobstoragebackups${sfx}`) };
  }
  for (const cand of [path.join(src, fsName), path.join(src, 'filestorage', fsName)]) {
    if (await exists(cand)) {
      const blobBase = s.blobDir ? path.basename(s.blobDir) : undefined;
      const blobCands = blobBase ? [path.join(path.dirname(cand), blobBase), path.join(src, blobBase)] : [];
      let blobDir: string | undefined;
      for (const b of blobCands) if (await exists(b)) blobDir = b;
      return { type: 'copy', file: cand, blobDir };
    }
  }
  const { files } = await listRepository(src);
  if (files.length) return { type: 'repository', repo: src, blobs: path.join(path.dirname(src), `blobstoragebackups${sfx}`) };
  throw new PloneBackupError('NOT_FOUND', `${src} holds neither a ${fsName} nor backups to restore from.`, {
    path: src,
    hint: 'Point altrestore at a folder with Data.fs and blobstorage, or at a var folder with backups/.',
  });
}
