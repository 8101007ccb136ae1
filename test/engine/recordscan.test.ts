/**
 * The lean record scanner (recordscan.ts) against TxnScanner: the same
 * records, committed end, transaction count and last tid on every fixture
 * and torn tail, with chunks small enough that headers are cut by chunk
 * boundaries everywhere; the same bytes to a sink; the same errors at the
 * same positions on damaged files; what it does when the file shrinks under
 * it; and the framed part a trusted index stands for.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileStorageWriter, oidFromKey, OidPosMap, openFileStorage, scanRange, scanRecords, type RecordScanOptions } from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { stateJson, statePath, storageFixtures, txnStarts } from '../support/fixtures';
import { content, copy, tmpDir } from '../support/fs';
import { FIXTURES } from '../support/paths';
import { nth } from '../support/must';

interface Walk {
  records: [string, number][];
  end: number;
  txnCount: number;
  lastTid?: string;
  bytes?: Buffer;
}

/** TxnScanner's walk of [start, size): every record (oid hex, position), the end, count and last tid. */
async function reference(file: string, start = 4): Promise<Walk> {
  const st = await openFileStorage(file);
  try {
    const records: [string, number][] = [];
    const r = await scanRange(st, start, st.size, { fileSize: st.size }, (t) => {
      for (const rec of t.records) records.push([rec.oid.toString('hex'), rec.pos]);
    });
    return { records, end: r.end, txnCount: r.txnCount, lastTid: r.lastTid?.toString('hex') };
  } finally {
    await st.fh.close();
  }
}

/** The lean scan of the same range; with `sink`, the bytes it emitted. */
async function lean(file: string, opts: RecordScanOptions & { start?: number } = {}): Promise<Walk> {
  const st = await openFileStorage(file);
  try {
    const records: [string, number][] = [];
    const chunks: Buffer[] = [];
    const r = await scanRecords(st, opts.start ?? 4, st.size, (b, o, pos) => records.push([b.toString('hex', o, o + 8), pos]), {
      fileSize: st.size,
      ...opts,
      ...(opts.sink ? { sink: (c: Buffer) => void chunks.push(Buffer.from(c)) } : {}),
    });
    return { records, end: r.end, txnCount: r.txnCount, lastTid: r.lastTid?.toString('hex'), ...(opts.sink ? { bytes: Buffer.concat(chunks) } : {}) };
  } finally {
    await st.fh.close();
  }
}

const sinkOn = { sink: () => undefined };

