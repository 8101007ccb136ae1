/**
 * repozo -B: a full or incremental backup of a live Data.fs into a repozo
 * repository, byte-compatible with repozo's, with its flaws fixed:
 *
 * - the committed end is measured on the same open descriptor the bytes are
 *   copied from, in the same single pass that hashes and writes them (a pack
 *   that renames a new Data.fs into place meanwhile cannot mix two files);
 * - stamps never collide: a backup in the same second as the newest file
 *   takes the next free second;
 * - the repository is locked while written; temp files have unique names;
 * - every file is written to a temp name, fsynced and renamed; the .dat is
 *   replaced atomically, never appended in place;
 * - leftovers of a killed run are cleaned up by the next run.
 */

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { PloneBackupError, checkAbort, toPloneBackupError } from '../base/errors';
import { openFileStorage, scanRange, txnEndingAt, type OpenedStorage, type TxnInfo } from '../zodb/filestorage';
import { BlobCollector, type BlobRef } from '../zodb/blobrefs';
import { scanRecords } from '../zodb/recordscan';
import { scanIndex } from '../zodb/indexscan';
import { FsIndex, readIndexFile, writeIndexFile } from '../zodb/fsindex';
import { loadStorageIndex, storageIndexPath } from '../zodb/storageindex';
import { fileLayer, fsyncDir, HashingFileWriter, isTempName, modesOf, writeFileAtomic } from '../base/io';
import { acquireLock, isPrivateFolder, removeOwnEntry } from '../base/lock';
import type { OperationOptions } from '../base/progress';
import {
  type DatLine,
  type RepoFile,
  datLinesFor,
  datName,
  findChain,
  formatDatLine,
  indexName,
  listRepository,
  parseDataFileName,
  pieceFileName,
  pyJoin,
  readDat,
  readDatText,
} from './repository';
import { ByteReader, readPiece, readRange } from '../base/streams';
import { DEFAULT_COMPRESS_LEVEL, MAX_COMPRESS_LEVEL, MIN_COMPRESS_LEVEL, isCompressLevel } from '../base/gzip';
import { formatStamp, nextStamp } from '../zodb/tid';

export interface BackupOptions extends OperationOptions {
  /** The Data.fs to back up (-f). */
  file: string;
  /** The repository folder (-r); it must exist. */
  repository: string;
  /** Force a full backup (-F). */
  full?: boolean;
  /** Decide from the .dat only (-Q). */
  quick?: boolean;
  /** gzip the pieces (-z). */
  gzip?: boolean;
  /** The gzip level, 1 to 9 (DEFAULT_COMPRESS_LEVEL when not given). */
  compressLevel?: number;
  /** After a full backup, remove older pieces (-k). */
  killOld?: boolean;
  /** The clock (tests). */
  now?: () => Date;
  /** How long to wait for another run's lock. */
  lockWaitMs?: number;
  /**
   * How the repository prefix is written into .dat lines. repozo writes its -r
   * argument as given; default: the repository path as passed.
   */
  datPrefix?: string;
}

export type BackupAction = 'full' | 'incremental' | 'none';

export interface BackupResult {
  action: BackupAction;
  /** Why this action (e.g. "no full backup yet", "Data.fs was packed"). */
  reason: string;
  stamp?: string;
  /** Base name of the piece written. */
  piece?: string;
  /** Files written (base names). */
  written: string[];
  /** Files removed by kill-old (base names). */
  removed: string[];
  start: number;
  end: number;
  md5?: string;
  /** Transactions in the piece. */
  transactions: number;
  /** The tid of the last transaction backed up (hex). */
  lastTid?: string;
  /**
   * A full backup without blobs: whether Data.fs.index stood for the walk of
   * the file up to its end `pos` (as repozo's FileStorage uses it), or why not.
   */
  storageIndex?: { used: true; pos: number } | { used: false; reason: string };
}

/** Below this size the quick check hashes the whole last piece range, as repozo does. */
const QUICK_HASH_LIMIT = 64 * 1024 * 1024;
/** Above it, the quick check compares this much of the range's tail with the piece. */
const QUICK_TAIL = 1024 * 1024;

export async function backup(opts: BackupOptions): Promise<BackupResult> {
  try {
    return await backupUnlocked(opts);
  } catch (e) {
    // An OS error (a full disk, a permission) reaches callers typed, like ours.
    throw toPloneBackupError(e);
  }
}

