/**
 * Data.fs.index (and a repozo repository's <stamp>.index): read and write.
 *
 * The file is a stream of separate protocol-3 pickles written by
 * ZODB.fsIndex.save in fast mode: first the committed end `pos`, then one
 * (prefix, bucket) 2-tuple per 6-byte oid prefix in ascending order, where
 * bucket = n 2-byte oid suffixes followed by n 6-byte record positions, and
 * finally None. Writing the same state gives the same bytes as ZODB.
 */

import { PloneBackupError } from '../base/errors';
import * as path from 'node:path';
import { PRIVATE_MODES, READ_CAPS, fileLayer, fsyncDir, readFileCapped, tempPath, writeAll } from '../base/io';
import { dumpPickle, loadPickle } from './pickle';

/**
 * Oid keys: a number when the oid fits in 53 bits (always, for oids ZODB
 * allocates), else the oid's 16-digit hex. Numbers sort before the hex keys,
 * which are all >= 2^53, so ordering stays that of the 8-byte oids.
 */
export type OidKey = number | string;

const TWO32 = 2 ** 32;

export function oidKey(buf: Buffer, offset = 0): OidKey {
  const hi = buf.readUInt32BE(offset);
  if (hi < 0x200000) return hi * TWO32 + buf.readUInt32BE(offset + 4);
  return buf.toString('hex', offset, offset + 8);
}

export function oidFromKey(key: OidKey): Buffer {
  const b = Buffer.alloc(8);
  if (typeof key === 'number') {
    b.writeUInt32BE(Math.floor(key / TWO32), 0);
    b.writeUInt32BE(key % TWO32, 4);
  } else b.write(key, 'hex');
  return b;
}

/** Oids per page: one fsIndex bucket (the 6-byte prefix is the page, the 2-byte suffix the slot). */
const PAGE = 65536;
/**
 * A sparse page (a Map) becomes a dense one (a Float64Array of PAGE slots,
 * 512 KiB) when it holds this many oids: from then on a dense page costs at
 * most 64 bytes per oid, about what a Map entry costs, and 8 when full, as
 * the pages of the oids ZODB allocates (one after the other) soon are.
 */
const DENSE_AT = 8192;
/**
 * A page starts dense and short (its first slots, the way ZODB allocates
 * oids), and doubles while it stays at least 1/GROW_FACTOR full (at most
 * 8 * GROW_FACTOR bytes per oid); a slot too far ahead for that turns it
 * into a Map. Filling a page one oid after the other thus never goes
 * through a Map (which cost ten times the whole dense fill).
 */
const GROW_FACTOR = 16;
const FIRST_DENSE = 16;

/**
 * One page: `dense` (slots [0, dense.length) as positions + 1, 0: none) or
 * `sparse` (one shape for both, so the hot paths stay monomorphic). `count`
 * is kept for dense pages.
 */
interface Page {
  sparse: Map<number, number> | undefined;
  dense: Float64Array | undefined;
  count: number;
}

/** An OidPosMap's pages taken out of it (takePages), one entry per prefix: dense slots or sparse (slot, position) pairs. */
export interface OidPosPages {
  prefixes: number[];
  dense: (Float64Array | undefined)[];
  sparse: ([number, number][] | undefined)[];
  wide: [string, number][];
}

/**
 * oid -> position, in memory bounded by the oids rather than by a JS Map's
 * per-entry cost: pages of 65536 oids (an fsIndex bucket each), dense pages
 * as a Float64Array of positions + 1 (0: none). The 10 million oids of a
 * 10 GB Data.fs take 153 dense pages, 80 MB; a Map of them took over 1 GB.
 * Wide oids (>= 2^53: never allocated by ZODB) are kept in a Map by their hex.
 * It is a Map<OidKey, number> to its callers; iteration is in oid order.
 */
export class OidPosMap implements Iterable<[OidKey, number]> {
  private pages = new Map<number, Page>();
  private wide = new Map<string, number>();
  private count = 0;
  private lastPrefix = -1;
  private lastPage?: Page;

  get size(): number {
    return this.count;
  }

  private page(prefix: number, create: boolean): Page | undefined {
    if (prefix === this.lastPrefix) return this.lastPage;
    let p = this.pages.get(prefix);
    if (!p) {
      if (!create) return undefined;
      p = { sparse: undefined, dense: new Float64Array(FIRST_DENSE), count: 0 };
      this.pages.set(prefix, p);
    }
    this.lastPrefix = prefix;
    this.lastPage = p;
    return p;
  }

