/**
 * Data.fs.index, trusted the way ZODB trusts it.
 *
 * repozo -B opens the FileStorage read-only, and ZODB then loads the index
 * ZODB saved beside Data.fs when it looks right for the file
 * (FileStorage._restore_index, _check_sanity) and reads only the
 * transactions after it (read_index from the index's pos). So repozo's full
 * backup costs a load of the index and a copy, not a walk of every record.
 * This is the same decision, with ZODB's checks and a few more, so an index
 * that is stale (the file was packed, restored or replaced since), truncated,
 * foreign or crafted is not trusted: not trusting only costs a walk.
 *
 * ZODB's checks: the index is an fsIndex pickle stream; its `pos` is at least
 * 100 and within the file; walking back from `pos` over undone and empty
 * transactions (trailer, then the header it points to, lengths agreeing,
 * status ' ' or 'p'), the first data records (up to 5) of the last
 * transaction that has any lie within it, point to it, and are where the
 * index says their oid is. Ours besides: every position the index holds lies
 * in [4, pos); the index is a regular file, not reached through a symlink; a
 * few records spread over the index (the newest oid of up to 16 pages) are
 * data records of that oid ending before `pos`; and a transaction that
 * begins at `pos` is newer than the last one the index covers (ZODB only
 * warns of a "time-stamp reduction" there).
 */

import type { FileHandle } from 'node:fs/promises';
import { PloneBackupError } from '../base/errors';
import { readAt } from '../base/streams';
import { DATA_HDR_LEN, TRANS_HDR_LEN, decodeDataHeader, decodeTxnHeader, readU64 } from './filestorage';
import { FsIndex, oidFromKey, readIndexFile } from './fsindex';

/** ZODB's _check_sanity: an index ending before this is not trusted. */
const MIN_POS = 100;
/** ZODB checks up to this many data records of the last transaction. */
const MAX_CHECKED = 5;
/** Undone or empty transactions walked back over before giving up (ZODB: until the start). */
const MAX_WALK_BACK = 1000;
/** Index entries checked against the records they name, besides ZODB's. */
const SAMPLES = 16;

export interface TrustedIndex {
  index: FsIndex;
  /** Where the part of the file the index describes ends (a transaction boundary). */
  pos: number;
  /** The tid of the last transaction before `pos`. */
  ltid: Buffer;
}

export type StorageIndexResult = ({ ok: true } & TrustedIndex) | { ok: false; reason: string };

/** The index file ZODB keeps beside a FileStorage. */
export function storageIndexPath(file: string): string {
  return `${file}.index`;
}

/** Exactly `n` bytes at `pos`, or undefined where the file ends sooner. */
async function readExactly(fh: FileHandle, pos: number, n: number): Promise<Buffer | undefined> {
  const b = await readAt(fh, pos, n);
  return b.length === n ? b : undefined;
}

/**
 * Loads `<file>.index` and decides whether it may stand for the walk of
 * `st`'s first `pos` bytes. Never throws for the index's sake (an unusable
 * one is `{ ok: false, reason }`); an abort or an error reading Data.fs does.
 */
export async function loadStorageIndex(st: { fh: FileHandle; path: string; size: number }): Promise<StorageIndexResult> {
  const file = storageIndexPath(st.path);
  let decoded: { pos: number; index: FsIndex };
  try {
    decoded = await readIndexFile(file, { checkPositions: true, noFollow: true });
  } catch (e) {
    if (PloneBackupError.is(e, 'ABORTED')) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || (PloneBackupError.is(e, 'INDEX_BAD') && /does not exist/.test(e.message))) return { ok: false, reason: `there is no ${file}` };
    return { ok: false, reason: `${file} cannot be used: ${(e as Error).message}` };
  }
  const { pos, index } = decoded;
  const refuse = (why: string): StorageIndexResult => ({ ok: false, reason: `${file} does not match ${st.path} (${why})` });
  if (pos < MIN_POS) return refuse(`its end, ${pos}, is before byte ${MIN_POS}`);
  if (pos > st.size) return refuse(`its end, ${pos}, is past the end of the file, ${st.size}`);
  const ltid = await checkSanity(st.fh, index, pos);
  if (typeof ltid === 'string') return refuse(ltid);
  const sampled = await checkSamples(st.fh, index, pos);
  if (sampled) return refuse(sampled);
  if (pos + TRANS_HDR_LEN <= st.size) {
    const next = await readExactly(st.fh, pos, TRANS_HDR_LEN);
    if (next && Buffer.compare(next.subarray(0, 8), ltid) <= 0) return refuse(`the transaction at its end is not newer than the last one it covers`);
  }
  return { ok: true, index, pos, ltid };
}

