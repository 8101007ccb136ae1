/**
 * The blob-reference scan of a Data.fs off the calling thread, for the
 * extension host: a first scan of a 50 GB Data.fs is minutes of CPU, and the
 * host is shared by every extension. The scan runs in a worker thread on the
 * caller's own descriptor (threads share the process's descriptors), so the
 * worker reads exactly the file the caller opened and measured, even if
 * Data.fs is replaced meanwhile. The caller keeps the descriptor open until
 * the worker has exited.
 *
 * Why a worker and not slices with yields: the scanner already yields to the
 * event loop between reads, but a transaction is parsed in one synchronous
 * step whatever its size (an import of hundreds of MB is one slice), and the
 * total CPU would still be the host's. The worker costs a thread start
 * (milliseconds) and one transfer of the refs (16 bytes each).
 *
 * The worker's entry is this module's compiled file, `scanworker.js` beside
 * the code that starts it: out/src/engine/zodb/ under tsc, dist/ for the
 * bundles (scripts/build.mjs builds it there). Where it is missing (another
 * bundle), the scan runs on the calling thread, as it always did.
 */

import { existsSync, read as fsRead, fstat } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { PloneBackupError, checkAbort, type ErrorCode } from '../base/errors';
import { type BlobRef, scanBlobRefs } from './blobrefs';

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

type Reply =
  | { kind: 'progress'; pos: number }
  | { kind: 'done'; end: number; txnCount: number; lastTid?: string; refs: ArrayBuffer; count: number }
  | { kind: 'error'; code?: ErrorCode; message: string; path?: string; position?: number; hint?: string };

/** The worker's entry file, when there is one (see the header). */
export function scanWorkerFile(): string | undefined {
  const f = path.join(__dirname, 'scanworker.js');
  return existsSync(f) ? f : undefined;
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
  const file = opts.offThread ? scanWorkerFile() : undefined;
  if (!file) return { ...(await scanBlobRefs(st, start, st.size, opts.signal, opts.onProgress)), offThread: false };
  checkAbort(opts.signal);
  const job: Job = { ploneBackupScan: 1, fd: st.fh.fd, path: st.path, start, size: st.size };
  const worker = new Worker(file, { workerData: job });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  try {
    return await new Promise<RefScan>((resolve, reject) => {
      const onAbort = () => reject(new PloneBackupError('ABORTED', 'The operation was cancelled; nothing was changed.'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => opts.signal?.removeEventListener('abort', onAbort);
      worker.on('message', (m: Reply) => {
        if (m.kind === 'progress') opts.onProgress?.(m.pos);
        else if (m.kind === 'done') {
          settle();
          resolve({ refs: unpackRefs(m.refs, m.count), end: m.end, txnCount: m.txnCount, lastTid: m.lastTid ? Buffer.from(m.lastTid, 'hex') : undefined, offThread: true });
        } else {
          settle();
          reject(m.code ? new PloneBackupError(m.code, m.message, { path: m.path, position: m.position, hint: m.hint }) : new Error(m.message));
        }
      });
      worker.once('error', (e) => {
        settle();
        reject(e);
      });
      worker.once('exit', (code) => {
        settle();
        reject(new Error(`The scan's worker thread stopped (exit code ${code}).`));
      });
    });
  } finally {
    // The descriptor is the caller's: it stays open until the worker is gone.
    await worker.terminate();
    await exited;
  }
}

/** A FileHandle's read and stat on a descriptor the worker borrows (never closed here). */
function borrowed(fd: number): FileHandle {
  const read = (buffer: Buffer, offset: number, length: number, position: number) =>
    new Promise<{ bytesRead: number; buffer: Buffer }>((resolve, reject) =>
      fsRead(fd, buffer, offset, length, position, (e, bytesRead) => (e ? reject(e) : resolve({ bytesRead, buffer }))),
    );
  const stat = () => new Promise((resolve, reject) => fstat(fd, (e, s) => (e ? reject(e) : resolve(s))));
  return { fd, read, stat, close: async () => undefined } as unknown as FileHandle;
}

async function runJob(job: Job): Promise<void> {
  const port = parentPort!;
  try {
    let last = job.start;
    // The scan reports every window refill (2 MB); the caller hears of every 64 MB.
    const progress = (pos: number) => {
      if (pos - last < 64 << 20) return;
      last = pos;
      port.postMessage({ kind: 'progress', pos } satisfies Reply);
    };
    const r = await scanBlobRefs({ fh: borrowed(job.fd), size: job.size, path: job.path }, job.start, job.size, undefined, progress);
    const refs = packRefs(r.refs);
    const reply: Reply = { kind: 'done', end: r.end, txnCount: r.txnCount, lastTid: r.lastTid?.toString('hex'), refs, count: r.refs.length };
    port.postMessage(reply, [refs]);
  } catch (e) {
    const err = e as PloneBackupError;
    const reply: Reply = {
      kind: 'error',
      code: PloneBackupError.is(e) ? err.code : undefined,
      message: String(err?.message ?? e),
      path: err?.path,
      position: err?.position,
      hint: err?.hint,
    };
    port.postMessage(reply);
  }
}

if (!isMainThread && (workerData as Partial<Job> | undefined)?.ploneBackupScan === 1) void runJob(workerData as Job);
