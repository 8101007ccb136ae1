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

type Page = { dense: Float64Array; count: number } | { sparse: Map<number, number> };

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
      p = { sparse: new Map() };
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
    const slot = key - prefix * PAGE;
    let p = this.page(prefix, true)!;
    if ('sparse' in p) {
      const before = p.sparse.size;
      p.sparse.set(slot, pos);
      if (p.sparse.size === before) return this;
      this.count++;
      if (p.sparse.size < DENSE_AT) return this;
      const dense = new Float64Array(PAGE);
      for (const [k, v] of p.sparse) dense[k] = v + 1;
      p = { dense, count: p.sparse.size };
      this.pages.set(prefix, p);
      this.lastPage = p;
      return this;
    }
    if (p.dense[slot] === 0) {
      p.count++;
      this.count++;
    }
    p.dense[slot] = pos + 1;
    return this;
  }

  get(key: OidKey): number | undefined {
    if (typeof key === 'string') return this.wide.get(key);
    const prefix = Math.floor(key / PAGE);
    const p = this.page(prefix, false);
    if (!p) return undefined;
    const slot = key - prefix * PAGE;
    if ('sparse' in p) return p.sparse.get(slot);
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
    if ('sparse' in p) {
      if (!p.sparse.delete(slot)) return false;
    } else {
      if (p.dense[slot] === 0) return false;
      p.dense[slot] = 0;
      p.count--;
    }
    this.count--;
    return true;
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
   */
  *buckets(): Generator<{ prefix: number | string; suffixes: ArrayLike<number>; positions: ArrayLike<number>; n: number }> {
    const prefixes = Float64Array.from(this.pages.keys()).sort();
    const suffixes = new Uint32Array(PAGE);
    const positions = new Float64Array(PAGE);
    for (const prefix of prefixes) {
      const p = this.pages.get(prefix)!;
      let n = 0;
      if ('sparse' in p) {
        const keys = Uint32Array.from(p.sparse.keys()).sort();
        for (const k of keys) {
          suffixes[n] = k;
          positions[n++] = p.sparse.get(k)!;
        }
      } else {
        const d = p.dense;
        for (let k = 0; k < PAGE; k++) {
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

/**
 * The index stream for committed end `pos`, a few buffers at a time (one per
 * bucket): what ZODB.fsIndex.save writes, byte for byte, without the whole
 * file in memory.
 */
export function* encodeIndexChunks(index: FsIndex, pos: number): Generator<Buffer> {
  yield dumpPickle(pos);
  for (const b of index.map.buckets()) {
    const bucket = Buffer.allocUnsafe(b.n * 8);
    for (let k = 0; k < b.n; k++) {
      bucket.writeUInt16BE(b.suffixes[k]!, k * 2);
      bucket.writeUIntBE(b.positions[k]! % 2 ** 48, b.n * 2 + k * 6, 6);
    }
    const prefix = Buffer.alloc(6);
    if (typeof b.prefix === 'number') prefix.writeUIntBE(b.prefix, 0, 6);
    else prefix.write(b.prefix, 'hex');
    yield dumpPickle([prefix, bucket]);
  }
  yield dumpPickle(null);
}

/**
 * Writes the index for committed end `pos` to `file` (temp name, fsync,
 * rename, through fileLayer) in batches of about 1 MiB: the memory it costs
 * is the index's own, never the whole encoded file as well.
 */
export async function writeIndexFile(file: string, index: FsIndex, pos: number, mode = PRIVATE_MODES.file): Promise<void> {
  const tmp = tempPath(file);
  const fh = await fileLayer.open(tmp, 'wx', mode);
  try {
    let batch: Buffer[] = [];
    let n = 0;
    for (const c of encodeIndexChunks(index, pos)) {
      batch.push(c);
      n += c.length;
      if (n >= 1 << 20) {
        await writeAll(fh, Buffer.concat(batch, n), null, tmp);
        batch = [];
        n = 0;
      }
    }
    if (n) await writeAll(fh, Buffer.concat(batch, n), null, tmp);
    await fh.sync();
    await fh.close();
    await fileLayer.rename(tmp, file);
  } catch (e) {
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

/** Decodes an index stream; `path` names the file in errors. */
export function decodeIndex(buf: Buffer, path = 'index'): DecodedIndex {
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
    const oid = Buffer.alloc(8);
    prefix.copy(oid, 0);
    let lastSuffix = -1;
    for (let k = 0; k < n; k++) {
      const suffix = bucket.readUInt16BE(k * 2);
      if (suffix <= lastSuffix) bad('oids in a bucket are not in ascending order', at);
      lastSuffix = suffix;
      oid.writeUInt16BE(suffix, 6);
      index.map.set(oidKey(oid), bucket.readUIntBE(n * 2 + k * 6, 6));
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
export async function readIndexFile(path: string): Promise<DecodedIndex> {
  let buf: Buffer;
  try {
    buf = await readFileCapped(path, READ_CAPS.index, { what: 'The index' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PloneBackupError('INDEX_BAD', `The index ${path} does not exist.`, { path });
    }
    if (PloneBackupError.is(e, 'TOO_LARGE')) {
      throw new PloneBackupError('INDEX_BAD', e.message, { path, hint: 'Delete it; ZODB rebuilds it from Data.fs.', cause: e });
    }
    throw e;
  }
  return decodeIndex(buf, path);
}
