/**
 * What each piece of a repozo repository holds: its transactions (count,
 * first and last tid, the last one's time, user and description) and the
 * blob revisions its records reference. A piece is a slice of a FileStorage
 * starting at a transaction boundary; it is walked as a stream (walkPiece),
 * with the scanner's checks but never a whole transaction in memory, since
 * `list` runs on pieces anyone who can write the backup folder may have made.
 *
 * Pieces never change, so what was learned is cached beside them in
 * `.plone-backup-cache.json` (keyed by name, size and mtime); neither repozo
 * nor collective.recipe.backup looks at that file.
 */

import { createHash, type Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from '../base/errors';
import { DATA_HDR_LEN, type RecordInfo, TRANS_HDR_LEN, decodeTxnHeader, readU64 } from '../zodb/filestorage';
import { isBlobPickle } from '../zodb/pickle';
import { type DatLine, type RepoFile, datLinesFor, datName, allChains, listRepository, readDat } from './repository';
import { readPiece } from '../base/streams';
import { tidToDate } from '../zodb/tid';
import { READ_CAPS, readFileCapped, writeFileAtomic } from '../base/io';

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

/**
 * What reading a piece whole measured: its size (uncompressed) and md5, so
 * `check` verifies a piece from the same read that described it (see
 * verifyChain's `measured`). By the piece's path.
 */
export interface PieceMeasure {
  size: number;
  md5?: string;
  /** The piece could not be read whole (PIECE_BAD: a damaged gzip stream); size and md5 are then partial. */
  error?: PloneBackupError;
}

export interface MeasureRequest {
  /** Filled with what each piece walked (not a cached one) measured. */
  into: Map<string, PieceMeasure>;
  /** Sizes only: no md5 (verify -Q). */
  quick?: boolean;
}

/**
 * Passes the chunks of `it` on, counting (and hashing) each; `failed` is set
 * when reading itself failed (then the measure is incomplete).
 */
async function* tee(it: AsyncIterator<Buffer>, m: { size: number; hash?: Hash; failed: boolean; error?: PloneBackupError }): AsyncGenerator<Buffer> {
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      m.hash?.update(r.value);
      m.size += r.value.length;
      yield r.value;
    }
  } catch (e) {
    // A damaged piece is reported from this read; any other failure (a
    // vanished file, an I/O error) leaves the piece to verify's own read.
    if (PloneBackupError.is(e, 'PIECE_BAD')) m.error = e;
    else m.failed = true;
    throw e;
  } finally {
    await it.return?.(undefined);
  }
}

interface CacheFile {
  version: 1;
  pieces: Record<string, { diskSize: number; mtimeMs: number; info: PieceInfo }>;
}

/**
 * Pulls exact amounts from a stream of chunks without ever holding more than
 * one chunk plus the small piece asked for: `take` is only asked for bounded
 * sizes (a header, a record's first 512 bytes), and long stretches (pickle
 * bodies) are skipped chunk by chunk. So the memory a piece costs never
 * depends on a length field read from it.
 */
class ChunkReader {
  /** The current chunk and the offset of its first unread byte (no subarray per read: the walk reads millions of record headers). */
  buf: Buffer = Buffer.alloc(0);
  off = 0;
  private done = false;
  /** Bytes consumed so far. */
  consumed = 0;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private get left(): number {
    return this.buf.length - this.off;
  }

  private async fill(): Promise<boolean> {
    while (this.left === 0) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) this.done = true;
      else {
        this.buf = r.value;
        this.off = 0;
      }
    }
    return true;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /**
   * When the current chunk holds n more bytes: consumes them and returns
   * their offset in `buf`; else -1 (then `take`). Most record headers are
   * read this way, without an await or an allocation per record.
   */
  now(n: number): number {
    if (this.left < n) return -1;
    const at = this.off;
    this.off += n;
    this.consumed += n;
    return at;
  }

  /** Exactly n bytes, or fewer only at the end of the data. n must be small. */
  async take(n: number): Promise<Buffer> {
    if (!(await this.fill())) return Buffer.alloc(0);
    const at = this.now(n);
    if (at >= 0) return this.buf.subarray(at, at + n);
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n && (await this.fill())) {
      const k = Math.min(n - got, this.left);
      this.buf.copy(out, got, this.off, this.off + k);
      this.off += k;
      got += k;
    }
    this.consumed += got;
    return out.subarray(0, got);
  }

  /** Drops n bytes; returns how many there were. */
  async skip(n: number): Promise<number> {
    let left = n;
    for (;;) {
      const k = Math.min(left, this.left);
      this.off += k;
      left -= k;
      if (left === 0 || !(await this.fill())) break;
    }
    this.consumed += n - left;
    return n - left;
  }
}

