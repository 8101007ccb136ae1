/**
 * gzip on every core. A gzip piece we write is a series of independent gzip
 * members, one per GZIP_BLOCK bytes of input, compressed concurrently in
 * libuv's thread pool and written in order. RFC 1952 makes a series of
 * members one file (Python's gzip module, and so repozo, gzip -d, GNU tar and
 * Node's gunzip all read it as one stream), so the uncompressed bytes, and the
 * md5 the .dat holds of them, are what repozo writes.
 *
 * Each member carries its own size in the header's extra field (FEXTRA, the
 * subfield 'P','B' with 4 bytes, little-endian: the member's size in bytes,
 * header to trailer included; readers that do not know it skip it, as RFC 1952
 * says), so a reader can find the next member without inflating this one and
 * inflate several at once. Anything else (repozo's own single-member pieces, a
 * member without our subfield) is inflated as one stream, as before.
 */

import * as zlib from 'node:zlib';
import { availableParallelism } from 'node:os';

/** Uncompressed bytes per member: a few MB, so a block boundary costs under 0.1 % in size. */
export const GZIP_BLOCK = 4 * 1024 * 1024;

/**
 * The compression level when none is given. repozo (Python's gzip.open)
 * compresses at 9. Measured on the benchmark's Data.fs (README, Benchmarks):
 * 6 is the fastest level within 2 % of repozo's size (1.0024 ×); 1 to 5 are
 * faster but 10 to 28 % bigger, and 9 costs 20 % more time for 0.2 %.
 */
export const DEFAULT_COMPRESS_LEVEL = 6;

export const MIN_COMPRESS_LEVEL = 1;
export const MAX_COMPRESS_LEVEL = 9;

/** Whether `n` is a compression level we accept (1 to 9). */
export function isCompressLevel(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= MIN_COMPRESS_LEVEL && n <= MAX_COMPRESS_LEVEL;
}

/** The header of one of our members: zlib's 10 bytes with FEXTRA set, then XLEN and the 'PB' subfield. */
export const MEMBER_HEADER = 20;
const XLEN = 8;
const SI1 = 0x50; // 'P'
const SI2 = 0x42; // 'B'
const FEXTRA = 0x04;

/** Members claiming more than this (compressed or inflated) are not ours: a damaged or hostile piece. */
const MAX_MEMBER = 64 * 1024 * 1024;
/**
 * Output chunk of each zlib call: a whole block (and deflate's worst-case
 * overhead), so a member is compressed or inflated in one go in the thread
 * pool. With smaller chunks each one waits for the main thread (busy hashing
 * or scanning) to hand out the next, and the threads stall.
 */
const ZLIB_CHUNK = GZIP_BLOCK + 64 * 1024;

/**
 * How many blocks are compressed (or inflated) at once: one per core, but
 * never the whole thread pool, which file reads and writes need too (libuv's
 * default is 4 threads; UV_THREADPOOL_SIZE, read when the pool starts, raises it).
 */
export function gzipConcurrency(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(availableParallelism(), pool - 1));
}

/**
 * One member for `block`, as the buffers to write in order. memLevel 9 (zlib's
 * default is 8) is a bigger hash table: measured a little faster and smaller,
 * for 256 KB more per compression.
 */
export function compressMember(block: Buffer, level: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    zlib.gzip(block, { level, memLevel: 9, chunkSize: ZLIB_CHUNK }, (e, out) => {
      if (e) return reject(e);
      // zlib's header is 10 bytes without flags; ours is it with the member's size added.
      if (out.length < 18 || out[0] !== 0x1f || out[1] !== 0x8b || out[3] !== 0) return reject(new Error('zlib wrote an unexpected gzip header'));
      const h = Buffer.alloc(MEMBER_HEADER);
      out.copy(h, 0, 0, 10);
      h[3] = FEXTRA;
      h.writeUInt16LE(XLEN, 10);
      h[12] = SI1;
      h[13] = SI2;
      h.writeUInt16LE(4, 14);
      h.writeUInt32LE(MEMBER_HEADER + out.length - 10, 16);
      resolve([h, out.subarray(10)]);
    });
  });
}

/**
 * The size of the member whose header starts `head` (at least MEMBER_HEADER
 * bytes), when it is one of ours; undefined otherwise.
 */
export function memberSize(head: Buffer): number | undefined {
  if (head.length < MEMBER_HEADER) return undefined;
  if (head[0] !== 0x1f || head[1] !== 0x8b || head[2] !== 8 || head[3] !== FEXTRA) return undefined;
  if (head.readUInt16LE(10) !== XLEN || head[12] !== SI1 || head[13] !== SI2 || head.readUInt16LE(14) !== 4) return undefined;
  const n = head.readUInt32LE(16);
  return n > MEMBER_HEADER + 8 && n <= MAX_MEMBER ? n : undefined;
}

/** Inflates one whole member (one of ours in one go), at most MAX_MEMBER bytes of output. */
export function inflateMember(member: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zlib.gunzip(member, { chunkSize: ZLIB_CHUNK, maxOutputLength: MAX_MEMBER }, (e, out) => (e ? reject(e) : resolve(out)));
  });
}

/**
 * Compresses a stream of chunks into members of GZIP_BLOCK bytes, at most
 * `inFlight` blocks at once, handing the compressed bytes to `out` in order.
 * Memory: the block being filled, and `inFlight` blocks with their output.
 */
export class BlockGzip {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private queue: Promise<Buffer[]>[] = [];
  private members = 0;

  constructor(
    private readonly level: number,
    private readonly out: (b: Buffer) => void,
    private readonly inFlight = gzipConcurrency(),
  ) {}

  /** Takes a chunk (not to be changed afterwards); waits while `inFlight` blocks are being compressed. */
  async write(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    this.parts.push(chunk);
    this.partBytes += chunk.length;
    while (this.partBytes >= GZIP_BLOCK) this.submit(this.take(GZIP_BLOCK));
    await this.emit(this.inFlight);
  }

  /** The last block (an empty member when nothing was written, so the file is still gzip), all written out. */
  async end(): Promise<void> {
    if (this.partBytes > 0 || this.members === 0) this.submit(this.take(this.partBytes));
    await this.emit(0);
  }

  /** Drops everything; waits for the blocks being compressed (they cannot be stopped), writes none of them. */
  async abandon(): Promise<void> {
    const q = this.queue;
    this.queue = [];
    this.parts = [];
    this.partBytes = 0;
    await Promise.allSettled(q);
  }

  private take(n: number): Buffer {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const p = this.parts[0]!;
      const k = Math.min(p.length, n - got);
      if (k === p.length) {
        parts.push(p);
        this.parts.shift();
      } else {
        parts.push(p.subarray(0, k));
        this.parts[0] = p.subarray(k);
      }
      got += k;
    }
    this.partBytes -= n;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  private submit(block: Buffer): void {
    this.members++;
    const p = compressMember(block, this.level);
    p.catch(() => undefined); // awaited in order by emit(); a failure is thrown there
    this.queue.push(p);
  }

  private async emit(max: number): Promise<void> {
    while (this.queue.length > max) {
      const bufs = await this.queue[0]!;
      this.queue.shift();
      for (const b of bufs) this.out(b);
    }
  }
}
