/**
 * The engine's worker thread, as both of its jobs use it: the blob-reference
 * scan (scanworker.ts) and the second half of an index build (indexscan.ts).
 *
 * A job runs on the caller's own descriptor (threads share the process's
 * descriptors), so the worker reads exactly the file the caller opened and
 * measured, even if Data.fs is replaced meanwhile; the caller keeps the
 * descriptor open until the worker has exited, which `runInWorker` waits for.
 *
 * The worker runs scanworker.ts's code: in a bundle (the CLI, the extension,
 * the standalone executable, the benchmarks'), that code bundled on its own
 * and built into this one as a string (scripts/bundle.mjs), started with
 * `eval`, so nothing needs to lie beside the bundle; under tsc (the tests),
 * the compiled `scanworker.js` beside this file. Without either, callers do
 * the work on their own thread.
 */

import { existsSync, read as fsRead, readSync, fstat } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { parentPort, Worker } from 'node:worker_threads';
import { PloneBackupError, checkAbort, type ErrorCode } from '../base/errors';

/** The worker's code built into this bundle (scripts/bundle.mjs, esbuild's `define`); not defined under tsc. */
declare const PLONE_BACKUP_WORKER_SOURCE: string | undefined;

/** How the worker is started: its code (eval) or its file. */
export interface EngineWorker {
  code: string;
  eval: boolean;
}

/** The engine's worker, when there is one (see the header). */
export function engineWorker(): EngineWorker | undefined {
  if (typeof PLONE_BACKUP_WORKER_SOURCE === 'string') return { code: PLONE_BACKUP_WORKER_SOURCE, eval: true };
  const f = path.join(__dirname, 'scanworker.js');
  return existsSync(f) ? { code: f, eval: false } : undefined;
}

/** What a job posts back: progress any number of times, then one 'done' or 'error'. */
export type WorkerReply<Done> =
  { kind: 'progress'; pos: number } | ({ kind: 'done' } & Done) | { kind: 'error'; code?: ErrorCode; message: string; path?: string; position?: number; hint?: string };

/**
 * Runs `job` in the engine's worker and resolves with its 'done' reply; an
 * 'error' reply rejects with the same PloneBackupError (code, path,
 * position, hint). The signal terminates the worker; either way this returns
 * only once the worker is gone.
 */
export async function runInWorker<Done extends object>(engine: EngineWorker, job: object, opts: { signal?: AbortSignal; onProgress?: (pos: number) => void } = {}): Promise<Done> {
  checkAbort(opts.signal);
  const worker = new Worker(engine.code, { eval: engine.eval, workerData: job });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  try {
    return await new Promise<Done>((resolve, reject) => {
      const onAbort = () => reject(new PloneBackupError('ABORTED', 'The operation was cancelled; nothing was changed.'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => opts.signal?.removeEventListener('abort', onAbort);
      worker.on('message', (m: WorkerReply<Done>) => {
        if (m.kind === 'progress') opts.onProgress?.(m.pos);
        else if (m.kind === 'done') {
          settle();
          resolve(m);
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
        reject(new Error(`The engine's worker thread stopped (exit code ${code}).`));
      });
    });
  } finally {
    // The descriptor is the caller's: it stays open until the worker is gone.
    await worker.terminate();
    await exited;
  }
}

/**
 * The worker's side: runs `work` and posts its result (with `transfer`'s
 * buffers moved, not copied) or its error, in the shape runInWorker reads.
 * `progress` posts a position at most every 64 MB.
 */
export async function serveJob<Done extends object>(start: number, work: (progress: (pos: number) => void) => Promise<{ done: Done; transfer?: ArrayBuffer[] }>): Promise<void> {
  const port = parentPort!;
  try {
    let last = start;
    const progress = (pos: number) => {
      if (pos - last < 64 << 20) return;
      last = pos;
      port.postMessage({ kind: 'progress', pos } satisfies WorkerReply<Done>);
    };
    const { done, transfer } = await work(progress);
    port.postMessage({ kind: 'done', ...done }, transfer ?? []);
  } catch (e) {
    const err = e as PloneBackupError;
    const reply: WorkerReply<Done> = {
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

/**
 * A FileHandle's read and stat on a descriptor the worker borrows (never
 * closed here). With `sync`, each read is done on the worker's own thread
 * (readSync): the bytes land in that core's cache, where the worker parses
 * them, instead of being copied by the thread pool the main thread also uses.
 */
export function borrowedHandle(fd: number, sync = false): FileHandle {
  const read = sync
    ? async (buffer: Buffer, offset: number, length: number, position: number) => ({ bytesRead: readSync(fd, buffer, offset, length, position), buffer })
    : (buffer: Buffer, offset: number, length: number, position: number) =>
        new Promise<{ bytesRead: number; buffer: Buffer }>((resolve, reject) =>
          fsRead(fd, buffer, offset, length, position, (e, bytesRead) => (e ? reject(e) : resolve({ bytesRead, buffer }))),
        );
  const stat = () => new Promise((resolve, reject) => fstat(fd, (e, s) => (e ? reject(e) : resolve(s))));
  return { fd, read, stat, close: async () => undefined } as unknown as FileHandle;
}
