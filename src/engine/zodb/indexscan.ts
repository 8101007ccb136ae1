/**
 * The index of a Data.fs built on two cores: the record scan of its first
 * half on this thread, of its second half in the engine's worker thread
 * (worker.ts), the two maps merged in file order.
 *
 * Why: on one thread the scan is bound by parsing one record header after
 * the other (about 100 ns each: every header is a cache miss, and where the
 * next one is depends on this one's length), 1.1 s of the 2.7 s it took to
 * index a 10.7 GB Data.fs of 10 million objects that takes 2.2 s to read.
 * Two threads each parse half, and each half is read by a thread of its own.
 *
 * The result is exactly the one-thread scan's, whatever the file holds:
 * - The second half starts at a place found by looking (findSplit): the
 *   first position after the middle that looks like a transaction start,
 *   its predecessor's trailer pointing back to a header of the same length.
 *   That is only a guess. It is proven by the first half's scan, which walks
 *   the real chain of transactions from the start and must end exactly
 *   there; only then is the worker's result used. Anything else (a wrong
 *   guess, a file that ends quietly before it) and the worker's result is
 *   dropped and this thread goes on from where its scan ended, as the
 *   one-thread scan would have.
 * - Errors come in file order: an error of the first half wins; the
 *   worker's error counts only once the first half reached the split. A
 *   worker that fails to run at all (not an error of the file) leaves its
 *   half to this thread.
 * - Positions of an oid in both halves: the second half's wins, as the
 *   later record does in one pass (OidPosMap.mergeLater).
 *
 * Without the engine's worker (a bundle made without it), or below SPLIT_MIN
 * bytes, it is the one-thread scan.
 */

import type { FileHandle } from 'node:fs/promises';
import { PloneBackupError } from '../base/errors';
import { TRANS_HDR_LEN, readU64 } from './filestorage';
import { OidPosMap, type OidPosPages } from './fsindex';
import { scanRecords, type RecordScanResult } from './recordscan';
import { borrowedHandle, engineWorker, runInWorker, serveJob, type EngineWorker } from './worker';

/** Below this many bytes the index is built on one thread: a worker's start (about 20 ms) is not worth it. */
export const SPLIT_MIN = 64 * 1024 * 1024;
/** Bytes read at a time while looking for a transaction start after the middle. */
const SPLIT_WINDOW = 4 * 1024 * 1024;
/** Looked at at most, from the middle on; past it (transactions bigger than this) no split. */
const SPLIT_SEARCH = 64 * 1024 * 1024;

export interface IndexScanOptions {
  signal?: AbortSignal;
  /** Called with the bytes scanned so far, counted from `start` (both halves together). */
  onProgress?: (pos: number) => void;
  /** The file's real size, for ZODB's "garbage at the end" check (defaults to the limit). */
  fileSize?: number;
  /** Split only above this many bytes (SPLIT_MIN); tests set 0. */
  splitMin?: number;
  /** Let the worker read with readSync on its own thread (default), or through the thread pool. */
  workerSyncReads?: boolean;
  /** The worker to run instead of the engine's (tests give one that cannot run). */
  worker?: EngineWorker;
}

export interface IndexScanResult extends RecordScanResult {
  /** Where the worker's half began, when the scan was split and the split held. */
  splitAt?: number;
}

/**
 * The oids and record positions of the committed transactions in
 * [start, limit) of `src`, set into `map` (as scanRecords with an
 * OidPosMap), on two threads when it is worth it.
 */
export async function scanIndex(src: { fh: FileHandle; path: string }, start: number, limit: number, map: OidPosMap, opts: IndexScanOptions = {}): Promise<IndexScanResult> {
  const fileSize = opts.fileSize ?? limit;
  const worker = opts.worker ?? engineWorker();
  const split = worker && limit - start >= (opts.splitMin ?? SPLIT_MIN) ? await findSplit(src.fh, start, limit) : undefined;
  if (split === undefined) return scanRecords(src, start, limit, map, { signal: opts.signal, onProgress: opts.onProgress, fileSize });

  let firstAt = start;
  let secondAt = split;
  const progress = () => opts.onProgress?.(start + (firstAt - start) + (secondAt - split));
  const job: IndexJob = { ploneBackupIndexScan: 1, fd: src.fh.fd, path: src.path, start: split, limit, fileSize, syncReads: opts.workerSyncReads ?? true };
  const controller = new AbortController();
  const stop = () => controller.abort();
  opts.signal?.addEventListener('abort', stop, { once: true });
  const second = runInWorker<IndexDone>(worker!, job, {
    signal: controller.signal,
    onProgress: (pos) => {
      secondAt = pos;
      progress();
    },
  });
  second.catch(() => undefined); // read below, or dropped
  try {
    const first = await scanRecords(src, start, split, map, {
      signal: opts.signal,
      fileSize,
      onProgress: (pos) => {
        firstAt = pos;
        progress();
      },
    });
    /** The rest of the file from `from` on this thread, after the first half's walk. */
    const alone = async (from: number): Promise<IndexScanResult> => {
      const rest = await scanRecords(src, from, limit, map, { signal: opts.signal, onProgress: opts.onProgress, fileSize });
      return { end: rest.end, txnCount: first.txnCount + rest.txnCount, lastTid: rest.lastTid ?? first.lastTid };
    };
    if (first.end !== split) {
      // The guess did not hold (or the file ends quietly before it): on from here, alone.
      controller.abort();
      return await alone(first.end);
    }
    let done: IndexDone;
    try {
      done = await second;
    } catch (e) {
      // The file's own errors (FS_CORRUPT, SOURCE_CHANGED...) and a cancellation are the answer;
      // a worker that could not run (no thread, no memory) only costs its half, done here.
      if (PloneBackupError.is(e)) throw e;
      return await alone(split);
    }
    map.mergeLater(done.pages);
    return {
      end: done.end,
      txnCount: first.txnCount + done.txnCount,
      lastTid: done.lastTid !== undefined ? Buffer.from(done.lastTid, 'hex') : first.lastTid,
      splitAt: split,
    };
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    controller.abort();
    await second.catch(() => undefined);
  }
}

