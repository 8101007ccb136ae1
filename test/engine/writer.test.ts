/**
 * The FileStorage writer commits as ZODB does: rewriting every fixture's
 * transactions gives ZODB's bytes and index; vote leaves an uncommitted 'c'
 * transaction that readers ignore until finish; blobs land where ZODB puts them.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DATA_HDR_LEN,
  FileStorageWriter,
  blobRelPath,
  committedEnd,
  encodeIndex,
  iterateTransactions,
  listBlobFiles,
  readLayout,
  type TxnInfo,
  type WriteTxn,
} from '../../src/engine/internal';
import { history, readJson, referenceIndex, statePath, storageFixtures, type StorageJson } from '../support/fixtures';
import { sampleSite } from '../support/site';
import { copy, md5, tmpDir } from '../support/fs';
import { FIXTURE_REPO, FIXTURES, HISTORY } from '../support/paths';
import { nth } from '../support/must';

/** The WriteTxn that reproduces a transaction read from `bytes`. */
function toWrite(t: TxnInfo, bytes: Buffer, blobContent?: (oid: Buffer, tid: Buffer) => Buffer): WriteTxn {
  return {
    tid: t.tid,
    user: t.user,
    description: t.description,
    extension: t.extension,
    status: t.status as ' ' | 'p',
    records: t.records.map((r) => {
      if (r.plen === 0) return { oid: r.oid, backpointer: r.backpointer };
      const data = Buffer.from(bytes.subarray(r.pos + DATA_HDR_LEN, r.pos + DATA_HDR_LEN + r.plen));
      return r.blob && blobContent ? { oid: r.oid, data, blob: blobContent(r.oid, r.tid) } : { oid: r.oid, data };
    }),
  };
}

async function readAll(file: string): Promise<TxnInfo[]> {
  const out: TxnInfo[] = [];
  for await (const t of iterateTransactions(file)) out.push(t);
  return out;
}

describe('writer: rewrites the fixtures byte for byte', () => {
  for (const fx of storageFixtures()) {
    it(`${fx.name}`, async (t) => {
      const dir = tmpDir(t);
      const bytes = fs.readFileSync(fx.fs);
      const txns = await readAll(fx.fs);
      const out = path.join(dir, 'Data.fs');
      const w = await FileStorageWriter.create(out, { magic: bytes.toString('latin1', 0, 4) });
      t.after(() => w.close());
      for (const txn of txns) {
        const v = await w.commit(toWrite(txn, bytes));
        assert.equal(v.pos, txn.pos);
        assert.equal(v.end, txn.end);
        assert.ok(v.tid.equals(txn.tid));
      }
      assert.equal(w.end, bytes.length);
      assert.ok(w.lastTransactionId?.equals(nth(txns, txns.length - 1).tid));
      await w.close({ writeIndex: true });
      const written = fs.readFileSync(out);
      assert.equal(written.length, bytes.length);
      assert.ok(written.equals(bytes), `first difference at byte ${written.findIndex((b, i) => b !== bytes[i])}`);
      // The index written on close is ZODB's.
      const scanned = await referenceIndex(fx.fs);
      assert.ok(fs.readFileSync(out + '.index').equals(encodeIndex(scanned.index, scanned.end)));
      if (fs.existsSync(fx.fs + '.index')) assert.ok(fs.readFileSync(out + '.index').equals(fs.readFileSync(fx.fs + '.index')));
    });
  }

  it('the index after each history step is the repository .index', async (t) => {
    const dir = tmpDir(t);
    for (const [i, s] of history().steps.entries()) {
      const f = path.join(dir, `S${i + 1}.fs`);
      const bytes = fs.readFileSync(statePath(i + 1));
      const w = await FileStorageWriter.create(f);
      t.after(() => w.close());
      for (const txn of await readAll(statePath(i + 1))) await w.commit(toWrite(txn, bytes));
      await w.close({ writeIndex: true });
      assert.ok(fs.readFileSync(f + '.index').equals(fs.readFileSync(path.join(FIXTURE_REPO, `${s.stamp}.index`))), s.stamp);
    }
  });

  it('opening an existing Data.fs continues it: S3 + the undo transaction = S4', async (t) => {
    const dir = tmpDir(t);
    const f = copy(statePath(3), path.join(dir, 'Data.fs'));
    const s4 = fs.readFileSync(statePath(4));
    const s4txns = await readAll(statePath(4));
    const w = await FileStorageWriter.open(f);
    t.after(() => w.close());
    assert.equal(w.end, 7412);
    assert.equal(w.lastTransactionId?.toString('hex'), nth(history().steps, 2).last_tid);
    const last = nth(s4txns, s4txns.length - 1);
    assert.ok(
      last.records.some((r) => r.plen === 0 && (r.backpointer ?? 0) > 0),
      'S4 adds an undo with a back pointer',
    );
    await w.commit(toWrite(last, s4));
    await w.close();
    assert.ok(fs.readFileSync(f).equals(s4));
    // A new oid continues after the highest one.
    const w2 = await FileStorageWriter.open(f);
    t.after(() => w2.close());
    const maxOid = Math.max(...s4txns.flatMap((x) => x.records.map((r) => Number(r.oid.readBigUInt64BE()))));
    assert.equal(Number(w2.newOid().readBigUInt64BE()), maxOid + 1);
  });

  it('rejects tids that do not increase', async (t) => {
    const dir = tmpDir(t);
    const w = await FileStorageWriter.create(path.join(dir, 'Data.fs'));
    t.after(() => w.close());
    const tid = Buffer.from('0405e91c1ddddddd', 'hex');
    await w.commit({ tid, records: [{ oid: 0, data: Buffer.from('x') }] });
    await assert.rejects(w.commit({ tid, records: [{ oid: 0, data: Buffer.from('y') }] }));
    // Without a tid, new ones come from the clock and still increase.
    const a = await w.commit({ records: [{ oid: 0, data: Buffer.from('z') }] });
    const b = await w.commit({ records: [{ oid: 0, data: Buffer.from('w') }] });
    assert.ok(Buffer.compare(a.tid, tid) > 0);
    assert.ok(Buffer.compare(b.tid, a.tid) > 0);
  });
});

