/**
 * The index built on two cores (indexscan.ts) against the one-thread record
 * scan into the same map: the same entries, committed end, transaction count
 * and last tid, and the same `.index` bytes; the same errors at the same
 * positions whichever half is damaged; a wrong guess at the split, or a walk
 * that ends before it, dropped for the one-thread result; cancellation.
 * Every test sets splitMin to 0, so the split is taken on small files.
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  FileStorageWriter,
  FsIndex,
  findSplit,
  oidFromKey,
  OidPosMap,
  openFileStorage,
  scanIndex,
  scanRecords,
  writeIndexFile,
  type IndexScanOptions,
} from '../../src/engine/internal';
import { rejectsWith } from '../support/assert';
import { storageFixtures, txnStarts } from '../support/fixtures';
import { content, tmpDir } from '../support/fs';
import { nth } from '../support/must';

interface Built {
  index: [string, number][];
  end: number;
  txnCount: number;
  lastTid?: string;
  splitAt?: number;
  indexBytes: Buffer;
}

/** The index of `file` built one way or the other, with the `.index` file it gives. */
async function build(file: string, how: 'one' | 'two', opts: IndexScanOptions = {}): Promise<Built> {
  const st = await openFileStorage(file);
  try {
    const index = new FsIndex();
    const r =
      how === 'one' ? await scanRecords(st, 4, st.size, index.map, { fileSize: st.size }) : await scanIndex(st, 4, st.size, index.map, { fileSize: st.size, splitMin: 0, ...opts });
    const out = `${file}.${how}.index`;
    await writeIndexFile(out, index, r.end);
    const indexBytes = fs.readFileSync(out);
    fs.rmSync(out);
    return {
      index: [...index.map].map(([k, v]) => [oidFromKey(k).toString('hex'), v]),
      end: r.end,
      txnCount: r.txnCount,
      lastTid: r.lastTid?.toString('hex'),
      splitAt: 'splitAt' in r ? (r.splitAt as number | undefined) : undefined,
      indexBytes,
    };
  } finally {
    await st.fh.close();
  }
}

/** The outcome without splitAt, or the error's code, position and message. */
async function outcome(file: string, how: 'one' | 'two', opts: IndexScanOptions = {}): Promise<unknown> {
  try {
    const { splitAt: _, ...rest } = await build(file, how, opts);
    return rest;
  } catch (e) {
    const err = e as { code: string; position?: number; message: string; path?: string };
    return { code: err.code, position: err.position, message: err.message, path: err.path };
  }
}

/**
 * 400 transactions: objects written in both halves (the later record must
 * win), new objects in each, pages of oids far apart (sparse pages), a wide
 * oid, undo-style records, and a few pickles of 100 KB.
 */
async function writeSite(file: string): Promise<void> {
  const w = await FileStorageWriter.create(file);
  let first = 0;
  for (let i = 0; i < 400; i++) {
    const v = await w.commit({
      description: 'y'.repeat(i % 30),
      records: [
        { oid: i % 50, data: content(`a${i}`, 40 + ((i * 97) % 900)) },
        { oid: 1000 + i, data: content(`n${i}`, i % 37 === 0 ? 100_000 : 200) },
        ...(i % 11 === 0 ? [{ oid: 70_000 * (1 + (i % 5)) + i, data: content(`s${i}`, 60) }] : []),
        ...(i % 53 === 0 ? [{ oid: Buffer.from('ff000000000000' + (i % 256).toString(16).padStart(2, '0'), 'hex'), data: content(`w${i}`, 30) }] : []),
        ...(i > 0 && i % 13 === 0 ? [{ oid: 5000 + i, backpointer: first }] : []),
      ],
    });
    if (i === 0) first = v.pos + 23;
  }
  await w.close();
}

describe('index on two cores: the same index as one thread', () => {
  it('a generated Data.fs: the same entries, end, count, last tid and .index bytes; the split held', async (t) => {
    const file = path.join(tmpDir(t), 'Data.fs');
    await writeSite(file);
    const one = await build(file, 'one');
    const two = await build(file, 'two');
    assert.ok(two.splitAt !== undefined, 'the scan was split');
    assert.ok((await txnStarts(file)).includes(two.splitAt), 'at a transaction start');
    assert.ok(two.splitAt > fs.statSync(file).size / 2 - 120_000 && two.splitAt < fs.statSync(file).size / 2 + 120_000, 'near the middle');
    assert.equal(two.index.length, one.index.length);
    assert.deepEqual(two.index, one.index);
    assert.deepEqual({ ...two, indexBytes: undefined, splitAt: undefined, index: undefined }, { ...one, indexBytes: undefined, splitAt: undefined, index: undefined });
    assert.ok(two.indexBytes.equals(one.indexBytes), 'the same .index bytes');
    // The worker reading through the thread pool instead of on its own thread.
    assert.deepEqual(await outcome(file, 'two', { workerSyncReads: false }), await outcome(file, 'one'));
  });

  for (const f of storageFixtures()) {
    it(`${f.name} (made by ZODB): the same outcome`, async () => {
      assert.deepEqual(await outcome(f.fs, 'two'), await outcome(f.fs, 'one'));
    });
  }

  it('a transaction voted but not finished at the end: both stop before it', async (t) => {
    const file = path.join(tmpDir(t), 'Data.fs');
    await writeSite(file);
    const w = await FileStorageWriter.open(file);
    await w.vote({ records: [{ oid: 3, data: content('voted', 5000) }] });
    assert.deepEqual(await outcome(file, 'two'), await outcome(file, 'one'));
    await w.finish();
    await w.close();
    const after = (await outcome(file, 'two')) as { txnCount: number };
    assert.equal(after.txnCount, 401);
    assert.deepEqual(after, await outcome(file, 'one'));
  });
});