async function backupUnlocked(opts: BackupOptions): Promise<BackupResult> {
  const log = opts.log ?? (() => undefined);
  checkCompressLevel(opts.compressLevel);
  const repo = opts.repository;
  await listRepository(repo); // REPO_MISSING before anything else
  const lock = await acquireLock(repo, { what: 'backup', waitMs: opts.lockWaitMs, signal: opts.signal });
  try {
    await cleanLeftovers(repo, log);
    const st = await openFileStorage(opts.file);
    try {
      const prepared = await prepareBackup(opts, st);
      await prepared.commit();
      return prepared.result;
    } finally {
      await st.fh.close();
    }
  } finally {
    await lock.release();
  }
}

/**
 * A backup written to temp files but not yet registered in the repository.
 * `commit()` renames the piece and index into place and rewrites the .dat;
 * `discard()` removes the temp files. Lets a caller (the deployment backup)
 * make the blob generation first and register both only when both are whole.
 */
export interface PreparedBackup {
  result: BackupResult;
  /** Blob records in the piece (collected when `collectBlobs`). */
  blobs: BlobRef[];
  commit(): Promise<void>;
  discard(): Promise<void>;
}

export interface PrepareOptions extends BackupOptions {
  /** Collect the blob records of the new piece into `blobs`. */
  collectBlobs?: boolean;
}

/**
 * Decides and writes a backup to temp files. The caller holds the repository
 * lock and keeps `st` open until commit or discard.
 */
export async function prepareBackup(opts: PrepareOptions, st: OpenedStorage): Promise<PreparedBackup> {
  const log = opts.log ?? (() => undefined);
  checkCompressLevel(opts.compressLevel);
  return backupLocked(opts, st, log);
}

async function backupLocked(opts: PrepareOptions, st: OpenedStorage, log: (m: string) => void): Promise<PreparedBackup> {
  const repo = opts.repository;
  const listing = await listRepository(repo);
  const chain = findChain(listing.files);
  const stamp = chooseStamp(listing.names, (opts.now ?? (() => new Date()))());

  if (opts.full || chain.length === 0) {
    const reason = opts.full ? 'a full backup was asked for' : 'there is no full backup yet';
    log(`doing a full backup: ${reason}`);
    return fullBackup(opts, st, stamp, reason, log);
  }

  const datFile = path.join(repo, datName(chain[0]!.stamp));
  const lines = await readDat(datFile);
  // The .dat must list exactly the chain's pieces: a line for a piece that is
  // gone means the chain lost data, and continuing it (quick mode would even
  // take the missing piece's end as its start) would never mend it.
  if (!lines || lines.length !== chain.length || datLinesFor(chain, lines).some((l) => l === undefined)) {
    const reason = `${path.basename(datFile)} is missing or does not list exactly the pieces of the newest chain`;
    log(`doing a full backup: ${reason}`);
    return fullBackup(opts, st, stamp, reason, log);
  }
  let from: number | undefined;
  let reason = '';
  if (opts.quick) {
    const r = await quickCheck(opts, st, chain, lines, datFile);
    if (r.ok) from = r.end;
    reason = r.reason;
  } else {
    const r = await fullCheck(opts, st, chain);
    if (r.ok) from = r.end;
    reason = r.reason;
  }
  if (from === undefined) {
    log(`doing a full backup: ${reason}`);
    return fullBackup(opts, st, stamp, reason, log);
  }
  return incrementalBackup(opts, st, stamp, chain, from, log);
}

/** A level outside 1..9 is a USAGE error before anything is written. */
export function checkCompressLevel(level: number | undefined): void {
  if (level !== undefined && !isCompressLevel(level)) {
    throw new PloneBackupError('USAGE', `The compression level must be a whole number from ${MIN_COMPRESS_LEVEL} to ${MAX_COMPRESS_LEVEL}, not ${level}.`, {
      hint: `Leave it out for the default, ${DEFAULT_COMPRESS_LEVEL}.`,
    });
  }
}

