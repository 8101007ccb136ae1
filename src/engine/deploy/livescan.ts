/**
 * The live scan of a Data.fs for `check` (which blob files its records
 * reference), continued rather than repeated: in memory for the life of a
 * process (`LiveScanCache`, the extension's), and on disk in the storage's
 * backup repository (`.plone-backup.livescan`, beside the piece cache), so a
 * new window on a 50 GB Data.fs reads only what was appended since.
 *
 * Where it left off is trusted only when the file proves it: the same device
 * and inode, at least as long as where the scan ended, and the transaction
 * ending there (read backwards from its trailer, its header agreeing) has the
 * tid and length recorded. A pack (a new file, or a shorter one), a truncated
 * tail cutting into the scanned part, or a cache that is not exactly what we
 * write starts the scan from the beginning: a bad cache only costs time.
 *
 * The file (binary, ours): "PBLS", version 1, a 4-byte header length and the
 * header as JSON {"file","dev","ino","end","size","lastTid","lastTlen",
 * "count"}, then `count` refs of 16 bytes (oid, tid), then the SHA-256 of all
 * that. Written as everything in the engine (temp, fsync, rename), no more
 * readable than Data.fs, only into a repository folder that exists and only
 * where the caller allows (`writeCache`: the extension, inside the workspace).
 */

import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { READ_CAPS, exists, modesOf, readFileCapped, writeFileAtomic } from '../base/io';
import type { BlobRef } from '../zodb/blobrefs';
import { openFileStorage, txnEndingAt } from '../zodb/filestorage';
import { scanRefs } from '../zodb/scanworker';
import type { OperationOptions } from '../base/progress';
import { foldersFor } from './kinds';
import type { StorageConfig } from './deployment';

export const LIVE_SCAN_FILE = '.plone-backup.livescan';
const MAGIC = Buffer.from('PBLS', 'latin1');
const VERSION = 1;
const HEADER_CAP = 4096;

/** Where a scan of one Data.fs ended, and the blob refs up to there. */
export interface LiveScanEntry {
  ino: number;
  dev?: number;
  end: number;
  size?: number;
  /** The tid (hex) and length of the transaction ending at `end`. */
  lastTid?: string;
  lastTlen?: number;
  refs: BlobRef[];
  /** Where the cache file's scan ends (this process wrote or read it). */
  persistedEnd?: number;
}

/**
 * A process that keeps its cache in memory (the extension) rewrites the file
 * only after this much more was scanned: a window opened later rescans at
 * most this, and a busy site does not cost a rewrite of every ref per commit.
 */
export const PERSIST_STEP = 64 << 20;

export interface LiveScanCache {
  /** By Data.fs path: where the last scan stopped, and the refs so far. */
  files: Map<string, LiveScanEntry>;
}

export function newLiveScanCache(): LiveScanCache {
  return { files: new Map() };
}

/** What one live scan did (tests, the extension's log). */
export interface LiveScanReport {
  storage: string;
  /** Where the scan continued from: the process's cache, the file beside the backups, or the start. */
  from: 'memory' | 'disk' | 'start';
  start: number;
  end: number;
  /** Bytes of Data.fs scanned now (end - start). */
  scanned: number;
  offThread: boolean;
  /** Whether the cache file was (re)written. */
  persisted: boolean;
}

export interface LiveScanOptions extends OperationOptions {
  cache?: LiveScanCache;
  /** Whether the scan's cache file may be written in a repository; default yes. */
  writeCache?: (repo: string) => boolean;
  /** Neither read nor write the cache file (the in-memory cache still serves). */
  noPersist?: boolean;
  /** Scan in a worker thread when one can be started (the extension host). */
  offThread?: boolean;
  onScan?: (r: LiveScanReport) => void;
}

/** The cache file of a storage: in its backup repository. */
export function liveScanFile(s: StorageConfig): string {
  return path.join(foldersFor(s, 'backup').repo, LIVE_SCAN_FILE);
}

