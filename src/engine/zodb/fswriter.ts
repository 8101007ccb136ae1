/**
 * A FileStorage writer: commits transactions to a Data.fs the way ZODB does,
 * for tests, benchmarks and the sample deployment.
 *
 *   vote:   blob files are renamed into place, then the transaction is
 *           appended with status 'c' (header, user, description, extension,
 *           data records, trailer) and flushed;
 *   finish: the status byte at tpos + 16 is overwritten with ' '.
 *
 * Between the two, a reader sees a transaction that is not committed. Records
 * get prev pointers to the oid's previous record (from the writer's index) and
 * tloc = the transaction position; a record without data gets a back pointer.
 */

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { DATA_HDR_LEN, MAGIC_FS30, TRANS_HDR_LEN, encodeDataHeader, encodeTxnHeader, writeU64, openFileStorage, scanRange } from './filestorage';
import { FsIndex, encodeIndex, oidFromKey } from './fsindex';
import { BlobLayout, LAYOUT_FILE, BLOB_TMP_DIR, blobRelPath, oidDir } from './blobdir';
import { newTid } from './tid';

export interface WriteRecord {
  oid: Buffer | number;
  /** The pickle. Omit (with `backpointer`) for an undo-style record without data. */
  data?: Buffer;
  backpointer?: number;
  /** Content of the blob file of this revision (the record must be a Blob pickle). */
  blob?: Buffer;
}

export interface WriteTxn {
  tid?: Buffer;
  user?: string | Buffer;
  description?: string | Buffer;
  extension?: Buffer;
  /** ' ' (default) or 'p' when writing an already packed history. */
  status?: ' ' | 'p';
  records: WriteRecord[];
}

export interface WriterOptions {
  magic?: string;
  blobDir?: string;
  layout?: BlobLayout;
  /** fsync after vote and finish (ZODB does not by default; the tests don't need it). */
  fsync?: boolean;
  /** The clock for new tids. */
  now?: () => Date;
}

/** The pickle ZODB writes for a Blob's class reference and empty state. */
export const BLOB_PICKLE = Buffer.from('\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.', 'latin1');

export function oidBuffer(oid: Buffer | number): Buffer {
  if (Buffer.isBuffer(oid)) return oid;
  return oidFromKey(oid);
}