describe('writer: vote and finish', () => {
  it("vote leaves status 'c' that readers do not count; finish commits it", async (t) => {
    const dir = tmpDir(t);
    const f = path.join(dir, 'Data.fs');
    const w = await FileStorageWriter.create(f);
    t.after(() => w.close());
    await w.commit({ user: 'admin', description: 'first', records: [{ oid: w.newOid(), data: Buffer.from('first pickle') }] });
    const before = await committedEnd(f);
    const v = await w.vote({
      user: 'admin',
      description: 'second',
      records: [
        { oid: 0, data: Buffer.from('second pickle') },
        { oid: w.newOid(), data: Buffer.from('new') },
      ],
    });
    const b = fs.readFileSync(f);
    assert.equal(b.length, v.end, 'the whole transaction is written at vote');
    assert.equal(String.fromCharCode(nth(b, v.pos + 16)), 'c');
    const during = await committedEnd(f);
    assert.equal(during.end, v.pos);
    assert.equal(during.end, before.end);
    assert.equal(during.txnCount, 1);
    assert.equal((await readAll(f)).length, 1);
    assert.equal(w.end, v.pos, 'the writer does not count it either');
    await assert.rejects(w.vote({ records: [] }), /already voted/);
    await w.finish();
    const after = fs.readFileSync(f);
    assert.equal(String.fromCharCode(nth(after, v.pos + 16)), ' ');
    // Only the status byte changed.
    assert.ok(after.subarray(0, v.pos + 16).equals(b.subarray(0, v.pos + 16)));
    assert.ok(after.subarray(v.pos + 17).equals(b.subarray(v.pos + 17)));
    const done = await committedEnd(f);
    assert.equal(done.end, v.end);
    assert.equal(done.txnCount, 2);
    assert.ok(done.lastTid?.equals(v.tid));
    const txns = await readAll(f);
    assert.equal(nth(nth(txns, 1).records, 0).prev, nth(nth(txns, 0).records, 0).pos, "prev points to the oid's previous record");
    assert.equal(nth(txns, 1).user.toString(), 'admin');
    assert.equal(nth(txns, 1).description.toString(), 'second');
  });

  it('abort after vote cuts the transaction off again', async (t) => {
    const dir = tmpDir(t);
    const f = path.join(dir, 'Data.fs');
    const w = await FileStorageWriter.create(f);
    t.after(() => w.close());
    await w.commit({ records: [{ oid: 0, data: Buffer.from('a') }] });
    const size = fs.statSync(f).size;
    await w.vote({ records: [{ oid: 0, data: Buffer.from('b') }] });
    assert.ok(fs.statSync(f).size > size);
    await w.abort();
    assert.equal(fs.statSync(f).size, size);
    await w.commit({ records: [{ oid: 0, data: Buffer.from('c') }] });
    assert.equal((await committedEnd(f)).txnCount, 2);
  });
});