  set(key: OidKey, pos: number): this {
    if (typeof key === 'string') {
      if (!this.wide.has(key)) this.count++;
      this.wide.set(key, pos);
      return this;
    }
    const prefix = Math.floor(key / PAGE);
    this.setSlot(prefix, key - prefix * PAGE, pos);
    return this;
  }

  /**
   * Sets the oid whose 8 bytes are at `off` of a DataView of the scanned
   * buffer, read in place (the record scanner's hot loop: two loads for the
   * oid, no key, no division).
   */
  setAtView(v: DataView, off: number, pos: number): void {
    const hi = v.getUint32(off);
    const lo = v.getUint32(off + 4);
    if (hi >= 0x200000) {
      this.set(Buffer.from(v.buffer, v.byteOffset + off, 8).toString('hex'), pos);
      return;
    }
    this.setFast(hi * 65536 + (lo >>> 16), lo & 0xffff, pos);
  }

  /**
   * Sets slot `slot` of page `prefix`, the common case first (the page of the
   * last oid, dense, the slot in it): small enough to be inlined into the scan.
   */
  private setFast(prefix: number, slot: number, pos: number): void {
    if (prefix !== this.lastPrefix || !this.setInDense(this.lastPage!, slot, pos)) this.setSlot(prefix, slot, pos);
  }

  /** Sets `slot` of `p` when the page is dense and the slot within it; false when it is not. */
  private setInDense(p: Page, slot: number, pos: number): boolean {
    const dense = p.dense;
    if (dense === undefined || slot >= dense.length) return false;
    if (dense[slot] === 0) {
      p.count++;
      this.count++;
    }
    dense[slot] = pos + 1;
    return true;
  }

  /** Sets slot `slot` of page `prefix` (an oid below 2^53: prefix * 65536 + slot). */
  setSlot(prefix: number, slot: number, pos: number): void {
    const p = prefix === this.lastPrefix ? this.lastPage! : this.page(prefix, true)!;
    if (this.setInDense(p, slot, pos)) return;
    const dense = p.dense;
    if (dense !== undefined) {
      let len = dense.length * 2;
      while (len <= slot) len *= 2;
      if (len <= GROW_FACTOR * (p.count + 1)) {
        const d = new Float64Array(len);
        d.set(dense);
        d[slot] = pos + 1;
        p.dense = d;
        p.count++;
        this.count++;
        return;
      }
      // Too far ahead for its oids: a Map until it holds DENSE_AT of them.
      const m = new Map<number, number>();
      for (let k = 0; k < dense.length; k++) if (dense[k] !== 0) m.set(k, dense[k]! - 1);
      p.dense = undefined;
      p.sparse = m;
    }
    const sparse = p.sparse!;
    const before = sparse.size;
    sparse.set(slot, pos);
    if (sparse.size === before) return;
    this.count++;
    if (sparse.size < DENSE_AT) return;
    const d = new Float64Array(PAGE);
    for (const [k, v] of sparse) d[k] = v + 1;
    p.dense = d;
    p.count = sparse.size;
    p.sparse = undefined;
  }

  get(key: OidKey): number | undefined {
    if (typeof key === 'string') return this.wide.get(key);
    const prefix = Math.floor(key / PAGE);
    const p = this.page(prefix, false);
    if (!p) return undefined;
    const slot = key - prefix * PAGE;
    if (p.dense === undefined) return p.sparse!.get(slot);
    if (slot >= p.dense.length) return undefined;
    const v = p.dense[slot]!;
    return v === 0 ? undefined : v - 1;
  }

  has(key: OidKey): boolean {
    return this.get(key) !== undefined;
  }

  delete(key: OidKey): boolean {
    if (typeof key === 'string') {
      const had = this.wide.delete(key);
      if (had) this.count--;
      return had;
    }
    const prefix = Math.floor(key / PAGE);
    const p = this.page(prefix, false);
    if (!p) return false;
    const slot = key - prefix * PAGE;
    if (p.dense === undefined) {
      if (!p.sparse!.delete(slot)) return false;
    } else {
      if (slot >= p.dense.length || p.dense[slot] === 0) return false;
      p.dense[slot] = 0;
      p.count--;
    }
    this.count--;
    return true;
  }

