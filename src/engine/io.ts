/**
 * File-layer helpers every operation writes through: unique temp names,
 * fsync of files and folders, atomic replace, and a sink that hashes and
 * writes (optionally gzip-compressing) with bounded writes in flight, so
 * hashing on the main thread overlaps with I/O in libuv's pool.
 *
 * Tests inject faults (ENOSPC, EIO) by replacing `fileLayer.open`.
 */

import { createHash, randomBytes, type Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

/** The one place the engine opens files for writing; a test may wrap it to inject faults. */
export const fileLayer = {
  open: (p: string, flags: string, mode?: number): Promise<FileHandle> => fsp.open(p, flags, mode),
};

export const TEMP_PREFIX = '.plone-backup-';

/** A temp name beside `target`: hidden, unique per process and call, never a repozo data-file name. */
export function tempPath(target: string, tag = 'tmp'): string {
  return path.join(path.dirname(target), `${TEMP_PREFIX}${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.${tag}`);
}

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch (e) {
    // Some filesystems refuse fsync on a directory; the rename is then as durable as it gets.
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EBADF'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    await fh?.close();
  }
}

/** Writes `data` to a temp file beside `target`, fsyncs it and renames it over `target`. */
export async function writeFileAtomic(target: string, data: Buffer | string): Promise<void> {
  const tmp = tempPath(target);
  const fh = await fileLayer.open(tmp, 'wx');
  try {
    await writeAll(fh, typeof data === 'string' ? Buffer.from(data) : data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(target));
}

async function writeAll(fh: FileHandle, b: Buffer, pos: number | null = null): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off, pos === null ? null : pos + off);
    if (bytesWritten === 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
    off += bytesWritten;
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Hashing writer

const MAX_IN_FLIGHT = 3;

/**
 * Receives the bytes of a piece in order: md5 of the uncompressed bytes, and a
 * temp file holding them (gzip-compressed when asked). `commit()` fsyncs and
 * renames the temp file to its final name; `discard()` removes it.
 */
export class HashingFileWriter {
  readonly md5: Hash = createHash('md5');
  bytes = 0;
  private fh?: FileHandle;
  private inFlight: Promise<void>[] = [];
  private writePos = 0;
  private gzip?: zlib.Gzip;
  private gzipDone?: Promise<void>;
  private failure?: unknown;

  private constructor(
    readonly target: string,
    readonly temp: string,
  ) {}

  static async create(target: string, opts: { gzip?: boolean } = {}): Promise<HashingFileWriter> {
    const w = new HashingFileWriter(target, tempPath(target));
    w.fh = await fileLayer.open(w.temp, 'wx');
    if (opts.gzip) {
      const gz = zlib.createGzip({ level: zlib.constants.Z_DEFAULT_COMPRESSION, chunkSize: 1024 * 1024 });
      w.gzip = gz;
      w.gzipDone = new Promise<void>((resolve, reject) => {
        gz.on('data', (c: Buffer) => {
          w.queueWrite(c);
        });
        gz.on('end', resolve);
        gz.on('error', reject);
      });
    }
    return w;
  }

  private queueWrite(chunk: Buffer): void {
    const pos = this.writePos;
    this.writePos += chunk.length;
    const p = writeAll(this.fh!, chunk, pos).catch((e) => {
      this.failure ??= e;
    });
    this.inFlight.push(p);
  }

  private async drain(max: number): Promise<void> {
    while (this.inFlight.length > max) await this.inFlight.shift();
    if (this.failure) throw this.failure;
  }

  /** Hashes and writes one chunk; the chunk must not be changed afterwards. */
  readonly write = async (chunk: Buffer): Promise<void> => {
    this.md5.update(chunk);
    this.bytes += chunk.length;
    if (this.gzip) {
      if (!this.gzip.write(chunk)) await new Promise<void>((r) => this.gzip!.once('drain', r));
      await this.drain(MAX_IN_FLIGHT);
    } else {
      this.queueWrite(chunk);
      await this.drain(MAX_IN_FLIGHT - 1);
    }
  };

  /** Finishes the temp file (fsync) without renaming; returns the hex md5. */
  async finish(): Promise<string> {
    if (this.gzip) {
      this.gzip.end();
      await this.gzipDone;
    }
    await this.drain(0);
    await this.fh!.sync();
    await this.fh!.close();
    this.fh = undefined;
    return this.md5.digest('hex');
  }

  /** Renames the finished temp file to its target. */
  async commit(): Promise<void> {
    await fsp.rename(this.temp, this.target);
  }

  async discard(): Promise<void> {
    this.gzip?.destroy();
    await Promise.allSettled(this.inFlight);
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
    await fsp.rm(this.temp, { force: true });
  }
}
