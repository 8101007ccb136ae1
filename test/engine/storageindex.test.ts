/**
 * A full backup without blobs does what repozo's read-only FileStorage does:
 * Data.fs.index, when ZODB would trust it for the file, stands for the walk
 * up to its end; only what follows is walked record by record. An index that
 * does not describe the file (missing, truncated, foreign, of a packed or
 * replaced file, pointing into a transaction, naming records that are not
 * there, a symlink) is not used, and the walk gives the same piece and index
 * as always. The real repozo restores what we write, and writes the same
 * piece and .index from the same Data.fs and Data.fs.index.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DATA_HDR_LEN,
  FileStorageWriter,
  FsIndex,
  MAGIC_FS30,
  TRANS_HDR_LEN,
  backup,
  decodeIndex,
  encodeDataHeader,
  encodeIndex,
  encodeTxnHeader,
  loadStorageIndex,
  openFileStorage,
  rebuildIndex,
  recover,
  writeU64,
  type BackupResult,
} from '../../src/engine/internal';
import { at } from '../support/fixtures';
import { content, copy, tmpDir } from '../support/fs';
import { HISTORY } from '../support/paths';
import { oracleSkip, runRepozo } from '../support/oracles';

/** A Data.fs made by our writer: `n` transactions over 60 oids; Data.fs.index written after `indexAfter` of them. */
async function makeStorage(file: string, n: number, indexAfter?: number): Promise<{ w: FileStorageWriter; ends: number[] }> {
  const w = await FileStorageWriter.create(file);
  const ends: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = await w.commit({
      user: `user${i % 3}`,
      description: `step ${i}`,
      records: [0, 1, 2].map((k) => ({ oid: (i * 7 + k * 13) % 60, data: content(`${i}/${k}`, 80 + ((i * 37 + k * 101) % 900)) })),
    });
    ends.push(v.end);
    if (i + 1 === indexAfter) await w.writeIndex();
  }
  return { w, ends };
}

interface Backed {
  result: BackupResult;
  piece: Buffer;
  index: Buffer;
  repo: string;
}

async function fullBackup(dir: string, file: string, name: string, log?: (m: string) => void): Promise<Backed> {
  const repo = path.join(dir, name);
  fs.mkdirSync(repo);
  const result = await backup({ file, repository: repo, full: true, now: at('2026-04-01-10-00-00'), log });
  return {
    result,
    repo,
    piece: fs.readFileSync(path.join(repo, result.piece!)),
    index: fs.readFileSync(path.join(repo, `${result.stamp}.index`)),
  };
}

/** The piece and .index of the same file walked record by record (Data.fs.index moved away). */
async function walked(dir: string, file: string): Promise<Backed> {
  const aside = `${file}.index.aside`;
  const had = fs.existsSync(`${file}.index`);
  if (had) fs.renameSync(`${file}.index`, aside);
  try {
    const b = await fullBackup(dir, file, 'walked');
    assert.deepEqual(b.result.storageIndex?.used, false);
    return b;
  } finally {
    if (had) fs.renameSync(aside, `${file}.index`);
  }
}

function assertSameBackup(a: Backed, b: Backed): void {
  assert.ok(a.piece.equals(b.piece), 'the pieces differ');
  assert.ok(a.index.equals(b.index), 'the .index files differ');
  assert.equal(a.result.end, b.result.end);
  assert.equal(a.result.md5, b.result.md5);
  assert.equal(a.result.transactions, b.result.transactions);
  assert.equal(a.result.lastTid, b.result.lastTid);
}