  /**
   * The map as it crosses to another thread (indexscan.ts): dense pages as
   * their own Float64Arrays, whose buffers are moved (`transfer`), not
   * copied; this map is left empty.
   */
  takePages(): { pages: OidPosPages; transfer: ArrayBuffer[] } {
    const pages: OidPosPages = { prefixes: [], dense: [], sparse: [], wide: [...this.wide] };
    const transfer: ArrayBuffer[] = [];
    for (const [prefix, p] of this.pages) {
      pages.prefixes.push(prefix);
      pages.dense.push(p.dense);
      pages.sparse.push(p.sparse ? [...p.sparse] : undefined);
      if (p.dense) transfer.push(p.dense.buffer as ArrayBuffer);
    }
    this.clear();
    return { pages, transfer };
  }

  /**
   * Sets every entry of `later`, the pages of records that come after all of
   * this map's in the file: where both have an oid, `later`'s position wins,
   * as a scan of the whole file would have left it. A page only `later` has
   * is taken as it is.
   */
  mergeLater(later: OidPosPages): void {
    later.prefixes.forEach((prefix, i) => {
      const dense = later.dense[i];
      const sparse = later.sparse[i];
      const mine = this.pages.get(prefix);
      if (!mine) {
        let count = sparse?.length ?? 0;
        if (dense) for (let k = 0; k < dense.length; k++) if (dense[k] !== 0) count++;
        if (!count) return;
        this.pages.set(prefix, { dense, sparse: dense ? undefined : new Map(sparse), count: dense ? count : 0 });
        this.count += count;
        return;
      }
      if (dense) {
        for (let k = 0; k < dense.length; k++) if (dense[k] !== 0) this.setSlot(prefix, k, dense[k]! - 1);
      } else for (const [k, v] of sparse!) this.setSlot(prefix, k, v);
    });
    for (const [k, v] of later.wide) this.set(k, v);
  }

  clear(): void {
    this.pages.clear();
    this.wide.clear();
    this.count = 0;
    this.lastPrefix = -1;
    this.lastPage = undefined;
  }

  /**
   * The buckets in oid order: each page's prefix and its (suffix, position)
   * pairs in ascending suffix order, wide oids last (by prefix, in hex order).
   * With `denseAsIs`, a dense page comes as its slots (`dense`, positions + 1,
   * 0: none; `n` of them set) instead, for the encoder to read in place.
   */
  *buckets(denseAsIs = false): Generator<Bucket> {
    const prefixes = Float64Array.from(this.pages.keys()).sort();
    const suffixes = new Uint32Array(PAGE);
    const positions = new Float64Array(PAGE);
    for (const prefix of prefixes) {
      const p = this.pages.get(prefix)!;
      let n = 0;
      if (denseAsIs && p.dense !== undefined) {
        if (p.count) yield { prefix, suffixes, positions, n: p.count, dense: p.dense };
        continue;
      }
      if (p.dense === undefined) {
        const sparse = p.sparse!;
        const keys = Uint32Array.from(sparse.keys()).sort();
        for (const k of keys) {
          suffixes[n] = k;
          positions[n++] = sparse.get(k)!;
        }
      } else {
        const d = p.dense;
        for (let k = 0; k < d.length; k++) {
          const v = d[k]!;
          if (v !== 0) {
            suffixes[n] = k;
            positions[n++] = v - 1;
          }
        }
      }
      if (n) yield { prefix, suffixes, positions, n };
    }
    const wide = [...this.wide.keys()].sort();
    let i = 0;
    while (i < wide.length) {
      const prefix = wide[i]!.slice(0, 12);
      let n = 0;
      while (i < wide.length && wide[i]!.startsWith(prefix)) {
        suffixes[n] = parseInt(wide[i]!.slice(12), 16);
        positions[n++] = this.wide.get(wide[i]!)!;
        i++;
      }
      yield { prefix, suffixes, positions, n };
    }
  }