const BLOB_GLOBAL = Buffer.from('cZODB.blob\nBlob\n', 'latin1');

/** Whether the pickle head b[at, at + n) names ZODB.blob.Blob (the scanner's fast path first, without a copy). */
function blobAt(b: Buffer, at: number, n: number): boolean {
  if (n > 3 && b[at] === 0x80 && b[at + 2] === 0x63) return n >= 2 + BLOB_GLOBAL.length && b.compare(BLOB_GLOBAL, 0, BLOB_GLOBAL.length, at + 2, at + 2 + BLOB_GLOBAL.length) === 0;
  return isBlobPickle(b.subarray(at, at + n));
}

interface PieceTxn {
  tid: Buffer;
  user: Buffer;
  description: Buffer;
}

/**
 * Walks the transactions of one piece from a stream of its bytes (byte 0 at
 * Data.fs position `start`; the walk begins at `first`) with the checks of
 * TxnScanner, in memory bounded by the chunk size whatever the lengths in the
 * piece claim: a transaction is never gathered whole (a 1 MB .fsz can inflate
 * to gigabytes, and a header can claim any length); records are reported one
 * by one. A piece holds whole committed transactions only, so data that ends
 * inside one is PIECE_BAD; a transaction that runs past `limit` (a known end;
 * Infinity lets the data decide) or has status 'c' ends the walk quietly, as
 * in the scanner, and the caller compares the end reached with the one
 * expected.
 */