const asBuf = (v: string | Buffer | undefined): Buffer => (v === undefined ? Buffer.alloc(0) : Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8'));

export interface Voted {
  tid: Buffer;
  pos: number;
  end: number;
}

export class FileStorageWriter {
  readonly index = new FsIndex();
  private pos: number;
  private lastTid?: Buffer;
  private nextOid = 0;
  private voted?: Voted;

  private constructor(
    readonly path: string,
    private fh: FileHandle,
    pos: number,
    private readonly opts: WriterOptions,
  ) {
    this.pos = pos;
  }

  /** Creates a new Data.fs (fails if it exists). */
  static async create(file: string, opts: WriterOptions = {}): Promise<FileStorageWriter> {
    const fh = await fsp.open(file, 'wx+');
    await fh.write(Buffer.from(opts.magic ?? MAGIC_FS30, 'latin1'), 0, 4, 0);
    const w = new FileStorageWriter(file, fh, 4, opts);
    await w.initBlobDir();
    return w;
  }

  /** Opens an existing Data.fs for appending, scanning it for its end, index and last tid. */
  static async open(file: string, opts: WriterOptions = {}): Promise<FileStorageWriter> {
    const st = await openFileStorage(file);
    const index = new FsIndex();
    let scanned;
    try {
      scanned = await scanRange(st, 4, st.size, { noBlobCheck: true }, (t) => {
        for (const r of t.records) index.set(r.oid, r.pos);
      });
    } finally {
      await st.fh.close();
    }
    const fh = await fsp.open(file, 'r+');
    const w = new FileStorageWriter(file, fh, scanned.end, { ...opts, magic: st.magic });
    for (const [k, v] of index.map) w.index.map.set(k, v);
    w.lastTid = scanned.lastTid;
    let max = -1;
    for (const k of index.map.keys()) if (typeof k === 'number' && k > max) max = k;
    w.nextOid = max + 1;
    await w.initBlobDir();
    return w;
  }

  private async initBlobDir(): Promise<void> {
    const dir = this.opts.blobDir;
    if (!dir) return;
    await fsp.mkdir(path.join(dir, BLOB_TMP_DIR), { recursive: true });
    const layoutFile = path.join(dir, LAYOUT_FILE);
    try {
      await fsp.writeFile(layoutFile, this.opts.layout ?? 'bushy', { flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }

  /** The position after the last finished transaction. */
  get end(): number {
    return this.pos;
  }

  get lastTransactionId(): Buffer | undefined {
    return this.lastTid;
  }

  /** A fresh oid, as ZODB's new_oid hands them out. */
  newOid(): Buffer {
    return oidFromKey(this.nextOid++);
  }

  /** Encodes a transaction at position `tpos` (status as given), with prev pointers from `index`. */
  encode(txn: WriteTxn, tid: Buffer, tpos: number, status: string): { bytes: Buffer; positions: [Buffer, number][] } {
    const user = asBuf(txn.user);
    const desc = asBuf(txn.description);
    const ext = txn.extension ?? Buffer.alloc(0);
    const parts: Buffer[] = [];
    const positions: [Buffer, number][] = [];
    let p = tpos + TRANS_HDR_LEN + user.length + desc.length + ext.length;
    const seen = new Map<string, number>();
    for (const r of txn.records) {
      const oid = oidBuffer(r.oid);
      const key = oid.toString('hex');
      const prev = seen.get(key) ?? this.index.get(oid) ?? 0;
      const data = r.data ?? (r.blob && r.backpointer === undefined ? BLOB_PICKLE : undefined);
      const plen = data ? data.length : 0;
      parts.push(encodeDataHeader({ oid, tid, prev, tloc: tpos, vlen: 0, plen }));
      if (data) parts.push(data);
      else {
        const bp = Buffer.alloc(8);
        writeU64(bp, r.backpointer ?? 0, 0);
        parts.push(bp);
      }
      positions.push([oid, p]);
      seen.set(key, p);
      p += DATA_HDR_LEN + (plen || 8);
    }
    const tlen = p - tpos;
    const header = encodeTxnHeader({ tid, tlen, status, ulen: user.length, dlen: desc.length, elen: ext.length });
    const trailer = Buffer.alloc(8);
    writeU64(trailer, tlen, 0);
    return { bytes: Buffer.concat([header, user, desc, ext, ...parts, trailer]), positions };
  }

  /** tpc_vote: blobs into place, then the transaction appended with status 'c'. */
  async vote(txn: WriteTxn): Promise<Voted> {
    if (this.voted) throw new Error('a transaction is already voted');
    const tid = txn.tid ?? newTid(this.opts.now?.() ?? new Date(), this.lastTid);
    if (this.lastTid && Buffer.compare(tid, this.lastTid) <= 0) throw new Error('tids must increase');
    for (const r of txn.records) {
      if (!r.blob) continue;
      if (!this.opts.blobDir) throw new Error('a blob record needs a blob dir');
      const layout = this.opts.layout ?? 'bushy';
      const oid = oidBuffer(r.oid);
      const tmp = path.join(this.opts.blobDir, BLOB_TMP_DIR, `${oid.toString('hex')}-${tid.toString('hex')}.tmp`);
      await fsp.writeFile(tmp, r.blob);
      await fsp.mkdir(path.join(this.opts.blobDir, oidDir(oid, layout)), { recursive: true });
      await fsp.rename(tmp, path.join(this.opts.blobDir, blobRelPath(oid, tid, layout)));
    }
    const tpos = this.pos;
    const { bytes, positions } = this.encode(txn, tid, tpos, 'c');
    await this.fh.write(bytes, 0, bytes.length, tpos);
    if (this.opts.fsync) await this.fh.sync();
    this.voted = { tid, pos: tpos, end: tpos + bytes.length };
    this.pendingPositions = positions;
    this.pendingStatus = txn.status ?? ' ';
    return this.voted;
  }

  private pendingPositions: [Buffer, number][] = [];
  private pendingStatus = ' ';

  /** tpc_finish: flips the status byte to ' ' (or 'p'); the transaction is committed. */
  async finish(): Promise<Voted> {
    const v = this.voted;
    if (!v) throw new Error('nothing voted');
    await this.fh.write(Buffer.from(this.pendingStatus, 'latin1'), 0, 1, v.pos + 16);
    if (this.opts.fsync) await this.fh.sync();
    for (const [oid, p] of this.pendingPositions) this.index.set(oid, p);
    this.pos = v.end;
    this.lastTid = v.tid;
    this.voted = undefined;
    return v;
  }

  /** tpc_abort after a vote: the 'c' transaction is cut off again. */
  async abort(): Promise<void> {
    const v = this.voted;
    if (!v) return;
    await this.fh.truncate(v.pos);
    this.voted = undefined;
  }

  /** vote + finish. */
  async commit(txn: WriteTxn): Promise<Voted> {
    await this.vote(txn);
    return this.finish();
  }

  /** Writes Data.fs.index for the current end, as ZODB does on close. */
  async writeIndex(): Promise<void> {
    const tmp = `${this.path}.index_tmp`;
    await fsp.writeFile(tmp, encodeIndex(this.index, this.pos));
    await fsp.rename(tmp, `${this.path}.index`);
  }

  /**
   * A pack, the way a running ZODB does it as far as a backup can see: the
   * newest revision of every object is copied into `Data.fs.pack` (status
   * 'p', no history, back pointers resolved to data), the old file is renamed
   * to `Data.fs.old` and the packed one into place, then the blob files of the
   * revisions that are gone are removed. The writer goes on appending to the
   * new file.
   */
  async pack(): Promise<{ before: number; after: number; removedBlobs: number }> {
    if (this.voted) throw new Error('cannot pack during a commit');
    const before = this.pos;
    const packPath = `${this.path}.pack`;
    const src = await openFileStorage(this.path);
    const keep = new Map<string, { oid: Buffer; pos: number }>();
    const txns: {
      tid: Buffer;
      user: Buffer;
      description: Buffer;
      extension: Buffer;
      records: { oid: Buffer; pos: number; plen: number; backpointer?: number; blob: boolean }[];
    }[] = [];
    const blobFiles: { oid: Buffer; tid: Buffer }[] = [];
    await scanRange({ fh: src.fh, path: this.path }, 4, this.pos, {}, (t) => {
      txns.push({ tid: t.tid, user: t.user, description: t.description, extension: t.extension, records: t.records });
      for (const r of t.records) {
        keep.set(r.oid.toString('hex'), { oid: r.oid, pos: r.pos });
        if (r.blob || r.backpointer) blobFiles.push({ oid: r.oid, tid: r.tid });
      }
    });
    const current = new Set([...keep.values()].map((k) => k.pos));
    const readData = async (pos: number, depth = 0): Promise<Buffer | undefined> => {
      const h = Buffer.alloc(DATA_HDR_LEN);
      await src.fh.read(h, 0, DATA_HDR_LEN, pos);
      const plen = Number(h.readBigUInt64BE(34));
      if (plen === 0) {
        const bp = Buffer.alloc(8);
        await src.fh.read(bp, 0, 8, pos + DATA_HDR_LEN);
        const target = Number(bp.readBigUInt64BE(0));
        return target && depth < 32 ? readData(target, depth + 1) : undefined;
      }
      const d = Buffer.alloc(plen);
      await src.fh.read(d, 0, plen, pos + DATA_HDR_LEN);
      return d;
    };
    const out = await FileStorageWriter.create(packPath, { ...this.opts, blobDir: undefined });
    const keptBlobs = new Set<string>();
    for (const t of txns) {
      const records: WriteRecord[] = [];
      for (const r of t.records) {
        if (!current.has(r.pos)) continue;
        const data = await readData(r.pos);
        if (!data) continue; // creation undone: the object is gone
        records.push({ oid: r.oid, data });
        keptBlobs.add(`${r.oid.toString('hex')}/${t.tid.toString('hex')}`);
      }
      if (records.length) {
        await out.commit({ tid: t.tid, user: t.user, description: t.description, extension: t.extension, status: 'p', records });
      }
    }
    await out.close();
    await src.fh.close();
    await this.fh.close();
    // As ZODB: Data.fs -> Data.fs.old, Data.fs.pack -> Data.fs.
    await fsp.rename(this.path, `${this.path}.old`);
    await fsp.rename(packPath, this.path);
    await fsp.rm(`${this.path}.index`, { force: true });
    this.fh = await fsp.open(this.path, 'r+');
    this.index.map.clear();
    for (const [k, v] of out.index.map) this.index.map.set(k, v);
    this.pos = out.end;
    let removedBlobs = 0;
    if (this.opts.blobDir) {
      const layout = this.opts.layout ?? 'bushy';
      for (const b of blobFiles) {
        if (keptBlobs.has(`${b.oid.toString('hex')}/${b.tid.toString('hex')}`)) continue;
        const f = path.join(this.opts.blobDir, blobRelPath(b.oid, b.tid, layout));
        try {
          await fsp.unlink(f);
          removedBlobs++;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
      }
    }
    return { before, after: this.pos, removedBlobs };
  }

  async close(opts: { writeIndex?: boolean } = {}): Promise<void> {
    if (opts.writeIndex) await this.writeIndex();
    await this.fh.close();
  }
}