/** A stamp for now, or one second after the newest file when now would collide or go back. */
export function chooseStamp(names: Iterable<string>, now: Date): string {
  let stamp = formatStamp(now);
  let newest = '';
  for (const n of names) {
    const m = /^(\d{4}(?:-\d\d){5})\./.exec(n);
    if (m && m[1]! > newest) newest = m[1]!;
  }
  if (newest && stamp <= newest) stamp = nextStamp(newest);
  return stamp;
}

// ---------------------------------------------------------------------------
// Deciding: quick (.dat) and full (compare bytes)

interface Check {
  ok: boolean;
  end?: number;
  reason: string;
}

async function quickCheck(opts: BackupOptions, st: OpenedStorage, chain: RepoFile[], lines: DatLine[] | undefined, datFile: string): Promise<Check> {
  if (!lines || lines.length === 0) return { ok: false, reason: `${path.basename(datFile)} is missing or empty` };
  const last = lines[lines.length - 1]!;
  if (st.size < last.end) return { ok: false, reason: 'Data.fs shrank, probably packed' };
  const lastFile = chain[chain.length - 1]!;
  const len = last.end - last.start;
  if (len <= QUICK_HASH_LIMIT || lastFile.gzip || path.basename(last.path) !== lastFile.name) {
    // repozo's own check: the md5 of the last piece's range.
    const h = createHash('md5');
    for await (const c of readRange(st.fh, last.start, last.end, opts.signal)) h.update(c);
    if (h.digest('hex') !== last.md5) return { ok: false, reason: 'the last backed-up range of Data.fs changed, probably packed' };
  } else {
    // A big last piece: compare the tail of the range with the piece itself and
    // check that a transaction ends exactly there; O(1) in the database size.
    const tail = Math.min(QUICK_TAIL, len);
    const a = Buffer.alloc(tail);
    await st.fh.read(a, 0, tail, last.end - tail);
    const pf = await fsp.open(path.join(opts.repository, lastFile.name), 'r');
    const b = Buffer.alloc(tail);
    try {
      const size = (await pf.stat()).size;
      if (size !== len) return { ok: false, reason: `${lastFile.name} does not have the size its .dat line says` };
      await pf.read(b, 0, tail, size - tail);
    } finally {
      await pf.close();
    }
    if (!a.equals(b)) return { ok: false, reason: 'the end of the backed-up range of Data.fs changed, probably packed' };
  }
  if (last.end > 4 && !(await txnEndingAt(st.fh, last.end, st.size))) {
    return { ok: false, reason: 'no transaction ends where the last backup ended' };
  }
  return { ok: true, end: last.end, reason: 'the last backed-up range is unchanged' };
}

/**
 * repozo compares md5(chain) with md5(Data.fs[0:len(chain)]). Comparing the
 * bytes themselves decides the same and needs no hashing: both files are read
 * at once and compared chunk by chunk.
 */
async function fullCheck(opts: BackupOptions, st: OpenedStorage, chain: RepoFile[]): Promise<Check> {
  const repoBytes = new ByteReader(chainBytes(opts.repository, chain, opts.signal));
  let pos = 0;
  const total = st.size;
  try {
    const src = readRange(st.fh, 0, total, opts.signal);
    const srcReader = new ByteReader(src);
    try {
      for (;;) {
        const r = await repoBytes.chunk();
        if (r.length === 0) break;
        const s = await srcReader.take(r.length);
        if (s.length < r.length) return { ok: false, reason: 'Data.fs is shorter than the backups, probably packed' };
        if (!s.equals(r)) return { ok: false, reason: 'Data.fs differs from the backed-up bytes, probably packed' };
        pos += r.length;
        opts.onProgress?.({ phase: 'comparing with the repository', done: pos, total });
      }
    } finally {
      await srcReader.close();
    }
  } finally {
    await repoBytes.close();
  }
  if (pos > 4 && !(await txnEndingAt(st.fh, pos, st.size))) {
    return { ok: false, reason: 'no transaction ends where the backups end' };
  }
  return { ok: true, end: pos, reason: 'Data.fs begins with the backed-up bytes' };
}

async function* chainBytes(repo: string, chain: RepoFile[], signal?: AbortSignal): AsyncGenerator<Buffer> {
  for (const f of chain) yield* readPiece(path.join(repo, f.name), f.gzip, signal);
}

// ---------------------------------------------------------------------------
// Writing

interface Copied {
  end: number;
  md5: string;
  transactions: number;
  lastTid?: Buffer;
  writer?: HashingFileWriter;
  blobs: BlobRef[];
}