describe('full backup: Data.fs.index stands for the walk, as in repozo', () => {
  it("the real ZODB's Data.fs.index is used; the piece is Data.fs, the .index is that index, as the walk gives them", async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    copy(path.join(HISTORY, 'var', 'filestorage', 'Data.fs'), file);
    copy(path.join(HISTORY, 'var', 'filestorage', 'Data.fs.index'), `${file}.index`);
    const logs: string[] = [];
    const b = await fullBackup(dir, file, 'repo', (m) => logs.push(m));
    assert.deepEqual(b.result.storageIndex, { used: true, pos: fs.statSync(file).size });
    assert.ok(logs.some((l) => /used .*Data\.fs\.index up to byte/.test(l)));
    assert.ok(b.piece.equals(fs.readFileSync(file)));
    // ZODB's fsIndex.save of the same state: the very same bytes.
    assert.ok(b.index.equals(fs.readFileSync(`${file}.index`)));
    assertSameBackup(b, await walked(dir, file));
  });

  it('an index of an earlier state of the file is used up to its end, and the rest is walked', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const { w, ends } = await makeStorage(file, 40, 25);
    await w.close();
    const b = await fullBackup(dir, file, 'repo');
    assert.deepEqual(b.result.storageIndex, { used: true, pos: ends[24] });
    assert.equal(b.result.transactions, 40);
    assertSameBackup(b, await walked(dir, file));
  });

  it('a transaction voted but not finished (status c) at the end is not copied', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const { w, ends } = await makeStorage(file, 12, 10);
    await w.vote({ records: [{ oid: 3, data: content('busy', 500) }] });
    const b = await fullBackup(dir, file, 'repo');
    assert.deepEqual(b.result.storageIndex, { used: true, pos: ends[9] });
    assert.equal(b.result.end, ends[11]);
    assert.ok(b.piece.equals(fs.readFileSync(file).subarray(0, ends[11])));
    assertSameBackup(b, await walked(dir, file));
    // The same when the index ends right before the voted transaction.
    await w.abort();
    await w.writeIndex();
    await w.vote({ records: [{ oid: 4, data: content('busy again', 500) }] });
    const c = await fullBackup(dir, file, 'repo2');
    assert.deepEqual(c.result.storageIndex, { used: true, pos: ends[11] });
    assert.equal(c.result.end, ends[11]);
    await w.finish();
    await w.close();
  });

  it('an incremental whose last .index is gone continues Data.fs.index instead of walking the file', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const { w } = await makeStorage(file, 20, 12);
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const full = await backup({ file, repository: repo, full: true, now: at('2026-04-01-10-00-00') });
    fs.rmSync(path.join(repo, `${full.stamp}.index`));
    for (let i = 0; i < 5; i++) await w.commit({ records: [{ oid: 70 + i, data: content(`more ${i}`, 200) }] });
    await w.close();
    const logs: string[] = [];
    const inc = await backup({ file, repository: repo, quick: true, now: at('2026-04-01-11-00-00'), log: (m) => logs.push(m) });
    assert.equal(inc.action, 'incremental');
    assert.ok(logs.some((l) => /Data\.fs\.index continued to byte/.test(l)));
    const st = await openFileStorage(file);
    try {
      const want = encodeIndex(await rebuildIndex(st.fh, file, inc.end), inc.end);
      assert.ok(fs.readFileSync(path.join(repo, `${inc.stamp}.index`)).equals(want));
    } finally {
      await st.fh.close();
    }
  });
});

/** A data record's header and pickle, a transaction around records, for files written by hand. */
function txnBytes(tid: Buffer, tpos: number, records: { oid: number; data: Buffer }[]): { bytes: Buffer; positions: number[] } {
  const parts: Buffer[] = [];
  const positions: number[] = [];
  let pos = tpos + TRANS_HDR_LEN;
  for (const r of records) {
    const oid = Buffer.alloc(8);
    oid.writeUInt32BE(r.oid, 4);
    parts.push(encodeDataHeader({ oid, tid, prev: 0, tloc: tpos, vlen: 0, plen: r.data.length }), r.data);
    positions.push(pos);
    pos += DATA_HDR_LEN + r.data.length;
  }
  const tlen = pos - tpos;
  const trailer = Buffer.alloc(8);
  writeU64(trailer, tlen, 0);
  return { bytes: Buffer.concat([encodeTxnHeader({ tid, tlen, status: ' ', ulen: 0, dlen: 0, elen: 0 }), ...parts, trailer]), positions };
}

