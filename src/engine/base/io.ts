/**
 * File-layer helpers every operation writes through: unique temp names,
 * fsync of files and folders, atomic replace, and a sink that hashes and
 * writes (optionally gzip-compressing) with bounded writes in flight, so
 * hashing on the main thread overlaps with I/O in libuv's pool.
 *
 * Tests inject faults (ENOSPC, EIO) by replacing `fileLayer.open`.
 */

import { createHash, randomBytes, type Hash } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { PloneBackupError } from './errors';
import { BlockGzip, DEFAULT_COMPRESS_LEVEL } from './gzip';

/**
 * The one layer the engine changes the disk through: every file it creates or
 * writes is opened with `open`, and every other change (a copy, a rename, a
 * link, a folder made or removed) is one of these calls. A test may wrap any
 * of them to inject faults (the fault suite replaces `open` and `copyFile`);
 * each calls fs.promises when called, so the crash hook (which wraps
 * fs.promises) counts every step.
 */
export const fileLayer = {
  open: (p: string, flags: string | number, mode?: number): Promise<FileHandle> => fsp.open(p, flags, mode),
  copyFile: (src: string, dst: string, flags?: number): Promise<void> => fsp.copyFile(src, dst, flags),
  rename: (from: string, to: string): Promise<void> => fsp.rename(from, to),
  link: (existing: string, name: string): Promise<void> => fsp.link(existing, name),
  symlink: (target: string, name: string): Promise<void> => fsp.symlink(target, name),
  mkdir: (p: string, opts: { recursive?: boolean; mode?: number }): Promise<string | undefined> => fsp.mkdir(p, opts),
  mkdtemp: (prefix: string): Promise<string> => fsp.mkdtemp(prefix),
  rm: (p: string, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> => fsp.rm(p, opts),
  rmdir: (p: string): Promise<void> => fsp.rmdir(p),
  chmod: (p: string, mode: number): Promise<void> => fsp.chmod(p, mode),
};

/**
 * Creates `file` (it must not exist) holding `data`, through fileLayer.open,
 * fsynced. Used for the small files written into a folder that is renamed
 * into place afterwards (a blob tree's .layout, a generation's manifest).
 */
export async function writeNewFile(file: string, data: Buffer | string, mode: number): Promise<void> {
  const fh = await fileLayer.open(file, 'wx', mode);
  try {
    await writeAll(fh, typeof data === 'string' ? Buffer.from(data) : data, null, file);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fileLayer.rm(file, { force: true });
    throw e;
  }
  await fh.close();
}

/**
 * Copies `src` to a temp file beside `dst` with `mode`, fsynced (all through
 * fileLayer), and returns the temp's name: renaming it over `dst` later needs
 * no disk space, so it cannot fail for a full disk.
 */
export async function copyToTemp(src: string, dst: string, mode: number): Promise<string> {
  const tmp = tempPath(dst);
  try {
    await fileLayer.copyFile(src, tmp, fsc.COPYFILE_EXCL);
    await fileLayer.chmod(tmp, mode);
    const fh = await fileLayer.open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    return tmp;
  } catch (e) {
    await fileLayer.rm(tmp, { force: true });
    throw e;
  }
}

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

/**
 * Writes `data` to a temp file beside `target`, fsyncs it and renames it over
 * `target`. `mode` (owner-only unless said) is what the file is created with.
 */
export async function writeFileAtomic(target: string, data: Buffer | string, mode = PRIVATE_MODES.file): Promise<void> {
  const tmp = tempPath(target);
  await writeNewFile(tmp, data, mode);
  try {
    await fileLayer.rename(tmp, target);
  } catch (e) {
    await fileLayer.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(target));
}

/**
 * Writes all of `b` at `pos` (or at the file position), however short the
 * writes come back; a write of nothing (a disk filling up) is an EIO naming
 * `file`, never a loop or a short file.
 */
export async function writeAll(fh: FileHandle, b: Buffer, pos: number | null = null, file?: string): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off, pos === null ? null : pos + off);
    if (bytesWritten === 0) throw Object.assign(new Error('short write'), { code: 'EIO', ...(file === undefined ? {} : { path: file }) });
    off += bytesWritten;
  }
}

/**
 * The modes of what an operation creates. Backups hold the whole site
 * (password hashes, private documents): nothing we create is more readable
 * than the Data.fs it comes from, folders included (ZODB's own blob folders
 * are 0700). The umask can only narrow these further.
 */
export interface Modes {
  file: number;
  dir: number;
}

/** When there is no source to take modes from: owner only. */
export const PRIVATE_MODES: Modes = { file: 0o600, dir: 0o700 };