/** The index a walk gives: each oid's last record, as [oid hex, position] in oid order. */
function lastOf(records: [string, number][]): [string, number][] {
  const m = new Map<string, number>();
  for (const [oid, pos] of records) m.set(oid, pos);
  return [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** The lean scan straight into an OidPosMap (the index's way in): its entries, end and count. */
async function intoMap(file: string, opts: RecordScanOptions = {}): Promise<{ index: [string, number][]; end: number; txnCount: number; lastTid?: string }> {
  const st = await openFileStorage(file);
  try {
    const map = new OidPosMap();
    const r = await scanRecords(st, 4, st.size, map, { fileSize: st.size, ...opts });
    return { index: [...map].map(([k, v]) => [oidFromKey(k).toString('hex'), v]), end: r.end, txnCount: r.txnCount, lastTid: r.lastTid?.toString('hex') };
  } finally {
    await st.fh.close();
  }
}

describe('record scan: the same walk as TxnScanner', () => {
  const files = [
    ...storageFixtures().map((f) => ({ name: f.name, fs: f.fs })),
    ...['checkpoint.fs', 'complete.fs', 'garbage-after.fs', 'half-data.fs', 'half-header.fs', 'no-trailer.fs'].map((n) => ({
      name: `torn-tails/${n}`,
      fs: path.join(FIXTURES, 'torn-tails', n),
    })),
  ];
  for (const f of files) {
    it(`${f.name}: records, end, count and last tid; with a sink, exactly the committed bytes`, async () => {
      const want = await reference(f.fs);
      assert.ok(want.records.length > 0 || want.end === 4);
      const bytes = fs.readFileSync(f.fs);
      for (const chunkSize of [4096, undefined]) {
        assert.deepEqual(await lean(f.fs, { chunkSize }), want);
        assert.deepEqual(await intoMap(f.fs, { chunkSize }), { index: lastOf(want.records), end: want.end, txnCount: want.txnCount, lastTid: want.lastTid });
        const withSink = await lean(f.fs, { chunkSize, ...sinkOn });
        assert.ok(withSink.bytes!.equals(bytes.subarray(4, want.end)), `${f.name}: the sink got other bytes`);
        assert.deepEqual({ ...withSink, bytes: undefined }, { ...want, bytes: undefined });
      }
    });
  }

  it('headers cut by chunk boundaries at every offset, pickles longer than a chunk skipped unread', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const w = await FileStorageWriter.create(file);
    // Record sizes that put headers across 4 KB boundaries at many offsets; some
    // pickles of several chunks; undo-style records with back pointers.
    let first = 0;
    for (let i = 0; i < 120; i++) {
      const v = await w.commit({
        user: i % 3 ? 'admin' : '',
        description: 'x'.repeat(i % 50),
        records: [
          { oid: i % 40, data: content(`a${i}`, 37 + ((i * 131) % 1500)) },
          { oid: 100 + (i % 7), data: content(`b${i}`, i % 10 === 0 ? 20_000 + i : 1 + i) },
          ...(i > 0 && i % 9 === 0 ? [{ oid: 200 + i, backpointer: first }] : []),
        ],
      });
      if (i === 0) first = v.pos + 23; // its first record (no user, no description)
    }
    await w.close();
    const want = await reference(file);
    assert.ok(want.records.length > 240);
    const bytes = fs.readFileSync(file);
    for (const chunkSize of [4096, 4096 + 13, 9000]) {
      // As many reads in flight as the scan keeps (READ_AHEAD), one, and more
      // than a skipped pickle's chunks (some reads in flight are then dropped).
      for (const readAhead of [undefined, 1, 3, 8]) assert.deepEqual(await lean(file, { chunkSize, readAhead }), want, `chunk ${chunkSize}, ${readAhead ?? 'default'} ahead`);
      assert.deepEqual((await intoMap(file, { chunkSize })).index, lastOf(want.records), `chunk ${chunkSize}, into the map`);
      const s = await lean(file, { chunkSize, ...sinkOn });
      assert.ok(s.bytes!.equals(bytes.subarray(4, want.end)));
    }
    // From a transaction in the middle, as an incremental backup starts.
    const mid = nth(await txnStarts(file), 77);
    const fromMid = await reference(file, mid);
    assert.deepEqual(await lean(file, { start: mid, chunkSize: 4096 }), fromMid);
    assert.ok((await lean(file, { start: mid, chunkSize: 4096, ...sinkOn })).bytes!.equals(bytes.subarray(mid, want.end)));
  });
});

describe('record scan: damaged files fail as TxnScanner fails', () => {
  const cases: { name: string; damage: (b: Buffer) => void }[] = [
    {
      name: 'a record pointing to another transaction',
      damage: (b) => {
        const rec = nth(nth(stateJson(3).transactions, 2).records, 0);
        b.writeUInt32BE(b.readUInt32BE(rec.pos + 28) + 1, rec.pos + 28);
      },
    },
    {
      name: 'a broken trailer in the middle',
      damage: (b) => {
        const txn = nth(stateJson(3).transactions, 2);
        b[txn.pos + txn.length - 1]! ^= 0x10;
      },
    },
    { name: 'a bad status byte', damage: (b) => void (b[nth(stateJson(3).transactions, 4).pos + 16] = 0x58) },
    {
      name: 'a record with a version',
      damage: (b) => {
        const rec = nth(nth(stateJson(3).transactions, 1).records, 0);
        b[rec.pos + 33] = 1;
      },
    },
    {
      name: 'a record longer than its transaction',
      damage: (b) => {
        const rec = nth(nth(stateJson(3).transactions, 1).records, 0);
        b.writeUInt32BE(b.readUInt32BE(rec.pos + 38) + 100_000, rec.pos + 38);
      },
    },
    {
      name: 'a record carrying another tid',
      damage: (b) => {
        const rec = nth(nth(stateJson(3).transactions, 3).records, 0);
        b[rec.pos + 15]! ^= 1;
      },
    },
    {
      name: 'damage in the last transaction (a torn tail, not an error)',
      damage: (b) => {
        const j = stateJson(3);
        const last = nth(j.transactions, j.transactions.length - 1);
        b[last.pos + last.length - 1]! ^= 0x10;
      },
    },
  ];
  for (const c of cases) {
    it(c.name, async (t) => {
      const f = path.join(tmpDir(t), 'Data.fs');
      const b = fs.readFileSync(statePath(3));
      c.damage(b);
      fs.writeFileSync(f, b);
      let want: Walk | { code: string; position?: number; message: string };
      try {
        want = await reference(f);
      } catch (e) {
        const err = e as { code: string; position?: number; message: string };
        want = { code: err.code, position: err.position, message: err.message };
      }
      for (const opts of [{ chunkSize: 4096 }, { chunkSize: 4096, readAhead: 1 }, { chunkSize: 4096, readAhead: 4 }, { chunkSize: 4096, ...sinkOn }]) {
        if ('code' in want) {
          const e = await rejectsWith(lean(f, opts), want.code as 'FS_CORRUPT');
          assert.equal(e.position, want.position);
          assert.equal(e.message, want.message);
          assert.equal(e.path, f);
        } else {
          const got = await lean(f, opts);
          assert.deepEqual({ ...got, bytes: undefined }, { ...want, bytes: undefined });
        }
      }
      // Into the index's map: the same error, or the same walk.
      if ('code' in want) {
        const e = await rejectsWith(intoMap(f, { chunkSize: 4096 }), want.code as 'FS_CORRUPT');
        assert.equal(e.position, want.position);
        assert.equal(e.message, want.message);
      } else assert.deepEqual((await intoMap(f, { chunkSize: 4096 })).index, lastOf(want.records));
    });
  }
});

describe('record scan: a file that changes under it', () => {
  it('a committed transaction cut short while it is read is SOURCE_CHANGED, never a shorter walk', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const w = await FileStorageWriter.create(file);
    await w.commit({ records: [{ oid: 0, data: content('small', 100) }] });
    // One transaction: a record of 40 KB, then a small one whose header lies chunks later.
    const big = await w.commit({
      records: [
        { oid: 1, data: content('big', 40_000) },
        { oid: 2, data: content('after', 50) },
      ],
    });
    await w.close();
    const st = await openFileStorage(file);
    try {
      let loads = 0;
      const e = await rejectsWith(
        scanRecords(st, 4, st.size, () => undefined, {
          chunkSize: 4096,
          sink: () => undefined,
          onProgress: () => {
            // The first chunk holds the big transaction's header (its trailer is read
            // alone); then the file is cut inside the transaction.
            if (++loads === 2) fs.truncateSync(file, big.pos + 10_000);
          },
        }),
        'SOURCE_CHANGED',
      );
      assert.equal(e.path, file);
    } finally {
      await st.fh.close();
    }
  });

  it('a transaction voted but not finished (status c) ends the walk before it', async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'Data.fs');
    const w = await FileStorageWriter.create(file);
    await w.commit({ records: [{ oid: 0, data: content('one', 300) }] });
    const done = await w.commit({ records: [{ oid: 1, data: content('two', 300) }] });
    await w.vote({ records: [{ oid: 2, data: content('three', 300) }] });
    const r = await lean(file, { chunkSize: 4096, ...sinkOn });
    assert.equal(r.end, done.end);
    assert.equal(r.txnCount, 2);
    assert.ok(r.bytes!.equals(fs.readFileSync(file).subarray(4, done.end)));
    await w.finish();
    await w.close();
    assert.equal((await lean(file)).txnCount, 3);
  });
});