export async function walkPiece(
  chunks: AsyncIterator<Buffer>,
  file: string,
  start: number,
  first: number,
  limit: number,
  each: { txn?: (t: PieceTxn) => void; record?: (r: RecordInfo) => void },
  signal?: AbortSignal,
): Promise<{ end: number; transactions: number }> {
  const rd = new ChunkReader(chunks);
  await rd.skip(first - start); // a full piece's magic
  let pos = first;
  let transactions = 0;
  const corrupt = (why: string, position: number): never => {
    throw new PloneBackupError('FS_CORRUPT', `${file} is damaged at byte ${position}: ${why}.`, {
      path: file,
      position,
      hint: 'Keep the piece for inspection and make a new full backup (-F).',
    });
  };
  const short = (tpos: number, tlen: number): never => {
    throw new PloneBackupError('PIECE_BAD', `${file} ends at byte ${start + rd.consumed}, inside the transaction at byte ${tpos} that claims ${tlen} bytes.`, {
      path: file,
      position: tpos,
      hint: 'The piece is cut short or damaged: make a new full backup (-F) and keep this one for inspection.',
    });
  };
  const need = async (n: number, tpos: number, tlen: number): Promise<Buffer> => {
    const b = await rd.take(n);
    if (b.length < n) short(tpos, tlen);
    return b;
  };
  const skip = async (n: number, tpos: number, tlen: number): Promise<void> => {
    if ((await rd.skip(n)) < n) short(tpos, tlen);
  };
  for (;;) {
    checkAbort(signal);
    if (await rd.atEnd()) break;
    const tpos = pos;
    const hb = await rd.take(TRANS_HDR_LEN);
    if (hb.length < TRANS_HDR_LEN) short(tpos, TRANS_HDR_LEN);
    const h = decodeTxnHeader(hb);
    if (h.status === 'c' || tpos + h.tlen + 8 > limit) break;
    const metaLen = TRANS_HDR_LEN + h.ulen + h.dlen + h.elen;
    // The scanner ends quietly here ("garbage at the end") when the file's tail
    // is no transaction length; a stream has no tail to look at.
    if (h.tlen < metaLen) break;
    if (h.status !== ' ' && h.status !== 'p' && h.status !== 'u') corrupt(`invalid transaction status 0x${h.status.charCodeAt(0).toString(16)}`, tpos);
    const user = Buffer.from(await need(h.ulen, tpos, h.tlen));
    const description = Buffer.from(await need(h.dlen, tpos, h.tlen));
    await need(h.elen, tpos, h.tlen);
    // A record that does not add up is reported only once the trailer is read:
    // the transaction being written at the very end is torn, not corrupt.
    let recErr: [string, number] | undefined;
    let o = metaLen;
    const recs: RecordInfo[] = [];
    if (h.status !== 'u') {
      while (o < h.tlen) {
        const p = tpos + o;
        if (o + DATA_HDR_LEN > h.tlen) {
          recErr = ['a data record header runs past the end of its transaction', p];
          break;
        }
        // In place when the chunk holds the header: no await, no allocation.
        let b = rd.buf;
        let q = rd.now(DATA_HDR_LEN);
        if (q < 0) {
          b = await need(DATA_HDR_LEN, tpos, h.tlen);
          q = 0;
        }
        o += DATA_HDR_LEN;
        const tloc = readU64(b, q + 24);
        const plen = readU64(b, q + 34);
        const rlen = DATA_HDR_LEN + plen + (plen === 0 ? 8 : 0);
        if (tloc !== tpos) recErr = [`a data record points to transaction ${tloc}, not ${tpos}`, p];
        else if (b[q + 32] !== 0 || b[q + 33] !== 0) recErr = ['a data record has a version (versions are not supported since ZODB 3.9)', p];
        else if (o - DATA_HDR_LEN + rlen > h.tlen) recErr = ['a data record runs past the end of its transaction', p];
        else if (b.compare(h.tid, 0, 8, q + 8, q + 16) !== 0) recErr = ['a data record carries another transaction id', p];
        if (recErr) break;
        // Only records that matter to the caller are kept (until the trailer confirms them).
        let backpointer = 0;
        let blob = false;
        if (plen === 0) {
          const r = rd.now(8);
          backpointer = readU64(r >= 0 ? rd.buf : await need(8, tpos, h.tlen), Math.max(r, 0));
          o += 8;
        } else {
          const head = Math.min(plen, 512);
          const r = rd.now(head);
          blob = r >= 0 ? blobAt(rd.buf, r, head) : blobAt(await need(head, tpos, h.tlen), 0, head);
          if (plen > head && rd.now(plen - head) < 0) await skip(plen - head, tpos, h.tlen);
          o += plen;
        }
        if (blob || backpointer) {
          const rec: RecordInfo = { pos: p, oid: Buffer.from(b.subarray(q, q + 8)), tid: h.tid, prev: readU64(b, q + 16), plen, blob };
          if (plen === 0) rec.backpointer = backpointer;
          recs.push(rec);
        }
      }
    }
    if (!recErr && o !== h.tlen && h.status !== 'u') recErr = ['data records do not add up to the transaction length', tpos + o];
    const rest = h.tlen - o;
    if (rest > 0) await skip(rest, tpos, h.tlen);
    const tend = tpos + h.tlen;
    const trailer = readU64(await need(8, tpos, h.tlen), 0);
    if (trailer !== h.tlen) {
      if (tend + 8 >= limit || (await rd.atEnd())) break;
      corrupt(`redundant transaction length ${trailer} does not match ${h.tlen}`, tend);
    }
    if (recErr) corrupt(recErr[0], recErr[1]);
    pos = tend + 8;
    transactions++;
    if (h.status === 'u') continue; // undone (legacy): skipped, as ZODB does
    each.txn?.({ tid: h.tid, user, description });
    for (const r of recs) each.record?.(r);
  }
  return { end: pos, transactions };
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
  measure?: MeasureRequest,
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
  // Both kinds are streamed (gzip pieces inflated chunk by chunk): what a
  // piece costs in memory never depends on what its bytes claim.
  // With `measure`, the bytes walked are also counted and hashed, and what the
  // walk left (it stops at a damaged transaction) is read to the end: the one
  // read of the piece `check` does.
  const m: { size: number; hash?: Hash; failed: boolean; error?: PloneBackupError } = { size: 0, hash: measure && !measure.quick ? createHash('md5') : undefined, failed: false };
  const it = measure ? tee(readPiece(file, f.gzip, signal), m) : readPiece(file, f.gzip, signal);
  try {
    let last: { tid: Buffer; user: Buffer; description: Buffer } | undefined;
    const backpointers: [string, string, number][] = [];
    const r = await walkPiece(
      it,
      file,
      start,
      first,
      // The real data decides where the walk ends (as the piece's size did for
      // plain pieces): bytes past the .dat's END then show as a problem below.
      Infinity,
      {
        txn: (t) => {
          if (!info.firstTid) info.firstTid = t.tid.toString('hex');
          last = t;
        },
        record: (rec) => {
          if (rec.blob) {
            info.blobs.push([rec.oid.toString('hex'), rec.tid.toString('hex')]);
            blobPositions.add(rec.pos);
          } else if (rec.backpointer) backpointers.push([rec.oid.toString('hex'), rec.tid.toString('hex'), rec.backpointer]);
        },
      },
      signal,
    );
    for (const [oid, tid, target] of backpointers) if (blobPositions.has(target)) info.blobs.push([oid, tid]);
    info.transactions = r.transactions;
    if (!line) info.end = r.end;
    if (last) {
      info.lastTid = last.tid.toString('hex');
      info.lastTime = tidToDate(last.tid).toISOString();
      info.lastUser = last.user.toString('utf8');
      info.lastDescription = last.description.toString('utf8');
    }
    if (r.end !== info.end) info.problem = `its transactions end at byte ${r.end}, not at ${info.end}`;
  } catch (e) {
    info.problem = PloneBackupError.is(e) ? e.message : String((e as Error).message ?? e);
  }
  try {
    if (measure && !m.failed) {
      if (!m.error) while (!(await it.next()).done);
      measure.into.set(file, { size: m.size, md5: m.hash?.digest('hex'), error: m.error });
    }
  } catch (e) {
    if (m.error && measure) measure.into.set(file, { size: m.size, error: m.error });
    else if (PloneBackupError.is(e, 'PIECE_BAD') && measure) measure.into.set(file, { size: m.size, error: e });
    // Reading failed: no measure, verify reads the piece itself and says why.
  } finally {
    await it.return(undefined);
  }
  return info;
}

