/**
 * The index in bounded memory (issue 11, goal 3): FsIndex keeps oid ->
 * position in pages of 65536 oids (a Map while sparse, a Float64Array once
 * dense) instead of one JS Map entry per oid. What it writes must not change:
 * the same bytes as a plain sorted encoding of the same state, and the same
 * bytes as the real ZODB's fsIndex.save, which also loads what we write.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeIndex, dumpPickle, encodeIndex, encodeIndexChunks, fileLayer, FsIndex, oidFromKey, OidPosMap, type OidKey, writeIndexFile } from '../../src/engine/internal';
import { tmpDir } from '../support/fs';
import { oracleSkip, runPython } from '../support/oracles';
import { Rng } from '../support/rng';

const rng = (seed: number) => {
  const r = new Rng(seed);
  return () => r.next();
};

/** fsIndex's format written the plain way: every entry sorted by its 8 bytes, cut into (prefix, bucket) pickles. */
function referenceEncoding(entries: Map<string, number>, pos: number): Buffer {
  const keys = [...entries.keys()].sort();
  const parts = [dumpPickle(pos)];
  let i = 0;
  while (i < keys.length) {
    const prefix = keys[i]!.slice(0, 12);
    let j = i;
    while (j < keys.length && keys[j]!.startsWith(prefix)) j++;
    const n = j - i;
    const bucket = Buffer.alloc(n * 8);
    for (let k = 0; k < n; k++) {
      bucket.writeUInt16BE(parseInt(keys[i + k]!.slice(12), 16), k * 2);
      bucket.writeUIntBE(entries.get(keys[i + k]!)!, n * 2 + k * 6, 6);
    }
    parts.push(dumpPickle([Buffer.from(prefix, 'hex'), bucket]));
    i = j;
  }
  parts.push(dumpPickle(null));
  return Buffer.concat(parts);
}

const hexOf = (k: OidKey) => oidFromKey(k).toString('hex');