  /**
   * Up to `n` entries spread over the oids (the highest oid of pages evenly
   * apart, and of the last wide prefix), without walking every entry.
   */
  samples(n: number): [OidKey, number][] {
    const out: [OidKey, number][] = [];
    const prefixes = Float64Array.from(this.pages.keys()).sort();
    const picks = new Set<number>();
    for (let i = 0; i < n && prefixes.length; i++) picks.add(Math.floor((i * prefixes.length) / n));
    picks.add(prefixes.length - 1);
    for (const i of picks) {
      const prefix = prefixes[i];
      if (prefix === undefined) continue;
      const p = this.pages.get(prefix)!;
      let slot = -1;
      let pos = 0;
      if (p.dense === undefined) {
        for (const [k, v] of p.sparse!) if (k > slot) [slot, pos] = [k, v];
      } else {
        for (let k = p.dense.length - 1; k >= 0; k--) {
          if (p.dense[k] !== 0) {
            slot = k;
            pos = p.dense[k]! - 1;
            break;
          }
        }
      }
      if (slot >= 0) out.push([prefix * PAGE + slot, pos]);
    }
    let top: string | undefined;
    for (const k of this.wide.keys()) if (top === undefined || k > top) top = k;
    if (top !== undefined) out.push([top, this.wide.get(top)!]);
    return out;
  }

  *entries(): Generator<[OidKey, number]> {
    for (const b of this.buckets()) {
      for (let k = 0; k < b.n; k++) {
        const key: OidKey = typeof b.prefix === 'number' ? b.prefix * PAGE + b.suffixes[k]! : b.prefix + b.suffixes[k]!.toString(16).padStart(4, '0');
        yield [key, b.positions[k]!];
      }
    }
  }

  *keys(): Generator<OidKey> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): Generator<number> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): Generator<[OidKey, number]> {
    return this.entries();
  }

  forEach(fn: (value: number, key: OidKey) => void): void {
    for (const [k, v] of this.entries()) fn(v, k);
  }
}

/** One bucket of OidPosMap.buckets: `n` (suffix, position) pairs, or a dense page's slots. */
export interface Bucket {
  prefix: number | string;
  suffixes: ArrayLike<number>;
  positions: ArrayLike<number>;
  n: number;
  dense?: Float64Array;
}

/** The in-memory index: oid -> position of its newest record. */
export class FsIndex {
  readonly map = new OidPosMap();

  get size(): number {
    return this.map.size;
  }

  set(oid: Buffer | OidKey, pos: number): void {
    this.map.set(Buffer.isBuffer(oid) ? oidKey(oid) : oid, pos);
  }

  get(oid: Buffer | OidKey): number | undefined {
    return this.map.get(Buffer.isBuffer(oid) ? oidKey(oid) : oid);
  }

  clone(): FsIndex {
    const c = new FsIndex();
    for (const [k, v] of this.map) c.map.set(k, v);
    return c;
  }

  /** Entries in oid order, as [8-byte oid hex, position]. */
  entries(): [string, number][] {
    return [...this.map].map(([k, v]) => [oidFromKey(k).toString('hex'), v]);
  }
}

/** Bytes a yielded chunk of the index stream is filled to before the next one begins. */
const ENCODE_CHUNK = 1 << 20;
const TWO48 = 2 ** 48;

/** Writes a 6-byte big-endian position at out[o..o+6) (modulo 2^48, as fsIndex keeps 6 bytes). */
function put6(out: Buffer, o: number, v: number): void {
  if (v >= TWO48) v %= TWO48;
  const lo = v >>> 0; // v mod 2^32 (v < 2^48)
  const hi = (v - lo) / TWO32;
  out[o] = hi >>> 8;
  out[o + 1] = hi & 0xff;
  out[o + 2] = lo >>> 24;
  out[o + 3] = (lo >>> 16) & 0xff;
  out[o + 4] = (lo >>> 8) & 0xff;
  out[o + 5] = lo & 0xff;
}

/** A bucket's body (n 2-byte suffixes, then n 6-byte positions) at out[o..]; returns the end. */
function encodeBucket(out: Buffer, o: number, suffixes: ArrayLike<number>, positions: ArrayLike<number>, n: number): number {
  for (let k = 0; k < n; k++) {
    const s = suffixes[k]!;
    out[o++] = s >>> 8;
    out[o++] = s & 0xff;
  }
  for (let k = 0; k < n; k++, o += 6) put6(out, o, positions[k]!);
  return o;
}

/** The same body straight from a dense page's slots (positions + 1, 0: none). */
function encodeDense(out: Buffer, o: number, d: Float64Array): number {
  const len = d.length;
  for (let k = 0; k < len; k++) {
    if (d[k] !== 0) {
      out[o++] = k >>> 8;
      out[o++] = k & 0xff;
    }
  }
  for (let k = 0; k < len; k++) {
    const v = d[k]!;
    if (v !== 0) {
      put6(out, o, v - 1);
      o += 6;
    }
  }
  return o;
}