/** Every chain of a repository with what each piece holds (cached). */
export async function describeRepository(repo: string, signal?: AbortSignal, opts: { writeCache?: boolean; measure?: MeasureRequest } = {}): Promise<ChainInfo[]> {
  const { files } = await listRepository(repo);
  const cachePath = path.join(repo, CACHE_FILE);
  let cache: CacheFile = { version: 1, pieces: {} };
  try {
    // Read as hostile input: a link to /dev/zero or a FIFO must not hang or fill memory.
    const c = JSON.parse((await readFileCapped(cachePath, READ_CAPS.manifest, { noFollow: true, what: 'The piece cache' })).toString('utf8')) as CacheFile;
    if (c.version === 1 && c.pieces) cache = c;
  } catch {
    // no cache yet, or an unreadable one: rebuilt below
  }
  let changed = false;
  const seen = new Set<string>();
  const chains: ChainInfo[] = [];
  // Every piece's stat at once, not one await after another: with the cache,
  // the stats are most of what listing 500 pieces costs.
  const stats = new Map<string, Promise<import('node:fs').Stats>>();
  for (const f of files) {
    const p = fsp.stat(path.join(repo, f.name));
    p.catch(() => undefined); // surfaced where it is awaited
    stats.set(f.name, p);
  }
  for (const chain of allChains(files)) {
    let lines: DatLine[] | undefined;
    try {
      lines = await readDat(path.join(repo, datName(chain[0]!.stamp)));
    } catch {
      lines = undefined;
    }
    const regs = lines ? datLinesFor(chain, lines) : chain.map(() => undefined);
    const blobPositions = new Set<number>();
    const pieces: PieceInfo[] = [];
    for (let i = 0; i < chain.length; i++) {
      const f = chain[i]!;
      seen.add(f.name);
      const st = await (stats.get(f.name) ?? fsp.stat(path.join(repo, f.name)));
      const hit = cache.pieces[f.name];
      let info: PieceInfo;
      // A cached entry can't tell the positions of blob records, needed only by
      // undo records of later pieces; those are rare enough to rescan for.
      if (hit && hit.diskSize === st.size && hit.mtimeMs === st.mtimeMs && hit.info.registered === !!regs[i]) info = hit.info;
      else {
        info = await describePiece(repo, f, regs[i], blobPositions, signal, opts.measure);
        if (!info.problem) {
          cache.pieces[f.name] = { diskSize: st.size, mtimeMs: st.mtimeMs, info };
          changed = true;
        }
      }
      pieces.push(info);
    }
    chains.push({ full: pieces[0]!, pieces });
  }
  for (const k of Object.keys(cache.pieces)) {
    if (!seen.has(k)) {
      delete cache.pieces[k];
      changed = true;
    }
  }
  // writeCache false: a caller that may not write there (a folder outside the workspace before consent).
  if (changed && opts.writeCache !== false) await writeFileAtomic(cachePath, JSON.stringify(cache)).catch(() => undefined);
  return chains;
}