describe('index on two cores: damage and wrong guesses', () => {
  /** A record's tid byte flipped in transaction `n` (FS_CORRUPT there). */
  async function damaged(t: Parameters<typeof tmpDir>[0], which: number[]): Promise<{ file: string; starts: number[] }> {
    const file = path.join(tmpDir(t), 'Data.fs');
    await writeSite(file);
    const starts = await txnStarts(file);
    const b = fs.readFileSync(file);
    for (const n of which) {
      const tpos = nth(starts, n);
      const first = tpos + 23 + b.readUInt16BE(tpos + 17) + b.readUInt16BE(tpos + 19) + b.readUInt16BE(tpos + 21);
      b[first + 15]! ^= 1; // the record's tid
    }
    fs.writeFileSync(file, b);
    return { file, starts };
  }

  for (const [name, which] of [
    ['in the first half', [40]],
    ['in the second half', [350]],
    ['in both halves: the first in file order', [120, 300]],
  ] as const) {
    it(`a damaged record ${name}: the same error at the same position`, async (t) => {
      const { file, starts } = await damaged(t, [...which]);
      const want = (await outcome(file, 'one')) as { code: string; position: number };
      assert.equal(want.code, 'FS_CORRUPT');
      assert.ok(want.position > nth(starts, which[0]!) && want.position < nth(starts, which[0]! + 1));
      assert.deepEqual(await outcome(file, 'two'), want);
    });
  }

  it('a transaction voted but not finished in the first half ends both walks there; the worker is dropped', async (t) => {
    const file = path.join(tmpDir(t), 'Data.fs');
    await writeSite(file);
    const starts = await txnStarts(file);
    const b = fs.readFileSync(file);
    b[nth(starts, 100) + 16] = 0x63; // 'c'
    fs.writeFileSync(file, b);
    const one = await build(file, 'one');
    assert.equal(one.end, nth(starts, 100));
    const two = await build(file, 'two');
    assert.equal(two.splitAt, undefined, 'the split did not hold');
    assert.deepEqual({ ...two, splitAt: undefined }, { ...one, splitAt: undefined });
  });

  it('a wrong guess (a transaction start faked inside a pickle across the middle) is proven wrong and dropped', async (t) => {
    const file = path.join(tmpDir(t), 'Data.fs');
    // A unit that looks like the end of one transaction and the start of the next:
    // header (tid 1, length 100), body, trailer 100, header (tid 2, length 23).
    const unit = Buffer.alloc(100 + 8 + 23);
    unit.writeUInt32BE(1, 4);
    unit.writeUInt32BE(100, 12);
    unit[16] = 0x20;
    unit.writeUInt32BE(100, 104);
    unit.writeUInt32BE(2, 112);
    unit.writeUInt32BE(23, 120);
    unit[124] = 0x20;
    const fake = Buffer.concat(Array.from({ length: 1600 }, () => unit)); // 210 KB
    const w = await FileStorageWriter.create(file);
    for (let i = 0; i < 5; i++) await w.commit({ records: [{ oid: i, data: content(`before${i}`, 300) }] });
    await w.commit({ records: [{ oid: 9, data: fake }] });
    for (let i = 0; i < 5; i++) await w.commit({ records: [{ oid: i, data: content(`after${i}`, 300) }] });
    await w.close();
    const size = fs.statSync(file).size;
    const fh = await fs.promises.open(file, 'r');
    let guess: number | undefined;
    try {
      guess = await findSplit(fh, 4, size);
    } finally {
      await fh.close();
    }
    assert.ok(guess !== undefined, 'the fake start is taken for one');
    assert.ok(!(await txnStarts(file)).includes(guess), 'and it is not a transaction start');
    const one = await build(file, 'one');
    const two = await build(file, 'two');
    assert.equal(two.splitAt, undefined);
    assert.deepEqual({ ...two, splitAt: undefined }, { ...one, splitAt: undefined });
  });

  it('a file with no place to split (one transaction) is scanned on one thread', async (t) => {
    const file = path.join(tmpDir(t), 'Data.fs');
    const w = await FileStorageWriter.create(file);
    await w.commit({ records: Array.from({ length: 200 }, (_, i) => ({ oid: i, data: content(`r${i}`, 500) })) });
    await w.close();
    const two = await build(file, 'two');
    assert.equal(two.splitAt, undefined);
    assert.deepEqual(two, await build(file, 'one'));
  });
});

describe('index on two cores: a worker that cannot run', () => {
  for (const [name, code] of [
    ['exits at once', 'process.exit(3)'],
    ['throws', "throw new Error('no')"],
  ] as const) {
    it(`a worker that ${name}: its half is scanned here, the same index`, async (t) => {
      const file = path.join(tmpDir(t), 'Data.fs');
      await writeSite(file);
      const got = await build(file, 'two', { worker: { code, eval: true } });
      assert.equal(got.splitAt, undefined);
      assert.deepEqual(got, await build(file, 'one'));
    });
  }
});

describe('index on two cores: cancellation', () => {
  it('a signal aborted before or during the scan is ABORTED, and the worker is gone', async (t) => {
    const file = path.join(tmpDir(t), 'Data.fs');
    await writeSite(file);
    const st = await openFileStorage(file);
    try {
      await rejectsWith(scanIndex(st, 4, st.size, new OidPosMap(), { splitMin: 0, signal: AbortSignal.abort() }), 'ABORTED');
      const c = new AbortController();
      await rejectsWith(scanIndex(st, 4, st.size, new OidPosMap(), { splitMin: 0, signal: c.signal, onProgress: () => c.abort() }), 'ABORTED');
    } finally {
      await st.fh.close();
    }
  });
});