/**
 * One pass from `start`: walk transactions, hash and write the committed
 * bytes. Without blobs to collect, the lean record scan (recordscan.ts) feeds
 * `index` directly; with `framedUntil` (a trusted index's end) the
 * transactions before it are only framed, not walked record by record.
 */
async function copyCommitted(
  opts: PrepareOptions,
  st: OpenedStorage,
  start: number,
  target: string,
  index: FsIndex | undefined,
  prefix?: Buffer,
  framedUntil?: number,
): Promise<Copied> {
  let writer: HashingFileWriter | undefined;
  const sink = async (chunk: Buffer) => {
    writer ??= await HashingFileWriter.create(target, { gzip: opts.gzip, level: opts.compressLevel, mode: modesOf(st.mode).file });
    await writer.write(chunk);
  };
  const collector = opts.collectBlobs ? new BlobCollector() : undefined;
  const onProgress = (done: number) => opts.onProgress?.({ phase: 'copying Data.fs', done, total: st.size });
  try {
    if (prefix) await sink(prefix);
    let scanned: { end: number; txnCount: number; lastTid?: Buffer };
    if (!collector) {
      const map = index?.map;
      scanned = await scanRecords(st, start, st.size, map, {
        sink,
        signal: opts.signal,
        onProgress,
        fileSize: st.size,
        framedUntil,
      });
    } else {
      scanned = await scanRange(st, start, st.size, { sink, signal: opts.signal, onProgress, fileSize: st.size }, (t: TxnInfo) => {
        for (const r of t.records) {
          index?.set(r.oid, r.pos);
          collector.add(r);
        }
      });
    }
    const blobs = collector ? await collector.finish(st, start) : [];
    const md5 = writer ? await writer.finish() : createHash('md5').digest('hex');
    return { end: scanned.end, md5, transactions: scanned.txnCount, lastTid: scanned.lastTid, writer, blobs };
  } catch (e) {
    await writer?.discard();
    throw e;
  }
}

/** Registers the temp files of a prepared backup; on failure removes what it renamed. */
function preparedFrom(
  opts: PrepareOptions,
  st: OpenedStorage,
  result: BackupResult,
  copied: Copied,
  index: FsIndex,
  datFile: string,
  datText: () => Promise<string>,
  log: (m: string) => void,
): PreparedBackup {
  const repo = opts.repository;
  const stamp = result.stamp!;
  // The index and the .dat describe the database: no more readable than it.
  const mode = modesOf(st.mode).file;
  let settled = false;
  return {
    result,
    blobs: copied.blobs,
    async commit() {
      if (settled) return;
      settled = true;
      const written: string[] = [];
      try {
        checkAbort(opts.signal);
        // Streamed bucket by bucket (temp, fsync, rename): never the whole file in memory.
        await writeIndexFile(path.join(repo, indexName(stamp)), index, copied.end, mode);
        written.push(indexName(stamp));
        await copied.writer!.commit();
        written.push(result.piece!);
        // The .dat is rewritten whole and renamed, never appended in place: a crash
        // leaves either the old or the new .dat, both consistent.
        await writeFileAtomic(datFile, await datText(), mode);
        written.push(path.basename(datFile));
      } catch (e) {
        await copied.writer?.discard();
        // The .dat is the registration: if it was not replaced, the piece never existed.
        for (const n of written) if (!n.endsWith('.dat')) await fileLayer.rm(path.join(repo, n), { force: true });
        throw e;
      }
      result.written = written;
      if (opts.killOld && result.action === 'full') result.removed = await killOld(repo, stamp, log);
    },
    async discard() {
      if (settled) return;
      settled = true;
      await copied.writer?.discard();
    },
  };
}

const nothingToCommit = (result: BackupResult): PreparedBackup => ({
  result,
  blobs: [],
  commit: async () => undefined,
  discard: async () => undefined,
});