/**
 * The index stream for committed end `pos`, in chunks of about 1 MiB (each a
 * buffer of its own, which the caller may keep): what ZODB.fsIndex.save
 * writes, byte for byte, without the whole file in memory. Each bucket is one
 * pickle `PROTO 3, SHORT_BINBYTES prefix, (SHORT_)BINBYTES bucket, TUPLE2,
 * STOP`, as dumpPickle writes it, written here straight into the chunk.
 */
export function* encodeIndexChunks(index: FsIndex, pos: number): Generator<Buffer> {
  let out = Buffer.allocUnsafe(ENCODE_CHUNK + 65536 * 8 + 64);
  const head = dumpPickle(pos);
  head.copy(out, 0);
  let q = head.length;
  for (const b of index.map.buckets(true)) {
    if (q >= ENCODE_CHUNK) {
      yield out.subarray(0, q);
      out = Buffer.allocUnsafe(ENCODE_CHUNK + 65536 * 8 + 64);
      q = 0;
    }
    const n = b.n;
    const len = n * 8;
    out[q++] = 0x80; // PROTO 3
    out[q++] = 3;
    out[q++] = 0x43; // SHORT_BINBYTES, 6: the prefix
    out[q++] = 6;
    if (typeof b.prefix === 'number') out.writeUIntBE(b.prefix, q, 6);
    else out.write(b.prefix, q, 'hex');
    q += 6;
    if (len < 0x100) {
      out[q++] = 0x43; // SHORT_BINBYTES
      out[q++] = len;
    } else {
      out[q++] = 0x42; // BINBYTES, 4-byte little-endian length
      out.writeUInt32LE(len, q);
      q += 4;
    }
    const body = q;
    q = b.dense ? encodeDense(out, q, b.dense) : encodeBucket(out, q, b.suffixes, b.positions, n);
    if (q - body !== len) throw new Error(`internal error: a page of the index holds ${(q - body) / 8} oids, not ${n}`);
    out[q++] = 0x86; // TUPLE2
    out[q++] = 0x2e; // STOP
  }
  const tail = dumpPickle(null);
  tail.copy(out, q);
  q += tail.length;
  yield out.subarray(0, q);
}

/** Bytes written between the early flushes of writeIndexFile. */
const EARLY_SYNC = 16 << 20;

/**
 * Writes the index for committed end `pos` to `file` (temp name, fsync,
 * rename, through fileLayer), a chunk of about 1 MiB at a time, the next one
 * encoded while the last is written: the memory it costs is the index's own,
 * never the whole encoded file as well.
 */
export async function writeIndexFile(file: string, index: FsIndex, pos: number, mode = PRIVATE_MODES.file): Promise<void> {
  const tmp = tempPath(file);
  const fh = await fileLayer.open(tmp, 'wx', mode);
  let writing: Promise<void> | undefined;
  let syncing: Promise<void> | undefined;
  let syncFailed: unknown;
  let unsynced = 0;
  try {
    for (const c of encodeIndexChunks(index, pos)) {
      if (writing) await writing;
      writing = writeAll(fh, c, null, tmp);
      writing.catch(() => undefined); // surfaced when awaited
      unsynced += c.length;
      if (unsynced >= EARLY_SYNC && !syncing) {
        // What is written so far goes to the disk while the rest is encoded.
        // Its failure is kept (never lost: a later fsync may not report it again).
        unsynced = 0;
        syncing = fh.datasync().then(
          () => void (syncing = undefined),
          (e: unknown) => void ((syncFailed ??= e), (syncing = undefined)),
        );
      }
    }
    await writing;
    await syncing;
    if (syncFailed) throw syncFailed;
    await fh.sync();
    await fh.close();
    await fileLayer.rename(tmp, file);
  } catch (e) {
    await writing?.catch(() => undefined);
    await syncing;
    await fh.close().catch(() => undefined);
    await fileLayer.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(file));
}

/** Encodes the index stream for committed end `pos`. */
export function encodeIndex(index: FsIndex, pos: number): Buffer {
  return Buffer.concat([...encodeIndexChunks(index, pos)]);
}

export interface DecodedIndex {
  pos: number;
  index: FsIndex;
}

