/**
 * What each piece of a repozo repository holds: its transactions (count,
 * first and last tid, the last one's time, user and description) and the
 * blob revisions its records reference. A piece is a slice of a FileStorage
 * starting at a transaction boundary, so the ordinary scanner walks it once
 * its positions are shifted by the piece's start.
 *
 * Pieces never change, so what was learned is cached beside them in
 * `.plone-backup-cache.json` (keyed by name, size and mtime); neither repozo
 * nor collective.recipe.backup looks at that file.
 */

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { PloneBackupError } from './errors';
import { FileWindow, TxnScanner } from './filestorage';
import { type DatLine, type RepoFile, datLinesFor, datName, allChains, listRepository, readDat } from './repository';
import { readPiece } from './streams';
import { tidToDate } from './tid';
import { writeFileAtomic } from './io';

export const CACHE_FILE = '.plone-backup-cache.json';

export interface PieceInfo {
  name: string;
  stamp: string;
  full: boolean;
  gzip: boolean;
  /** Bytes on disk. */
  diskSize: number;
  /** The byte range of Data.fs it holds (from the .dat, else from its length). */
  start: number;
  end: number;
  md5?: string;
  /** Whether the .dat lists it. */
  registered: boolean;
  transactions: number;
  firstTid?: string;
  lastTid?: string;
  /** ISO time of the last transaction. */
  lastTime?: string;
  lastUser?: string;
  lastDescription?: string;
  /** Blob revisions referenced by its records, as [oid hex, tid hex]. */
  blobs: [string, string][];
  /** Set when the piece could not be read. */
  problem?: string;
}

export interface ChainInfo {
  full: PieceInfo;
  pieces: PieceInfo[];
}

interface CacheFile {
  version: 1;
  pieces: Record<string, { diskSize: number; mtimeMs: number; info: PieceInfo }>;
}

/**
 * A FileHandle look-alike for the scanner over a sequential stream of chunks
 * (a gunzipped piece) whose first byte sits at Data.fs position `start`:
 * reads must come in increasing order, as the scanner's window makes them.
 */
export function sequentialHandle(chunks: AsyncIterator<Buffer>, start: number): FileHandle {
  let cursor = start;
  let pending: Buffer = Buffer.alloc(0);
  let done = false;
  const read = async (buf: Buffer, off: number, len: number, pos: number) => {
    if (pos < cursor) return { bytesRead: 0, buffer: buf }; // only the tail check reads back; treat as unknown
    while (pos > cursor) {
      // skip forward
      if (pending.length === 0) {
        if (done) return { bytesRead: 0, buffer: buf };
        const r = await chunks.next();
        if (r.done) {
          done = true;
          continue;
        }
        pending = r.value;
      }
      const skip = Math.min(pending.length, pos - cursor);
      pending = pending.subarray(skip);
      cursor += skip;
    }
    let n = 0;
    while (n < len) {
      if (pending.length === 0) {
        if (done) break;
        const r = await chunks.next();
        if (r.done) {
          done = true;
          break;
        }
        pending = r.value;
      }
      const k = Math.min(pending.length, len - n);
      pending.copy(buf, off + n, 0, k);
      pending = pending.subarray(k);
      n += k;
    }
    cursor += n;
    return { bytesRead: n, buffer: buf };
  };
  return { read } as unknown as FileHandle;
}

/** A FileHandle look-alike over a plain piece file, shifted so its byte 0 is Data.fs position `start`. */
function shiftedHandle(fh: FileHandle, start: number): FileHandle {
  return {
    read: (buf: Buffer, off: number, len: number, pos: number) => fh.read(buf, off, len, pos - start),
  } as unknown as FileHandle;
}

/**
 * Scans one piece. `blobPositions` carries the positions of blob records of
 * earlier pieces of the chain, so an undo record pointing back at one counts.
 */