async function fullBackup(opts: PrepareOptions, st: OpenedStorage, stamp: string, reason: string, log: (m: string) => void): Promise<PreparedBackup> {
  const repo = opts.repository;
  const piece = pieceFileName(stamp, true, !!opts.gzip);
  const target = path.join(repo, piece);
  const magic = Buffer.from(st.magic, 'latin1');
  // As repozo (its read-only FileStorage): Data.fs.index, when it agrees with the
  // file, stands for the walk up to its end; only what follows is walked record by
  // record. With blobs to collect every record is read anyway.
  let storageIndex: BackupResult['storageIndex'];
  let copied: Copied | undefined;
  let index = new FsIndex();
  if (!opts.collectBlobs) {
    const trusted = await loadStorageIndex(st);
    if (trusted.ok) {
      try {
        copied = await copyCommitted(opts, st, 4, target, trusted.index, magic, trusted.pos);
        index = trusted.index;
        storageIndex = { used: true, pos: trusted.pos };
        log(`used ${storageIndexPath(st.path)} up to byte ${trusted.pos}`);
      } catch (e) {
        if (!PloneBackupError.is(e, 'INDEX_BAD')) throw e;
        storageIndex = { used: false, reason: e.message };
      }
    } else storageIndex = { used: false, reason: trusted.reason };
    if (!storageIndex.used) log(`walking every record: ${storageIndex.reason}`);
  }
  copied ??= await copyCommitted(opts, st, 4, target, index, magic);
  log(`writing full backup: ${copied.end} bytes to ${target}`);
  const line: DatLine = { path: pyJoin(opts.datPrefix ?? repo, piece), start: 0, end: copied.end, md5: copied.md5 };
  const result: BackupResult = {
    action: 'full',
    reason,
    stamp,
    piece,
    written: [],
    removed: [],
    start: 0,
    end: copied.end,
    md5: copied.md5,
    transactions: copied.transactions,
    lastTid: copied.lastTid?.toString('hex'),
    ...(storageIndex ? { storageIndex } : {}),
  };
  return preparedFrom(opts, st, result, copied, index, path.join(repo, datName(stamp)), async () => formatDatLine(line), log);
}

async function incrementalBackup(opts: PrepareOptions, st: OpenedStorage, stamp: string, chain: RepoFile[], from: number, log: (m: string) => void): Promise<PreparedBackup> {
  const repo = opts.repository;
  const piece = pieceFileName(stamp, false, !!opts.gzip);
  const target = path.join(repo, piece);
  const baseIndex = await loadChainIndex(repo, chain, from, st, opts);
  const copied = await copyCommitted(opts, st, from, target, baseIndex);
  if (copied.end === from) {
    log('No changes, nothing to do');
    return nothingToCommit({ action: 'none', reason: 'nothing was committed since the last backup', written: [], removed: [], start: from, end: from, transactions: 0 });
  }
  log(`writing incremental: ${copied.end - from} bytes to ${target}`);
  const datFile = path.join(repo, datName(chain[0]!.stamp));
  const line: DatLine = { path: pyJoin(opts.datPrefix ?? repo, piece), start: from, end: copied.end, md5: copied.md5 };
  const result: BackupResult = {
    action: 'incremental',
    reason: 'Data.fs grew since the last backup',
    stamp,
    piece,
    written: [],
    removed: [],
    start: from,
    end: copied.end,
    md5: copied.md5,
    transactions: copied.transactions,
    lastTid: copied.lastTid?.toString('hex'),
  };
  const datText = async () => {
    const previous = await readDatText(datFile);
    return (previous === '' || previous.endsWith('\n') ? previous : previous + '\n') + formatDatLine(line);
  };
  return preparedFrom(opts, st, result, copied, baseIndex, datFile, datText, log);
}

/**
 * The index of the state at `end`: the last piece's .index when it describes
 * exactly that state, else Data.fs.index (when ZODB would trust it and it
 * ends at or before `end`) continued to `end`, else rebuilt by walking
 * Data.fs up to `end`.
 */
async function loadChainIndex(repo: string, chain: RepoFile[], end: number, st: OpenedStorage, opts: BackupOptions): Promise<FsIndex> {
  const last = chain[chain.length - 1]!;
  try {
    const { pos, index } = await readIndexFile(path.join(repo, indexName(last.stamp)), { checkPositions: true });
    if (pos === end) return index;
  } catch (e) {
    if (!PloneBackupError.is(e, 'INDEX_BAD')) throw e;
  }
  const trusted = await loadStorageIndex(st);
  if (trusted.ok && trusted.pos <= end) {
    const map = trusted.index.map;
    const r = await scanIndex(st, trusted.pos, end, map, { signal: opts.signal });
    if (r.end === end) {
      opts.log?.(`the last piece has no usable .index; ${storageIndexPath(st.path)} continued to byte ${end} stands for it`);
      return trusted.index;
    }
  }
  opts.log?.('the last piece has no usable .index; rebuilding it from Data.fs');
  return rebuildIndex(st.fh, st.path, end, opts.signal, opts.log);
}

