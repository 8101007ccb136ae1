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
import { READ_CAPS, readFileCapped } from '../base/io';
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

function compareKeys(a: OidKey, b: OidKey): number {
  if (typeof a === 'number') return typeof b === 'number' ? a - b : -1;
  if (typeof b === 'number') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The in-memory index: oid -> position of its newest record. */
export class FsIndex {
  readonly map = new Map<OidKey, number>();

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
    return [...this.map.keys()].sort(compareKeys).map((k) => [oidFromKey(k).toString('hex'), this.map.get(k)!]);
  }
}

/** Encodes the index stream for committed end `pos`. */
export function encodeIndex(index: FsIndex, pos: number): Buffer {
  // Oids ZODB allocates are numbers: sort them in a typed array (a Map of a
  // million entries sorts through a comparator ten times slower) and cut
  // prefix and suffix arithmetically. Wide (hex string) keys, all larger,
  // follow in string order.
  const nums: number[] = [];
  const wide: string[] = [];
  for (const k of index.map.keys()) {
    if (typeof k === 'number') nums.push(k);
    else wide.push(k);
  }
  const sorted = Float64Array.from(nums).sort();
  wide.sort();
  const parts: Buffer[] = [dumpPickle(pos)];
  const bucketPickle = (prefix: Buffer, keys: ArrayLike<OidKey>, from: number, to: number, suffixOf: (k: OidKey) => number) => {
    const n = to - from;
    const bucket = Buffer.alloc(n * 8);
    for (let k = 0; k < n; k++) {
      const key = keys[from + k];
      bucket.writeUInt16BE(suffixOf(key!), k * 2);
      bucket.writeUIntBE(index.map.get(key!)! % 2 ** 48, n * 2 + k * 6, 6);
    }
    parts.push(dumpPickle([prefix, bucket]));
  };
  let i = 0;
  while (i < sorted.length) {
    const prefix = Math.floor(sorted[i]! / 65536);
    let j = i + 1;
    while (j < sorted.length && Math.floor(sorted[j]! / 65536) === prefix) j++;
    const pb = Buffer.alloc(6);
    pb.writeUIntBE(prefix, 0, 6);
    bucketPickle(pb, sorted, i, j, (k) => (k as number) % 65536);
    i = j;
  }
  i = 0;
  while (i < wide.length) {
    const prefix = wide[i]!.slice(0, 12);
    let j = i + 1;
    while (j < wide.length && wide[j]!.startsWith(prefix)) j++;
    bucketPickle(Buffer.from(prefix, 'hex'), wide, i, j, (k) => parseInt((k as string).slice(12), 16));
    i = j;
  }
  parts.push(dumpPickle(null));
  return Buffer.concat(parts);
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