export async function describePiece(
  repo: string,
  f: RepoFile,
  line: DatLine | undefined,
  blobPositions: Set<number>,
  signal?: AbortSignal,
): Promise<PieceInfo> {
  const file = path.join(repo, f.name);
  const st = await fsp.stat(file);
  const info: PieceInfo = {
    name: f.name,
    stamp: f.stamp,
    full: f.full,
    gzip: f.gzip,
    diskSize: st.size,
    start: line?.start ?? 0,
    end: line?.end ?? (f.gzip ? 0 : st.size),
    md5: line?.md5,
    registered: !!line,
    transactions: 0,
    blobs: [],
  };
  const start = info.start;
  const first = f.full ? 4 : start;
  let fh: FileHandle | undefined;
  let it: AsyncGenerator<Buffer> | undefined;
  try {
    let handle: FileHandle;
    let limit: number;
    if (f.gzip) {
      let end = line?.end;
      if (end === undefined) {
        // Unregistered: learn its length first, so no length field can ask for more.
        let n = 0;
        for await (const c of readPiece(file, true, signal)) n += c.length;
        end = start + n;
        info.end = end;
      }
      it = readPiece(file, true, signal);
      handle = sequentialHandle(it, start);
      limit = end;
    } else {
      fh = await fsp.open(file, 'r');
      handle = shiftedHandle(fh, start);
      limit = start + st.size;
    }
    const w = new FileWindow(handle, first, limit, { signal });
    const s = new TxnScanner(w, file, first, { fileSize: limit });
    let last: { tid: Buffer; user: Buffer; description: Buffer } | undefined;
    const backpointers: [string, string, number][] = [];
    try {
      await s.run((t) => {
        if (!info.firstTid) info.firstTid = t.tid.toString('hex');
        last = t;
        for (const r of t.records) {
          if (r.blob) {
            info.blobs.push([r.oid.toString('hex'), r.tid.toString('hex')]);
            blobPositions.add(r.pos);
          } else if (r.backpointer) backpointers.push([r.oid.toString('hex'), r.tid.toString('hex'), r.backpointer]);
        }
      }, signal);
    } finally {
      await w.settle();
    }
    for (const [oid, tid, target] of backpointers) if (blobPositions.has(target)) info.blobs.push([oid, tid]);
    info.transactions = s.txnCount;
    if (!line) info.end = s.end;
    if (last) {
      info.lastTid = last.tid.toString('hex');
      info.lastTime = tidToDate(last.tid).toISOString();
      info.lastUser = last.user.toString('utf8');
      info.lastDescription = last.description.toString('utf8');
    }
    if (s.end !== info.end) info.problem = `its transactions end at byte ${s.end}, not at ${info.end}`;
  } catch (e) {
    info.problem = PloneBackupError.is(e) ? e.message : String((e as Error).message ?? e);
  } finally {
    await it?.return(undefined);
    await fh?.close();
  }
  return info;
}

/** Every chain of a repository with what each piece holds (cached). */
export async function describeRepository(repo: string, signal?: AbortSignal): Promise<ChainInfo[]> {
  const { files } = await listRepository(repo);
  const cachePath = path.join(repo, CACHE_FILE);
  let cache: CacheFile = { version: 1, pieces: {} };
  try {
    const c = JSON.parse(await fsp.readFile(cachePath, 'utf8')) as CacheFile;
    if (c.version === 1 && c.pieces) cache = c;
  } catch {
    // no cache yet, or an unreadable one: rebuilt below
  }
  let changed = false;
  const seen = new Set<string>();
  const chains: ChainInfo[] = [];
  for (const chain of allChains(files)) {
    let lines: DatLine[] | undefined;
    try {
      lines = await readDat(path.join(repo, datName(chain[0].stamp)));
    } catch {
      lines = undefined;
    }
    const regs = lines ? datLinesFor(chain, lines) : chain.map(() => undefined);
    const blobPositions = new Set<number>();
    const pieces: PieceInfo[] = [];
    for (let i = 0; i < chain.length; i++) {
      const f = chain[i];
      seen.add(f.name);
      const st = await fsp.stat(path.join(repo, f.name));
      const hit = cache.pieces[f.name];
      let info: PieceInfo;
      // A cached entry can't tell the positions of blob records, needed only by
      // undo records of later pieces; those are rare enough to rescan for.
      if (hit && hit.diskSize === st.size && hit.mtimeMs === st.mtimeMs && hit.info.registered === !!regs[i]) info = hit.info;
      else {
        info = await describePiece(repo, f, regs[i], blobPositions, signal);
        if (!info.problem) {
          cache.pieces[f.name] = { diskSize: st.size, mtimeMs: st.mtimeMs, info };
          changed = true;
        }
      }
      pieces.push(info);
    }
    chains.push({ full: pieces[0], pieces });
  }
  for (const k of Object.keys(cache.pieces)) {
    if (!seen.has(k)) {
      delete cache.pieces[k];
      changed = true;
    }
  }
  if (changed) await writeFileAtomic(cachePath, JSON.stringify(cache)).catch(() => undefined);
  return chains;
}