/** Modes no wider than a source file's mode: its read/write bits, and folders searchable where it is readable. */
export function modesOf(mode: number): Modes {
  const file = mode & 0o666;
  return { file, dir: file | ((file & 0o444) >> 2) };
}

/** The modes of what is made from `source` (a Data.fs); private when it cannot be stat'ed. */
export async function modesFrom(source: string): Promise<Modes> {
  return fsp.stat(source).then(
    (st) => modesOf(st.mode),
    () => PRIVATE_MODES,
  );
}

/** Caps for the metadata files we read whole (a config, a manifest, a .dat): far above real ones. */
export const READ_CAPS = {
  config: 4 << 20,
  manifest: 256 << 20,
  dat: 64 << 20,
  /** A Data.fs.index: 8 bytes per oid plus a little, so 1 GiB is over 100 million objects. */
  index: 1 << 30,
  small: 64 << 10,
} as const;

/**
 * Reads a metadata file whole, as hostile input: only a regular file (a FIFO,
 * a device such as /dev/zero or a folder is refused before a byte is read,
 * and the open never blocks on a FIFO), at most `maxBytes` (checked against
 * the real size, and again while reading, since the file may grow), and with
 * `noFollow` not through a symlink at its last component. Errors are typed:
 * TOO_LARGE for size and type, UNSAFE for a link; ENOENT passes through as
 * the OS error so callers can tell "absent" apart.
 */
export async function readFileCapped(file: string, maxBytes: number, opts: { noFollow?: boolean; what?: string } = {}): Promise<Buffer> {
  const what = opts.what ?? path.basename(file);
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NONBLOCK | (opts.noFollow ? fsc.O_NOFOLLOW : 0));
  } catch (e) {
    if (opts.noFollow && (e as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new PloneBackupError('UNSAFE', `${what} at ${file} is a symbolic link, which is never followed here.`, { path: file, hint: 'Replace the link by the file itself.' });
    }
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new PloneBackupError('TOO_LARGE', `${what} at ${file} is not a regular file.`, { path: file, hint: 'Point it at an ordinary file.' });
    }
    if (st.size > maxBytes) {
      throw new PloneBackupError('TOO_LARGE', `${what} at ${file} is ${st.size} bytes, more than the ${maxBytes} such a file can sensibly be.`, {
        path: file,
        hint: 'Check that it is the right file.',
      });
    }
    // One byte more than the cap tells a file that grew past it since the stat.
    const buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(st.size + 1, 1)));
    let n = 0;
    for (;;) {
      if (n === buf.length) break;
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > maxBytes) {
      throw new PloneBackupError('TOO_LARGE', `${what} at ${file} grew past ${maxBytes} bytes while it was read.`, { path: file, hint: 'Check that it is the right file.' });
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

/**
 * Hard-links `src` at `dst` and makes sure a plain file landed there: link(2)
 * links a symbolic link itself (or a device), which must never end up in a
 * blob tree. Returns the linked file's stat, or, when something else landed
 * (and was removed again), what it was. Errors of link(2) itself (EXDEV,
 * ENOENT, …) are the caller's to judge.
 */
export async function linkRegularFile(src: string, dst: string): Promise<{ st: import('node:fs').Stats } | { landed: 'link' | 'other' }> {
  await fileLayer.link(src, dst);
  const st = await fsp.lstat(dst);
  if (st.isFile()) return { st };
  await fileLayer.rm(dst, { force: true });
  return { landed: st.isSymbolicLink() ? 'link' : 'other' };
}

/**
 * Copies the regular file `src` to `dst` (copyFile's flags: a reflink where the
 * filesystem can, EXCL), never through a symbolic link: the source is opened
 * with O_NOFOLLOW and checked by fstat, and on Linux the copy reads that very
 * open file (/proc/self/fd/N), so a link swapped in after the check is not
 * followed either. `notRegular` makes the error for a link or another kind of
 * entry. Returns the source's stat (its mode, size). The copy's mode is the
 * source's within `maxMode`.
 */
export async function copyRegularFile(
  src: string,
  dst: string,
  flags: number,
  notRegular: (file: string, what: 'link' | 'other') => Error,
  maxMode = 0o777,
): Promise<import('node:fs').Stats> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(src, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw notRegular(src, 'link');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notRegular(src, 'other');
    const viaFd = process.platform === 'linux' ? `/proc/self/fd/${fh.fd}` : src;
    try {
      await fileLayer.copyFile(viaFd, dst, flags);
    } catch (e) {
      // No /proc mounted (a minimal container): the path, checked just now.
      if (viaFd === src || (e as NodeJS.ErrnoException).code !== 'ENOENT' || (e as NodeJS.ErrnoException).path !== viaFd) throw e;
      await fileLayer.copyFile(src, dst, flags);
    }
    // The copy has the source's mode: narrowed to `maxMode` (a backup is no more readable than Data.fs).
    if (st.mode & 0o777 & ~maxMode) await fileLayer.chmod(dst, st.mode & maxMode & 0o777);
    return st;
  } finally {
    await fh.close();
  }
}