export interface DecodeOptions {
  /**
   * Refuse (INDEX_BAD) an index naming a position outside [4, pos): every
   * record an index of a file's first `pos` bytes names lies there. For an
   * index about to be trusted instead of a walk of the file.
   */
  checkPositions?: boolean;
  /** Never through a symbolic link (readIndexFile). */
  noFollow?: boolean;
}

/** Decodes an index stream; `path` names the file in errors. */
export function decodeIndex(buf: Buffer, path = 'index', opts: DecodeOptions = {}): DecodedIndex {
  const bad = (why: string, position: number): never => {
    throw new PloneBackupError('INDEX_BAD', `${path} is not a ZODB index: ${why}.`, {
      path,
      position,
      hint: 'Delete it; ZODB rebuilds it from Data.fs.',
    });
  };
  if (buf.length === 0) bad('it is empty', 0);
  let { value, end } = loadPickle(buf, 0, path);
  if (typeof value !== 'number') bad('it is in the old (pre-ZODB 3.9) format or not an index at all', 0);
  const pos = value as number;
  if (pos < 4) bad(`its position ${pos} is impossible`, 0);
  const index = new FsIndex();
  const lowest = opts.checkPositions ? 4 : 0;
  const beyond = opts.checkPositions ? pos : Infinity;
  let lastPrefix: Buffer | undefined;
  for (;;) {
    if (end >= buf.length) bad('it ends before its closing None', end);
    const at = end;
    ({ value, end } = loadPickle(buf, end, path));
    if (value === null) break;
    if (!Array.isArray(value) || value.length !== 2 || !Buffer.isBuffer(value[0]) || !Buffer.isBuffer(value[1])) {
      bad('an entry is not a (prefix, bucket) pair', at);
    }
    const [prefix, bucket] = value as [Buffer, Buffer];
    if (prefix.length !== 6) bad('an oid prefix is not 6 bytes', at);
    if (bucket.length % 8 !== 0) bad('a bucket length is not a multiple of 8', at);
    if (lastPrefix && Buffer.compare(prefix, lastPrefix) <= 0) bad('oid prefixes are not in ascending order', at);
    lastPrefix = prefix;
    const n = bucket.length / 8;
    const hi = prefix.readUInt32BE(0);
    const numeric = hi < 0x200000; // the oids fit in 53 bits: set page slots directly
    const page = numeric ? hi * 65536 + prefix.readUInt16BE(4) : 0;
    const oid = Buffer.alloc(8);
    prefix.copy(oid, 0);
    let lastSuffix = -1;
    for (let k = 0; k < n; k++) {
      const suffix = (bucket[k * 2]! << 8) | bucket[k * 2 + 1]!;
      if (suffix <= lastSuffix) bad('oids in a bucket are not in ascending order', at);
      lastSuffix = suffix;
      const q = n * 2 + k * 6;
      const position = ((bucket[q]! << 8) | bucket[q + 1]!) * TWO32 + bucket.readUInt32BE(q + 2);
      // Every record it names lies before the end it describes.
      if (position < lowest || position >= beyond) bad(`an object position (${position}) lies outside the ${pos} bytes it describes`, at);
      if (numeric) index.map.setSlot(page, suffix, position);
      else {
        oid.writeUInt16BE(suffix, 6);
        index.map.set(oidKey(oid), position);
      }
    }
  }
  if (end !== buf.length) bad('there are bytes after its end', end);
  return { pos, index };
}

/**
 * Reads an index file: only a regular file (a FIFO or /dev/zero in its place
 * must not hang or fill memory), at most its real size and READ_CAPS.index.
 * Anything unreadable that way is INDEX_BAD, so callers rebuild the index
 * from Data.fs as they do for a damaged one.
 */
export async function readIndexFile(path: string, opts: DecodeOptions = {}): Promise<DecodedIndex> {
  let buf: Buffer;
  try {
    buf = await readFileCapped(path, READ_CAPS.index, { what: 'The index', noFollow: opts.noFollow });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PloneBackupError('INDEX_BAD', `The index ${path} does not exist.`, { path });
    }
    if (PloneBackupError.is(e, 'TOO_LARGE') || PloneBackupError.is(e, 'UNSAFE')) {
      throw new PloneBackupError('INDEX_BAD', e.message, { path, hint: 'Delete it; ZODB rebuilds it from Data.fs.', cause: e });
    }
    throw e;
  }
  return decodeIndex(buf, path, opts);
}
