/**
 * The blob-reference scan of a Data.fs off the calling thread, for the
 * extension host: a first scan of a 50 GB Data.fs is minutes of CPU, and the
 * host is shared by every extension. The scan runs in the engine's worker
 * thread (worker.ts), on the caller's own descriptor.
 *
 * Why a worker and not slices with yields: the scanner already yields to the
 * event loop between reads, but a transaction is parsed in one synchronous
 * step whatever its size (an import of hundreds of MB is one slice), and the
 * total CPU would still be the host's. The worker costs a thread start
 * (milliseconds) and one transfer of the refs (16 bytes each).
 *
 * This module is also the worker's code: at the bottom, a worker started
 * with a job runs it (this scan, or indexscan.ts's half of an index build).
 */

import type { FileHandle } from 'node:fs/promises';
import { isMainThread, workerData } from 'node:worker_threads';
import { type BlobRef, scanBlobRefs } from './blobrefs';
import { isIndexJob, runIndexJob } from './indexscan';
import { borrowedHandle, engineWorker, runInWorker, serveJob } from './worker';

export interface RefScan {
  refs: BlobRef[];
  end: number;
  txnCount: number;
  lastTid?: Buffer;
  /** Whether the scan ran in a worker thread. */
  offThread: boolean;
}

interface Job {
  ploneBackupScan: 1;
  fd: number;
  path: string;
  start: number;
  size: number;
}

interface Done {
  end: number;
  txnCount: number;
  lastTid?: string;
  refs: ArrayBuffer;
  count: number;
}

/** Refs as one buffer: oid then tid, 16 bytes each. */
function packRefs(refs: BlobRef[]): ArrayBuffer {
  const b = Buffer.alloc(refs.length * 16);
  refs.forEach((r, i) => {
    r.oid.copy(b, i * 16);
    r.tid.copy(b, i * 16 + 8);
  });
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
}

function unpackRefs(ab: ArrayBuffer, count: number): BlobRef[] {
  const b = Buffer.from(ab);
  const out: BlobRef[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = { oid: b.subarray(i * 16, i * 16 + 8), tid: b.subarray(i * 16 + 8, i * 16 + 16) };
  return out;
}

/**
 * The blob refs of bytes [start, size) of the open Data.fs `fh` (see
 * scanBlobRefs), in a worker when `offThread` and the worker's file is
 * there, else here.
 */
export async function scanRefs(
  st: { fh: FileHandle; size: number; path: string },
  start: number,
  opts: { offThread?: boolean; signal?: AbortSignal; onProgress?: (pos: number) => void } = {},
): Promise<RefScan> {
  const worker = opts.offThread ? engineWorker() : undefined;
  if (!worker) return { ...(await scanBlobRefs(st, start, st.size, opts.signal, opts.onProgress)), offThread: false };
  const job: Job = { ploneBackupScan: 1, fd: st.fh.fd, path: st.path, start, size: st.size };
  const m = await runInWorker<Done>(worker, job, opts);
  return { refs: unpackRefs(m.refs, m.count), end: m.end, txnCount: m.txnCount, lastTid: m.lastTid ? Buffer.from(m.lastTid, 'hex') : undefined, offThread: true };
}

async function runJob(job: Job): Promise<void> {
  await serveJob<Done>(job.start, async (progress) => {
    const r = await scanBlobRefs({ fh: borrowedHandle(job.fd), size: job.size, path: job.path }, job.start, job.size, undefined, progress);
    const refs = packRefs(r.refs);
    return { done: { end: r.end, txnCount: r.txnCount, lastTid: r.lastTid?.toString('hex'), refs, count: r.refs.length }, transfer: [refs] };
  });
}

if (!isMainThread) {
  const job = workerData as Partial<Job> | undefined;
  if (job?.ploneBackupScan === 1) void runJob(job as Job);
  else if (isIndexJob(job)) void runIndexJob(job);
}