/**
 * A guess at the first transaction start at or after the middle of
 * [start, limit): a position q where a plausible transaction header begins
 * (status ' ', 'p' or 'u', a length that fits) and the 8 bytes before it
 * are a trailer whose transaction header, inside the window, carries the
 * same length and a smaller tid. Undefined when none is found within
 * SPLIT_SEARCH. Only a guess: scanIndex proves it.
 */
export async function findSplit(fh: FileHandle, start: number, limit: number): Promise<number | undefined> {
  const mid = start + Math.floor((limit - start) / 2);
  const buf = Buffer.allocUnsafe(SPLIT_WINDOW);
  // Each window overlaps the one before by a header's length. A q whose predecessor began in the
  // window before is not taken (its header must be in the window): a later one is, which only moves the split.
  for (let ws = mid; ws < mid + SPLIT_SEARCH && ws < limit; ws += SPLIT_WINDOW - TRANS_HDR_LEN) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(SPLIT_WINDOW, limit - ws), ws);
    if (bytesRead < TRANS_HDR_LEN + 8) return undefined;
    const q = splitIn(buf.subarray(0, bytesRead), ws, start, limit);
    if (q !== undefined) return q;
  }
  return undefined;
}

/** The first q in window `w` (file bytes from `ws`) as findSplit describes, if any. */
function splitIn(w: Buffer, ws: number, start: number, limit: number): number | undefined {
  for (let i = 8; i + TRANS_HDR_LEN <= w.length; i++) {
    const status = w[i + 16];
    if (status !== 0x20 && status !== 0x70 && status !== 0x75) continue;
    // The trailer before i: the previous transaction's length, its header in the window.
    if (w.readUInt32BE(i - 8) !== 0) continue; // lengths over 4 GiB are not looked for
    const prevLen = w.readUInt32BE(i - 4);
    const p = i - 8 - prevLen;
    if (prevLen < TRANS_HDR_LEN || p < 0 || ws + p < start) continue;
    if (readU64(w, p + 8) !== prevLen) continue;
    const ps = w[p + 16];
    if (ps !== 0x20 && ps !== 0x70 && ps !== 0x75) continue;
    if (Buffer.compare(w.subarray(p, p + 8), w.subarray(i, i + 8)) >= 0) continue; // tids increase
    const tlen = readU64(w, i + 8);
    const meta = TRANS_HDR_LEN + w.readUInt16BE(i + 17) + w.readUInt16BE(i + 19) + w.readUInt16BE(i + 21);
    if (tlen < meta || ws + i + tlen + 8 > limit) continue;
    return ws + i;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// The worker's half

interface IndexJob {
  ploneBackupIndexScan: 1;
  fd: number;
  path: string;
  start: number;
  limit: number;
  fileSize: number;
  syncReads: boolean;
}

interface IndexDone {
  end: number;
  txnCount: number;
  lastTid?: string;
  pages: OidPosPages;
}

export function isIndexJob(job: unknown): job is IndexJob {
  return (job as Partial<IndexJob> | undefined)?.ploneBackupIndexScan === 1;
}

/** In the worker: the record scan of [start, limit) into a map of its own, whose pages go back moved, not copied. */
export async function runIndexJob(job: IndexJob): Promise<void> {
  await serveJob<IndexDone>(job.start, async (progress) => {
    const map = new OidPosMap();
    const fh = borrowedHandle(job.fd, job.syncReads);
    // Reads on this thread are done when asked for: one ahead is all there is to gain.
    const r = await scanRecords({ fh, path: job.path }, job.start, job.limit, map, { fileSize: job.fileSize, onProgress: progress, readAhead: job.syncReads ? 1 : undefined });
    const { pages, transfer } = map.takePages();
    return { done: { end: r.end, txnCount: r.txnCount, lastTid: r.lastTid?.toString('hex'), pages }, transfer };
  });
}
