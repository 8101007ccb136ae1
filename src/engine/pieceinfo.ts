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

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PloneBackupError, checkAbort } from './errors';
import { DATA_HDR_LEN, type RecordInfo, TRANS_HDR_LEN, decodeTxnHeader, readU64 } from './filestorage';
import { isBlobPickle } from './pickle';
import { type DatLine, type RepoFile, datLinesFor, datName, allChains, listRepository, readDat } from './repository';
import { readPiece } from './streams';
import { tidToDate } from './tid';
import { READ_CAPS, readFileCapped, writeFileAtomic } from './io';

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
  private cur: Buffer = Buffer.alloc(0);
  private done = false;
  /** Bytes consumed so far. */
  consumed = 0;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    while (this.cur.length === 0) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) this.done = true;
      else this.cur = r.value;
    }
    return true;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /** Exactly n bytes, or fewer only at the end of the data. n must be small. */
  async take(n: number): Promise<Buffer> {
    if (!(await this.fill())) return Buffer.alloc(0);
    if (this.cur.length >= n) {
      const out = this.cur.subarray(0, n);
      this.cur = this.cur.subarray(n);
      this.consumed += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n && (await this.fill())) {
      const k = Math.min(n - got, this.cur.length);
      this.cur.copy(out, got, 0, k);
      this.cur = this.cur.subarray(k);
      got += k;
    }
    this.consumed += got;
    return out.subarray(0, got);
  }

  /** Drops n bytes; returns how many there were. */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0 && (await this.fill())) {
      const k = Math.min(left, this.cur.length);
      this.cur = this.cur.subarray(k);
      left -= k;
    }
    this.consumed += n - left;
    return n - left;
  }
}

interface PieceTxn {
  tid: Buffer;
  user: Buffer;
  description: Buffer;
}

/**
 * Walks the transactions of one piece from a stream of its bytes (byte 0 at
 * Data.fs position `start`; the walk begins at `first`), with the checks of TxnScanner, in memory bounded
 * by the chunk size whatever the lengths in the piece claim: a transaction is
 * never gathered whole (a 1 MB .fsz can inflate to gigabytes, and a header
 * can claim any length), records are reported one by one. A piece holds
 * whole committed transactions only, so data that ends inside one is
 * PIECE_BAD; a transaction that runs past `limit` (the end the .dat
 * registers) or has status 'c' ends the walk quietly, as in the scanner, and
 * the caller compares the end reached with the one expected.
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
        const b = await need(DATA_HDR_LEN, tpos, h.tlen);
        o += DATA_HDR_LEN;
        const tloc = readU64(b, 24);
        const plen = readU64(b, 34);
        const rlen = DATA_HDR_LEN + plen + (plen === 0 ? 8 : 0);
        if (tloc !== tpos) recErr = [`a data record points to transaction ${tloc}, not ${tpos}`, p];
        else if (b[32] !== 0 || b[33] !== 0) recErr = ['a data record has a version (versions are not supported since ZODB 3.9)', p];
        else if (o - DATA_HDR_LEN + rlen > h.tlen) recErr = ['a data record runs past the end of its transaction', p];
        else if (!b.subarray(8, 16).equals(h.tid)) recErr = ['a data record carries another transaction id', p];
        if (recErr) break;
        const rec: RecordInfo = { pos: p, oid: Buffer.from(b.subarray(0, 8)), tid: h.tid, prev: readU64(b, 16), plen, blob: false };
        if (plen === 0) {
          rec.backpointer = readU64(await need(8, tpos, h.tlen), 0);
          o += 8;
        } else {
          const head = Math.min(plen, 512);
          rec.blob = isBlobPickle(await need(head, tpos, h.tlen));
          if ((await rd.skip(plen - head)) < plen - head) short(tpos, h.tlen);
          o += plen;
        }
        // Only records that matter to the caller are kept until the trailer confirms them.
        if (rec.blob || rec.backpointer) recs.push(rec);
      }
    }
    if (!recErr && o !== h.tlen && h.status !== 'u') recErr = ['data records do not add up to the transaction length', tpos + o];
    const rest = h.tlen - o;
    if ((await rd.skip(rest)) < rest) short(tpos, h.tlen);
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
  const it = readPiece(file, f.gzip, signal);
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
  } finally {
    await it.return(undefined);
  }
  return info;
}

/** Every chain of a repository with what each piece holds (cached). */
export async function describeRepository(repo: string, signal?: AbortSignal): Promise<ChainInfo[]> {
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
  for (const chain of allChains(files)) {
    let lines: DatLine[] | undefined;
    try {
      lines = await readDat(path.join(repo, datName(chain[0].stamp)));
    } catch {
      lines = undefined;
    }
    const regs = lines ? datLinesFor(chain, lines) : chain.map(() => undefined);
    const blobPositions = new Set<number>();
    const pieces: PieceInfo[] = [];
    for (let i = 0; i < chain.length; i++) {
      const f = chain[i];
      seen.add(f.name);
      const st = await fsp.stat(path.join(repo, f.name));
      const hit = cache.pieces[f.name];
      let info: PieceInfo;
      // A cached entry can't tell the positions of blob records, needed only by
      // undo records of later pieces; those are rare enough to rescan for.
      if (hit && hit.diskSize === st.size && hit.mtimeMs === st.mtimeMs && hit.info.registered === !!regs[i]) info = hit.info;
      else {
        info = await describePiece(repo, f, regs[i], blobPositions, signal);
        if (!info.problem) {
          cache.pieces[f.name] = { diskSize: st.size, mtimeMs: st.mtimeMs, info };
          changed = true;
        }
      }
      pieces.push(info);
    }
    chains.push({ full: pieces[0], pieces });
  }
  for (const k of Object.keys(cache.pieces)) {
    if (!seen.has(k)) {
      delete cache.pieces[k];
      changed = true;
    }
  }
  if (changed) await writeFileAtomic(cachePath, JSON.stringify(cache)).catch(() => undefined);
  return chains;
}
