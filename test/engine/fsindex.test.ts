/**
 * Data.fs.index: decoding what ZODB wrote, writing the same bytes ZODB
 * writes for the same state, and typed errors for anything else.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeIndex, dumpPickle, encodeIndex, FsIndex, loadPickle, oidFromKey, oidKey, OidPosMap, readIndexFile, type OidKey } from '../../src/engine/internal';
import { rejectsWith, throwsWith } from '../support/assert';
import { history, readJson, referenceIndex, statePath, type StorageJson } from '../support/fixtures';
import { tmpDir } from '../support/fs';
import { FIXTURE_REPO, FIXTURE_REPO_GZ, FIXTURES, HISTORY } from '../support/paths';
import { execFileSync } from 'node:child_process';
import { xorByte } from '../support/must';

/** Each fixture .index with the Data.fs whose state it describes. */
function indexFixtures(): { name: string; index: string; fs: string }[] {
  const out = history().steps.flatMap((s, i) => [
    { name: `repository/${s.stamp}.index`, index: path.join(FIXTURE_REPO, `${s.stamp}.index`), fs: statePath(i + 1) },
    { name: `repository-gzip/${s.stamp}.index`, index: path.join(FIXTURE_REPO_GZ, `${s.stamp}.index`), fs: statePath(i + 1) },
  ]);
  out.push({ name: 'history/var', index: path.join(HISTORY, 'var', 'filestorage', 'Data.fs.index'), fs: path.join(HISTORY, 'var', 'filestorage', 'Data.fs') });
  out.push({ name: 'wide-oids', index: path.join(FIXTURES, 'wide-oids', 'Data.fs.index'), fs: path.join(FIXTURES, 'wide-oids', 'Data.fs') });
  out.push({ name: 'lawn', index: path.join(FIXTURES, 'lawn', 'Data.fs.index'), fs: path.join(FIXTURES, 'lawn', 'Data.fs') });
  return out;
}

describe('index: ZODB fixtures', () => {
  for (const fx of indexFixtures()) {
    it(`${fx.name}: decodes to the scanned state, and a scan encodes to the same bytes`, async () => {
      const bytes = fs.readFileSync(fx.index);
      const decoded = decodeIndex(bytes, fx.index);
      const scanned = await referenceIndex(fx.fs);
      assert.equal(decoded.pos, scanned.end);
      assert.equal(decoded.pos, fs.statSync(fx.fs).size);
      assert.deepEqual(decoded.index.entries(), scanned.index.entries());
      assert.ok(encodeIndex(scanned.index, scanned.end).equals(bytes), 'encodeIndex(scan) differs from ZODB');
      assert.ok(encodeIndex(decoded.index, decoded.pos).equals(bytes), 'encode(decode(x)) differs from x');
      const viaFile = await readIndexFile(fx.index);
      assert.equal(viaFile.pos, decoded.pos);
      assert.equal(viaFile.index.size, decoded.index.size);
    });
  }

  it('wide-oids: the decoded index equals the JSON, across several prefixes', () => {
    const j = readJson<StorageJson>(path.join(FIXTURES, 'wide-oids', 'Data.fs.json'));
    const d = decodeIndex(fs.readFileSync(path.join(FIXTURES, 'wide-oids', 'Data.fs.index')));
    assert.equal(d.pos, j.index_pos);
    assert.deepEqual(Object.fromEntries(d.index.entries()), j.index);
    assert.deepEqual(
      d.index.entries().map(([k]) => k),
      Object.keys(j.index!).sort(),
    );
    const prefixes = new Set(Object.keys(j.index!).map((k) => k.slice(0, 12)));
    assert.ok(prefixes.size >= 3, 'the fixture spans several 6-byte prefixes');
  });

  it('S1..S6: the .index in both repositories is the same file', () => {
    for (const s of history().steps) {
      assert.ok(fs.readFileSync(path.join(FIXTURE_REPO, `${s.stamp}.index`)).equals(fs.readFileSync(path.join(FIXTURE_REPO_GZ, `${s.stamp}.index`))));
    }
  });
});