const tidOf = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(0x03e00000, 0);
  b.writeUInt32BE(n, 4);
  return b;
};

describe('an index that does not describe the file is not trusted', () => {
  /** Each case damages a good setup (Data.fs with an index after 30 of 40 transactions); the backup must walk. */
  const cases: { name: string; reason: RegExp; damage: (file: string, ends: number[]) => void }[] = [
    { name: 'no Data.fs.index', reason: /there is no/, damage: (f) => fs.rmSync(`${f}.index`) },
    {
      name: 'a truncated index',
      reason: /cannot be used/,
      damage: (f) => {
        const b = fs.readFileSync(`${f}.index`);
        fs.writeFileSync(`${f}.index`, b.subarray(0, Math.floor(b.length / 2)));
      },
    },
    { name: "another storage's index", reason: /does not match|cannot be used/, damage: (f) => copy(path.join(HISTORY, 'var', 'filestorage', 'Data.fs.index'), `${f}.index`) },
    {
      name: 'the file was packed (shorter than the index says)',
      reason: /past the end of the file/,
      damage: (f, ends) => fs.truncateSync(f, ends[20]!),
    },
    {
      name: 'an end inside a transaction',
      reason: /no transaction ends|inconsistent|does not match/,
      damage: (f) => {
        const { pos, index } = decodeIndex(fs.readFileSync(`${f}.index`));
        fs.writeFileSync(`${f}.index`, encodeIndex(index, pos + 17));
      },
    },
    {
      name: 'the last transaction\u2019s record elsewhere in the index',
      reason: /does not have oid/,
      damage: (f, ends) => {
        const { pos, index } = decodeIndex(fs.readFileSync(`${f}.index`));
        // The first oid the 30th transaction wrote (writer: (i * 7) % 60, i = 29).
        index.set((29 * 7) % 60, ends[3]!);
        fs.writeFileSync(`${f}.index`, encodeIndex(index, pos));
      },
    },
    {
      name: 'a position past its end',
      reason: /lies outside/,
      damage: (f) => {
        const { pos, index } = decodeIndex(fs.readFileSync(`${f}.index`));
        index.set(59_000, pos + 100);
        fs.writeFileSync(`${f}.index`, encodeIndex(index, pos));
      },
    },
    {
      name: 'a sampled entry naming a record of another oid',
      reason: /is not one of oid|does not have oid/,
      damage: (f) => {
        const { pos, index } = decodeIndex(fs.readFileSync(`${f}.index`));
        // The highest oid (sampled) pointed at the first record, which is oid 0's.
        let top = -1;
        for (const [k] of index.map) if (typeof k === 'number' && k > top) top = k;
        index.set(top, 4 + TRANS_HDR_LEN + 'user0'.length + 'step 0'.length);
        fs.writeFileSync(`${f}.index`, encodeIndex(index, pos));
      },
    },
    {
      name: 'a symbolic link',
      reason: /symbolic link/,
      damage: (f) => {
        fs.renameSync(`${f}.index`, `${f}.real-index`);
        fs.symlinkSync(`${f}.real-index`, `${f}.index`);
      },
    },
  ];
  for (const c of cases) {
    it(c.name, async (t) => {
      const dir = tmpDir(t);
      const file = path.join(dir, 'Data.fs');
      const { w, ends } = await makeStorage(file, 40, 30);
      await w.close();
      c.damage(file, ends);
      const logs: string[] = [];
      const b = await fullBackup(dir, file, 'repo', (m) => logs.push(m));
      assert.equal(b.result.storageIndex?.used, false);
      assert.match((b.result.storageIndex as { reason: string }).reason, c.reason);
      assert.ok(logs.some((l) => /walking every record/.test(l)));
      const committed = fs.readFileSync(file).subarray(0, b.result.end);
      assert.ok(b.piece.equals(committed));
      const st = await openFileStorage(file);
      try {
        assert.ok(b.index.equals(encodeIndex(await rebuildIndex(st.fh, file, b.result.end), b.result.end)));
      } finally {
        await st.fh.close();
      }
    });
  }

  it('a transaction after its end that is older than the last one it covers (another file with the same beginning)', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const magic = Buffer.from(MAGIC_FS30, 'latin1');
    const a = txnBytes(tidOf(10), 4, [{ oid: 1, data: content('a', 120) }]);
    const end = 4 + a.bytes.length;
    const b = txnBytes(tidOf(5), end, [{ oid: 2, data: content('b', 120) }]);
    fs.writeFileSync(file, Buffer.concat([magic, a.bytes, b.bytes]));
    const index = new FsIndex();
    index.set(1, a.positions[0]!);
    fs.writeFileSync(`${file}.index`, encodeIndex(index, end));
    const st = await openFileStorage(file);
    try {
      const r = await loadStorageIndex(st);
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, /not newer/);
    } finally {
      await st.fh.close();
    }
  });

  it('an end that passes the checks but is no boundary of the real transactions (one faked inside a pickle): dropped when framing, then walked', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    // The real transaction at 4 holds one record whose pickle is a whole fake
    // transaction, then 0xff bytes (a "newer tid" after the fake's end).
    const pickleAt = 4 + TRANS_HDR_LEN + DATA_HDR_LEN;
    const fake = txnBytes(tidOf(7), pickleAt, [{ oid: 9, data: content('fake', 60) }]);
    const pickle = Buffer.concat([fake.bytes, Buffer.alloc(64, 0xff)]);
    const real = txnBytes(tidOf(8), 4, [{ oid: 1, data: pickle }]);
    assert.equal(real.positions[0]! + DATA_HDR_LEN, pickleAt);
    fs.writeFileSync(file, Buffer.concat([Buffer.from(MAGIC_FS30, 'latin1'), real.bytes]));
    const index = new FsIndex();
    index.set(9, fake.positions[0]!);
    const fakeEnd = pickleAt + fake.bytes.length;
    fs.writeFileSync(`${file}.index`, encodeIndex(index, fakeEnd));
    const st = await openFileStorage(file);
    try {
      const r = await loadStorageIndex(st);
      assert.equal(r.ok, true, 'the fake must pass the checks for this test to mean anything');
    } finally {
      await st.fh.close();
    }
    const b = await fullBackup(dir, file, 'repo');
    assert.equal(b.result.storageIndex?.used, false);
    assert.match((b.result.storageIndex as { reason: string }).reason, /where its index ends/);
    assert.equal(b.result.end, fs.statSync(file).size);
    assert.ok(b.piece.equals(fs.readFileSync(file)));
    assert.deepEqual(decodeIndex(b.index).index.entries(), [['0000000000000001', 4 + TRANS_HDR_LEN]]);
  });
});