export function encodeLiveScan(file: string, e: LiveScanEntry): Buffer {
  const header = Buffer.from(
    JSON.stringify({ file, dev: e.dev ?? 0, ino: e.ino, end: e.end, size: e.size ?? e.end, lastTid: e.lastTid ?? null, lastTlen: e.lastTlen ?? null, count: e.refs.length }),
    'utf8',
  );
  const head = Buffer.alloc(9);
  MAGIC.copy(head, 0);
  head[4] = VERSION;
  head.writeUInt32BE(header.length, 5);
  const refs = Buffer.alloc(e.refs.length * 16);
  e.refs.forEach((r, i) => {
    r.oid.copy(refs, i * 16, 0, 8);
    r.tid.copy(refs, i * 16 + 8, 0, 8);
  });
  const body = Buffer.concat([head, header, refs]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The entry a cache file holds for `file`, or undefined when it is anything but what we write. */
export function decodeLiveScan(b: Buffer, file: string): LiveScanEntry | undefined {
  if (b.length < 9 + 2 + 32 || !b.subarray(0, 4).equals(MAGIC) || b[4] !== VERSION) return undefined;
  const hlen = b.readUInt32BE(5);
  if (hlen > HEADER_CAP || 9 + hlen + 32 > b.length) return undefined;
  const body = b.subarray(0, b.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(b.subarray(b.length - 32))
  )
    return undefined;
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(b.toString('utf8', 9, 9 + hlen)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!h || typeof h !== 'object' || Array.isArray(h) || h.file !== file) return undefined;
  const { dev, ino, end, size, lastTid, lastTlen, count } = h;
  if (!isCount(dev) || !isCount(ino) || !isCount(end) || !isCount(size) || !isCount(count) || end < 4 || size < end) return undefined;
  if (end === 4 ? lastTid !== null || lastTlen !== null : typeof lastTid !== 'string' || !/^[0-9a-f]{16}$/.test(lastTid) || !isCount(lastTlen)) return undefined;
  if (9 + hlen + count * 16 !== body.length) return undefined;
  const refs: BlobRef[] = new Array(count);
  for (let i = 0, o = 9 + hlen; i < count; i++, o += 16) refs[i] = { oid: Buffer.from(b.subarray(o, o + 8)), tid: Buffer.from(b.subarray(o + 8, o + 16)) };
  return { dev, ino, end, size, lastTid: (lastTid as string | null) ?? undefined, lastTlen: (lastTlen as number | null) ?? undefined, refs };
}

async function readLiveScan(cacheFile: string, file: string): Promise<LiveScanEntry | undefined> {
  try {
    // Hostile input: no link followed, a regular file only, capped (16 M refs).
    return decodeLiveScan(await readFileCapped(cacheFile, READ_CAPS.manifest, { noFollow: true, what: 'The live scan cache' }), file);
  } catch {
    return undefined;
  }
}

/**
 * The blob refs of the committed part of `s.file`, continuing a previous scan
 * when the file proves it is the same one, grown (see the header).
 */
export async function liveRefs(s: StorageConfig, opts: LiveScanOptions = {}): Promise<BlobRef[]> {
  const st = await openFileStorage(s.file);
  try {
    const fst = await st.fh.stat();
    const cacheFile = liveScanFile(s);
    const key = path.resolve(s.file);
    const trusted = async (e: LiveScanEntry | undefined): Promise<boolean> => {
      if (!e || e.ino !== fst.ino || (e.dev !== undefined && e.dev !== fst.dev) || e.end > st.size) return false;
      if (e.end === 4) return e.lastTid === undefined;
      const h = await txnEndingAt(st.fh, e.end, st.size);
      return !!h && h.tid.toString('hex') === e.lastTid && (e.lastTlen === undefined || h.tlen === e.lastTlen);
    };
    let from: LiveScanReport['from'] = 'start';
    let prev = opts.cache?.files.get(s.file);
    if (await trusted(prev)) from = 'memory';
    else {
      prev = opts.noPersist ? undefined : await readLiveScan(cacheFile, key);
      if (await trusted(prev)) from = 'disk';
      else prev = undefined;
    }
    const start = prev?.end ?? 4;
    const r = await scanRefs(st, start, {
      offThread: opts.offThread,
      signal: opts.signal,
      onProgress: (pos) => opts.onProgress?.({ phase: `scanning ${path.basename(s.file)}`, done: pos, total: st.size }),
    });
    // Appended in place: the refs of a large site are many, a rescan's few.
    const refs = prev?.refs ?? [];
    for (const x of r.refs) refs.push(x);
    let lastTid = prev?.lastTid;
    let lastTlen = prev?.lastTlen;
    if (r.end !== start) {
      const h = await txnEndingAt(st.fh, r.end, st.size);
      lastTid = h?.tid.toString('hex') ?? r.lastTid?.toString('hex');
      lastTlen = h?.tlen;
    }
    const persistedEnd = from === 'disk' ? prev!.end : from === 'memory' ? prev!.persistedEnd : undefined;
    const entry: LiveScanEntry = { ino: fst.ino, dev: fst.dev, end: r.end, size: st.size, lastTid, lastTlen, refs, persistedEnd };
    opts.cache?.files.set(s.file, entry);
    let persisted = false;
    const complete = r.end === 4 ? lastTid === undefined : lastTid !== undefined && lastTlen !== undefined;
    const due = persistedEnd === undefined || (r.end !== persistedEnd && (!opts.cache || r.end - persistedEnd >= PERSIST_STEP));
    if (!opts.noPersist && complete && due) {
      const repo = path.dirname(cacheFile);
      // Only into a repository that is there (never created for this), and where allowed.
      if ((opts.writeCache?.(repo) ?? true) && (await exists(repo))) {
        persisted = await writeFileAtomic(cacheFile, encodeLiveScan(key, entry), modesOf(st.mode).file).then(
          () => true,
          () => false,
        );
        if (persisted) entry.persistedEnd = r.end;
      }
    }
    opts.onScan?.({ storage: s.name, from, start, end: r.end, scanned: r.end - start, offThread: r.offThread, persisted });
    return refs;
  } finally {
    await st.fh.close();
  }
}
