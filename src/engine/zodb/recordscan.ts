/**
 * The lean record scanner: walks the committed transactions of a Data.fs and
 * reports where each data record is, for what needs only that (the index, a
 * copy of the committed bytes), at about the speed the file can be read.
 *
 * TxnScanner (filestorage.ts) hands out a TxnInfo per transaction with its
 * records as objects, and keeps a whole transaction in one buffer, copying a
 * transaction cut by a chunk boundary behind the next chunk (at 2 MB
 * transactions, that copied every byte again and cost 4.7 x a plain read of
 * the file). This one reads big chunks sequentially, one read always in
 * flight ahead of the parse, into two buffers it reuses (fresh ones only when
 * a sink keeps them), and parses the headers in place: nothing is allocated
 * per record, and a header cut by a chunk boundary (at most 42 bytes) is the
 * only thing ever copied. A pickle longer than a chunk is skipped without
 * being read when nothing wants its bytes.
 *
 * The checks are TxnScanner's, with the same errors and positions: a torn
 * transaction at the end (short header, length past the end, status 'c', a
 * trailer not yet right, garbage as ZODB defines it) ends the walk quietly at
 * the committed end; a committed transaction whose records do not add up is
 * FS_CORRUPT. A transaction is checked (length, status, trailer) before any of
 * its records is reported, so records are only ever those of transactions
 * that are committed; the one way a reported record can turn out not to be
 * there (the file cut short under us inside a committed transaction, which
 * ZODB never does) is SOURCE_CHANGED.
 */

import type { FileHandle } from 'node:fs/promises';
import { PloneBackupError, checkAbort } from '../base/errors';
import { DATA_HDR_LEN, TRANS_HDR_LEN, fsCorrupt, readU64, type ByteSink } from './filestorage';
import { OidPosMap } from './fsindex';

/**
 * Called for every data record of a committed transaction: the record's
 * header is at `b[off..off+42)` (the oid its first 8 bytes), the record at
 * `pos` in the file. `b` is only valid during the call.
 */
export type RecordFn = (b: Buffer, off: number, pos: number) => void;

export interface RecordScanOptions {
  signal?: AbortSignal;
  /** Called after each chunk with the absolute position read so far. */
  onProgress?: (pos: number) => void;
  /**
   * Receives every committed byte from `start` on, in order, once (the chunks
   * as read, cut at the committed end). A returned promise is awaited.
   */
  sink?: ByteSink;
  /** The file's real size, for ZODB's "garbage at the end" check (defaults to the limit). */
  fileSize?: number;
  chunkSize?: number;
  /**
   * The transactions before this position are framed only (header, status,
   * trailer, one after the other), their records neither checked nor
   * reported: the part a trusted index already describes (storageindex.ts).
   * A transaction must end exactly there, else INDEX_BAD.
   */
  framedUntil?: number;
  /** Reads kept in flight ahead of the parse without a sink (READ_AHEAD); with a sink, one. */
  readAhead?: number;
}

export interface RecordScanResult {
  /** The committed end: the position after the last committed transaction. */
  end: number;
  txnCount: number;
  lastTid?: Buffer;
}

/**
 * Bytes read at a time. Two buffers of it are reused (without a sink), so
 * their pages are faulted in once; 4 MB reads cost less system time per byte
 * than 2 MB here.
 */
const TWO32 = 2 ** 32;

