/**
 * Reading repository pieces and file ranges as streams of chunks, with one
 * read always in flight ahead of the consumer (so hashing overlaps I/O), and
 * gzip pieces inflated in libuv's thread pool: the members of our own pieces
 * several at once (gzip.ts), any other gzip as one stream.
 */

import { constants as fsc, createReadStream, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { PloneBackupError, checkAbort } from './errors';
import { MEMBER_HEADER, gzipConcurrency, inflateMember, memberSize } from './gzip';

export const READ_CHUNK = 4 * 1024 * 1024;

/** Chunks of bytes [start, end) of an open file; a short file is SOURCE_CHANGED. */
export async function* readRange(fh: FileHandle, start: number, end: number, signal?: AbortSignal, chunk = READ_CHUNK): AsyncGenerator<Buffer> {
  const read = (pos: number): Promise<Buffer> => readAt(fh, pos, Math.min(chunk, end - pos));
  let pos = start;
  let pending = pos < end ? read(pos) : undefined;
  try {
    while (pending) {
      const buf = await pending;
      pending = undefined;
      if (buf.length === 0) {
        throw new PloneBackupError('SOURCE_CHANGED', 'A file ended earlier than expected while it was read.', { position: pos });
      }
      pos += buf.length;
      checkAbort(signal);
      if (pos < end) {
        pending = read(pos);
        pending.catch(() => undefined);
      }
      yield buf;
    }
  } finally {
    if (pending) await pending.catch(() => undefined);
  }
}

/** The uncompressed bytes of one repository piece (gunzipped for .fsz/.deltafsz). */
export async function* readPiece(file: string, gzip: boolean, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const fh = await openPiece(file);
  if (!gzip) {
    try {
      const size = (await fh.stat()).size;
      yield* readRange(fh, 0, size, signal);
    } finally {
      await fh.close();
    }
    return;
  }
  try {
    yield* inflatePiece(fh, signal);
  } catch (e) {
    if (PloneBackupError.is(e)) throw e;
    throw new PloneBackupError('PIECE_BAD', `${file} cannot be decompressed (${(e as Error).message}).`, {
      path: file,
      hint: 'The piece is damaged: make a new full backup (-F) and keep the damaged one for inspection.',
      cause: e,
    });
  } finally {
    await fh.close().catch(() => undefined); // a stream may have closed it already
  }
}

/**
 * The inflated bytes of a gzip piece. While the members are ours (each says
 * its size), up to gzipConcurrency() + 1 of them are inflated at once and
 * yielded in order; from the first member that is not (repozo's pieces are
 * one member without it), the rest is inflated as one stream. The output of
 * each member is bounded (gzip.ts), so a small piece that claims to inflate to
 * gigabytes is never held.
 */
async function* inflatePiece(fh: FileHandle, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const size = (await fh.stat()).size;
  const width = gzipConcurrency() + 1;
  const queue: Promise<Buffer>[] = [];
  let pos = 0;
  let head = await readAt(fh, 0, Math.min(MEMBER_HEADER, size));
  let yielded = 0;
  try {
    for (;;) {
      const n = pos < size ? memberSize(head) : undefined;
      if (n === undefined || pos + n > size) break;
      // The member and the next one's header in one read.
      const buf = await readAt(fh, pos, Math.min(n + MEMBER_HEADER, size - pos));
      if (buf.length < n) break;
      const p = inflateMember(buf.subarray(0, n));
      p.catch(() => undefined); // awaited in order below
      queue.push(p);
      head = buf.subarray(n);
      pos += n;
      // Ramp up: a reader that wants only the first bytes does not pay for a full window.
      while (queue.length >= Math.min(width, yielded + 1)) {
        const out = await queue[0]!;
        queue.shift();
        checkAbort(signal);
        yielded++;
        if (out.length) yield out;
      }
    }
    while (queue.length) {
      const out = await queue[0]!;
      queue.shift();
      checkAbort(signal);
      if (out.length) yield out;
    }
  } finally {
    await Promise.allSettled(queue);
  }
  if (pos < size || size === 0) yield* inflateStream(fh, pos, signal);
}

/** Inflates the file from `start` to its end as one stream of (any number of) members. */
async function* inflateStream(fh: FileHandle, start: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  // Inflated a chunk at a time with back-pressure: a small .fsz may inflate to
  // gigabytes, and only the consumer decides how much of that it holds.
  const src = createReadStream('', { fd: fh, start, highWaterMark: 1024 * 1024, autoClose: false });
  const gunzip = zlib.createGunzip({ chunkSize: 1024 * 1024 });
  src.on('error', (e) => gunzip.destroy(e));
  src.pipe(gunzip);
  try {
    for await (const c of gunzip) {
      checkAbort(signal);
      yield c as Buffer;
    }
  } finally {
    src.destroy();
    gunzip.destroy();
  }
}

/** Up to `len` bytes at `pos` (fewer only at the end of the file). */
export async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const b = Buffer.allocUnsafe(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(b, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === len ? b : b.subarray(0, got);
}

/**
 * Opens a piece for reading: a regular file only. O_NONBLOCK keeps the open
 * from waiting forever for a writer when someone put a FIFO there (it changes
 * nothing for a regular file); a FIFO or device is refused before any read.
 */
async function openPiece(file: string): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    throw pieceOpenError(file, e);
  }
  const st = await fh.stat().catch(async (e: unknown) => {
    await fh.close();
    throw e;
  });
  if (!st.isFile()) {
    await fh.close();
    throw new PloneBackupError('PIECE_BAD', `The backup piece ${file} is not a regular file.`, {
      path: file,
      hint: 'Something that is not a backup stands in the repository under a piece name: move it away.',
    });
  }
  return fh;
}

function pieceOpenError(file: string, e: unknown): unknown {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
    return new PloneBackupError('PIECE_MISSING', `The backup piece ${file} is missing.`, {
      path: file,
      hint: 'Restore it from another copy of the repository, or make a new full backup (-F).',
    });
  }
  return e;
}

/** Pulls bytes from an async iterator in exact amounts. */
export class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  /** Up to n bytes (fewer only at the end). */
  async take(n: number): Promise<Buffer> {
    while (this.buf.length < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : r.value;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(out.length);
    return out;
  }

  /** Next chunk of any size (empty at the end). */
  async chunk(): Promise<Buffer> {
    if (this.buf.length) {
      const b = this.buf;
      this.buf = Buffer.alloc(0);
      return b;
    }
    if (this.done) return Buffer.alloc(0);
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return Buffer.alloc(0);
    }
    return r.value;
  }

  async close(): Promise<void> {
    await this.it.return?.(undefined);
  }
}