describe('index: encoding', () => {
  it('writes ints as Python pickles them (protocol 3)', () => {
    const hex = (v: number) => dumpPickle(v).toString('hex');
    assert.equal(hex(255), '80034bff2e');
    assert.equal(hex(256), '80034d00012e');
    assert.equal(hex(65536), '80034a000001002e');
    assert.equal(hex(2 ** 31), '80038a0500000080002e');
    assert.equal(hex(2 ** 32), '80038a0500000000012e');
    assert.equal(hex(2 ** 48), '80038a07000000000000012e');
    assert.equal(hex(-1), '80034affffffff2e');
    for (const v of [0, 4, 100, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40 + 7, 2 ** 52, -1, -300]) {
      const b = dumpPickle(v);
      assert.deepEqual(loadPickle(b, 0), { value: v, end: b.length });
    }
  });

  it('round-trips big positions, wide oids and long buckets', () => {
    const index = new FsIndex();
    for (let i = 0; i < 300; i++) index.set(i, 4 + i * 1000);
    index.set(Buffer.from('00000001ffff0000', 'hex'), 2 ** 40 + 5);
    index.set(Buffer.from('ffffffffffffffff', 'hex'), 2 ** 47);
    index.set(Buffer.from('8000000000000001', 'hex'), 123456);
    const bytes = encodeIndex(index, 2 ** 41);
    const d = decodeIndex(bytes);
    assert.equal(d.pos, 2 ** 41);
    assert.deepEqual(d.index.entries(), index.entries());
    assert.ok(encodeIndex(d.index, d.pos).equals(bytes));
    // Oid order is that of the 8 bytes, big oids (string keys) last.
    const keys = d.index.entries().map(([k]) => k);
    assert.deepEqual(keys, [...keys].sort());
    assert.equal(keys[keys.length - 1], 'ffffffffffffffff');
  });

  it('an empty index is pos then None', () => {
    const b = encodeIndex(new FsIndex(), 4);
    assert.equal(b.toString('hex'), '80034b042e' + '80034e2e');
    const d = decodeIndex(b);
    assert.equal(d.pos, 4);
    assert.equal(d.index.size, 0);
  });

  it('oid keys map to and from 8 bytes', () => {
    for (const hex of ['0000000000000000', '000000000000ffff', '001fffffffffffff', '0020000000000000', 'ffffffffffffffff']) {
      const b = Buffer.from(hex, 'hex');
      assert.equal(oidFromKey(oidKey(b)).toString('hex'), hex);
    }
  });
});

describe('index: maps taken to another thread and merged back', () => {
  it('mergeLater: the later position wins, pages only the later map has are taken whole, sizes add up', () => {
    // Dense and sparse pages in each, some shared, wide oids in both.
    const earlier = new OidPosMap();
    const later = new OidPosMap();
    const want = new Map<OidKey, number>();
    const set = (m: OidPosMap, k: OidKey, v: number) => {
      m.set(k, v);
      want.set(k, v);
    };
    for (let k = 0; k < 20_000; k++) set(earlier, k, 100 + k); // dense page 0
    for (let k = 0; k < 50; k++) set(earlier, 3 * 65536 + k * 997, 7 + k); // sparse page 3
    set(earlier, 'ff00000000000001', 1);
    for (let k = 10_000; k < 30_000; k++) set(later, k, 900_000 + k); // page 0 again, overlapping
    for (let k = 0; k < 40; k++) set(later, 3 * 65536 + k * 499, 5_000 + k); // page 3 again, sparse
    for (let k = 0; k < 70_000; k++) set(later, 8 * 65536 + k, 2_000_000 + k); // page 8 (dense) and 9, only later
    for (let k = 0; k < 30; k++) set(later, 20 * 65536 + k * 1001, 3_000_000 + k); // page 20 (sparse), only later
    set(later, 'ff00000000000001', 2);
    set(later, 'ff00000000000002', 3);
    const { pages, transfer } = later.takePages();
    assert.equal(later.size, 0, 'the map taken from is left empty');
    assert.ok(transfer.length >= 3, 'the dense pages go as buffers');
    earlier.mergeLater(pages);
    assert.equal(earlier.size, want.size);
    assert.deepEqual(
      [...earlier],
      [...want].sort((a, b) => oidFromKey(a[0]).compare(oidFromKey(b[0]))),
    );
    // Still a working map: a set after the merge lands on the adopted page.
    earlier.set(8 * 65536 + 5, 42);
    assert.equal(earlier.get(8 * 65536 + 5), 42);
    assert.equal(earlier.size, want.size);
  });
});