/** Whether `p` is a regular file itself (not a link, FIFO, device or folder). */
export async function isRegularFile(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    (st) => st.isFile(),
    () => false,
  );
}

/** Opens a file to read a few bytes of it: never blocks on a FIFO, refuses anything but a regular file (ENOTREG-like EINVAL). */
export async function openRegular(p: string): Promise<FileHandle> {
  const fh = await fsp.open(p, fsc.O_RDONLY | fsc.O_NONBLOCK);
  if ((await fh.stat()).isFile()) return fh;
  await fh.close();
  throw Object.assign(new Error(`${p} is not a regular file`), { code: 'EINVAL', path: p });
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
// md5 off the main thread

/** A piece up to this size is hashed on the main thread (a worker would not pay for itself). */
const OFFLOAD_AFTER = 8 * 1024 * 1024;
/** Shared memory the chunks are copied into for the hashing worker; also bounds how far it may lag. */
const RING_BYTES = 32 * 1024 * 1024;

const HASH_WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const h = require('node:crypto').createHash('md5');
const ring = new Uint8Array(workerData);
parentPort.on('message', (m) => {
  if (m === null) parentPort.postMessage({ digest: h.digest('hex') });
  else {
    h.update(ring.subarray(m[0], m[0] + m[1]));
    parentPort.postMessage(m[1]);
  }
});
`;

/**
 * The md5 of a stream of chunks. md5 is the costliest per-byte work of a
 * backup or a restore (about 0.75 GB/s, where the page cache reads at several),
 * so once a stream passes OFFLOAD_AFTER bytes it is hashed in a worker thread,
 * on another core, while the main thread goes on reading, scanning and writing.
 * The chunks are copied into a shared ring buffer (a memcpy costs a tenth of
 * the md5); when the worker lags a whole ring behind, update() waits. Small
 * streams are hashed on the main thread at digest(). Where no worker can be
 * started, everything is hashed on the main thread.
 */
class StreamMd5 {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private main?: Hash;
  private worker?: Worker;
  private ring?: Buffer;
  private head = 0; // bytes copied into the ring
  private tail = 0; // bytes the worker has hashed
  private hex?: string;
  private wake?: () => void;
  private failure?: unknown;

  /** Adds a chunk; the chunk must not be changed until digest(). */
  async update(chunk: Buffer): Promise<void> {
    if (this.main) {
      this.main.update(chunk);
    } else if (this.worker) {
      await this.post(chunk);
    } else {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      if (this.heldBytes <= OFFLOAD_AFTER) return;
      const held = this.held;
      this.held = [];
      if (this.startWorker()) {
        for (const c of held) await this.post(c);
      } else {
        this.main = createHash('md5');
        for (const c of held) this.main.update(c);
      }
    }
  }

  async digest(): Promise<string> {
    if (this.main) return this.main.digest('hex');
    if (!this.worker) {
      const h = createHash('md5');
      for (const c of this.held) h.update(c);
      this.held = [];
      return h.digest('hex');
    }
    this.worker.postMessage(null);
    while (this.hex === undefined) await this.wait();
    this.close();
    return this.hex;
  }

  /** Stops the worker; an update() or digest() still waiting fails. */
  close(): void {
    this.held = [];
    const w = this.worker;
    if (!w) return;
    this.failure ??= new Error('the md5 was abandoned');
    this.worker = undefined;
    this.ring = undefined;
    void w.terminate();
    this.wake?.();
  }

  private startWorker(): boolean {
    let w: Worker;
    const sab = new SharedArrayBuffer(RING_BYTES);
    try {
      w = new Worker(HASH_WORKER_SOURCE, { eval: true, workerData: sab });
    } catch {
      return false;
    }
    // It never keeps the process alive by itself: wait() refs it while someone waits for it.
    w.unref();
    w.on('message', (m: number | { digest: string }) => {
      if (typeof m === 'number') this.tail += m;
      else this.hex = m.digest;
      this.wake?.();
    });
    w.on('error', (e) => {
      this.failure ??= e;
      this.wake?.();
    });
    w.on('exit', (code) => {
      if (this.worker === w) this.failure ??= new Error(`the md5 worker stopped (exit code ${code})`);
      this.wake?.();
    });
    this.worker = w;
    this.ring = Buffer.from(sab);
    return true;
  }

  /** Copies a chunk into the ring (in pieces, wrapping around) and tells the worker. */
  private async post(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      while (this.head - this.tail === RING_BYTES) await this.wait();
      if (this.failure) throw this.failure;
      const at = this.head % RING_BYTES;
      const n = Math.min(chunk.length - off, RING_BYTES - (this.head - this.tail), RING_BYTES - at);
      chunk.copy(this.ring!, at, off, off + n);
      this.worker!.postMessage([at, n]);
      this.head += n;
      off += n;
    }
  }

  /** Until the worker next reports (progress, digest or failure). */
  private async wait(): Promise<void> {
    if (this.failure) throw this.failure;
    const w = this.worker!;
    w.ref();
    try {
      await new Promise<void>((r) => (this.wake = r));
    } finally {
      this.wake = undefined;
      w.unref();
    }
    if (this.failure) throw this.failure;
  }
}

// ---------------------------------------------------------------------------
// Hashing writer

const MAX_IN_FLIGHT = 3;
/**
 * While a big piece is written, a datasync is started (in the background)
 * each time this many more bytes were queued: the kernel writes the pages out
 * while we go on, and the final fsync has only the last stretch left to wait for.
 */
const WRITEBACK_EVERY = 64 * 1024 * 1024;

/**
 * Receives the bytes of a piece in order: md5 of the uncompressed bytes, and a
 * temp file holding them (gzip-compressed when asked: members of a few MB
 * compressed on every core, see gzip.ts, written in order). `commit()` fsyncs
 * and renames the temp file to its final name; `discard()` removes it.
 */
export class HashingFileWriter {
  private readonly md5?: StreamMd5;
  bytes = 0;
  private fh?: FileHandle;
  private inFlight: Promise<void>[] = [];
  private writePos = 0;
  private gzip?: BlockGzip;
  private failure?: unknown;
  private writebackFrom = 0;
  private writeback?: Promise<void>;

  private constructor(
    readonly target: string,
    readonly temp: string,
    md5: boolean,
  ) {
    if (md5) this.md5 = new StreamMd5();
  }

  /**
   * `gzip`: compress what is written (the md5 is of the uncompressed bytes), at
   * `level` (1 to 9; DEFAULT_COMPRESS_LEVEL when not given).
   * `md5: false`: a caller that hashes the bytes itself saves the work; finish() then returns ''.
   */
  static async create(target: string, opts: { gzip?: boolean; level?: number; md5?: boolean; mode?: number } = {}): Promise<HashingFileWriter> {
    const w = new HashingFileWriter(target, tempPath(target), opts.md5 ?? true);
    w.fh = await fileLayer.open(w.temp, 'wx', opts.mode ?? PRIVATE_MODES.file);
    if (opts.gzip) w.gzip = new BlockGzip(opts.level ?? DEFAULT_COMPRESS_LEVEL, (c) => w.queueWrite(c));
    return w;
  }

  private queueWrite(chunk: Buffer): void {
    const pos = this.writePos;
    this.writePos += chunk.length;
    const p = writeAll(this.fh!, chunk, pos).catch((e) => {
      this.failure ??= e;
    });
    this.inFlight.push(p);
    if (!this.writeback && this.writePos - this.writebackFrom >= WRITEBACK_EVERY) {
      this.writebackFrom = this.writePos;
      // A write-back error must not get lost: Linux reports it to one fsync only.
      this.writeback = this.fh!.datasync().then(
        () => {
          this.writeback = undefined;
        },
        (e) => {
          this.failure ??= e;
          this.writeback = undefined;
        },
      );
    }
  }

  private async drain(max: number): Promise<void> {
    while (this.inFlight.length > max) await this.inFlight.shift();
    if (this.failure) throw this.failure;
  }

  /** Hashes and writes one chunk; the chunk must not be changed afterwards. */
  readonly write = async (chunk: Buffer): Promise<void> => {
    await this.md5?.update(chunk);
    this.bytes += chunk.length;
    if (this.gzip) {
      await this.gzip.write(chunk);
      await this.drain(MAX_IN_FLIGHT);
    } else {
      this.queueWrite(chunk);
      await this.drain(MAX_IN_FLIGHT - 1);
    }
  };

  /** Finishes the temp file (fsync) without renaming; returns the hex md5. */
  async finish(): Promise<string> {
    await this.gzip?.end();
    await this.drain(0);
    await this.writeback;
    if (this.failure) throw this.failure;
    await this.fh!.sync();
    await this.fh!.close();
    this.fh = undefined;
    return this.md5 ? this.md5.digest() : '';
  }

  /** Renames the finished temp file to its target. */
  async commit(): Promise<void> {
    await fileLayer.rename(this.temp, this.target);
  }

  async discard(): Promise<void> {
    this.md5?.close();
    await this.gzip?.abandon();
    await Promise.allSettled([...this.inFlight, this.writeback]);
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
    await fileLayer.rm(this.temp, { force: true });
  }
}
