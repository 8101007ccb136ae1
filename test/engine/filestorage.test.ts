/**
 * The FileStorage reader against what the real ZODB 6.3 wrote: magics, the
 * committed end of every torn tail, every transaction and record of every
 * fixture, tid dates, and typed errors for corruption and foreign files.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DATA_HDR_LEN,
  MAGIC_FS21,
  MAGIC_FS30,
  committedEnd,
  dateToTid,
  decodeDataHeader,
  decodeTxnHeader,
  encodeDataHeader,
  encodeTxnHeader,
  iterateTransactions,
  openFileStorage,
  tidToDate,
  txnEndingAt,
  type TxnInfo,
} from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { readJson, stateJson, statePath, storageFixtures, type StorageJson } from '../support/fixtures';
import { copy, md5, tmpDir } from '../support/fs';
import { FIXTURES } from '../support/paths';
import { nth, xorByte } from '../support/must';

async function allTxns(file: string): Promise<TxnInfo[]> {
  const out: TxnInfo[] = [];
  for await (const t of iterateTransactions(file)) out.push(t);
  return out;
}

describe('FileStorage reader: magics', () => {
  it('reads FS30 (ZODB on Python 3)', async () => {
    const st = await openFileStorage(statePath(3));
    try {
      assert.equal(st.magic, MAGIC_FS30);
      assert.equal(st.size, 7412);
    } finally {
      await st.fh.close();
    }
    const r = await committedEnd(statePath(3));
    assert.equal(r.magic, 'FS30');
  });

  it('reads FS21 (Python 2 era) and keeps it', async (t) => {
    const dir = tmpDir(t);
    const f = path.join(dir, 'Data.fs');
    const b = fs.readFileSync(statePath(3));
    b.write('FS21', 0, 'latin1');
    fs.writeFileSync(f, b);
    const r = await committedEnd(f);
    assert.equal(r.magic, MAGIC_FS21);
    assert.equal(r.end, 7412);
    assert.equal(r.txnCount, 13);
    const a = await allTxns(statePath(3));
    const c = await allTxns(f);
    assert.deepEqual(
      c.map((x) => [x.pos, x.tid.toString('hex')]),
      a.map((x) => [x.pos, x.tid.toString('hex')]),
    );
  });
});

describe('FileStorage reader: the committed end of torn tails', () => {
  const cases = readJson<Record<string, { size: number; valid_end: number; why: string }>>(path.join(FIXTURES, 'torn-tails', 'cases.json'));
  assert.ok(Object.keys(cases).length >= 6);
  for (const [name, c] of Object.entries(cases)) {
    it(`${name}: ${c.why} -> ${c.valid_end}`, async () => {
      const file = path.join(FIXTURES, 'torn-tails', name);
      assert.equal(fs.statSync(file).size, c.size);
      const r = await committedEnd(file);
      assert.equal(r.size, c.size);
      assert.equal(r.end, c.valid_end);
      // The iterator stops at the same place, without error.
      const txns = await allTxns(file);
      assert.equal(nth(txns, txns.length - 1).end, c.valid_end);
      assert.equal(r.txnCount, txns.length);
      assert.equal(r.lastTid?.toString('hex'), nth(txns, txns.length - 1).tid.toString('hex'));
    });
  }

  it('every torn tail is a prefix-compatible cut of complete.fs up to its valid end', () => {
    const complete = fs.readFileSync(path.join(FIXTURES, 'torn-tails', 'complete.fs'));
    for (const [name, c] of Object.entries(cases)) {
      const b = fs.readFileSync(path.join(FIXTURES, 'torn-tails', name));
      assert.ok(b.subarray(0, c.valid_end).equals(complete.subarray(0, c.valid_end)), name);
    }
  });
});

describe('FileStorage reader: transactions and records match ZODB', () => {
  for (const fx of storageFixtures()) {
    it(`${fx.name}: every transaction and record`, async () => {
      const j = readJson<StorageJson>(fx.json);
      const bytes = fs.readFileSync(fx.fs);
      assert.equal(bytes.length, j.size);
      assert.equal(md5(bytes), j.md5);
      const txns = await allTxns(fx.fs);
      assert.equal(txns.length, j.transactions.length);
      txns.forEach((t, i) => {
        const x = nth(j.transactions, i);
        const where = `${fx.name} transaction ${i} at ${x.pos}`;
        assert.equal(t.tid.toString('hex'), x.tid, where);
        assert.equal(t.pos, x.pos, where);
        assert.equal(t.end - t.pos, x.length, where);
        assert.equal(t.tlen + 8, x.length, where);
        assert.equal(t.status, x.status, where);
        assert.equal(t.user.toString('utf8'), x.user, where);
        assert.equal(t.description.toString('utf8'), x.description, where);
        assert.equal(t.extension.toString('hex'), x.extension_hex, where);
        assert.equal(t.records.length, x.records.length, where);
        t.records.forEach((r, k) => {
          const y = nth(x.records, k);
          const rw = `${where}, record ${k} at ${y.pos}`;
          assert.equal(r.oid.toString('hex'), y.oid, rw);
          assert.equal(r.tid.toString('hex'), x.tid, rw);
          assert.equal(r.pos, y.pos, rw);
          assert.equal(r.prev, y.prev, rw);
          assert.equal(r.plen, y.plen, rw);
          if (y.plen === 0) {
            assert.ok('backpointer' in y, rw);
            assert.equal(r.backpointer, y.backpointer, rw);
            assert.equal(r.blob, false, rw);
          } else {
            assert.equal(r.backpointer, undefined, rw);
            assert.equal(r.blob, y.blob, rw);
            assert.equal(md5(bytes.subarray(r.pos + DATA_HDR_LEN, r.pos + DATA_HDR_LEN + r.plen)), y.md5, rw);
          }
        });
      });
      // Transactions are contiguous from byte 4 to the end and tids increase.
      let p = 4;
      for (const t of txns) {
        assert.equal(t.pos, p);
        p = t.end;
      }
      for (let i = 1; i < txns.length; i++) assert.ok(Buffer.compare(nth(txns, i - 1).tid, nth(txns, i).tid) < 0);
      const r = await committedEnd(fx.fs);
      assert.equal(r.end, j.end);
      assert.equal(r.txnCount, j.transactions.length);
    });
  }

  it('the fixtures cover blob records, back pointers and packed transactions', () => {
    const all = [1, 2, 3, 4, 5, 6].map(stateJson);
    const recs = all.flatMap((j) => j.transactions.flatMap((t) => t.records));
    assert.ok(recs.some((r) => r.blob === true));
    assert.ok(recs.some((r) => r.plen === 0 && (r.backpointer ?? 0) > 0));
    assert.ok(all.some((j) => j.transactions.some((t) => t.status === 'p')));
  });
});

describe('FileStorage reader: headers and tids', () => {
  it('encodes and decodes transaction and data headers symmetrically', () => {
    const b = fs.readFileSync(statePath(4));
    const j = stateJson(4);
    for (const t of j.transactions) {
      const h = decodeTxnHeader(b, t.pos);
      assert.equal(h.tlen, t.length - 8);
      assert.ok(encodeTxnHeader(h).equals(b.subarray(t.pos, t.pos + 23)));
      for (const r of t.records) {
        const d = decodeDataHeader(b, r.pos);
        assert.equal(d.tloc, t.pos);
        assert.equal(d.prev, r.prev);
        assert.ok(encodeDataHeader(d).equals(b.subarray(r.pos, r.pos + DATA_HDR_LEN)));
      }
    }
  });

  it('tidToDate gives the UTC time of a tid', () => {
    // 0x0405e91c minutes since 1900 with 31-day months = 2026-01-01 09:00; 0x1ddddddd / 2^32 * 60 = 7 s.
    const d = tidToDate(Buffer.from('0405e91c1ddddddd', 'hex'));
    assert.ok(Math.abs(d.getTime() - Date.UTC(2026, 0, 1, 9, 0, 7)) <= 2, d.toISOString());
    // Every tid of the history lies in early January 2026, in order.
    let last = 0;
    for (const t of stateJson(6).transactions) {
      const ms = tidToDate(Buffer.from(t.tid, 'hex')).getTime();
      assert.ok(ms >= Date.UTC(2026, 0, 1) && ms < Date.UTC(2026, 0, 8), t.tid);
      assert.ok(ms >= last);
      last = ms;
    }
    // And back: the tid of a time is within one tick of the original.
    const tid = dateToTid(new Date(Date.UTC(2026, 0, 1, 9, 0, 7)));
    assert.equal(tid.readUInt32BE(0), 0x0405e91c);
    assert.ok(Math.abs(tid.readUInt32BE(4) - 0x1ddddddd) <= 1);
    assert.equal(tidToDate(Buffer.from('0000000000000000', 'hex')).toISOString(), '1900-01-01T00:00:00.000Z');
  });

  it('txnEndingAt recognises a transaction boundary and rejects others', async () => {
    const j = stateJson(3);
    const st = await openFileStorage(statePath(3));
    try {
      for (const t of j.transactions) {
        const h = await txnEndingAt(st.fh, t.pos + t.length, st.size);
        assert.ok(h, `boundary ${t.pos + t.length}`);
        assert.equal(h.tid.toString('hex'), t.tid);
      }
      assert.equal(await txnEndingAt(st.fh, nth(j.transactions, 3).pos + 50, st.size), undefined);
      assert.equal(await txnEndingAt(st.fh, st.size + 8, st.size), undefined);
    } finally {
      await st.fh.close();
    }
  });
});

describe('FileStorage reader: damaged and foreign files', () => {
  it('a record whose tloc is wrong in the middle is FS_CORRUPT with path and position', async (t) => {
    const dir = tmpDir(t);
    const f = path.join(dir, 'Data.fs');
    copy(statePath(3), f);
    const j = stateJson(3);
    const txn = nth(j.transactions, 2);
    const rec = nth(txn.records, 0);
    const b = fs.readFileSync(f);
    b.writeUInt32BE(b.readUInt32BE(rec.pos + 28) + 1, rec.pos + 28); // tloc low word
    fs.writeFileSync(f, b);
    for (const run of [() => committedEnd(f), () => allTxns(f)]) {
      const e = await rejectsWith(run, 'FS_CORRUPT');
      assert.equal(e.path, f);
      assert.equal(e.position, rec.pos);
      assert.match(e.message, new RegExp(String(rec.pos)));
    }
  });

  it('a broken trailer in the middle is FS_CORRUPT at the trailer', async (t) => {
    const dir = tmpDir(t);
    const f = path.join(dir, 'Data.fs');
    copy(statePath(3), f);
    const txn = nth(stateJson(3).transactions, 2);
    const trailerPos = txn.pos + txn.length - 8;
    const b = fs.readFileSync(f);
    xorByte(b, trailerPos + 7, 0x10);
    fs.writeFileSync(f, b);
    const e = await rejectsWith(committedEnd(f), 'FS_CORRUPT');
    assert.equal(e.path, f);
    assert.equal(e.position, trailerPos);
  });

  it('a bad status byte in the middle is FS_CORRUPT at the transaction', async (t) => {
    const dir = tmpDir(t);
    const f = path.join(dir, 'Data.fs');
    copy(statePath(3), f);
    const txn = nth(stateJson(3).transactions, 4);
    const b = fs.readFileSync(f);
    b[txn.pos + 16] = 'X'.charCodeAt(0);
    fs.writeFileSync(f, b);
    const e = await rejectsWith(committedEnd(f), 'FS_CORRUPT');
    assert.equal(e.position, txn.pos);
  });

  it('the same damage in the last transaction is a torn tail, not an error', async (t) => {
    const dir = tmpDir(t);
    const f = path.join(dir, 'Data.fs');
    copy(statePath(3), f);
    const j = stateJson(3);
    const last = nth(j.transactions, j.transactions.length - 1);
    const b = fs.readFileSync(f);
    xorByte(b, last.pos + last.length - 1, 0x10); // its trailer
    fs.writeFileSync(f, b);
    assert.equal((await committedEnd(f)).end, last.pos);
  });

  it('an empty file is NOT_FILESTORAGE', async (t) => {
    const f = path.join(tmpDir(t), 'Data.fs');
    fs.writeFileSync(f, '');
    const e = await rejectsWith(committedEnd(f), 'NOT_FILESTORAGE');
    assert.equal(e.path, f);
    await rejectsWith(allTxns(f), 'NOT_FILESTORAGE');
  });

  it('a foreign file is NOT_FILESTORAGE', async (t) => {
    const dir = tmpDir(t);
    for (const [name, content] of [
      ['json', fs.readFileSync(path.join(FIXTURES, 'torn-tails', 'cases.json'))],
      ['index', fs.readFileSync(path.join(FIXTURES, 'wide-oids', 'Data.fs.index'))],
      ['short', Buffer.from('FS3')],
      ['lower', Buffer.from('fs30' + 'x'.repeat(100))],
    ] as [string, Buffer][]) {
      const f = path.join(dir, name);
      fs.writeFileSync(f, content);
      const e = await rejectsWith(committedEnd(f), 'NOT_FILESTORAGE');
      assert.equal(e.path, f);
      assert.equal(e.position, 0);
    }
  });

  it('a missing file is SOURCE_MISSING', async (t) => {
    const f = path.join(tmpDir(t), 'nope', 'Data.fs');
    await rejectsWith(committedEnd(f), 'SOURCE_MISSING');
  });

  it('a file with only the magic has its end at 4', async (t) => {
    const f = path.join(tmpDir(t), 'Data.fs');
    fs.writeFileSync(f, 'FS30');
    const r = await committedEnd(f);
    assert.equal(r.end, 4);
    assert.equal(r.txnCount, 0);
    assert.deepEqual(await allTxns(f), []);
  });
});