describe('full backup from Data.fs.index: the real repozo', () => {
  it('writes the same piece and .index from the same files, and restores ours byte for byte', { skip: oracleSkip() }, async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const { w } = await makeStorage(file, 60, 45);
    await w.close();
    const ours = await fullBackup(dir, file, 'ours');
    assert.equal(ours.result.storageIndex?.used, true);
    const theirs = path.join(dir, 'theirs');
    fs.mkdirSync(theirs);
    await runRepozo(['-B', '-F', '-f', file, '-r', theirs]);
    const names = fs.readdirSync(theirs).sort();
    const piece = names.find((n) => n.endsWith('.fs'))!;
    const index = names.find((n) => n.endsWith('.index'))!;
    assert.ok(fs.readFileSync(path.join(theirs, piece)).equals(ours.piece), "repozo's piece differs");
    assert.ok(fs.readFileSync(path.join(theirs, index)).equals(ours.index), "repozo's .index differs");
    const out = path.join(dir, 'restored.fs');
    await runRepozo(['-R', '-r', ours.repo, '-o', out]);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(file)));
    // And ours restores ours, index included.
    const out2 = path.join(dir, 'restored2.fs');
    await recover({ repository: ours.repo, output: out2 });
    assert.ok(fs.readFileSync(out2).equals(fs.readFileSync(file)));
  });
});