/** The index of the committed transactions of `fh` before `end`, by the lean record scan (on two cores: indexscan.ts). */
export async function rebuildIndex(fh: FileHandle, file: string, end: number, signal?: AbortSignal, log?: (m: string) => void): Promise<FsIndex> {
  const index = new FsIndex();
  const r = await scanIndex({ fh, path: file }, 4, end, index.map, { signal });
  if (r.splitAt !== undefined) log?.(`indexed on two threads, the second from byte ${r.splitAt}`);
  return index;
}

// ---------------------------------------------------------------------------
// Kill-old and leftovers

/** repozo -k: remove every piece older than the full backup `keepStamp`, with its .dat and .index. */
export async function killOld(repo: string, keepStamp: string, log: (m: string) => void = () => undefined): Promise<string[]> {
  const { files } = await listRepository(repo);
  const removed: string[] = [];
  for (const f of files) {
    if (f.stamp >= keepStamp) continue;
    log(`removing old backup file ${f.name} (and .dat / .index)`);
    // The piece first, its .dat last: a run killed in between leaves pieces of
    // no chain (never a chain that lost its .dat, which would fail -V).
    for (const n of [f.name, indexName(f.stamp), datName(f.stamp)]) {
      try {
        await fileLayer.rm(path.join(repo, n));
        removed.push(n);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
  }
  await fsyncDir(repo);
  return removed;
}

/**
 * What a killed run can leave, removed under the lock: our temp files, and
 * a newest piece (with its .index) that its chain's .dat does not register.
 * Temps only in a private repository folder (isPrivateFolder): in a shared
 * one a `.plone-backup-*` name may be anyone's, planted to make us delete
 * (or follow a link) elsewhere. Each is looked at with lstat, never followed.
 */
export async function cleanLeftovers(repo: string, log: (m: string) => void = () => undefined): Promise<string[]> {
  const names = await fsp.readdir(repo);
  const removed: string[] = [];
  const temps = names.filter(isTempName);
  if (temps.length && !(await isPrivateFolder(repo))) {
    log(`leaving ${temps.length} temp files in ${repo}: others may write there, so they may not be ours`);
  } else {
    for (const n of temps) if (await removeOwnEntry(repo, n)) removed.push(n);
  }
  const { files } = await listRepository(repo);
  const newest = files[files.length - 1];
  if (newest) {
    const chain = findChain(files);
    let lines: DatLine[] | undefined;
    let garbled = false;
    try {
      lines = chain.length ? await readDat(path.join(repo, datName(chain[0]!.stamp))) : undefined;
    } catch {
      // A garbled .dat is reported by the backup itself; it must not make a
      // good full backup look like one a killed run never registered.
      garbled = true;
    }
    const registered = lines !== undefined && lines.some((l) => path.basename(l.path) === newest.name);
    const orphan = !garbled && chain.length > 0 && chain[chain.length - 1] === newest && !registered && (lines !== undefined || newest.full);
    if (orphan) {
      log(`removing ${newest.name}: a killed run wrote it but never registered it`);
      for (const n of [newest.name, indexName(newest.stamp), ...(newest.full ? [datName(newest.stamp)] : [])]) {
        await fileLayer.rm(path.join(repo, n), { force: true });
        removed.push(n);
      }
    }
  }
  // An .index whose piece is gone (killed between the two renames).
  const after = await fsp.readdir(repo);
  const stamps = new Set(
    after
      .map(parseDataFileName)
      .filter(Boolean)
      .map((f) => f!.stamp),
  );
  for (const n of after) {
    const m = /^(\d{4}(?:-\d\d){5})\.index$/.exec(n);
    if (m && !stamps.has(m[1]!) && m[1]! > (newest?.stamp ?? '')) {
      await fileLayer.rm(path.join(repo, n), { force: true });
      removed.push(n);
    }
  }
  if (removed.length) await fsyncDir(repo);
  return removed;
}