describe('writer: blobs', () => {
  it('lawn: rewriting the lawn fixture puts every blob where ZODB put it', async (t) => {
    const dir = tmpDir(t);
    const src = path.join(FIXTURES, 'lawn');
    const j = readJson<StorageJson>(path.join(src, 'Data.fs.json'));
    const bytes = fs.readFileSync(path.join(src, 'Data.fs'));
    const blobDir = path.join(dir, 'blobstorage');
    const out = path.join(dir, 'Data.fs');
    const w = await FileStorageWriter.create(out, { blobDir, layout: 'lawn' });
    t.after(() => w.close());
    const content = (oid: Buffer, tid: Buffer) => fs.readFileSync(path.join(src, 'blobstorage', blobRelPath(oid, tid, 'lawn')));
    let blobRecords = 0;
    for (const txn of await readAll(path.join(src, 'Data.fs'))) {
      blobRecords += txn.records.filter((r) => r.blob).length;
      await w.commit(toWrite(txn, bytes, content));
    }
    await w.close();
    assert.ok(blobRecords > 0);
    assert.ok(fs.readFileSync(out).equals(bytes));
    assert.deepEqual(await readLayout(blobDir), { layout: 'lawn', marked: true });
    const { files, strays } = await listBlobFiles(blobDir, 'lawn');
    assert.deepEqual(strays, []);
    const got = Object.fromEntries(files.map((f) => [f.rel, md5(fs.readFileSync(path.join(blobDir, f.rel)))]));
    assert.deepEqual(got, j.blobs);
    assert.deepEqual(fs.readdirSync(path.join(blobDir, 'tmp')), [], 'nothing left in tmp/');
  });

  it('bushy: blob files go to one folder per oid byte', async (t) => {
    const dir = tmpDir(t);
    const blobDir = path.join(dir, 'blobstorage');
    const site = await sampleSite(t, { file: path.join(dir, 'Data.fs'), blobDir });
    const oid = await site.uploadFile('a.pdf', Buffer.from('%PDF first'));
    await site.uploadFile('a.pdf', Buffer.from('%PDF second'), oid);
    await site.addDocument('Hello');
    await site.close({ writeIndex: true });
    assert.equal(fs.readFileSync(path.join(blobDir, '.layout'), 'utf8'), 'bushy');
    const blobTxns = (await readAll(path.join(dir, 'Data.fs'))).filter((x) => x.records.some((r) => r.blob));
    assert.equal(blobTxns.length, 2);
    const expected = blobTxns.map((x) => {
      const rel = blobRelPath(oid, x.tid, 'bushy');
      assert.match(rel, /^0x00\/0x00\/0x00\/0x00\/0x00\/0x00\/0x00\/0x[0-9a-f]{2}\/0x[0-9a-f]+\.blob$/);
      return rel;
    });
    const { files } = await listBlobFiles(blobDir, 'bushy');
    assert.deepEqual(
      files.map((f) => f.rel),
      expected.sort(),
    );
    assert.equal(fs.readFileSync(path.join(blobDir, nth(expected, 0)), 'utf8'), '%PDF first');
    // The sample site's index is what a scan builds.
    const scanned = await referenceIndex(path.join(dir, 'Data.fs'));
    assert.ok(fs.readFileSync(path.join(dir, 'Data.fs.index')).equals(encodeIndex(scanned.index, scanned.end)));
  });

  it('the history blob paths follow the bushy layout of history.json', () => {
    for (const s of history().steps) {
      for (const rel of Object.keys(s.blobs)) {
        const parts = rel.split('/');
        assert.equal(parts.length, 9);
        const oid = Buffer.from(parts.slice(0, 8).map((p) => parseInt(p.slice(2), 16)));
        const tid = Buffer.from(nth(parts, 8).slice(2, -5).padStart(16, '0'), 'hex');
        assert.equal(blobRelPath(oid, tid, 'bushy'), rel);
      }
    }
    assert.ok(fs.existsSync(path.join(HISTORY, 'var', 'blobstorage', '.layout')));
  });
});