/** ZODB's _check_sanity: the last transaction's tid, or why the index is not trusted. */
async function checkSanity(fh: FileHandle, index: FsIndex, end: number): Promise<Buffer | string> {
  let pos = end;
  let ltid: Buffer | undefined;
  for (let steps = 0; steps < MAX_WALK_BACK; steps++) {
    const t = pos - 8 >= 4 ? await readExactly(fh, pos - 8, 8) : undefined;
    if (!t) return `no transaction ends at ${pos}`;
    const tl = readU64(t, 0);
    const tpos = pos - tl - 8;
    if (!(tpos >= 4)) return `no transaction ends at ${pos}`;
    const hb = await readExactly(fh, tpos, TRANS_HDR_LEN);
    if (!hb) return `no transaction ends at ${pos}`;
    const h = decodeTxnHeader(hb);
    ltid ??= h.tid;
    if (h.tlen !== tl) return `the transaction ending at ${pos} has inconsistent lengths`;
    pos = tpos;
    if (h.status === 'u') continue; // undone: search back, as ZODB
    if (h.status !== ' ' && h.status !== 'p') return `the transaction at ${tpos} has status 0x${h.status.charCodeAt(0).toString(16)}`;
    const headerLen = TRANS_HDR_LEN + h.ulen + h.dlen + h.elen;
    if (tl < headerLen) return `the transaction at ${tpos} is shorter than its header`;
    const tend = tpos + tl;
    let opos = tpos + headerLen;
    if (opos === tend) continue; // empty: search back, as ZODB
    for (let checked = 0; opos < tend && checked < MAX_CHECKED; checked++) {
      const db = await readExactly(fh, opos, DATA_HDR_LEN);
      if (!db) return `the data record at ${opos} is cut short`;
      const d = decodeDataHeader(db);
      const rlen = DATA_HDR_LEN + (d.plen || 8);
      if (opos + rlen > tend || d.tloc !== tpos || d.vlen !== 0) return `the data record at ${opos} does not belong to the transaction at ${tpos}`;
      if (index.get(d.oid) !== opos) return `it does not have oid 0x${d.oid.toString('hex')} at ${opos}, where the last transaction wrote it`;
      opos += rlen;
    }
    return ltid;
  }
  return `no data record in the last ${MAX_WALK_BACK} transactions before ${end}`;
}

/** Up to SAMPLES entries, spread over the index: each must name a data record of its oid that ends before `end`. */
async function checkSamples(fh: FileHandle, index: FsIndex, end: number): Promise<string | undefined> {
  for (const [key, at] of index.map.samples(SAMPLES)) {
    const db = at + DATA_HDR_LEN <= end ? await readExactly(fh, at, DATA_HDR_LEN) : undefined;
    if (!db) return `its record at ${at} is cut short`;
    const d = decodeDataHeader(db);
    const oid = oidFromKey(key);
    if (!d.oid.equals(oid)) return `the record at ${at} is not one of oid 0x${oid.toString('hex')}`;
    if (d.vlen !== 0 || !(d.tloc >= 4 && d.tloc < at) || at + DATA_HDR_LEN + (d.plen || 8) > end) return `the record at ${at} is not a data record before its end`;
  }
  return undefined;
}
