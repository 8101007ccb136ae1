/**
 * Which blob files a FileStorage state needs: every Blob record (oid, tid),
 * and every undo record whose back pointer leads to a Blob record (ZODB gives
 * the undo its own blob file under the undo's tid).
 */

import type { FileHandle } from 'node:fs/promises';
import { DATA_HDR_LEN, scanRange, decodeDataHeader, readU64, type RecordInfo } from './filestorage';
import { isBlobPickle } from './pickle';

export interface BlobRef {
  oid: Buffer;
  tid: Buffer;
}

/** Whether the data record at `pos` (following back pointers) is a Blob. */
export async function isBlobRecordAt(st: { fh: FileHandle; size: number }, pos: number, depth = 0): Promise<boolean> {
  if (depth > 32 || pos < 4 || pos + DATA_HDR_LEN > st.size) return false;
  const h = Buffer.alloc(DATA_HDR_LEN + 64);
  const { bytesRead } = await st.fh.read(h, 0, h.length, pos);
  if (bytesRead < DATA_HDR_LEN) return false;
  const d = decodeDataHeader(h);
  if (d.plen === 0) {
    const bp = readU64(h, DATA_HDR_LEN);
    return bp > 0 && isBlobRecordAt(st, bp, depth + 1);
  }
  return isBlobPickle(h.subarray(DATA_HDR_LEN, Math.min(bytesRead, DATA_HDR_LEN + d.plen)));
}

/** Collects blob refs from records as a scan passes them (the scan must check blobs). */
export class BlobCollector {
  readonly refs: BlobRef[] = [];
  private readonly positions = new Set<number>();
  private readonly backpointers: { oid: Buffer; tid: Buffer; target: number }[] = [];

  add(r: RecordInfo): void {
    if (r.blob) {
      this.refs.push({ oid: r.oid, tid: r.tid });
      this.positions.add(r.pos);
    } else if (r.backpointer) {
      this.backpointers.push({ oid: r.oid, tid: r.tid, target: r.backpointer });
    }
  }

  /** Resolves back pointers; those before `start` are read from the file. */
  async finish(st: { fh: FileHandle; size: number }, start: number): Promise<BlobRef[]> {
    for (const b of this.backpointers) {
      if (this.positions.has(b.target) || (b.target < start && (await isBlobRecordAt(st, b.target)))) {
        this.refs.push({ oid: b.oid, tid: b.tid });
      }
    }
    this.backpointers.length = 0;
    return this.refs;
  }
}

/** The blob refs of bytes [start, end) of an open Data.fs. */
export async function scanBlobRefs(
  st: { fh: FileHandle; size: number; path: string },
  start: number,
  end: number,
  signal?: AbortSignal,
  onProgress?: (pos: number) => void,
): Promise<{ refs: BlobRef[]; end: number; txnCount: number; lastTid?: Buffer }> {
  const c = new BlobCollector();
  const r = await scanRange(st, start, end, { fileSize: st.size, signal, onProgress }, (t) => t.records.forEach((x) => c.add(x)));
  return { refs: await c.finish(st, start), ...r };
}