/** The big-endian int32 at b[o..o+4), without Buffer's argument checks (the hot loop's reads are in bounds). */
function i32(b: Buffer, o: number): number {
  return (b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
}

export const RECORD_SCAN_CHUNK = 4 * 1024 * 1024;
/** Reads in flight ahead of the parse without a sink (see the measurements in the README). */
export const READ_AHEAD = 3;
/**
 * Bytes read at a time when a sink copies them (a backup): the chunk is then
 * read, hashed and written while it is still in the core's cache. Copying
 * 1 GB through a hashing writer took 4.5-7 s (1.7-2.2 s of system time) in
 * 128-256 KB chunks against 17-19 s (6.5-8 s) in 4 MB ones on the 2-core
 * benchmark machine; the scan alone is as fast in 1-4 MB chunks, slower in
 * 256 KB ones.
 */
export const SINK_CHUNK = 256 * 1024;

/**
 * Walks [start, limit) of `src.fh`, calling `onRecord` for every data record
 * of every committed transaction; given an OidPosMap (an index's map), each
 * record's oid and position are set in it directly.
 */
export async function scanRecords(
  src: { fh: FileHandle; path: string },
  start: number,
  limit: number,
  onRecord: RecordFn | OidPosMap | undefined,
  opts: RecordScanOptions = {},
): Promise<RecordScanResult> {
  const s = new RecordScanner(src.fh, src.path, start, limit, onRecord, opts);
  try {
    return await s.run();
  } finally {
    await s.settle();
  }
}

interface Pending {
  pos: number;
  len: number;
  buf: Buffer;
  promise: Promise<number>;
}

class RecordScanner {
  /** The chunk being parsed: file bytes [bs, be) are buf[0, be - bs). */
  private buf: Buffer = Buffer.alloc(0);
  private bs: number;
  private be: number;
  /** Without a sink: buffers not in use (the others are `buf` and the reads' in flight). */
  private spares: Buffer[] = [];
  /** The reads in flight, in file order, each starting where the one before ends. */
  private ahead: Pending[] = [];
  private readonly depth: number;
  /** With a sink: the chunks not emitted whole yet, oldest first, with their start. */
  private queue: { start: number; end: number; buf: Buffer }[] = [];
  private emitted: number;
  private committed: number;
  /** A header cut by a chunk boundary, put together. */
  private readonly scratch = Buffer.alloc(64);
  /** Where `need` put the bytes asked for. */
  private hb: Buffer = this.scratch;
  private ho = 0;
  /** DataViews of `buf`, `scratch` and `hb`: the hot loop reads its int32s through them (one load each). */
  private view: DataView = new DataView(new ArrayBuffer(0));
  private readonly scratchView: DataView = new DataView(this.scratch.buffer, this.scratch.byteOffset, this.scratch.byteLength);
  private hv: DataView = this.scratchView;
  private readonly chunk: number;
  private txnCount = 0;
  private readonly onRecord?: RecordFn;
  /** Records go straight into it (the index), without a call per record. */
  private readonly index?: OidPosMap;
  private lastTid?: Buffer;
  private lastTidHi = 0;
  private lastTidLo = 0;
  private hasTid = false;

  constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    start: number,
    private limit: number,
    onRecord: RecordFn | OidPosMap | undefined,
    private readonly opts: RecordScanOptions,
  ) {
    if (onRecord instanceof OidPosMap) this.index = onRecord;
    else this.onRecord = onRecord;
    this.bs = this.be = start;
    this.emitted = this.committed = start;
    this.chunk = Math.max(opts.chunkSize ?? (opts.sink ? SINK_CHUNK : RECORD_SCAN_CHUNK), 4096);
    this.depth = opts.sink ? 1 : Math.max(1, opts.readAhead ?? READ_AHEAD);
  }

  private corrupt(why: string, position: number): never {
    fsCorrupt(this.path, why, position);
  }

  private shrank(position: number): never {
    throw new PloneBackupError('SOURCE_CHANGED', `${this.path} became shorter while it was read: a committed transaction at byte ${position} is no longer all there.`, {
      path: this.path,
      position,
      hint: 'Run the backup again; if it keeps failing, check what truncates the file.',
    });
  }

  private notFramed(at: number): never {
    throw new PloneBackupError('INDEX_BAD', `No committed transaction of ${this.path} ends at byte ${at}, where its index ends.`, {
      path: this.path,
      position: at,
      hint: 'The index does not describe this file; it is not used.',
    });
  }

  // -------------------------------------------------------------------------
  // Reading

  private startRead(pos: number, buf: Buffer): Pending {
    const len = Math.min(buf.length, this.limit - pos);
    const promise = (async () => {
      let got = 0;
      while (got < len) {
        const { bytesRead } = await this.fh.read(buf, got, len - got, pos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got;
    })();
    promise.catch(() => undefined); // surfaced when awaited
    return { pos, len, buf, promise };
  }

  private freshBuffer(): Buffer {
    if (this.opts.sink) return Buffer.allocUnsafeSlow(this.chunk);
    return this.spares.pop() ?? Buffer.allocUnsafeSlow(this.chunk);
  }

  /** Drops the oldest read in flight (waiting for it: its buffer may be reused). */
  private async dropOldest(): Promise<void> {
    const p = this.ahead.shift();
    if (!p) return;
    await p.promise.catch(() => undefined);
    if (!this.opts.sink) this.spares.push(p.buf);
  }

  /** Keeps `depth` reads in flight after `be`, one after the other. */
  private readAhead(): void {
    for (;;) {
      const last = this.ahead[this.ahead.length - 1];
      const at = last ? last.pos + last.len : this.be;
      if (this.ahead.length >= this.depth || at >= this.limit) return;
      this.ahead.push(this.startRead(at, this.freshBuffer()));
    }
  }

  /** Makes the chunk starting at `at` (>= be) the current one; `be` stays at `at` when nothing is left. */
  private async load(at: number): Promise<void> {
    checkAbort(this.opts.signal);
    if (this.opts.sink) await this.emit();
    // The reads in flight before `at` (a skipped pickle's) are dropped; all of them when none starts there.
    while (this.ahead.length && this.ahead[0]!.pos !== at) await this.dropOldest();
    const p = this.ahead.shift() ?? this.startRead(at, this.freshBuffer());
    const got = await p.promise;
    if (got < p.len) this.limit = at + got; // the file is shorter than when measured
    if (!this.opts.sink && this.buf.length) this.spares.push(this.buf);
    this.buf = p.buf;
    this.view = new DataView(p.buf.buffer, p.buf.byteOffset, p.buf.byteLength);
    this.bs = at;
    this.be = at + got;
    if (this.opts.sink && got) this.queue.push({ start: at, end: at + got, buf: p.buf });
    if (this.be < this.limit) this.readAhead();
    this.opts.onProgress?.(this.be);
  }

  /** Moves the current chunk so that it holds `pos` (>= be): the chunks between are read (a sink) or skipped. */
  private async advance(pos: number): Promise<void> {
    if (!this.opts.sink) {
      const p = this.ahead.find((r) => pos >= r.pos && pos < r.pos + r.len);
      await this.load(p ? p.pos : pos);
      return;
    }
    do {
      const at = this.be;
      await this.load(at);
      if (this.be === at) return; // nothing more
    } while (pos >= this.be);
  }

  /**
   * Makes file bytes [pos, pos + n) (n <= 64) readable at this.hb[this.ho..];
   * false when they lie past the end of the file.
   */
  private async need(pos: number, n: number): Promise<boolean> {
    for (;;) {
      if (pos + n > this.limit) return false;
      if (pos >= this.bs && pos + n <= this.be) {
        this.hb = this.buf;
        this.hv = this.view;
        this.ho = pos - this.bs;
        return true;
      }
      if (pos < this.be) {
        // Cut by the chunk boundary: the part here into scratch, then the rest.
        const k = this.be - pos;
        this.buf.copy(this.scratch, 0, pos - this.bs, this.be - this.bs);
        await this.advance(this.be);
        if (this.be - this.bs < n - k) return false;
        this.buf.copy(this.scratch, k, 0, n - k);
        this.hb = this.scratch;
        this.hv = this.scratchView;
        this.ho = 0;
        return true;
      }
      // Past this chunk: the next one (or, without a sink, the one holding pos).
      // Each round reads something or lowers the limit below pos + n.
      await this.advance(pos);
    }
  }

  /** 8 bytes at `pos`, from the chunk when they are in it, else read; undefined past the end. */
  private async u64At(pos: number): Promise<number | undefined> {
    if (pos >= this.bs && pos + 8 <= this.be) return readU64(this.buf, pos - this.bs);
    const b = Buffer.alloc(8);
    let got = 0;
    while (got < 8) {
      const { bytesRead } = await this.fh.read(b, got, 8 - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === 8 ? readU64(b, 0) : undefined;
  }

  // -------------------------------------------------------------------------
  // Emitting committed bytes (with a sink)

  private async emit(): Promise<void> {
    const sink = this.opts.sink!;
    while (this.queue.length) {
      const c = this.queue[0]!;
      const to = Math.min(this.committed, c.end);
      if (to > this.emitted) {
        await sink(c.buf.subarray(this.emitted - c.start, to - c.start));
        this.emitted = to;
      }
      if (this.emitted < c.end) break;
      this.queue.shift();
    }
  }

  // -------------------------------------------------------------------------
  // The walk

  async run(): Promise<RecordScanResult> {
    let tpos = this.be;
    const framed = this.opts.framedUntil ?? 0;
    let n = 0;
    for (;;) {
      if ((++n & 0x3ff) === 0) checkAbort(this.opts.signal);
      if (!(await this.need(tpos, TRANS_HDR_LEN))) break;
      const h = this.hb;
      const o = this.ho;
      const tlen = readU64(h, o + 8);
      const status = h[o + 16]!;
      const tidHi = i32(h, o);
      const tidLo = i32(h, o + 4);
      if (tpos + tlen + 8 > this.limit || status === 0x63 /* c */) break;
      const metaLen = TRANS_HDR_LEN + h.readUInt16BE(o + 17) + h.readUInt16BE(o + 19) + h.readUInt16BE(o + 21);
      if (tlen < metaLen) {
        // As ZODB: garbage at the end of the file (a crash turd, zero fill) if the
        // file's last 8 bytes are no plausible transaction length; else corruption.
        const size = this.opts.fileSize ?? this.limit;
        const rtl = size >= 8 ? ((await this.u64At(size - 8)) ?? 0) : 0;
        if (size - rtl < tpos || rtl < TRANS_HDR_LEN) break;
        this.corrupt('invalid transaction header (its length is shorter than its own metadata)', tpos);
      }
      if (status !== 0x20 && status !== 0x70 && status !== 0x75) {
        this.corrupt(`invalid transaction status 0x${status.toString(16)}`, tpos);
      }
      const tend = tpos + tlen;
      const trailer = await this.u64At(tend);
      if (trailer === undefined) break; // the file is shorter now: this transaction is not all there
      if (trailer !== tlen) {
        // A transaction whose body is all there but whose trailer is not yet right
        // can only be the one being written at the very end.
        if (tend + 8 >= this.limit) break;
        this.corrupt(`redundant transaction length ${trailer} does not match ${tlen}`, tend);
      }
      if (tpos < framed && tend + 8 > framed) this.notFramed(framed);
      if (status !== 0x75 /* u */ && tend + 8 > framed) await this.records(tpos, tpos + metaLen, tend, tidHi, tidLo);
      tpos = tend + 8;
      this.committed = tpos;
      this.txnCount++;
      this.lastTidHi = tidHi;
      this.lastTidLo = tidLo;
      this.hasTid = true;
    }
    if (this.committed < framed) this.notFramed(framed);
    if (this.opts.sink) {
      // The last transaction's tail may not have been read yet (its trailer was read alone).
      while (this.be < this.committed) {
        const at = this.be;
        await this.load(at);
        if (this.be === at) this.shrank(at);
      }
      await this.emit();
    }
    if (this.hasTid) {
      this.lastTid = Buffer.alloc(8);
      this.lastTid.writeInt32BE(this.lastTidHi, 0);
      this.lastTid.writeInt32BE(this.lastTidLo, 4);
    }
    return { end: this.committed, txnCount: this.txnCount, lastTid: this.lastTid };
  }

  /** The data records [p, tend) of the transaction at `tpos`, checked and reported. */
  private async records(tpos: number, p: number, tend: number, tidHi: number, tidLo: number): Promise<void> {
    const onRecord = this.onRecord;
    const index = this.index;
    const tposHi = Math.floor(tpos / TWO32) | 0;
    const tposLo = tpos | 0;
    let b = this.buf;
    let bv = this.view;
    let base = this.bs;
    let end = this.be;
    while (p < tend) {
      if (p + DATA_HDR_LEN > tend) this.corrupt('a data record header runs past the end of its transaction', p);
      let h: Buffer;
      let v: DataView;
      let o: number;
      if (p >= base && p + DATA_HDR_LEN <= end) {
        h = b;
        v = bv;
        o = p - base;
      } else {
        if (!(await this.need(p, DATA_HDR_LEN))) this.shrank(p);
        h = this.hb;
        v = this.hv;
        o = this.ho;
        b = this.buf;
        bv = this.view;
        base = this.bs;
        end = this.be;
      }
      // The header's fields as big-endian int32 halves, compared in place (a DataView read is one load).
      if (v.getInt32(o + 28) !== tposLo || v.getInt32(o + 24) !== tposHi) this.corrupt(`a data record points to transaction ${readU64(h, o + 24)}, not ${tpos}`, p);
      if (v.getUint16(o + 32) !== 0) this.corrupt('a data record has a version (versions are not supported since ZODB 3.9)', p);
      const plenHi = v.getUint32(o + 34);
      const plen = plenHi >= 0x200000 ? Infinity : plenHi * TWO32 + v.getUint32(o + 38);
      const rlen = DATA_HDR_LEN + plen + (plen === 0 ? 8 : 0);
      if (p + rlen > tend) this.corrupt('a data record runs past the end of its transaction', p);
      if (v.getInt32(o + 8) !== tidHi || v.getInt32(o + 12) !== tidLo) this.corrupt('a data record carries another transaction id', p);
      if (index !== undefined) index.setAtView(v, o, p);
      else if (onRecord !== undefined) onRecord(h, o, p);
      p += rlen;
    }
  }

  /** Waits for the read in flight (so the file can be closed cleanly). */
  async settle(): Promise<void> {
    while (this.ahead.length) await this.dropOldest();
  }
}