describe('record scan: the part a trusted index stands for', () => {
  it('transactions before framedUntil are framed only: no record of theirs is reported, all their bytes are copied', async (t) => {
    const f = path.join(tmpDir(t), 'Data.fs');
    copy(statePath(3), f);
    const j = stateJson(3);
    const cut = nth(j.transactions, 3).pos; // where transaction 3 begins: transaction 2 ends there
    const want = await reference(f);
    const got = await lean(f, { framedUntil: cut, chunkSize: 4096, ...sinkOn });
    assert.deepEqual(
      got.records,
      want.records.filter(([, p]) => p >= cut),
    );
    assert.equal(got.txnCount, want.txnCount);
    assert.equal(got.end, want.end);
    assert.ok(got.bytes!.equals(fs.readFileSync(f).subarray(4, want.end)));
  });

  it('an end that is not a transaction boundary, or past the committed end, is INDEX_BAD', async (t) => {
    const f = path.join(tmpDir(t), 'Data.fs');
    copy(statePath(3), f);
    const j = stateJson(3);
    const inside = nth(j.transactions, 3).pos + 30;
    const e = await rejectsWith(lean(f, { framedUntil: inside }), 'INDEX_BAD');
    assert.equal(e.position, inside);
    await rejectsWith(lean(f, { framedUntil: fs.statSync(f).size + 8 }), 'INDEX_BAD');
  });
});
