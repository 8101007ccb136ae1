/**
 * Telling blob records: the class reference of a record's first pickle, in
 * every form Python's pickle writes it (checked against CPython's output).
 */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { BLOB_PICKLE, DATA_HDR_LEN, isBlobPickle, loadPickle, recordClass } from '../../src/engine/internal';
import { throwsWith } from '../support/assert';
import { stateJson, statePath } from '../support/fixtures';
import { nth } from '../support/must';

// pickle.dumps(X, proto) for ZODB.blob.Blob, (Blob, None) and a subclass plone.namedfile.BlobSub, from CPython.
const CPYTHON: [string, string, boolean][] = [
  ['GLOBAL, protocol 1', '635a4f44422e626c6f620a426c6f620a71002e', true],
  ['GLOBAL in a tuple, protocol 1', '28635a4f44422e626c6f620a426c6f620a71004e7471012e', true],
  ['GLOBAL, protocol 2', '8002635a4f44422e626c6f620a426c6f620a71002e', true],
  ['GLOBAL, protocol 3', '8003635a4f44422e626c6f620a426c6f620a71002e', true],
  ['GLOBAL in a tuple, protocol 3', '8003635a4f44422e626c6f620a426c6f620a71004e8671012e', true],
  ['STACK_GLOBAL, protocol 4', '80049516000000000000008c095a4f44422e626c6f62948c04426c6f629493942e', true],
  ['STACK_GLOBAL in a tuple, protocol 4', '80049519000000000000008c095a4f44422e626c6f62948c04426c6f629493944e86942e', true],
  ['STACK_GLOBAL, protocol 5', '80059516000000000000008c095a4f44422e626c6f62948c04426c6f629493942e', true],
  ['a subclass, protocol 1', '63706c6f6e652e6e616d656466696c650a426c6f625375620a71002e', false],
  ['a subclass, protocol 3', '800363706c6f6e652e6e616d656466696c650a426c6f625375620a71002e', false],
  ['a subclass, protocol 4', '8004951f000000000000008c0f706c6f6e652e6e616d656466696c65948c07426c6f625375629493942e', false],
];

describe('pickle: blob records', () => {
  for (const [name, hex, blob] of CPYTHON) {
    it(`${name}: ${blob ? 'a blob' : 'not a blob'}`, () => {
      assert.equal(isBlobPickle(Buffer.from(hex, 'hex')), blob);
    });
  }

  it('names the class', () => {
    assert.deepEqual(recordClass(Buffer.from(nth(CPYTHON, 9)[1], 'hex')), { module: 'plone.namedfile', name: 'BlobSub' });
    assert.deepEqual(recordClass(BLOB_PICKLE), { module: 'ZODB.blob', name: 'Blob' });
    assert.equal(isBlobPickle(BLOB_PICKLE), true);
  });

  it('other classes and garbage are not blobs', () => {
    for (const s of [
      '\x80\x03cZODB.blob\nBlobFile\nq\x00.',
      '\x80\x03cZODB.blobx\nBlob\nq\x00.',
      '\x80\x03cpersistent.mapping\nPersistentMapping\n.',
      '',
      '\x80',
      'garbage',
      '\x80\x03c',
    ]) {
      assert.equal(isBlobPickle(Buffer.from(s, 'latin1')), false, JSON.stringify(s));
    }
  });

  it("agrees with ZODB's blob flags on every record of S3", () => {
    const b = fs.readFileSync(statePath(3));
    let blobs = 0;
    for (const t of stateJson(3).transactions) {
      for (const r of t.records) {
        if (r.plen === 0) continue;
        assert.equal(isBlobPickle(b.subarray(r.pos + DATA_HDR_LEN, r.pos + DATA_HDR_LEN + r.plen)), r.blob, `record at ${r.pos}`);
        if (r.blob) blobs++;
      }
    }
    assert.ok(blobs >= 4);
  });
});

describe('pickle: loading is bounded', () => {
  /** PROTO 3, MARK, `n` times `item`, TUPLE, STOP. */
  const wide = (n: number, item: Buffer) => Buffer.concat([Buffer.from([0x80, 0x03, 0x28]), Buffer.concat(Array(n).fill(item)), Buffer.from([0x74, 0x2e])]);

  it('a tuple of 60,000 items is built whole and in order (its cost against size: npm run bench)', () => {
    const n = 60_000; // under MAX_STACK
    const b = Buffer.concat([Buffer.from([0x80, 0x03, 0x28]), ...Array.from({ length: n }, (_, i) => Buffer.from([0x4d, i & 0xff, (i >> 8) & 0xff])), Buffer.from([0x74, 0x2e])]); // BININT2 i
    const v = loadPickle(b, 0, 'wide').value as number[];
    assert.equal(v.length, n);
    assert.ok(v.every((x, i) => x === (i & 0xffff)));
  });

  it('nested tuples keep their items in order', () => {
    // ((1, 2, 3), (4,), ()) with MARK/TUPLE, and TUPLE2 inside
    const b = Buffer.from('8003' + '28' + '284b014b024b0374' + '284b0474' + '2874' + '74' + '2e', 'hex');
    assert.deepEqual(loadPickle(b, 0).value, [[1, 2, 3], [4], []]);
    const c = Buffer.from('8003' + '28' + '4b01' + '4b02' + '4b03' + '86' + '74' + '2e', 'hex');
    assert.deepEqual(loadPickle(c, 0).value, [1, [2, 3]]);
  });

  it('a 300 KB pickle of one wide tuple is INDEX_BAD, stopped at the stack bound', () => {
    const b = wide(300_000, Buffer.from([0x4e])); // None
    assert.ok(b.length > 300_000);
    const e = throwsWith(() => loadPickle(b, 0, 'wide.index'), 'INDEX_BAD');
    assert.match(e.message, /more than \d+ values/);
    assert.equal(e.path, 'wide.index');
  });

  it('memo entries count against the same bound', () => {
    const b = Buffer.concat([Buffer.from([0x80, 0x03, 0x4e]), Buffer.alloc(200_000, 0x94), Buffer.from([0x2e])]); // None, MEMOIZE x 200,000
    throwsWith(() => loadPickle(b, 0), 'INDEX_BAD');
  });

  it('a value never pops across an open MARK', () => {
    for (const hex of ['8003284b0186742e', '8003284b01942e', '8003282e', '8003742e', '80034b0128742e']) {
      throwsWith(() => loadPickle(Buffer.from(hex, 'hex'), 0), 'INDEX_BAD');
    }
  });
});