describe('index: compact pages', () => {
  it('dense, sparse and wide oids, overwritten and deleted, encode as the plain sorted encoding does', async (t) => {
    const random = rng(11);
    const index = new FsIndex();
    const truth = new Map<string, number>();
    const put = (k: OidKey, pos: number) => {
      index.map.set(k, pos);
      truth.set(hexOf(k), pos);
    };
    // A dense run across three pages (the oids ZODB allocates), in commit order with rewrites.
    for (let oid = 0; oid < 150_000; oid++) put(oid, 4 + oid * 300);
    for (let n = 0; n < 20_000; n++) put(Math.floor(random() * 150_000), 4 + Math.floor(random() * 2 ** 40));
    // A page that turns dense exactly at its threshold, and sparse ones far apart.
    for (let s = 0; s < 8192; s++) put(7 * 65536 + s * 7, 2 ** 47 + s);
    for (let n = 0; n < 500; n++) put(Math.floor(random() * 2 ** 52), 1000 + n);
    // Wide oids (>= 2^53, string keys) sharing a prefix, and another.
    for (const h of ['0020000000000000', '0020000000000003', 'ffffffffffff0001', 'ffffffffffffffff']) put(h, 77);
    // Deletes from dense and sparse pages, and a wide one.
    for (const k of [0, 65535, 65536, 7 * 65536 + 14, '0020000000000003'] as OidKey[]) {
      assert.equal(index.map.delete(k), true);
      truth.delete(hexOf(k));
    }
    assert.equal(index.map.delete(3 * 2 ** 40), false);
    assert.equal(index.size, truth.size);
    for (const [h, v] of truth) assert.equal(index.get(Buffer.from(h, 'hex')), v, h);
    assert.equal(index.get(0), undefined);

    const bytes = encodeIndex(index, 2 ** 41);
    assert.ok(bytes.equals(referenceEncoding(truth, 2 ** 41)), 'differs from the plain sorted encoding');
    assert.ok(Buffer.concat([...encodeIndexChunks(index, 2 ** 41)]).equals(bytes));
    const file = path.join(tmpDir(t), 'Data.fs.index');
    await writeIndexFile(file, index, 2 ** 41, 0o640);
    assert.ok(fs.readFileSync(file).equals(bytes), 'writeIndexFile wrote other bytes');
    assert.equal(fs.statSync(file).mode & 0o777, 0o640);
    // Iteration is in oid order; a decoded index is the same state and encodes the same.
    const keys = index.entries().map(([k]) => k);
    assert.deepEqual(keys, [...truth.keys()].sort());
    const d = decodeIndex(bytes);
    assert.equal(d.index.size, truth.size);
    assert.ok(encodeIndex(d.index, d.pos).equals(bytes));
    const c = index.clone();
    assert.ok(encodeIndex(c, 2 ** 41).equals(bytes));
    c.map.clear();
    assert.equal(c.size, 0);
    assert.equal(index.size, truth.size);
  });

  it('is a Map to its callers: size, has, get, iteration and forEach agree', () => {
    const m = new OidPosMap();
    const plain = new Map<OidKey, number>();
    const random = rng(3);
    for (let n = 0; n < 30_000; n++) {
      const k = random() < 0.9 ? Math.floor(random() * 40_000) : Math.floor(random() * 2 ** 50);
      m.set(k, n);
      plain.set(k, n);
    }
    assert.equal(m.size, plain.size);
    for (const [k, v] of plain) {
      assert.equal(m.has(k), true);
      assert.equal(m.get(k), v);
    }
    assert.equal(m.has(2 ** 51 + 1), false);
    const seen = new Map<OidKey, number>();
    m.forEach((v, k) => seen.set(k, v));
    assert.deepEqual(
      [...seen].sort((a, b) => (a[0] as number) - (b[0] as number)),
      [...plain].sort((a, b) => (a[0] as number) - (b[0] as number)),
    );
    assert.deepEqual(
      [...m.keys()],
      [...plain.keys()].sort((a, b) => (a as number) - (b as number)),
    );
  });

  it('a page through every form: short and dense, doubled, a Map when a slot is far ahead, dense again when full (setAtView too)', () => {
    const m = new OidPosMap();
    const plain = new Map<OidKey, number>();
    const oid = Buffer.alloc(8);
    const put = (k: number, v: number, viaBuffer = false) => {
      if (viaBuffer) {
        oid.writeUInt32BE(Math.floor(k / 2 ** 32), 0);
        oid.writeUInt32BE(k % 2 ** 32, 4);
        m.setAtView(new DataView(oid.buffer, oid.byteOffset, 8), 0, v);
      } else m.set(k, v);
      plain.set(k, v);
    };
    const same = (stage: string) => {
      assert.equal(m.size, plain.size, stage);
      for (const [k, v] of plain) assert.equal(m.get(k), v, `${stage}: ${k}`);
      assert.deepEqual(
        [...m],
        [...plain].sort((a, b) => (a[0] as number) - (b[0] as number)),
        stage,
      );
      const index = new FsIndex();
      for (const [k, v] of plain) index.map.set(k, v);
      const truth = new Map([...plain].map(([k, v]) => [hexOf(k), v]));
      assert.ok(encodeIndex(index, 2 ** 40).equals(referenceEncoding(truth, 2 ** 40)), stage);
    };
    const base = 5 * 65536;
    for (let s = 0; s < 40; s++) put(base + s, 1000 + s, s % 2 === 0); // 16 -> 32 -> 64 slots
    assert.equal(m.get(base + 64), undefined); // past the dense part
    assert.equal(m.delete(base + 64), false);
    same('short dense');
    assert.equal(m.delete(base + 3), true);
    plain.delete(base + 3);
    put(base + 3, 7); // a hole filled again
    same('after a delete');
    put(base + 60_000, 42, true); // far ahead: the page becomes a Map
    same('spilled into a Map');
    for (let s = 100; s < 100 + 8200; s++) put(base + s * 7, s, s % 3 === 0); // the Map fills: dense again
    same('dense again');
    assert.equal(m.delete(base + 60_000), true);
    plain.delete(base + 60_000);
    same('deleted from the full page');
    // setAtView with a wide oid (>= 2^53) keeps it by its hex.
    const wide = Buffer.from('0123456789abcdef', 'hex');
    m.setAtView(new DataView(wide.buffer, wide.byteOffset, 8), 0, 5);
    assert.equal(m.get('0123456789abcdef'), 5);
  });

  it('the real ZODB loads what we write, and its fsIndex.save of the same state is the same bytes', { skip: oracleSkip() }, async (t) => {
    const dir = tmpDir(t);
    const ours = path.join(dir, 'ours.index');
    const theirs = path.join(dir, 'theirs.index');
    // 200,000 oids: three dense pages and a sparse tail; positions past 2^32.
    const index = new FsIndex();
    for (let oid = 0; oid < 200_000; oid++) index.set(oid, 4 + ((oid * 7919) % 1_000_003) * 5000);
    for (let k = 1; k <= 100; k++) index.set(k * 2 ** 30, 2 ** 40 + k);
    fs.writeFileSync(ours, encodeIndex(index, 2 ** 43));
    const script = `
import sys
from ZODB.fsIndex import fsIndex
from ZODB.utils import p64, u64
d = fsIndex.load(sys.argv[1])
idx = d['index']
n = 0
total = 0
for k, v in idx.items():
    n += 1
    total = (total + u64(k) * 31 + v) % (2**61 - 1)
print(d['pos'], len(idx), n, total)
fresh = fsIndex()
for oid in range(200000):
    fresh[p64(oid)] = 4 + ((oid * 7919) % 1000003) * 5000
for k in range(1, 101):
    fresh[p64(k * 2**30)] = 2**40 + k
fresh.save(d['pos'], sys.argv[2])
`;
    const r = await runPython(['-c', script, ours, theirs]);
    let total = 0n;
    for (const [k, v] of index.map) total = (total + BigInt(k) * 31n + BigInt(v)) % (2n ** 61n - 1n);
    assert.equal(r.stdout.trim(), `${2 ** 43} ${index.size} ${index.size} ${total}`);
    assert.ok(fs.readFileSync(theirs).equals(fs.readFileSync(ours)), "ZODB's fsIndex.save wrote other bytes");
  });

  it('a big index is flushed to the disk while the rest is encoded: the same bytes; a failed flush fails the write, and no temp stays', async (t) => {
    // 3,000,000 oids: 24 MB written, so writeIndexFile starts a flush part way through.
    const index = new FsIndex();
    for (let oid = 0; oid < 3_000_000; oid++) index.map.set(oid, 4 + oid * 1100);
    const bytes = encodeIndex(index, 2 ** 35);
    assert.ok(bytes.length > 20 << 20);
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs.index');
    const real = fileLayer.open;
    let flushes = 0;
    const counting = (fail: boolean) => async (p: string, flags: string | number, mode?: number) => {
      const fh = await real(p, flags, mode);
      return new Proxy(fh, {
        get(target, prop) {
          if (prop === 'datasync') {
            return async () => {
              flushes++;
              if (fail) throw Object.assign(new Error('EIO: injected'), { code: 'EIO', errno: -5, syscall: 'fdatasync' });
              return target.datasync();
            };
          }
          const v = Reflect.get(target, prop, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    };
    try {
      fileLayer.open = counting(false);
      await writeIndexFile(file, index, 2 ** 35);
      assert.ok(flushes >= 1, 'no flush before the end');
      assert.ok(fs.readFileSync(file).equals(bytes), 'writeIndexFile wrote other bytes');
      // A flush that fails is the write's failure, even though the final fsync would succeed.
      flushes = 0;
      fileLayer.open = counting(true);
      const other = path.join(dir, 'other.index');
      await assert.rejects(writeIndexFile(other, index, 2 ** 35), (e: NodeJS.ErrnoException) => e.code === 'EIO');
      assert.ok(flushes >= 1);
      assert.equal(fs.existsSync(other), false);
      assert.deepEqual(fs.readdirSync(dir), ['Data.fs.index']);
    } finally {
      fileLayer.open = real;
    }
  });
});