describe('index: bad bytes are INDEX_BAD', () => {
  const good = fs.readFileSync(path.join(FIXTURES, 'wide-oids', 'Data.fs.index'));
  const cases: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['a Data.fs', fs.readFileSync(path.join(FIXTURES, 'wide-oids', 'Data.fs'))],
    ['text', Buffer.from('hello, world\n')],
    ['truncated by one byte', good.subarray(0, good.length - 1)],
    ['cut in the middle', good.subarray(0, Math.floor(good.length / 2))],
    ['without its closing None', good.subarray(0, good.length - 4)],
    ['bytes after the end', Buffer.concat([good, Buffer.from('xx')])],
    ['a position that is impossible', Buffer.concat([dumpPickle(2), dumpPickle(null)])],
    ['a non-tuple entry', Buffer.concat([dumpPickle(100), dumpPickle(5), dumpPickle(null)])],
    ['a prefix of the wrong size', Buffer.concat([dumpPickle(100), dumpPickle([Buffer.alloc(5), Buffer.alloc(8)]), dumpPickle(null)])],
    ['a bucket of the wrong size', Buffer.concat([dumpPickle(100), dumpPickle([Buffer.alloc(6), Buffer.alloc(7)]), dumpPickle(null)])],
    [
      'prefixes out of order',
      Buffer.concat([
        dumpPickle(100),
        dumpPickle([Buffer.from('000000000001', 'hex'), Buffer.alloc(8)]),
        dumpPickle([Buffer.from('000000000000', 'hex'), Buffer.alloc(8)]),
        dumpPickle(null),
      ]),
    ],
    ['oids out of order in a bucket', Buffer.concat([dumpPickle(100), dumpPickle([Buffer.alloc(6), Buffer.from('00020001' + '0'.repeat(24), 'hex')]), dumpPickle(null)])],
    ['an unknown opcode', Buffer.from('8003ff2e', 'hex')],
    ['a pre-3.9 index (a dict)', Buffer.from('80027d710028550570726f7071014b64752e', 'hex')],
  ];
  for (const [name, b] of cases) {
    it(name, () => {
      const e = throwsWith(() => decodeIndex(b, 'x.index'), 'INDEX_BAD');
      assert.equal(e.path, 'x.index');
      assert.equal(typeof e.position, 'number');
    });
  }

  it('a damaged byte anywhere is an error or a different index, never the same one', () => {
    const orig = decodeIndex(good);
    for (let i = 0; i < good.length; i++) {
      const b = Buffer.from(good);
      xorByte(b, i, 0xff);
      let d;
      try {
        d = decodeIndex(b);
      } catch (e) {
        assert.equal((e as { code?: string }).code, 'INDEX_BAD', `byte ${i}: ${String(e)}`);
        continue;
      }
      assert.ok(d.pos !== orig.pos || JSON.stringify(d.index.entries()) !== JSON.stringify(orig.index.entries()), `byte ${i}`);
    }
  });

  it('a missing index file is INDEX_BAD', async (t) => {
    await rejectsWith(readIndexFile(path.join(tmpDir(t), 'Data.fs.index')), 'INDEX_BAD');
  });
});

describe('index: hostile files cost bounded time and memory', () => {
  it('a crafted 300 KB index of wide tuples is INDEX_BAD before its tuples are built', () => {
    // pos, then entries whose "tuple" is a MARK and 100,000 items: a
    // (prefix, bucket) pair as far as a careless reader is concerned.
    const wideEntry = (n: number) => Buffer.concat([Buffer.from([0x80, 0x03, 0x28]), Buffer.alloc(n, 0x4e), Buffer.from([0x74, 0x2e])]);
    const b = Buffer.concat([dumpPickle(100), wideEntry(100_000), wideEntry(100_000), wideEntry(100_000), dumpPickle(null)]);
    assert.ok(b.length >= 300_000);
    const e = throwsWith(() => decodeIndex(b, 'crafted.index'), 'INDEX_BAD');
    assert.equal(e.path, 'crafted.index');
  });

  for (const kind of ['FIFO', 'link to /dev/zero'] as const) {
    it(`an index that is a ${kind} is INDEX_BAD at once (so it is rebuilt), never waited on or read whole`, { timeout: 10_000 }, async (t) => {
      const p = path.join(tmpDir(t), 'Data.fs.index');
      if (kind === 'FIFO') execFileSync('mkfifo', [p]);
      else fs.symlinkSync('/dev/zero', p);
      const e = await rejectsWith(readIndexFile(p), 'INDEX_BAD');
      assert.match(e.message, /not a regular file/);
    });
  }
});
